"""The CLI against a Stepwise server: ``--server URL --api-key KEY`` (or STEPWISE_URL and STEPWISE_API_KEY).

With a server, ``trigger``, ``runs`` and ``waitpoints`` go through the REST API instead of the
local database; the key decides the environment, and what the key may not do is refused by the
server (403). Every failure becomes a CommandError naming the server and the problem.
"""
from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from django.core.management.base import BaseCommand, CommandError

from stepwise.client import FINAL_STATUSES, Client, StepwiseApiError
from stepwise.runs.engine.errors import error_text
from stepwise.runs.management.base import user_errors
from stepwise.runs.triggers import payload_parse

# What the statuses whose detail does not say it mean for a CLI user.
WHY = {401: "the API key was refused (revoked, mistyped, or for another server)",
       403: "the API key may not do this"}


def server_options(parser, *, flag: str = "--server") -> None:
    """Add ``--server`` (or another flag name) and ``--api-key``, defaulting to STEPWISE_URL and STEPWISE_API_KEY."""
    parser.add_argument(flag, dest="server", default=os.environ.get("STEPWISE_URL") or None,
                        help="a Stepwise server's URL: go through its REST API (default: $STEPWISE_URL)")
    parser.add_argument("--api-key", default=os.environ.get("STEPWISE_API_KEY") or None,
                        help="the API key for --server (default: $STEPWISE_API_KEY); it decides the environment")


def is_remote(opts: dict[str, Any]) -> bool:
    """Tell whether a command was given a server to talk to."""
    return bool(opts.get("server"))


def _detail(exc: StepwiseApiError) -> str:
    return str(exc.detail.get("detail", exc.detail)) if isinstance(exc.detail, dict) else str(exc.detail)


@contextmanager
def remote_client(server: str, api_key: str | None) -> Iterator[Client]:
    """Yield a client of ``server``; turn the API's and the network's errors into CommandErrors that say what failed."""
    if not api_key:
        raise CommandError(f"{server} needs an API key: give --api-key KEY or set STEPWISE_API_KEY")
    if not server.startswith(("http://", "https://")):
        raise CommandError(f"the server must be an http:// or https:// URL, not '{server}'")
    try:
        with Client(server, api_key, timeout=30) as client:
            yield client
    except StepwiseApiError as exc:
        why = WHY.get(exc.status_code, "")
        raise CommandError(f"{server} answered {exc.status_code}{f' ({why})' if why else ''}: {_detail(exc)}") from None
    except httpx.HTTPError as exc:
        raise CommandError(f"cannot reach {server}: {exc}") from None


def _clock() -> str:
    return time.strftime("%H:%M:%S")


def follow_remote(command: BaseCommand, client: Client, run_id: str, *, timeout: float | None) -> dict[str, Any]:
    """Print a run's status changes and steps as the server records them, until it finishes; return the run."""
    deadline = None if timeout is None else time.monotonic() + timeout
    status, steps = None, 0
    while True:
        run = client.get_run(run_id)
        if run["status"] != status:
            command.stdout.write(f"{_clock()}  {status or 'triggered'} -> {run['status']}")
            status = run["status"]
        for step in run["steps"][steps:]:
            error = f"  {error_text(step['error'])}" if step.get("error") else ""
            command.stdout.write(f"{_clock()}  step {step['status'].lower():<9} {step['key']}{error}")
        steps = len(run["steps"])
        if run["status"] in FINAL_STATUSES:
            return run
        if deadline is not None and time.monotonic() > deadline:
            raise CommandError(f"run {run_id} is still {run['status']} after {timeout:g}s")
        time.sleep(0.5)


def run_ended(command: BaseCommand, run: dict[str, Any]) -> None:
    """Say how a followed run ended: its output, or a CommandError with its error."""
    if run["status"] == "COMPLETED":
        command.stdout.write(command.style.SUCCESS(f"{run['id']} COMPLETED output={json.dumps(run['output'])}"))
        return
    reason = error_text(run["error"]) if run.get("error") else "no error recorded"
    raise CommandError(f"run {run['id']} ended {run['status']}: {reason}")


def runs_remote(command: BaseCommand, opts: dict[str, Any]) -> None:
    """Carry out ``manage.py runs list|show|cancel|replay`` through a server's API."""
    w = command.stdout.write
    with remote_client(opts["server"], opts["api_key"]) as client:
        action = opts["action"]
        if action == "list":
            filters = {k: opts.get(k) for k in ("task", "status", "tag", "queue", "batch", "schedule")}
            w(f"{'RUN':<36} {'TASK':<20} {'STATUS':<10} {'ATT':>3}  CREATED")
            for run in itertools.islice(client.list_runs(**filters, limit=min(opts["limit"], 200)), opts["limit"]):
                w(f"{run['id']:<36} {run['task_id']:<20} {run['status']:<10} {run['attempt_count']:>3}  "
                  f"{run['created_at'][:19].replace('T', ' ')}")
        elif action == "show":
            run = client.get_run(opts["run_id"])
            w(f"run       {run['id']}")
            w(f"task      {run['task_id']} (version {run['version']}, environment {run['environment']})")
            w(f"status    {run['status']}")
            w(f"payload   {json.dumps(run['payload'])}")
            if run["output"] is not None:
                w(f"output    {json.dumps(run['output'])}")
            if run["error"]:
                w(f"error     {error_text(run['error'])}")
            w("attempts")
            for a in run["attempts"]:
                err = f"  {error_text(a['error'])}" if a["error"] else ""
                w(f"  #{a['number']} {a['status']:<10} worker={a['worker_id']} version={a['version']}{err}")
            w("steps")
            for s in run["steps"]:
                err = f"  {error_text(s['error'])}" if s["error"] else ""
                w(f"  {s['position']:>3}. {s['key']:<24} {s['status']:<9} attempt {s['attempt_number']}{err}")
        elif action == "cancel":
            run = client.cancel(opts["run_id"])
            w(f"{run['id']} {run['status']}")
        else:
            with user_errors():
                payload = payload_parse(opts["payload"]) if opts.get("payload") else ...
            new = client.replay(opts["run_id"], payload)
            w(f"{new['id']} {new['status']} (replay of {opts['run_id']})")


def waitpoints_remote(command: BaseCommand, opts: dict[str, Any], data: Any) -> None:
    """Carry out ``manage.py waitpoints list|approve|reject|complete`` through a server's API."""
    w = command.stdout.write
    with remote_client(opts["server"], opts["api_key"]) as client:
        if opts["action"] == "list":
            w(f"{'WAITPOINT':<32} {'KIND':<9} {'STATUS':<9} {'RUN':<32} DESCRIPTION")
            for wp in client.list_waitpoints():
                what = wp.get("description") or wp.get("event_name") or wp.get("key", "")
                w(f"{wp['id']:<32} {wp['kind']:<9} {wp['status']:<9} {wp['run_id']:<32} {what}")
            return
        if opts["action"] == "approve":
            wp = client.approve(opts["waitpoint_id"], data)
        elif opts["action"] == "reject":
            wp = client.reject(opts["waitpoint_id"], data)
        else:
            wp = client.complete_waitpoint(opts["waitpoint_id"], data)
        w(f"{wp['id']} {wp['status']} output={json.dumps(wp.get('output'))}; run {wp['run_id']} resumes")
