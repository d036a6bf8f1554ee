"""Tasks used by the engine tests; every step body logs its execution to Redis."""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import time

import redis
from opentelemetry import trace

from stepwise.runs.engine.errors import InvalidMetadata
from stepwise.tasks.sdk import AbortRun, ErrorDecision, Retry, metadata, send_event, step, task

# Where step bodies record that they ran: the suite's Redis, even for workers given another broker.
_redis = redis.Redis.from_url(
    os.environ.get("STEPWISE_TEST_RECORDS_URL") or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
)


def executions_key(run_id: str) -> str:
    return f"stepwise-test:exec:{run_id}"


def log_execution(ctx, label: str) -> None:
    """Remember that a step body really ran, in which attempt."""
    _redis.rpush(executions_key(ctx.run_id), f"{label}:{ctx.attempt}")
    _redis.expire(executions_key(ctx.run_id), 3600)


def executions(run_id: str) -> list[str]:
    return [item.decode() for item in _redis.lrange(executions_key(run_id), 0, -1)]


class Flaky(Exception):
    """A retryable failure."""


class HttpError(Exception):
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        super().__init__(f"HTTP {status_code}")


FAST_RETRY = Retry(max_attempts=3, factor=1, min_timeout=0.1, max_timeout=0.1, jitter=False)


@task(id="test-third-step-flaky", retry=FAST_RETRY)
def third_step_flaky(payload, ctx):
    def body(label):
        log_execution(ctx, label)
        if label == "third" and ctx.attempt < 3:
            raise Flaky(f"third step fails on attempt {ctx.attempt}")
        return f"{label}-done"

    results = [ctx.step(label, body, label) for label in ("first", "second", "third")]
    return {"results": results}


@task(id="test-sleepy-steps", retry=Retry(max_attempts=1))
def sleepy_steps(payload, ctx):
    out = []
    for i in range(payload.get("steps", 5)):
        def body(i=i):
            log_execution(ctx, f"s{i}")
            time.sleep(payload.get("sleep", 0.5))
            return i
        out.append(ctx.step(f"s{i}", body))
    return {"sum": sum(out)}


@task(id="test-crashable", retry=Retry(max_attempts=1))
def crashable(payload, ctx):
    total = 0
    for i in range(payload.get("steps", 4)):
        def body(i=i):
            log_execution(ctx, f"c{i}")
            time.sleep(payload.get("sleep", 0.3))
            return i * 10
        total += ctx.step(f"c{i}", body)
    return {"total": total}


@task(id="test-abort", retry=FAST_RETRY)
def aborting(payload, ctx):
    log_execution(ctx, "abort")
    raise AbortRun("the order has no items")


@task(id="test-http-4xx", retry=FAST_RETRY)
def http_4xx(payload, ctx):
    log_execution(ctx, "http")
    raise HttpError(payload.get("status", 404))


@task(id="test-always-fails", retry=FAST_RETRY)
def always_fails(payload, ctx):
    log_execution(ctx, "fail")
    raise Flaky("still down")


@task(id="test-bad-step-result")
def bad_step_result(payload, ctx):
    from datetime import datetime

    return {"when": ctx.step("clock", datetime.now)}


@task(id="test-bad-output")
def bad_output(payload, ctx):
    return {"items": {1, 2, 3}}


@task(id="test-reorder", retry=FAST_RETRY)
def reorder(payload, ctx):
    ctx.step("a", lambda: 1)
    if ctx.attempt == 1:
        ctx.step("b", lambda: 2)
        raise Flaky("fail once after b")
    ctx.step("c", lambda: 3)
    return "done"


@task(id="test-slow", retry=Retry(max_attempts=1), max_duration=1)
def slow(payload, ctx):
    for i in range(20):
        ctx.step(f"tick{i}", time.sleep, 0.2)
    return "never"


@step()
async def async_double(x: int) -> int:
    await asyncio.sleep(0.01)
    return x * 2


@task(id="test-async", retry=FAST_RETRY)
async def async_task(payload, ctx):
    a = await async_double(payload["x"])
    b = await async_double(a)
    if ctx.attempt == 1:
        raise Flaky("async flake")
    return {"value": b}


@task(id="test-noop", retry=Retry(max_attempts=1))
def noop(payload, ctx):
    return None


