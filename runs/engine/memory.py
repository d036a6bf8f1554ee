"""A RunStore that holds one run in memory: a run executed locally, outside any database (``manage.py replay``)."""
from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from stepwise.runs.engine.store import Claim, LogEntry, RecordedStep
from stepwise.runs.engine.waits import WaitpointState, WaitSpec

Report = Callable[[str, dict[str, Any]], None]
TIMERS = ("DURATION", "DATE")


class MemoryRunStore:
    """Keeps one claimed run's steps, metadata, waits and outcome in memory, and reports each write.

    Nothing is fenced (one process holds the run) and nothing is stored. Timers resolve at
    once (a local run does not sleep through a wait); any other wait (an event, a token, child
    runs) stops the run there, reported as ``waits``. ``report(kind, data)`` is told of every
    write: step.started, step.completed, step.failed, log, metadata, waits, completed, failed.
    """

    def __init__(self, claim: Claim, *, report: Report) -> None:
        self._claim: Claim | None = claim
        self._report = report
        self._waits: dict[str, WaitpointState] = {}
        self._ids = itertools.count(1)
        self.steps: list[RecordedStep] = []
        self.status = "EXECUTING"
        self.output: Any = None
        self.error: dict[str, Any] | None = None
        self.metadata: dict[str, Any] = dict(claim.metadata)
        self._streams: dict[str, list[Any]] = {}

    def claim(self, run_id: str, worker_id: str) -> Claim | None:
        claim, self._claim = self._claim, None  # one attempt
        return claim

    def step_begin(self, claim: Claim, *, key: str, name: str, position: int) -> None:
        self._report("step.started", {"key": key, "position": position})

    def step_record(self, claim: Claim, step: RecordedStep) -> None:
        self.steps.append(step)
        duration = (step.finished_at - step.started_at).total_seconds() * 1000 if step.started_at else 0.0
        self._report("step.completed" if step.status == "COMPLETED" else "step.failed",
                     {"key": step.key, "kind": step.kind, "duration_ms": duration, "output": step.output,
                      "error": step.error})

    def step_note(self, claim: Claim, step: RecordedStep) -> None:
        self.step_record(claim, step)

    def metadata_note(self, claim: Claim, *, metadata: dict[str, Any], cursor: tuple[int, int] | None) -> None:
        self.metadata = metadata
        self._report("metadata", {"metadata": metadata})

    def hook_note(self, claim: Claim, name: str) -> None:
        self._report("hook", {"hook": name})

    def run_fields_store(self, claim: Claim) -> None:
        pass

    def stream_write(
        self, claim: Claim, *, stream: str, key: str, first_index: int, chunks: list[Any], completed: bool = False,
        step: RecordedStep | None = None,
    ) -> None:
        self._streams.setdefault(key, []).extend(chunks)
        for index, chunk in enumerate(chunks, start=first_index):
            self._report("stream.chunk", {"stream": stream, "key": key, "index": index, "chunk": chunk})
        if step is not None:
            self.step_record(claim, step)

    def stream_read(self, claim: Claim, *, key: str, attempt: int) -> list[Any]:
        return list(self._streams.get(key, []))

    def run_status(self, claim: Claim) -> str | None:
        return self.status

    def lease_renew(self, claim: Claim) -> bool:
        return self.status == "EXECUTING"

    def version_mismatch_note(self, claim: Claim, *, worker_hash: str) -> None:
        pass  # a local replay runs the local code on purpose

    def run_complete(self, claim: Claim, *, output: Any, elapsed: float, span_id: str = "") -> None:
        self.status, self.output = "COMPLETED", output
        self._report("completed", {"output": output, "seconds": elapsed})

    def run_fail(self, claim: Claim, *, error: dict[str, Any], retry_delay: float | None, elapsed: float) -> None:
        self.status, self.error = "FAILED", error
        self._report("failed", {"error": error, "retryable": retry_delay is not None, "seconds": elapsed})

    def run_time_out(self, claim: Claim, *, elapsed: float) -> bool:
        self.status = "TIMED_OUT"
        self._report("failed", {"error": {"type": "TimedOut", "message": "max_duration passed"}, "seconds": elapsed})
        return True

    def waitpoint_get(
        self, claim: Claim, *, key: str | None = None, waitpoint_id: str | None = None
    ) -> WaitpointState | None:
        if waitpoint_id is not None:
            return next((w for w in self._waits.values() if w.id == waitpoint_id), None)
        return self._waits.get(key or "")

    def waitpoint_create(self, claim: Claim, *, key: str, position: int, spec: WaitSpec) -> WaitpointState:
        now = datetime.now(UTC)
        resolved = spec.kind in TIMERS
        state = WaitpointState(
            id=f"local_wait_{next(self._ids)}", status="COMPLETED" if resolved else "PENDING",
            output={"resumed_at": now.isoformat()} if resolved else None, created_at=now,
            resolved_at=now if resolved else None,
        )
        self._waits[key] = state
        if not resolved:
            self._report("waits", {"key": key, "kind": spec.kind, "event": spec.event_name})
        return state

    def run_suspend(self, claim: Claim, *, waitpoint_id: str, elapsed: float) -> bool:
        self.status = "WAITING"
        return True

    def log_append(self, claim: Claim, entry: LogEntry) -> None:
        self._report("log", {"level": entry.level, "message": entry.message, "attributes": entry.attributes})
