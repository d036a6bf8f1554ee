"""Version pinning: old and new workers side by side, each running its own code of the same task.

Each version of the probe task is a module written to a directory of its own under the same
module name; a worker started with that directory on its path holds that version, and so does
this process once it loaded it (the runs it triggers are pinned to it).
"""
from __future__ import annotations

import hashlib
import importlib.util
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import pytest

from stepwise.runs.models import Attempt, Run, RunEvent, Step
from stepwise.runs.statuses import AttemptStatus, RunStatus
from stepwise.tasks.models import TaskVersion, WorkerVersion
from tests.processes import code_env
from tests.waiting import wait_finished, wait_for

pytestmark = pytest.mark.xdist_group("version-pinning")

PROBE_MODULE = "stepwise_version_probe"
PROBE_SOURCE = '''"""The version-probe task as one deploy has it: CODE names this version of the code."""
import os
import time

from stepwise.tasks.sdk import Retry, step, task, wait

CODE = {code!r}


@step()
def where_before():
    return {{"code": CODE, "pid": os.getpid()}}


@step()
def where_after():
    return {{"code": CODE, "pid": os.getpid()}}


@task(id="version-probe", version_policy={policy!r},
      retry=Retry(max_attempts=3, factor=1, min_timeout=0.1, max_timeout=0.1, jitter=False))
def version_probe(payload, ctx):
    before = where_before()
    if ctx.attempt == 1 and payload.get("hold"):
        time.sleep(payload["hold"])  # long enough for the test to kill this worker
    if payload.get("wait"):
        wait.for_(seconds=payload["wait"])
    if payload.get("fail_once") and not ctx.claim.failed_attempts:
        raise RuntimeError("the first attempt after the wait fails, to be retried")
    return {{"before": before, "after": where_after(), "returned_by": CODE}}
'''


def probe_code(tmp_path: Path, code: str, policy: str) -> Path:
    """Write one version of the probe task into a directory of its own; return the directory."""
    directory = tmp_path / code
    directory.mkdir()
    (directory / f"{PROBE_MODULE}.py").write_text(PROBE_SOURCE.format(code=code, policy=policy))
    return directory


def probe_hash(directory: Path) -> str:
    """Return the content hash (the version) a process running this directory's probe has."""
    return hashlib.sha256((directory / f"{PROBE_MODULE}.py").read_text().encode()).hexdigest()


