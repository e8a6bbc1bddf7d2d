"""Workers keep the messages they hold alive, so a dead worker's work comes back in about a minute while a
healthy long step never runs twice.

kombu's Redis transport keeps each delivered, unacked message in the `unacked` hash with its delivery time
in the `unacked_index` sorted set; any worker's periodic sweep puts back on its queue every message whose
time is older than the visibility timeout. Here each worker refreshes that time, every
visibility_timeout / 6 seconds, for every message it holds — running, prefetched, or waiting for a retry's
countdown. A worker that dies (SIGKILL, OOM, a lost machine) stops refreshing, and its messages return
after the visibility timeout. The limit: a worker that is alive but frozen (SIGSTOP, a swapped-out VM)
for longer than the timeout loses its messages to another worker, and the step may run twice (steps are
idempotent, so the cost is the repeated work, not a wrong result).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import bootsteps

log = logging.getLogger("pressroom")


def beat_interval(visibility_timeout: float) -> float:
    return max(0.5, visibility_timeout / 6)


class KeepDeliveriesAlive(bootsteps.StartStopStep):  # type: ignore[misc]
    """A consumer bootstep: a thread that refreshes the unacked_index score of every message this worker
    holds. Restarted with the consumer, so after a reconnect it follows the new channel."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, parent: Any) -> None:
        channel = parent.task_consumer.channel
        if getattr(parent.connection.transport, "driver_type", "") != "redis":
            return  # the in-memory broker of embedded mode has no visibility timeout
        import redis

        client = redis.Redis.from_url(parent.app.conf.broker_url, socket_timeout=10, socket_connect_timeout=5)
        interval = beat_interval(float(channel.visibility_timeout))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(channel, client, interval, self._stop),
                                        name="keep-deliveries-alive", daemon=True)
        self._thread.start()

    def stop(self, parent: Any) -> None:
        self._stop.set()

    shutdown = stop

    @staticmethod
    def _run(channel: Any, client: Any, interval: float, stop: threading.Event) -> None:
        key = channel.unacked_index_key
        while not stop.wait(interval):
            tags = list(channel.qos._delivered.copy())  # a C-level copy: safe against the consumer's changes
            if not tags:
                continue
            try:
                client.zadd(key, dict.fromkeys(tags, time.time()), xx=True)  # xx: never revive an acked one
            except Exception as exc:  # Redis is down: the sweep cannot run either; try at the next beat
                log.warning("could not refresh %d held messages: %s", len(tags), exc)
