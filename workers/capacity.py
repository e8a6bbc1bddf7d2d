"""How many pool processes serve each step queue right now, so a fanned-out step plans as many parts as
there are hands for them (a multiple of them), not a last wave of one part alone.

Every worker announces, every ANNOUNCE_EVERY seconds, each queue it consumes and its concurrency, in a
sorted set per queue scored by when the announcement lapses (keys.capacity_key): a worker that stops or dies
drops out within LAPSE seconds. Planners read the live sum; with nobody announcing (embedded mode, or
workers not started yet) they plan for PRESSROOM_PLAN_WORKERS.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from celery import bootsteps

from workers import keys

log = logging.getLogger("pressroom")
ANNOUNCE_EVERY = 10.0
LAPSE = 3 * ANNOUNCE_EVERY


def live_capacity(kv: Any, queue: str, now: float | None = None) -> int:
    """The pool processes of the workers that announced this queue within LAPSE seconds."""
    now = time.time() if now is None else now
    total = 0
    for member in kv.zrangebyscore(keys.capacity_key(queue), now, "+inf"):
        text = member.decode() if isinstance(member, bytes) else str(member)
        total += int(text.rsplit("|", 1)[-1]) if text.rsplit("|", 1)[-1].isdigit() else 0
    return total


def balanced_parts(units: float, per_part: float, hands: int, least: float) -> int:
    """How many parts to cut `units` (seconds, words) into: at most `per_part` each, at least `least` each
    where that allows, and a multiple of `hands` when there is enough for more than one wave."""
    needed = max(1, math.ceil(units / per_part))
    if hands <= 1:
        return needed
    if needed <= hands:  # one wave: spread it over every hand, unless parts would get too small
        return max(needed, min(hands, int(units // least) or 1))
    return math.ceil(needed / hands) * hands


class AnnounceCapacity(bootsteps.StartStopStep):  # type: ignore[misc]
    """A consumer bootstep: a thread announcing this worker's queues and concurrency in run state's Redis."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        self._stop = threading.Event()
        self._members: list[tuple[str, str]] = []

    def start(self, parent: Any) -> None:
        rt = getattr(parent.app, "pressroom", None)
        if rt is None or rt.settings.embedded:
            return
        queues = [q.name for q in parent.task_consumer.queues]
        concurrency = int(getattr(parent.controller, "concurrency", 0) or 1)
        self._members = [(keys.capacity_key(q), f"{parent.hostname}|{concurrency}") for q in queues]
        self._stop = threading.Event()
        threading.Thread(target=self._run, args=(rt.state.kv, self._stop), name="announce-capacity",
                         daemon=True).start()

    def stop(self, parent: Any) -> None:
        self._stop.set()
        rt = getattr(parent.app, "pressroom", None)
        if rt is None:
            return
        for key, member in self._members:
            try:
                rt.state.kv.zrem(key, member)
            except Exception:  # it lapses by itself
                break

    shutdown = stop

    def _run(self, kv: Any, stop: threading.Event) -> None:
        while True:
            try:
                for key, member in self._members:
                    kv.zadd(key, {member: time.time() + LAPSE})
                    kv.zremrangebyscore(key, "-inf", time.time())
            except Exception as exc:  # Redis away: the announcement lapses and planners use the setting
                log.warning("could not announce this worker's capacity: %s", exc)
            if stop.wait(ANNOUNCE_EVERY):
                return