def probe_load(directory: Path):
    """Register this directory's version of the probe in this process: the runs it triggers are pinned to it."""
    spec = importlib.util.spec_from_file_location(PROBE_MODULE, directory / f"{PROBE_MODULE}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[PROBE_MODULE] = module
    spec.loader.exec_module(module)
    assert module.version_probe.version_hash == probe_hash(directory)
    return module.version_probe


def start_worker(processes, directory: Path):
    """Start a worker running this directory's version of the probe; return it once it announced its version."""
    worker = processes.worker(concurrency=2, **code_env(directory, PROBE_MODULE))
    announced = WorkerVersion.objects.filter(content_hash=probe_hash(directory), worker__contains=f":{worker.pid}:")
    wait_for(announced.exists, timeout=60, message=f"the worker of {directory.name} to announce itself")
    return worker


@dataclass(frozen=True)
class SideBySide:
    """An old and a new version of the probe, each run by a worker of its own."""

    v1: Path
    v2: Path
    old: Popen
    new: Popen


def deploy_side_by_side(processes, tmp_path: Path, policy: str, **scheduler_env: str) -> SideBySide:
    """Start a worker of v1 and a worker of v2 of the probe under ``policy``, and a scheduler."""
    v1, v2 = probe_code(tmp_path, "v1", policy), probe_code(tmp_path, "v2", policy)
    deploy = SideBySide(v1, v2, start_worker(processes, v1), start_worker(processes, v2))
    processes.scheduler(interval=0.2, **scheduler_env)
    return deploy


def attempt_pids(run_id: str) -> list[int]:
    """Return the process id of the worker that made each attempt of a run, in order."""
    return [int(worker.split(":")[1]) for worker in
            Attempt.objects.filter(run_id=run_id).order_by("number").values_list("worker_id", flat=True)]


def test_a_pinned_run_executes_only_on_a_worker_of_its_version_while_another_is_idle(
    transactional_db, processes, tmp_path
):
    deploy = deploy_side_by_side(processes, tmp_path, "pin")
    old, new = deploy.old, deploy.new
    probe = probe_load(deploy.v1)

    # Each run waits (its resume is hinted to every worker) and fails once (so is its retry).
    run_ids = [probe.trigger({"wait": 0.3, "fail_once": True}).id for _ in range(6)]

    for run_id in run_ids:
        run = wait_finished(run_id, timeout=90)
        assert run.status == RunStatus.COMPLETED, run.error
        assert run.output["before"] == run.output["after"] == {"code": "v1", "pid": old.pid}
        assert run.output["returned_by"] == "v1"
        # The suspended attempt, the failed one, the retry: all three on the old worker, none counted on the new.
        assert run.attempt_count == 3
        assert attempt_pids(run_id) == [old.pid] * 3
    assert new.pid not in {step.output.get("pid") for step in Step.objects.filter(run_id__in=run_ids, kind="step")}
    assert not RunEvent.objects.filter(run_id__in=run_ids, type="version.mismatch").exists()


def test_a_pinned_run_whose_worker_died_waits_for_a_worker_of_its_version_and_resumes_there(
    transactional_db, processes, tmp_path
):
    deploy = deploy_side_by_side(processes, tmp_path, "pin")
    old, new = deploy.old, deploy.new
    probe = probe_load(deploy.v1)
    run_id = probe.trigger({"hold": 60}).id
    wait_for(lambda: Step.objects.filter(run_id=run_id, key="where_before").exists(), timeout=60,
             message="the run's first step on the old worker")

    processes.kill(old)  # mid-run: the lease expires and the scheduler takes the run over

    # Only the new worker runs now: it is hinted the run, passes the hint on, and the run waits.
    run = wait_for(lambda: Run.objects.filter(id=run_id, status=RunStatus.QUEUED,
                                              version_wait_since__isnull=False).first(),
                   timeout=60, message="the run to wait for a worker of its version")
    assert run.waiting_for_version
    wait_for(lambda: "hint passed on" in new.log_path.read_text(), timeout=30,
             message="the new worker to pass the run's hint on")
    assert Run.objects.get(id=run_id).attempt_count == 1
    assert Run.objects.get(id=run_id).status == RunStatus.QUEUED

    fresh = start_worker(processes, deploy.v1)  # the old version is deployed again

    run = wait_finished(run_id, timeout=60)
    assert run.status == RunStatus.COMPLETED, run.error
    assert run.output["before"] == {"code": "v1", "pid": old.pid}  # replayed from its checkpoint
    assert run.output["after"] == {"code": "v1", "pid": fresh.pid}
    assert attempt_pids(run_id) == [old.pid, fresh.pid]
    assert list(Attempt.objects.filter(run_id=run_id).order_by("number").values_list("status", flat=True)) == [
        AttemptStatus.CRASHED, AttemptStatus.COMPLETED]
    assert run.version_wait_since is None
    assert RunEvent.objects.filter(run_id=run_id, type="version.waiting").count() == 1


def test_a_latest_run_executes_on_whichever_worker_is_running_and_records_the_version_that_ran(
    transactional_db, processes, tmp_path
):
    deploy = deploy_side_by_side(processes, tmp_path, "latest")
    v1, v2 = deploy.v1, deploy.v2
    codes = {probe_hash(v1): "v1", probe_hash(v2): "v2"}
    probe = probe_load(v1)

    side_by_side = [probe.trigger({}).id for _ in range(4)]
    for run_id in side_by_side:
        run = wait_finished(run_id, timeout=60)
        assert run.status == RunStatus.COMPLETED, run.error
        attempt = Attempt.objects.select_related("version").get(run_id=run_id)
        assert codes[attempt.version.content_hash] == run.output["returned_by"]

    processes.kill(deploy.old, signal.SIGTERM)  # the old version is retired; runs triggered on it go on
    after_retirement = [probe.trigger({}).id for _ in range(3)]

    for run_id in after_retirement:
        run = wait_finished(run_id, timeout=60)
        assert run.status == RunStatus.COMPLETED, run.error
        assert run.output["returned_by"] == "v2"
        assert Run.objects.get(id=run_id).version.content_hash == probe_hash(v1)  # triggered on v1
        attempt = Attempt.objects.select_related("version").get(run_id=run_id)
        assert attempt.version.content_hash == probe_hash(v2)  # executed by v2
        mismatch = RunEvent.objects.get(run_id=run_id, type="version.mismatch").data
        assert (mismatch["pinned"], mismatch["worker"]) == (probe_hash(v1), probe_hash(v2))


def test_a_pinned_run_with_no_worker_of_its_version_fails_after_the_grace_period(
    transactional_db, processes, tmp_path
):
    deploy_side_by_side(processes, tmp_path, "pin", STEPWISE_VERSION_GRACE_SECONDS="2")
    v3 = probe_code(tmp_path, "v3", "pin")
    probe = probe_load(v3)  # triggered on code no worker runs

    run = wait_finished(probe.trigger({}).id, timeout=60)

    assert run.status == RunStatus.FAILED
    label = TaskVersion.objects.get(content_hash=probe_hash(v3)).label
    assert run.error["type"] == "VersionUnavailable"
    assert run.error["message"].startswith(f"no worker of version {label} of task 'version-probe' is running")
    assert run.attempt_count == 0
    assert not Attempt.objects.filter(run_id=run.id).exists()
    assert not Step.objects.filter(run_id=run.id).exists()
    types = list(RunEvent.objects.filter(run_id=run.id).order_by("seq").values_list("type", "data"))
    assert [t for t, _ in types] == ["run.created", "version.waiting", "run.status"]
    assert types[1][1]["version"] == label
    assert (types[2][1]["from"], types[2][1]["to"]) == ("QUEUED", "FAILED")
