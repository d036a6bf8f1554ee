"""The Dockerfile, docker-compose.yml and Procfile start processes this code base really has."""
from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml
from django.core.management import get_commands, load_command_class

from tests.processes import ROOT

APP_SERVICES = ("migrate", "web", "worker", "scheduler")


def check_command(argv: list[str]) -> None:
    """Fail unless ``argv`` starts a program of this code base with options it accepts."""
    program, *args = argv
    if program == "python" and args[:1] == ["manage.py"]:
        name, *rest = args[1:]
        assert name in get_commands(), f"manage.py has no command {name!r}"
        command = load_command_class(get_commands()[name], name)
        command.create_parser("manage.py", name).parse_args(rest)  # a CommandError names a wrong option
    elif program == "python" and args[:1] == ["-c"]:
        compile(args[1], "<command>", "exec")
    elif program in ("celery", "uvicorn"):
        if program == "uvicorn":
            target = next(arg for arg in args if ":" in arg and not arg.startswith("-"))
            module, _, attribute = target.partition(":")
            assert hasattr(importlib.import_module(module), attribute), f"{target} does not exist"
        # Click rejects an unknown option before it answers --help.
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "stepwise.console.settings"}
        result = subprocess.run([sys.executable, "-m", program, *args, "--help"], cwd=ROOT, capture_output=True,
                                text=True, timeout=120, env=env)
        assert result.returncode == 0, f"{' '.join(argv)}: {result.stderr[-1000:]}"
    else:
        pytest.fail(f"unknown program in {argv}")


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_starts_postgres_redis_web_worker_and_two_kinds_of_probes():
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", *APP_SERVICES}
    for name in APP_SERVICES:
        service = services[name]
        assert service["build"] == "." and (ROOT / "Dockerfile").exists()
        check_command(service["command"])
        env = service["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"] == "redis://redis:6379/0" and env["DEBUG"] == "0"
        assert set(service["depends_on"]) <= set(services)
    for name in ("web", "worker", "scheduler"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD"
        check_command(test[1:])
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert "/health/ready" in services["web"]["healthcheck"]["test"][-1]
    assert services["worker"]["healthcheck"]["test"][-1] == "--worker"
    assert services["scheduler"]["healthcheck"]["test"][-1] == "--scheduler"
    web_port = services["web"]["command"][services["web"]["command"].index("--port") + 1]
    assert services["web"]["ports"][0].endswith(f":{web_port}")


def test_procfile_names_the_same_processes():
    roles = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert set(roles) == {"release", "web", "worker", "scheduler"}
    for line in roles.values():
        check_command(shlex.split(line.replace("${PORT:-8000}", "8000")))


def test_dockerfile_installs_everything_at_build_time():
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.13-slim" in text
    assert "RUN pip install -r requirements.txt" in text
    assert re.search(r"RUN .*manage\.py collectstatic --noinput", text)
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    check_command(cmd)
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue  # a blank line, or a comment saying why a version is pinned
        assert re.fullmatch(r"[A-Za-z0-9_.\[\]-]+==[0-9][0-9A-Za-z.]*", line), f"not pinned: {line}"
    assert any(line.startswith("prometheus-client==") for line in (ROOT / "requirements.txt").read_text().split())
