"""./bin/start installs the requirements only when they changed since its last install."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.processes import ROOT


def _stub(path: Path, body: str) -> None:
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    path.chmod(0o755)


def test_start_runs_pip_only_when_the_requirements_changed(tmp_path):
    (tmp_path / "bin").mkdir()
    shutil.copy(ROOT / "bin" / "start", tmp_path / "bin" / "start")
    shutil.copy(ROOT / "requirements.txt", tmp_path / "requirements.txt")
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    _stub(venv / "pip", f'echo "pip $*" >> {tmp_path}/calls')
    _stub(venv / "python", f'echo "python $*" >> {tmp_path}/calls')

    def start() -> list[str]:
        subprocess.run(["bash", str(tmp_path / "bin" / "start"), "--port", "9"], check=True, timeout=60)
        calls = (tmp_path / "calls").read_text().splitlines()
        (tmp_path / "calls").unlink()
        return calls

    first = start()
    assert first[0].startswith("pip install") and first[1] == "python manage.py up --port 9"
    assert start() == ["python manage.py up --port 9"]  # a restart: no pip
    with open(tmp_path / "requirements.txt", "a") as requirements:
        requirements.write("some-new-package==1.0\n")
    assert start()[0].startswith("pip install")
