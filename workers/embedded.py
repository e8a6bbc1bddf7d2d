"""Embedded mode: the same Celery tasks, on kombu's in-memory broker, worked by threads in this process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery.contrib.testing.worker import start_worker

from workers import keys


@contextmanager
def embedded_worker(app: Any, concurrency: int = 4) -> Iterator[Any]:
    """Start an in-process worker on every step's queue; stop it on exit."""
    with start_worker(
        app, pool="threads", concurrency=concurrency, perform_ping_check=False,
        loglevel="ERROR", queues=list(keys.QUEUES.values()), shutdown_timeout=30.0,
    ) as worker:
        yield worker
