"""What the broker holds for each queue, read straight from Redis: the numbers operators scale and alert on.

kombu keeps a queue's waiting messages in one Redis list per priority (keys.queue_lists), pushed with LPUSH
and popped with BRPOP, so the oldest waiting message of a list is at index -1; `LLEN queue` alone misses
every message sent at a later priority. A delivered message sits in the `unacked` hash until its worker
acks it: running, prefetched, or held until its countdown ends (a scheduled retry, whose Celery headers
carry an `eta`). A queue's backlog is all of these: scaling a step to zero while any are held would leave
a retry with nobody to run it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workers import keys


@dataclass(frozen=True)
class QueueFacts:
    waiting: int  # in the queue's lists, every priority
    unacked: int  # delivered to a worker and not yet acked (running, prefetched or scheduled)
    scheduled: int  # of those, held until a retry's countdown ends
    oldest_age: float | None  # seconds since the oldest waiting message's event was emitted

    @property
    def backlog(self) -> int:
        """What a step's workers still have to do: KEDA's and bench/scale.py's measure of demand."""
        return self.waiting + self.unacked


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def message_emitted_at(raw: Any) -> float | None:
    """When the event in a kombu message was emitted (epoch seconds), or None if it cannot be told."""
    try:
        message = json.loads(_text(raw)) if not isinstance(raw, dict) else raw
        body = message.get("body")
        if message.get("properties", {}).get("body_encoding") == "base64" and isinstance(body, str | bytes):
            body = base64.b64decode(body)
        args = json.loads(body)[0] if isinstance(body, str | bytes) else None
        at = args[0].get("at") if args else None
        return datetime.fromisoformat(at).timestamp() if isinstance(at, str) else None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None


def _eta(message: dict[str, Any]) -> float | None:
    eta = (message.get("headers") or {}).get("eta")
    try:
        return datetime.fromisoformat(eta).timestamp() if isinstance(eta, str) else None
    except ValueError:
        return None


def read_queue_facts(client: Any, queues: Iterable[str], now: float) -> dict[str, QueueFacts]:
    """Each queue's facts from one pipelined read of its lists plus one read of the unacked hash."""
    queues = list(queues)
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for name in keys.queue_lists(queue):
            pipe.llen(name)
            pipe.lindex(name, -1)
    pipe.hvals(keys.UNACKED_KEY)
    replies = pipe.execute()
    held: dict[str, list[int]] = {q: [0, 0] for q in queues}
    for raw in replies[-1]:
        try:
            message, _exchange, routing_key = json.loads(_text(raw))
        except (ValueError, TypeError):
            continue
        if routing_key in held:
            held[routing_key][0] += 1
            eta = _eta(message) if isinstance(message, dict) else None
            held[routing_key][1] += int(eta is not None and eta > now)
    out: dict[str, QueueFacts] = {}
    per_queue = 2 * len(keys.PRIORITY_STEPS)
    for i, queue in enumerate(queues):
        rows = replies[i * per_queue:(i + 1) * per_queue]
        waiting = sum(int(n) for n in rows[0::2])
        ats = [at for at in (message_emitted_at(raw) for raw in rows[1::2] if raw) if at is not None]
        oldest = round(now - min(ats), 3) if ats else None
        out[queue] = QueueFacts(waiting, held[queue][0], held[queue][1], oldest)
    return out