@task(id="test-sleeps-then-returns", retry=Retry(max_attempts=1))
def sleeps_then_returns(payload, ctx):
    """Sleep without a step, then return: the outcome is the attempt's only write."""
    time.sleep(payload["sleep"])
    return "done"


@task(id="test-pinned-noop", retry=Retry(max_attempts=1), version_policy="pin")
def pinned_noop(payload, ctx):
    return None


# --- waits -----------------------------------------------------------------------------------
from stepwise.tasks.sdk import wait  # noqa: E402


@task(id="test-wait-event", retry=FAST_RETRY)
def wait_event(payload, ctx):
    def before():
        log_execution(ctx, "before")
        time.sleep(payload.get("before_sleep", 0))
        return "prepared"

    ctx.step("before", before)
    got = wait.for_event(payload.get("event", "paid"), filter=payload.get("filter"), timeout=payload.get("timeout"))
    ctx.step("after", log_execution, ctx, "after")
    return {"ok": got.ok, "timed_out": got.timed_out, "event": got.output}


@task(id="test-wait-twice", retry=FAST_RETRY)
def wait_twice(payload, ctx):
    first = wait.for_event("tick", filter={"run": payload["n"]})
    second = wait.for_event("tick", filter={"run": payload["n"]})
    return [first.output["i"], second.output["i"]]


@task(id="test-wait-duration", retry=FAST_RETRY)
def wait_duration(payload, ctx):
    ctx.step("before", log_execution, ctx, "before")
    result = wait.for_(seconds=payload.get("seconds", 2))
    ctx.step("after", log_execution, ctx, "after")
    return {"ok": result.ok}


@task(id="test-wait-then-return", retry=Retry(max_attempts=1))
def wait_then_return(payload, ctx):
    return {"ok": wait.for_(seconds=3600).ok}


@task(id="test-wait-token", retry=FAST_RETRY)
def wait_token(payload, ctx):
    token = wait.create_token(timeout=payload.get("timeout"), description="approve the test")
    ctx.step("announce", log_execution, ctx, f"token={token}")
    decision = wait.for_token(token)
    return {"ok": decision.ok, "output": decision.output}


@task(id="test-child", retry=FAST_RETRY)
def child(payload, ctx):
    if payload.get("fail"):
        raise AbortRun(f"child {payload['n']} refuses")
    return {"double": payload["n"] * 2}


@task(id="test-parent", retry=FAST_RETRY)
def parent(payload, ctx):
    ctx.step("before", log_execution, ctx, "parent-before")
    one = child.trigger_and_wait({"n": 1})
    many = child.batch_trigger_and_wait([{"payload": {"n": n, "fail": n == 3}} for n in range(2, 5)])
    return {"one": one.output, "many": [(r.ok, r.output, r.error and r.error["message"]) for r in many]}


@task(id="test-parent-waiting-child", retry=FAST_RETRY)
def parent_waiting_child(payload, ctx):
    """Wait for a child that itself waits for an event nobody sends: neither holds a worker meanwhile."""
    result = wait_event.trigger_and_wait({"event": "never-sent"})
    return result.output


@task(id="test-async-wait", retry=FAST_RETRY)
async def async_wait(payload, ctx):
    got = await wait.afor_event("async-go", filter={"n": payload["n"]})
    doubled = await async_double(got.output["value"])
    return {"value": doubled}
CANARY = "canary-7f3e9b2d-do-not-leak"
_tracer = trace.get_tracer("tests.engine_tasks")


@task(id="test-traced", retry=FAST_RETRY)
def traced(payload, ctx):
    def fetch(n):
        with _tracer.start_as_current_span("http GET /items", attributes={"http.method": "GET"}):
            ctx.logger.info("fetched items", count=n)
            time.sleep(0.01)
        return n

    def save(n):
        logging.getLogger("shop.orders").warning("saving %d items", n)
        with _tracer.start_as_current_span("db insert"):
            if ctx.attempt == 1:
                raise Flaky("database busy")
        return n * 2

    total = ctx.step("save", save, ctx.step("fetch", fetch, 3))
    ctx.logger.info("done", total=total)
    return {"total": total}


