"""manage.py chaos --quick: every fault scenario against real workers, and what must never happen did not."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings

from stepwise.runs.models import Run

# What a user must never see, whatever the machine's load: each of these figures is 0.
MUST_BE_ZERO = [
    "killed workers: runs stranded (not final at the end)",
    "killed workers: steps re-executed after they were recorded",
    "killed workers: runs with a wrong output",
    "paused worker: steps written by the paused attempt after the takeover",
    "paused worker: events written by the paused attempt after the takeover",
    "paused worker: log lines written by the paused attempt after the takeover",
    "paused worker: spans written by the paused attempt after the takeover",
    "paused worker: run not completed with the right output",
    "database away 2s: runs stranded (not final at the end)",
    "database away 2s: runs ended in another final state",
    "database away 2s: steps re-executed after they were recorded",
    "database away: hints dropped by workers (instead of kept until it is back)",
    "broker away 2s: runs stranded (not final at the end)",
    "broker away 2s: runs ended in another final state",
    "broker away 2s: steps re-executed after they were recorded",
    "crash loop: run not ended CRASHED with its reason",
    "deadlines: runs not resumed",
    "deadlines, scheduler killed and restarted: runs not resumed (15 runs)",
    "5% store faults: runs stranded (not final at the end)",
    "5% store faults: runs ended in another final state",
    "5% store faults: steps re-executed after they were recorded",
    "5% store faults: runs with a wrong output",
    "limited queue: runs stranded (not final at the end)",
    "limited queue: steps re-executed after they were recorded",
]


@pytest.mark.xdist_group("heavy")
@pytest.mark.timeout(900)
def test_the_quick_chaos_profile_loses_no_run_and_repeats_no_recorded_step(transactional_db, processes):
    # `processes` stops the session's shared workers and scheduler first: chaos brings its own cluster, and a
    # second deployment on the same database (without the chaos tasks) would take its runs and fail them.
    out, progress = io.StringIO(), io.StringIO()
    call_command("chaos", "--quick", "--json", "--seed", "7", stdout=out, stderr=progress)

    report = json.loads(out.getvalue())
    assert [(s["number"], s["error"]) for s in report["scenarios"]] == [(n, None) for n in range(1, 9)], (
        progress.getvalue())
    figures = {f["metric"]: f for s in report["scenarios"] for f in s["figures"]}
    for metric in MUST_BE_ZERO:
        assert figures[metric]["value"] == 0, (metric, figures[metric], progress.getvalue())
    limited = figures["limited queue: most runs executing a step at once"]
    assert 1 <= limited["value"] <= 5, limited
    assert figures["crash loop: attempts before CRASHED (cap 5 crashes)"]["value"] == 5
    assert figures["5% store faults: faults injected (STEPWISE_STORE_FAULT_RATE=0.05, 8 runs x 5 steps)"]["value"] > 0
    assert figures["killed workers: runs completed"]["value"] == 16
    assert report["ok"] is True
    assert not Run.objects.exists(), "the scenarios' runs are deleted afterwards"


def test_chaos_names_the_scenarios_when_given_an_unknown_one(transactional_db):
    with pytest.raises(CommandError, match="unknown scenario nope; the scenarios are kill, pause"):
        call_command("chaos", "--quick", "--only", "nope")


@override_settings(USES_POSTGRES=False)
def test_chaos_refuses_the_embedded_database_with_a_clear_error(transactional_db):
    with pytest.raises(CommandError, match="DATABASE_URL must point at PostgreSQL"):
        call_command("chaos", "--quick")


def test_store_fault_injection_is_refused_without_debug():
    env = {
        "PATH": os.environ.get("PATH", ""), "DJANGO_SETTINGS_MODULE": "stepwise.console.settings",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/stepwise", "DEBUG": "0",
        "SECRET_KEY": "x" * 50, "STEPWISE_SECRET_KEYS": "dGVzdC1vbmx5LWtleS1mb3Itc3RlcHdpc2UtdGVzdHM=",
        "STEPWISE_STORE_FAULT_RATE": "0.01",
    }
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=settings.BASE_DIR, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "STEPWISE_STORE_FAULT_RATE makes database calls fail on purpose" in result.stderr
    assert "refused unless DEBUG=1" in result.stderr
