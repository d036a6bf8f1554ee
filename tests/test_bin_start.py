"""./bin/start and ./bin/test make .venv with bin/venv: Python 3.12 or newer, pip only when the requirements changed."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.processes import ROOT

# The stub interpreters answer bin/venv's version check with this exit status: 0 is 3.12+, 1 older.
PYTHON_STUB = """
if [ "$1" = -c ]; then exit {check}; fi
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin"
  printf '#!/usr/bin/env bash\\nif [ "$1" = -c ]; then exit 0; fi\\necho "python $*" >> {calls}\\n' > "$3/bin/python"
  printf '#!/usr/bin/env bash\\necho "pip $*" >> {calls}\\n' > "$3/bin/pip"
  chmod +x "$3/bin/python" "$3/bin/pip"
  echo "venv by $0" >> {calls}
  exit 0
fi
echo "python $*" >> {calls}
"""


def _stub(path: Path, body: str) -> None:
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    path.chmod(0o755)


def _project(tmp_path: Path) -> Path:
    (tmp_path / "bin").mkdir()
    for script in ("start", "venv"):
        shutil.copy(ROOT / "bin" / script, tmp_path / "bin" / script)
    for name in ("requirements.txt", "setup.py", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def _start(project: Path, **env: str) -> tuple[int, list[str], str]:
    done = subprocess.run(["bash", str(project / "bin" / "start"), "--port", "9"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env})
    calls_file = project / "calls"
    calls = calls_file.read_text().splitlines() if calls_file.exists() else []
    calls_file.unlink(missing_ok=True)
    return done.returncode, calls, done.stderr


def _pythons(where: Path, calls: Path, **checks: int) -> None:
    """Put stub interpreters named like ``python3_12=0`` (3.12+) or ``python3=1`` (older) in ``where``."""
    where.mkdir(parents=True, exist_ok=True)
    for name, check in checks.items():
        _stub(where / name.replace("_", "."), PYTHON_STUB.format(check=check, calls=calls))


def test_start_runs_pip_only_when_the_requirements_changed(tmp_path):
    project = _project(tmp_path)
    venv = project / ".venv" / "bin"
    venv.mkdir(parents=True)
    _stub(venv / "pip", f'echo "pip $*" >> {project}/calls')
    _stub(venv / "python", f'[ "$1" = -c ] && exit 0; echo "python $*" >> {project}/calls')

    _, first, _ = _start(project)
    assert first[0].startswith("pip install") and first[1] == "python manage.py up --port 9"
    assert _start(project)[1] == ["python manage.py up --port 9"]  # a restart: no pip
    with open(project / "requirements.txt", "a") as requirements:
        requirements.write("some-new-package==1.0\n")
    assert _start(project)[1][0].startswith("pip install")


def test_a_venv_of_an_older_python_is_made_anew_with_the_first_new_enough_one_on_the_path(tmp_path):
    project = _project(tmp_path)
    venv = project / ".venv" / "bin"
    venv.mkdir(parents=True)
    _stub(venv / "python", "exit 1")  # Python 3.11: the version check fails
    (project / ".venv" / "old-package").write_text("")
    stubs = tmp_path / "path"
    # python3.13 is a shim that fails when called, python3.12 is new enough, python3 is older.
    _pythons(stubs, project / "calls", python3_13=127, python3_12=0, python3=1)

    code, calls, stderr = _start(project, PATH=f"{stubs}:/usr/bin:/bin", PYENV_ROOT=str(tmp_path / "no-pyenv"))
    assert code == 0, stderr
    assert calls[0] == f"venv by {stubs}/python3.12" and "making it anew" in stderr
    assert calls[1].startswith("pip install") and calls[2] == "python manage.py up --port 9"
    assert not (project / ".venv" / "old-package").exists()


def test_pyenv_interpreters_are_tried_when_the_path_has_none_new_enough(tmp_path):
    project = _project(tmp_path)
    stubs, pyenv = tmp_path / "path", tmp_path / "pyenv"
    _pythons(stubs, project / "calls", python3=1)
    _pythons(pyenv / "versions" / "3.13.0" / "bin", project / "calls", python3_13=1)  # broken: its check fails
    _pythons(pyenv / "versions" / "3.12.1" / "bin", project / "calls", python3_12=0)

    code, calls, stderr = _start(project, PATH=f"{stubs}:/usr/bin:/bin", PYENV_ROOT=str(pyenv))
    assert code == 0, stderr
    assert calls[0] == f"venv by {pyenv}/versions/3.12.1/bin/python3.12"


def test_without_python_3_12_start_says_so_and_stops(tmp_path):
    project = _project(tmp_path)
    stubs = tmp_path / "path"
    _pythons(stubs, project / "calls", python3_13=127, python3_12=127, python3=1)

    code, calls, stderr = _start(project, PATH=f"{stubs}:/usr/bin:/bin", PYENV_ROOT=str(tmp_path / "no-pyenv"))
    assert code == 1 and calls == []
    assert "needs Python 3.12 or newer" in stderr and "none was found" in stderr
    assert not (project / ".venv").exists()