@task(id="test-span-shapes", retry=Retry(max_attempts=1))
def span_shapes(payload, ctx):
    """A step with a nested span, a log line, an attribute and an event of its own; a step that raises; a plain step."""
    def fetch():
        with _tracer.start_as_current_span("http GET /items", attributes={"http.method": "GET"}):
            ctx.logger.info("fetched items", count=2)
        step_span = trace.get_current_span()
        step_span.set_attribute("items", [1, 2])
        step_span.set_attribute("filters", {"status": "open", "ids": [1, 2]})
        step_span.set_attribute("handler", object())  # not an attribute value: the SDK stores None
        step_span.add_event("parsed", {"rows": 2})
        return 2

    def explode():
        raise ValueError("no such item")

    def plain():  # nothing set on its own span
        with _tracer.start_as_current_span("cache lookup"):
            return 1

    ctx.step("fetch", fetch)
    try:
        ctx.step("explode", explode)
    except ValueError:
        ctx.logger.warning("explode failed")
    ctx.step("plain", plain)
    return "ok"


@task(id="test-canary", retry=FAST_RETRY)
def canary(payload, ctx):
    secret = ctx.sensitive(CANARY)

    def call_api():
        url = f"https://api.example.com/?k={secret}"
        with _tracer.start_as_current_span(f"call with {secret}", attributes={"url": url}) as span:
            span.set_attribute("api_key", "plain-key-value")
            span.add_event("sent", {"body": f"token={secret}"})
        ctx.logger.info(f"using {secret}", key=secret, password="hunter2-value")
        logging.getLogger("shop.api").error("upstream refused key %s", secret)
        if ctx.attempt == 1:
            raise Flaky(f"upstream refused key {secret}")
        return "called"

    ctx.step("call", call_api)
    raise AbortRun(f"giving up after using {secret}")


@task(id="test-parent-of-traced-child", retry=Retry(max_attempts=1))
def parent_of_traced_child(payload, ctx):
    return {"child": ctx.step("start child", lambda: noop.trigger({}).id)}


@task(id="test-async-logs", retry=Retry(max_attempts=1))
async def async_logs(payload, ctx):
    ctx.logger.info("async hello", x=1)
    return {"doubled": await async_double(2)}


@task(id="test-otlp", retry=Retry(max_attempts=1))
def otlp(payload, ctx):
    secret = ctx.sensitive(CANARY)

    def call():
        with _tracer.start_as_current_span("call partner", attributes={"url": f"https://api.example.com/?k={secret}"}):
            ctx.logger.info(f"calling with {secret}")
        return "ok"

    return ctx.step("call", call)
def intervals_key(label: str) -> str:
    return f"stepwise-test:intervals:{label}"


@task(id="test-interval", retry=Retry(max_attempts=1))
def interval(payload, ctx):
    """Sleep briefly and record when this run really executed (for concurrency-limit tests)."""
    started = time.time()
    time.sleep(payload.get("sleep", 0.05))
    _redis.rpush(intervals_key(payload["label"]), f"{payload.get('key', '')}|{started}|{time.time()}")
    _redis.expire(intervals_key(payload["label"]), 3600)
    return None


@task(id="test-uses-secret", retry=Retry(max_attempts=1))
def uses_secret(payload, ctx):
    """Read a secret from ctx.env, log it, and optionally fail with it in the message."""
    value = ctx.env["CANARY_TOKEN"]
    length = ctx.step("call-api", lambda: len(value))
    ctx.logger.info("calling the partner api with %s", value)
    if payload.get("fail"):
        raise RuntimeError(f"partner api refused token {value}")
    return {"length": length}


@task(id="test-three-steps", retry=Retry(max_attempts=1))
def three_steps(payload, ctx):
    total = 0
    for index in range(3):
        total += ctx.step("add", lambda i=index: i + 1)
    return {"total": total}


@task(id="test-triggers-outside-steps", retry=FAST_RETRY)
def triggers_outside_steps(payload, ctx):
    """Trigger a child, a batch and an event outside any step, then wait: the code before the wait replays."""
    child = noop.trigger({"n": 1})
    batch = noop.batch_trigger([{"payload": {"n": 2}}, {"payload": {"n": 3}}])
    matched = send_event("test.outside-steps", {"run": ctx.run_id})
    wait.for_(seconds=payload.get("seconds", 1))
    return {"child": child.id, "batch": [h.id for h in batch], "matched": matched}


