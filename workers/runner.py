"""The one place every step's cross-cutting behaviour lives: idempotency, reuse, run state, retries,
failure, fan-out/join, and once-only emission of the next event. Steps and their tasks know none of it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from celery.exceptions import Retry, SoftTimeLimitExceeded
from pydantic import ValidationError

from schemas.events import RunRequested, RunSkipped, Step, StepFailed, StepSucceeded
from workers import keys
from workers.errors import PressroomError, SkipRun, TransientError
from workers.events import EVENT, emit
from workers.operations import write_manifest
from workers.retry import POLICIES, RetryPolicy
from workers.runtime import Runtime
from workers.settings import Settings

log = logging.getLogger("pressroom")
EMIT_LEASE = 60  # seconds a sender holds the right to join/emit; lapses if it dies mid-send
T = TypeVar("T")
InEvent = RunRequested | StepSucceeded


@dataclass
class Outcome:
    artifacts: dict[str, str]
    usage: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class FanOut:
    """A step split into parts that run as separate tasks on the step's queue, then joined.

    plan writes what the parts share (e.g. audio chunks) and returns one JSON-able descriptor per part
    (none: the join runs at once; the runner adds each one's "index"); part stores
    keys.part_key(prefix, index) and returns usage; join combines the stored parts."""

    plan: Callable[[Runtime, InEvent, str, Path], list[dict[str, Any]]]
    part: Callable[[Runtime, InEvent, str, dict[str, Any], Path], dict[str, float]]
    join: Callable[[Runtime, InEvent, str, list[dict[str, Any]], Path], Outcome]


@dataclass(frozen=True)
class StepSpec:
    """A step as the runner sees it: what it writes, what its output depends on, and the handler."""

    step: Step
    outputs: dict[str, str]  # artifact name → file name under the step's prefix; the last one is written last
    fingerprint: Callable[[InEvent, Settings], dict[str, Any]]
    handler: Callable[[Runtime, InEvent, str, Path], Outcome] | None = None
    reusable: bool = True  # False: always run (publish is cheap and must write its outputs each time)
    fanout: FanOut | None = None


def input_hash(fingerprint: dict[str, Any]) -> str:
    blob = json.dumps(fingerprint, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class _Stop(Exception):
    """Unwinds a delivery that has been dealt with (failed the run); carries the task's result."""

    def __init__(self, result: str) -> None:
        self.result = result


@dataclass
class Delivery:
    """One delivery of a step or part task, with what every phase of it needs."""

    task: Any
    spec: StepSpec
    event: InEvent
    attempt: int
    digest: str

    @property
    def rt(self) -> Runtime:
        return self.task.app.pressroom  # type: ignore[no-any-return]

    @property
    def step(self) -> Step:
        return self.spec.step

    @property
    def policy(self) -> RetryPolicy:
        return POLICIES[self.spec.step]

    @property
    def prefix(self) -> str:
        return keys.step_prefix(self.event.video_id, self.step, self.digest)

    @property
    def emit_key(self) -> str:
        return keys.emit_key(self.event.run_id, self.step, self.digest, self.event.generation)

    def emitted(self) -> bool:
        if self.rt.state.emit_status(self.emit_key) == "sent":
            log.info("%s of run %s already done; duplicate delivery ignored", self.step, self.event.run_id)
            return True
        return False

    def ended(self, also: frozenset[str] = frozenset()) -> str | None:
        """Why this delivery should do nothing: the run was cancelled or re-run since it was sent (or, for
        a part, a sibling part already ended it)."""
        run = self.rt.state.run(self.event.run_id)
        if run.get("status") == "cancelled":
            return "cancelled"
        if run.get("status") in also:
            return "run-ended"
        if int(run.get("generation") or 0) > self.event.generation:
            return "stale"
        return None

    def guarded(self, fn: Callable[[Path], T]) -> T:
        """Run fn in a scratch directory; transient errors retry per the policy, others fail the run."""
        policy, event = self.policy, self.event
        workdir = Path(tempfile.mkdtemp(prefix=f"pressroom-{self.step}-"))
        try:
            return fn(workdir)
        except TransientError as exc:
            if self.attempt <= policy.max_retries:
                delay = policy.delay(self.attempt, exc.retry_after)
                self.rt.state.step_retrying(event.run_id, self.step, self.attempt, exc, delay)
                self.rt.state.count(self.step, "retried")
                log.warning("%s of run %s: %s; retry %d in %.0fs", self.step, event.run_id, exc, self.attempt, delay)
                raise self.task.retry(countdown=delay, exc=exc, max_retries=policy.max_retries) from exc
            raise _Stop(self.fail(type(exc).__name__, f"{exc} (gave up after {self.attempt} attempts)")) from exc
        except SoftTimeLimitExceeded as exc:
            raise _Stop(self.fail("TimeLimitExceeded", f"took longer than {policy.soft_time_limit}s; raise the "
                                  "step's time limit or split the input")) from exc
        except SkipRun as exc:
            raise _Stop(self.skip(str(exc))) from exc
        except (Retry, _Stop):
            raise
        except Exception as exc:
            message = str(exc) if isinstance(exc, PressroomError) else f"unexpected {type(exc).__name__}: {exc}"
            raise _Stop(self.fail(type(exc).__name__, message, traceback.format_exc())) from exc
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def fail(self, error_type: str, message: str, trace: str = "") -> str:
        failed = StepFailed(run=self.event.run, artifacts=self.event.artifacts, step=self.step,
                            attempt=self.attempt, error_type=error_type, message=" ".join(message.split()),
                            generation=self.event.generation)
        log.error("%s of run %s failed: %s", self.step, self.event.run_id, failed.message)
        emit(self.task.app, self.rt.state, failed)
        self.rt.state.step_failed(failed, trace)
        self.rt.state.count(self.step, "failed")
        write_manifest(self.rt, self.event.run_id)
        return "failed"

    def skip(self, reason: str) -> str:
        log.info("run %s skipped at %s: %s", self.event.run_id, self.step, reason)
        emit(self.task.app, self.rt.state, RunSkipped(run=self.event.run, artifacts=self.event.artifacts,
                                                      step=self.step, reason=reason,
                                                      generation=self.event.generation))
        self.rt.state.run_skipped(self.event.run_id, self.step, reason)
        write_manifest(self.rt, self.event.run_id)
        return "skipped"

    def finish(self, outcome: Outcome, *, reused: bool = False, claimed: bool = False) -> str:
        """Record success and send the next event exactly once (under the emit lease)."""
        state = self.rt.state
        if not claimed and not state.claim_emit(self.emit_key, EMIT_LEASE):
            if state.emit_status(self.emit_key) == "sent":
                return "duplicate"
            raise self.task.retry(countdown=EMIT_LEASE, max_retries=None)  # another delivery is mid-send
        done = StepSucceeded(run=self.event.run, artifacts={**self.event.artifacts, **outcome.artifacts},
                             step=self.step, attempt=self.attempt, reused=reused, generation=self.event.generation)
        emit(self.task.app, state, done)  # the event is logged before the run can read as finished
        state.step_succeeded(self.event.run_id, self.step, outcome.usage, reused)
        state.count(self.step, "succeeded")
        state.mark_emitted(self.emit_key)
        if self.step is Step.publish:  # the run is over: keep its record with its artifacts
            write_manifest(self.rt, self.event.run_id)
        return "reused" if reused else "succeeded"


def _delivery(task: Any, spec: StepSpec, payload: dict[str, Any]) -> Delivery | None:
    try:
        event = EVENT.validate_python(payload)
    except ValidationError as exc:  # a malformed message must not kill the worker or loop
        log.error("dropping malformed %s message: %s", spec.step, str(exc).splitlines()[0])
        return None
    if isinstance(event, StepFailed | RunSkipped):
        log.error("dropping %s message carrying a final event for run %s", spec.step, event.run_id)
        return None
    rt: Runtime = task.app.pressroom
    digest = input_hash(spec.fingerprint(event, rt.settings))
    return Delivery(task, spec, event, int(task.request.retries or 0) + 1, digest)


def run_step(task: Any, spec: StepSpec, payload: dict[str, Any]) -> str:
    """Execute one delivery of a step's task. Never raises except Celery's Retry."""
    d = _delivery(task, spec, payload)
    if d is None:
        return "malformed"
    if d.emitted():
        return "duplicate"
    if ended := d.ended():
        return ended
    rt, event = d.rt, d.event
    deliveries = rt.state.step_started(event.run_id, d.step, d.attempt, str(task.request.hostname or "local"),
                                       os.getpid())
    try:
        if deliveries - d.attempt >= d.policy.max_deliveries:
            return d.fail("WorkerLost", f"its worker died {deliveries - d.attempt} times during this step (out of "
                          "memory or killed?); retry it once the cause is fixed")
        if spec.reusable and rt.store.exists(d.prefix + list(spec.outputs.values())[-1]):
            artifacts = {name: d.prefix + filename for name, filename in spec.outputs.items()}
            return d.finish(Outcome(artifacts), reused=True)
        if spec.fanout is None:
            assert spec.handler is not None
            handler = spec.handler
            return d.finish(d.guarded(lambda wd: handler(rt, event, d.prefix, wd)))
        return _fan_out(d, spec.fanout)
    except _Stop as stop:
        return stop.result


def _fan_out(d: Delivery, fanout: FanOut) -> str:
    rt, event = d.rt, d.event
    plan_key = d.prefix + "plan.json"
    if rt.store.exists(plan_key):
        plan = json.loads(rt.store.get_bytes(plan_key))
    else:
        parts = d.guarded(lambda wd: fanout.plan(rt, event, d.prefix, wd))
        plan = [{**part, "index": i} for i, part in enumerate(parts)]
        if not rt.store.put_bytes(plan_key, json.dumps(plan).encode(), if_absent=True):
            plan = json.loads(rt.store.get_bytes(plan_key))  # a concurrent delivery planned first
    if not plan:
        return d.finish(d.guarded(lambda wd: fanout.join(rt, event, d.prefix, [], wd)))
    rt.state.parts_opened(event.run_id, d.step, len(plan))
    payload = event.model_dump(mode="json")
    for index in range(len(plan)):
        d.task.app.send_task(keys.part_task_name(d.step), args=[payload, index], queue=keys.QUEUES[d.step])
    return "fanned-out"


def run_part(task: Any, spec: StepSpec, payload: dict[str, Any], index: int) -> str:
    """One part of a fanned-out step; the part that completes the set joins them and emits."""
    d = _delivery(task, spec, payload)
    if d is None or spec.fanout is None:
        return "malformed"
    if d.emitted():
        return "duplicate"
    rt, event, fanout = d.rt, d.event, spec.fanout
    if ended := d.ended(also=frozenset({"failed", "skipped"})):
        return ended
    try:
        plan: list[dict[str, Any]] = json.loads(rt.store.get_bytes(d.prefix + "plan.json"))
        if not rt.store.exists(keys.part_key(d.prefix, index)):
            usage = d.guarded(lambda wd: fanout.part(rt, event, d.prefix, plan[index], wd))
            rt.state.add_usage(event.run_id, d.step, usage)
        done = rt.state.part_done(event.run_id, d.step, d.digest, index)
        if done < len(plan) or not rt.state.claim_emit(d.emit_key, EMIT_LEASE):
            return "part-done"
        try:
            outcome = d.guarded(lambda wd: fanout.join(rt, event, d.prefix, plan, wd))
        except BaseException:
            rt.state.release_emit(d.emit_key)
            raise
        return d.finish(outcome, claimed=True)
    except _Stop as stop:
        return stop.result
