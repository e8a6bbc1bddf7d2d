"""One delivery of a step or part task and everything cross-cutting it does: the input hash, run state,
retries per the step's policy, waiting out infrastructure faults, failing visibly, and once-only emission
of the next event. The types a step is declared with live here too (StepSpec, FanOut, Outcome)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from celery.exceptions import Retry, SoftTimeLimitExceeded

from schemas.events import RunRequested, RunSkipped, Step, StepFailed, StepSucceeded
from schemas.pipeline import LAST_STEP, RunStatus, StepStatus
from workers import keys
from workers.budget import Charge, charging
from workers.errors import PressroomError, SkipRun, Throttled, TransientError
from workers.events import emit
from workers.fairness import priority
from workers.faults import is_infra_fault
from workers.operations import write_manifest
from workers.retry import INFRA_POLICY, POLICIES, RetryPolicy
from workers.runtime import Runtime
from workers.settings import Settings

log = logging.getLogger("pressroom")
EMIT_LEASE = 60  # seconds a sender holds the right to join/emit; renewed while it works, lapses if it dies
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
    digest: str
    faults: int = 0  # times this delivery was retried because Redis, the broker or the store was down
    waits: int = 0  # times it was handed back to the queue to wait for a provider's shared limits
    failure: StepFailed | None = None  # set once the run's failure at this step is recorded

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
    def attempt(self) -> int:
        """Which try of the step's own retry policy this is (infrastructure faults do not count)."""
        return int(self.task.request.retries or 0) - self.faults - self.waits + 1

    @property
    def tries(self) -> int:
        """Which delivery of this message this is meant to be (every retry, wait and fault counts): more
        deliveries than this mean its worker died under it."""
        return int(self.task.request.retries or 0) + 1

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

    def ended(self, also: frozenset[RunStatus] = frozenset()) -> str | None:
        """Why this delivery should do nothing: the run was cancelled or re-run since it was sent (or, for
        a part, a sibling part already ended it)."""
        run = self.rt.state.view(self.event.run_id)
        if run is None:
            return "discarded"
        if run.status is RunStatus.cancelled:
            return "cancelled"
        if run.status in also:
            return "run-ended"
        if run.generation > self.event.generation:
            return "stale"
        return None

    def protected(self, body: Callable[[], str]) -> str:
        """Run a whole delivery. Redis, the broker or the store being down retries the delivery until they
        are back (it never acks a run into limbo); anything else unexpected fails the run visibly."""
        try:
            try:
                return body()
            except (Retry, _Stop):
                raise
            except Exception as exc:
                if is_infra_fault(exc):
                    return self.infra_retry(exc)
                return self.fail(type(exc).__name__, f"unexpected {type(exc).__name__}: {exc}",
                                 traceback.format_exc())
        except _Stop as stop:
            return stop.result

    def infra_retry(self, exc: BaseException) -> str:
        """Send this delivery again after a backoff; after INFRA_POLICY's retries, fail the run with why.
        If even the retry cannot be sent (the broker is down), the error propagates: the message stays
        unacked in Redis and comes back after the visibility timeout."""
        faults = self.faults + 1
        if faults > INFRA_POLICY.max_retries:
            return self.fail("InfrastructureFault", f"{exc} (gave up after {faults} tries)")
        delay = INFRA_POLICY.delay(faults)
        log.warning("%s of run %s: %s; retrying the delivery in %.0fs", self.step, self.event.run_id, exc, delay)
        with contextlib.suppress(Exception):  # best effort: Redis may be what is down
            self.rt.state.step_retrying(self.event.run_id, self.step, self.attempt, exc, delay)
        kwargs = {**(self.task.request.kwargs or {}), "faults": faults}
        raise self.retry(kwargs=kwargs, countdown=delay, exc=exc)

    def retry(self, **options: Any) -> Retry:
        """Celery's retry of this delivery, at the run's priority, with no cap of Celery's own (the step's
        policy and INFRA_POLICY decide when to stop)."""
        return self.task.retry(max_retries=None, priority=priority(self.event), **options)

    def wait(self, exc: Throttled) -> Retry:
        """Hand the delivery back to the queue until the provider's limits let it through: its worker slot
        goes to other work meanwhile, and the wait uses none of the step's retries."""
        delay = max(0.05, exc.retry_after or 0.0)
        with contextlib.suppress(Exception):
            self.rt.state.step_retrying(self.event.run_id, self.step, self.attempt, exc, delay)
        kwargs = {**(self.task.request.kwargs or {}), "waits": self.waits + 1}
        return self.retry(kwargs=kwargs, countdown=delay, exc=exc)

    def guarded(self, fn: Callable[[Path], T]) -> T:
        """Run fn in a scratch directory; transient errors retry per the policy, others fail the run."""
        policy, event = self.policy, self.event
        workdir = Path(tempfile.mkdtemp(prefix=f"pressroom-{self.step}-"))
        try:
            with charging(Charge(event.run_id, self.step.value, event.run.channel_id)):  # provider calls' payer
                return fn(workdir)
        except (Retry, _Stop):
            raise
        except Exception as exc:
            if is_infra_fault(exc):
                raise  # the delivery waits for the service (protected), without using the step's retries
            if isinstance(exc, Throttled):
                raise self.wait(exc) from exc
            if isinstance(exc, TransientError):
                if self.attempt <= policy.max_retries:
                    delay = policy.delay(self.attempt, exc.retry_after)
                    self.rt.state.step_retrying(event.run_id, self.step, self.attempt, exc, delay)
                    self.rt.state.count(self.step, "retried")
                    log.warning("%s of run %s: %s; retry %d in %.0fs", self.step, event.run_id, exc, self.attempt,
                                delay)
                    raise self.retry(countdown=delay, exc=exc) from exc
                raise _Stop(self.fail(type(exc).__name__, f"{exc} (gave up after {self.attempt} attempts)")) from exc
            if isinstance(exc, SoftTimeLimitExceeded):
                raise _Stop(self.fail("TimeLimitExceeded", f"took longer than {policy.soft_time_limit}s; raise "
                                      "the step's time limit or split the input")) from exc
            if isinstance(exc, SkipRun):
                raise _Stop(self.skip(str(exc))) from exc
            message = str(exc) if isinstance(exc, PressroomError) else f"unexpected {type(exc).__name__}: {exc}"
            raise _Stop(self.fail(type(exc).__name__, message, traceback.format_exc())) from exc
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def fail(self, error_type: str, message: str, trace: str = "") -> str:
        failed = StepFailed(run=self.event.run, artifacts=self.event.artifacts, step=self.step,
                            attempt=max(1, self.attempt), error_type=error_type, message=" ".join(message.split()),
                            generation=self.event.generation)
        log.error("%s of run %s failed: %s", self.step, self.event.run_id, failed.message)
        self.failure = failed
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
        """Send the next event exactly once (under the emit lease), then record success."""
        state = self.rt.state
        if not claimed and not state.claim_emit(self.emit_key, EMIT_LEASE):
            if state.emit_status(self.emit_key) == "sent":
                return "duplicate"
            raise self.retry(countdown=EMIT_LEASE)  # another delivery is mid-send
        duration = self.event.duration or outcome.usage.get("audio_seconds") or None
        done = StepSucceeded(run=self.event.run, artifacts={**self.event.artifacts, **outcome.artifacts},
                             step=self.step, attempt=max(1, self.attempt), reused=reused,
                             generation=self.event.generation, duration=duration)
        emit(self.task.app, state, done)  # the event is logged before the run can read as finished
        state.mark_emitted(self.emit_key)  # from here a redelivery only completes the bookkeeping below
        self.record_success(outcome.usage, reused)
        return "reused" if reused else "succeeded"

    def record_success(self, usage: dict[str, float], reused: bool) -> None:
        state = self.rt.state
        state.step_succeeded(self.event.run_id, self.step, usage, reused)
        state.count(self.step, "succeeded")
        if self.step is LAST_STEP:  # the run is over: keep its record with its artifacts
            write_manifest(self.rt, self.event.run_id)

    def already_done(self) -> str | None:
        """A delivery of a step whose event was sent: finish what a delivery that died after sending left
        undone (the step's success in run state), then do nothing more."""
        if not self.emitted():
            return None
        run = self.rt.state.view(self.event.run_id)
        if run is not None and run.of(self.step).status not in (StepStatus.succeeded, StepStatus.pending):
            self.record_success({}, reused=False)
        return "duplicate"