@task(id="test-trigger-inside-flaky-step", retry=FAST_RETRY)
def trigger_inside_flaky_step(payload, ctx):
    """A step triggers a child and then fails once: the retried step finds the same child."""
    def start_child():
        handle = noop.trigger({"from": "step"})
        if ctx.attempt == 1:
            raise Flaky("after the trigger")
        return handle.id

    return {"child": ctx.step("start-child", start_child)}


@task(id="test-chatty-steps", retry=Retry(max_attempts=1))
def chatty_steps(payload, ctx):
    """Steps that each log a line and open a span of their own, named after the attempt."""
    def body(i):
        with _tracer.start_as_current_span(f"work a{ctx.attempt}"):
            ctx.logger.info(f"step {i} of attempt {ctx.attempt}")
            time.sleep(payload.get("sleep", 0.3))
        return i

    return {"sum": sum(ctx.step(f"s{i}", body, i) for i in range(payload.get("steps", 10)))}


@task(id="test-stuck-step", retry=Retry(max_attempts=1), max_duration=3)
def stuck_step(payload, ctx):
    """A step blocked in a long sleep: only stopping the process frees its slot early."""
    ctx.step("stuck", time.sleep, payload.get("sleep", 60))
    return {"done": True}


STEP_RETRY = Retry(max_attempts=3, factor=1, min_timeout=0.05, max_timeout=0.05, jitter=False)


@task(id="test-step-retries", retry=FAST_RETRY)
def step_retries(payload, ctx):
    """A step that fails ``fail`` times before it succeeds, retried inside the attempt up to 3 tries."""
    @step(name="flaky", retry=STEP_RETRY)
    def flaky():
        log_execution(ctx, "flaky")
        if len([e for e in executions(ctx.run_id) if e.startswith("flaky:")]) <= payload["fail"]:
            raise Flaky("not yet")
        return "ok"

    return {"sync": flaky()}


@task(id="test-async-step-retries", retry=FAST_RETRY)
async def async_step_retries(payload, ctx):
    """The async twin: an async step retried inside the attempt."""
    @step(name="flaky-async", retry=STEP_RETRY)
    async def flaky_async():
        log_execution(ctx, "flaky-async")
        if len([e for e in executions(ctx.run_id) if e.startswith("flaky-async:")]) <= payload["fail"]:
            raise Flaky("not yet")
        return "ok"

    return {"async": await flaky_async()}


@task(id="test-metadata", retry=FAST_RETRY)
def metadata_changes(payload, ctx):
    """Change metadata outside and inside a step, wait, then change it and fail once: nothing outside a step repeats."""
    ctx.metadata.set("status", "started")
    ctx.metadata.increment("outside")

    def work():
        ctx.metadata.increment("inside")
        return ctx.metadata["outside"]

    seen = ctx.step("work", work)
    ctx.metadata["log"] = ["before the wait"]
    wait.for_(seconds=payload.get("seconds", 3600))
    ctx.metadata.increment("outside", 10)
    ctx.metadata.append("log", f"after the wait, attempt {ctx.attempt}")
    if ctx.attempt == 2:
        raise Flaky("once, after changing the metadata")
    ctx.metadata.remove("log", "before the wait")
    del ctx.metadata["status"]
    return {"seen_in_step": seen, "metadata": ctx.metadata.to_dict()}


@task(id="test-metadata-progress", retry=Retry(max_attempts=1))
def metadata_progress(payload, ctx):
    """A long step reports progress: the console sees it while the step still runs."""
    def work():
        for done in range(1, 4):
            metadata.set("progress", done / 3)  # the SDK's module-level proxy: no ctx needed in a step's helper
            time.sleep(payload.get("sleep", 1.0))
        return "done"

    return ctx.step("work", work)


@task(id="test-metadata-bad-input", retry=Retry(max_attempts=1))
def metadata_bad_input(payload, ctx):
    """Each bad change is refused with its error message; the metadata stays as it was."""
    ctx.metadata.set("kept", 1)
    refused = {}
    for label, change in {
        "too_large": lambda: ctx.metadata.set("blob", "x" * (70 * 1024)),
        "not_json": lambda: ctx.metadata.set("when", object()),
        "bad_key": lambda: ctx.metadata.set("", 1),
        "not_a_number": lambda: ctx.metadata.increment("kept", "2"),
        "increment_text": lambda: (ctx.metadata.set("name", "x"), ctx.metadata.increment("name")),
    }.items():
        try:
            change()
        except InvalidMetadata as exc:
            refused[label] = str(exc)
    ctx.step("after", lambda: None)  # the next write stores what was accepted
    return refused


