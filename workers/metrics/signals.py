"""Task outcomes and durations, recorded for every step and part task from Celery's signals: one place, for
every step there is or will be."""

from __future__ import annotations

import time
from typing import Any

from celery import signals

from schemas.pipeline import Step
from workers import keys
from workers.metrics.families import TASK_DURATION, TASK_OUTCOMES
from workers.metrics.store import increment, observation

_STEP_TASKS: dict[str, tuple[str, str]] = {
    **{keys.task_name(s): (s.value, "step") for s in Step},
    **{keys.part_task_name(s): (s.value, "part") for s in Step},
}
_STARTED = "_pressroom_started"


def outcome(state: str | None, retval: Any, exc: BaseException | None = None) -> str:
    """How a delivery ended, from Celery's state and the runner's result."""
    if state == "RETRY":
        from workers.errors import Throttled

        cause = getattr(retval, "exc", None) or exc
        return "waited" if isinstance(cause, Throttled) else "retried"
    if state == "FAILURE":
        text = str(retval)
        return "malformed" if "message" in text and "dropped" in text else "failed"
    return str(retval) if isinstance(retval, str) else "unknown"


def _started(task: Any = None, **_: Any) -> None:
    if task is not None and task.name in _STEP_TASKS:
        setattr(task.request, _STARTED, time.monotonic())


def _ended(task: Any = None, retval: Any = None, state: str | None = None, **_: Any) -> None:
    if task is None or task.name not in _STEP_TASKS:
        return
    step, kind = _STEP_TASKS[task.name]
    metrics = getattr(getattr(task.app, "pressroom", None), "metrics", None)
    if metrics is None:
        return
    labels = {"step": step, "kind": kind}
    amounts = increment(TASK_OUTCOMES, {**labels, "outcome": outcome(state, retval)})
    started = getattr(task.request, _STARTED, None)
    if started is not None:
        amounts |= observation(TASK_DURATION, labels, time.monotonic() - started)
    metrics.add(amounts)  # one round trip per task


def connect() -> None:
    """Connect the handlers once per process (signals are global; every app's tasks go through them)."""
    signals.task_prerun.connect(_started, dispatch_uid="pressroom-metrics-started", weak=False)
    signals.task_postrun.connect(_ended, dispatch_uid="pressroom-metrics-ended", weak=False)
