"""Embedded mode: the same Celery tasks, on kombu's in-memory broker, worked by threads in this process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery.contrib.testing.worker import start_worker

from schemas.events import Step
from workers import keys


@contextmanager
def embedded_worker(app: Any, concurrency: int = 4) -> Iterator[Any]:
    """Start an in-process worker on every step's queue; stop it on exit."""
    if keys.WAKE_TASK not in app.tasks:
        app.task(name=keys.WAKE_TASK, ignore_result=True, shared=False)(_wake)
    with start_worker(
        app, pool="threads", concurrency=concurrency, perform_ping_check=False,
        loglevel="ERROR", queues=list(keys.QUEUES.values()), shutdown_timeout=30.0,
    ) as worker:
        try:
            yield worker
        finally:
            # Celery's loop for the in-memory broker (synloop) waits up to 2 s for a message per poll, and
            # polls once more after it has seen the stop flag: two messages make stopping take milliseconds.
            from celery.worker import state

            state.should_terminate = 0
            for _ in range(2):
                app.send_task(keys.WAKE_TASK, queue=keys.QUEUES[Step.download])


def _wake() -> None:
    """Nothing to do: the message itself wakes the worker's loop."""