_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("test_tenant", default=None)


@contextlib.contextmanager
def tenant_middleware(payload, ctx):
    """Middleware: sets the payload's tenant around the attempt, as a multi-tenant project would."""
    log_execution(ctx, "middleware")
    token = _tenant.set(payload.get("tenant"))
    try:
        yield
    finally:
        _tenant.reset(token)


def _logging_hook(label):
    def hook(payload, *args):
        ctx = args[-1]
        log_execution(ctx, label)
        if payload.get("hook_fails") == label:
            raise RuntimeError(f"{label} hook broke")
        return f"{label}-value"
    return hook


def _on_complete(payload, result, ctx):
    log_execution(ctx, f"on_complete:{result.status}")


@task(
    id="test-hooks", retry=FAST_RETRY, middleware=tenant_middleware,
    init=_logging_hook("init"), cleanup=_logging_hook("cleanup"), on_start=_logging_hook("on_start"),
    on_success=lambda payload, output, ctx: log_execution(ctx, f"on_success:{output['tenant']}"),
    on_failure=lambda payload, error, ctx: log_execution(ctx, f"on_failure:{error['type'].rsplit('.', 1)[-1]}"),
    on_complete=_on_complete,
)
def hooked(payload, ctx):
    """Wait once, fail while the attempt is below ``fail_until``: every hook logs each call."""
    log_execution(ctx, f"run:{ctx.init}")
    ctx.step("one", time.sleep, payload.get("sleep", 0))
    if payload.get("wait", True):
        wait.for_(seconds=payload.get("seconds", 3600))
    if ctx.attempt <= payload.get("fail_until", 0):
        raise Flaky(f"attempt {ctx.attempt}")
    if payload.get("abort"):
        raise AbortRun("abort requested")
    return {"tenant": _tenant.get()}


class RateLimited(Exception):
    pass


def _catch_error(payload, ctx, error):
    log_execution(ctx, f"catch_error:{type(error).__name__}")
    decide = payload.get("decide")
    if decide == "retry" and isinstance(error, RateLimited):
        return ErrorDecision.retry(delay=payload.get("delay", 0.05))
    if decide == "succeed":
        return ErrorDecision.succeed({"handled": str(error)})
    if decide == "fail":
        return ErrorDecision.fail()
    if decide == "negative":
        return ErrorDecision.retry(delay=-5)
    if decide == "wrong":
        return "retry please"
    return None


@task(id="test-catch-error", retry=Retry(max_attempts=4, factor=1, min_timeout=0.05, max_timeout=0.05, jitter=False),
      catch_error=_catch_error)
