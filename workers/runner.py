"""The one place every step's cross-cutting behaviour lives: idempotency, reuse, run state, retries,
failure, and once-only emission of the next event. Steps and their tasks know none of it."""

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
from typing import Any

from celery.exceptions import Retry, SoftTimeLimitExceeded
from pydantic import ValidationError

from schemas.events import RunRequested, Step, StepFailed, StepSucceeded
from workers import keys
from workers.errors import PressroomError, TransientError
from workers.events import EVENT, emit
from workers.retry import POLICIES
from workers.runtime import Runtime
from workers.settings import Settings

log = logging.getLogger("pressroom")
EMIT_LEASE = 60  # seconds a sender holds the right to emit; lapses if it dies mid-send

InEvent = RunRequested | StepSucceeded


@dataclass
class Outcome:
    artifacts: dict[str, str]
    usage: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StepSpec:
    """A step as the runner sees it: what it writes, what its output depends on, and the handler."""

    step: Step
    outputs: dict[str, str]  # artifact name → file name under the step's prefix; the last one is written last
    fingerprint: Callable[[InEvent, Settings], dict[str, Any]]
    handler: Callable[[Runtime, InEvent, str, Path], Outcome]
    reusable: bool = True  # False: always run (publish is cheap and must write its outputs each time)


def input_hash(fingerprint: dict[str, Any]) -> str:
    blob = json.dumps(fingerprint, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def run_step(task: Any, spec: StepSpec, payload: dict[str, Any]) -> str:
    """Execute one delivery of a step's task. Never raises except Celery's Retry."""
    rt: Runtime = task.app.pressroom
    try:
        event = EVENT.validate_python(payload)
    except ValidationError as exc:  # a malformed message must not kill the worker or loop
        log.error("dropping malformed %s message: %s", spec.step, str(exc).splitlines()[0])
        return "malformed"
    if isinstance(event, StepFailed):
        log.error("dropping %s message carrying a failure event for run %s", spec.step, event.run_id)
        return "malformed"

    step, policy = spec.step, POLICIES[spec.step]
    attempt = int(task.request.retries or 0) + 1
    digest = input_hash(spec.fingerprint(event, rt.settings))
    prefix = keys.step_prefix(event.video_id, step, digest)
    emit_key = keys.emit_key(event.run_id, step, digest)
    if rt.state.emit_status(emit_key) == "sent":
        log.info("%s of run %s already done; duplicate delivery ignored", step, event.run_id)
        return "duplicate"

    deliveries = rt.state.step_started(
        event.run_id, step, attempt, str(task.request.hostname or "local"), os.getpid()
    )
    if deliveries - attempt >= policy.max_deliveries:
        return _fail(rt, task, event, step, attempt, "WorkerLost",
                     f"its worker died {deliveries - attempt} times during this step (out of memory or killed?); "
                     "retry it from the dashboard once the cause is fixed")

    artifacts = {name: prefix + filename for name, filename in spec.outputs.items()}
    marker = prefix + list(spec.outputs.values())[-1]
    try:
        if spec.reusable and rt.store.exists(marker):
            outcome, reused = Outcome(artifacts), True
        else:
            workdir = Path(tempfile.mkdtemp(prefix=f"pressroom-{step}-"))
            try:
                outcome, reused = spec.handler(rt, event, prefix, workdir), False
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    except TransientError as exc:
        if attempt <= policy.max_retries:
            delay = policy.delay(attempt, exc.retry_after)
            rt.state.step_retrying(event.run_id, step, attempt, exc, delay)
            log.warning("%s of run %s: %s; retry %d in %.0fs", step, event.run_id, exc, attempt, delay)
            raise task.retry(countdown=delay, exc=exc, max_retries=policy.max_retries) from exc
        return _fail(rt, task, event, step, attempt, type(exc).__name__,
                     f"{exc} (gave up after {attempt} attempts)")
    except SoftTimeLimitExceeded:
        return _fail(rt, task, event, step, attempt, "TimeLimitExceeded",
                     f"took longer than {policy.soft_time_limit}s; raise the step's time limit or split the input")
    except Retry:
        raise
    except Exception as exc:
        message = str(exc) if isinstance(exc, PressroomError) else f"unexpected {type(exc).__name__}: {exc}"
        return _fail(rt, task, event, step, attempt, type(exc).__name__, message, traceback.format_exc())

    done = StepSucceeded(run=event.run, artifacts={**event.artifacts, **outcome.artifacts},
                         step=step, attempt=attempt, reused=reused)
    rt.state.step_succeeded(event.run_id, step, outcome.usage, reused)
    if not rt.state.claim_emit(emit_key, EMIT_LEASE):
        if rt.state.emit_status(emit_key) == "sent":
            return "duplicate"
        raise task.retry(countdown=EMIT_LEASE, max_retries=None)  # another delivery is mid-send
    emit(task.app, rt.state, done)
    rt.state.mark_emitted(emit_key)
    return "reused" if reused else "succeeded"


def _fail(rt: Runtime, task: Any, event: InEvent, step: Step, attempt: int, error_type: str,
          message: str, trace: str = "") -> str:
    failed = StepFailed(run=event.run, artifacts=event.artifacts, step=step, attempt=attempt,
                        error_type=error_type, message=" ".join(message.split()))
    log.error("%s of run %s failed: %s", step, event.run_id, failed.message)
    rt.state.step_failed(failed, trace)
    emit(task.app, rt.state, failed)
    return "failed"