def catches_errors(payload, ctx):
    """Raise the payload's error kind on the first attempts; catch_error decides."""
    if ctx.attempt <= payload.get("fail_until", 99):
        if payload.get("error") == "abort":
            raise AbortRun("permanent by the policy")
        if payload.get("error") == "rate":
            raise RateLimited("slow down")
        raise Flaky(f"attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


@task(id="test-cancel-hooks", retry=Retry(max_attempts=1), on_cancel=_logging_hook("on_cancel"),
      on_failure=_logging_hook("on_failure"), on_complete=_on_complete)
def cancel_hooks(payload, ctx):
    """Steps that take a while: canceled or timed out meanwhile, the end hooks run in the worker."""
    for i in range(payload.get("steps", 20)):
        ctx.step(f"s{i}", time.sleep, payload.get("sleep", 0.3))
    return {}


@task(id="test-chained-failure", retry=Retry(max_attempts=2, factor=1, min_timeout=0.1, max_timeout=0.1, jitter=False))
def chained_failure(payload, ctx):
    """Fail twice with a three-deep cause chain whose first cause quotes a sensitive value."""
    secret = ctx.sensitive(CANARY)

    def read_total(order):
        try:
            return order["total"]
        except KeyError as exc:
            raise ValueError("bad total") from exc

    def call_partner():
        try:
            return read_total({"id": "A-17"})
        except ValueError as exc:
            raise ConnectionError(f"partner refused key {secret}") from exc

    def charge():
        try:
            return call_partner()
        except ConnectionError as exc:
            if ctx.attempt == 1:
                raise Flaky("charge failed, trying again") from exc
            raise AbortRun("could not charge order A-17") from exc

    if ctx.attempt == 2:
        time.sleep(payload.get("hold", 0))  # lets a watcher look at the first attempt while the run goes on
    return ctx.step("charge", charge)


# --- idempotency keys ---------------------------------------------------------------------------
from stepwise.tasks.sdk import idempotency_keys  # noqa: E402


@task(id="test-idem-echo", retry=Retry(max_attempts=1))
def idem_echo(payload, ctx):
    """Say which idempotency key and scope the run was triggered with."""
    return {"run": ctx.run.id, "key": ctx.run.idempotency_key, "scope": ctx.run.idempotency_key_scope}


@task(id="test-idem-parent", retry=Retry(max_attempts=1))
def idem_parent(payload, ctx):
    """Trigger the same keyed child twice and once more in a batch, with the payload's scope, and one without a key."""
    options = {"idempotency_key": "shared", "idempotency_key_scope": payload["scope"]}
    first = idem_echo.trigger({}, **options)
    again = idem_echo.trigger({}, **options)
    [batched] = idem_echo.batch_trigger([{"payload": {}, **options}])
    plain = idem_echo.trigger({})
    return {"children": [first.id, again.id, batched.id], "created": [first.created, again.created, batched.created],
            "plain": plain.id}


@task(id="test-idem-retried-parent", retry=FAST_RETRY)
def idem_retried_parent(payload, ctx):
    """A step triggers a keyed child, then fails on attempt 1: the retried step triggers it again."""
    def start_child():
        handle = idem_echo.trigger({}, idempotency_key="per-attempt", idempotency_key_scope=payload["scope"])
        if ctx.attempt == 1:
            raise Flaky("after the trigger")
        return handle.id

    return {"child": ctx.step("start-child", start_child)}


@task(id="test-idem-waiting-parent", retry=Retry(max_attempts=1))
def idem_waiting_parent(payload, ctx):
    """Wait for a child triggered with an attempt-scoped key; return what the child saw."""
    result = idem_echo.trigger_and_wait({}, idempotency_key="waited", idempotency_key_scope="attempt")
    return {"ok": result.ok, "child": result.output}


@task(id="test-idem-reset-inside", retry=FAST_RETRY)
def idem_reset_inside(payload, ctx):
    """Trigger a run-scoped child, reset its key, trigger again, then wait: the code before the wait replays."""
    first = idem_echo.trigger({}, idempotency_key="again", idempotency_key_scope="run")
    held_by = idempotency_keys.reset("test-idem-echo", "again", scope="run")
    second = idem_echo.trigger({}, idempotency_key="again", idempotency_key_scope="run")
    wait.for_(seconds=payload.get("seconds", 0.5))
    return {"first": first.id, "held_by": held_by, "second": second.id}


@task(id="test-keyed-child", retry=FAST_RETRY)
def keyed_child(payload, ctx):
    return {"double": payload["n"] * 2}


@task(id="test-parent-of-keyed-child", retry=FAST_RETRY)
def parent_of_keyed_child(payload, ctx):
    """Wait for a child named by a global idempotency key: another parent may have triggered it already."""
    result = keyed_child.trigger_and_wait({"n": payload["n"]}, idempotency_key=payload["key"])
    return {"ok": result.ok, "output": result.output, "child": result.run_id}


from stepwise.tasks.sdk import redact_keys  # noqa: E402

PII_PATTERN = r"canary-[0-9a-f]{32}@example\.com"


@task(id="test-pii", retry=Retry(max_attempts=1), redact=redact_keys("email", patterns=[PII_PATTERN]))
def pii(payload, ctx):
    """Spread a personal e-mail address everywhere a run can put it: logs, spans, metadata, a step, output, error."""
    email = payload["email"]
    ctx.logger.info(f"welcome mail to {email}", address=email)
    ctx.metadata.set("contact", {"email": email})
    with trace.get_tracer("tests").start_as_current_span(f"send to {email}") as span:
        span.set_attribute("mail.to", email)
    found = ctx.step("lookup", lambda: {"email": email, "length": len(email)})
    if payload.get("fail"):
        raise ValueError(f"no mailbox for {email}")
    return {"email": email, "length": found["length"]}
