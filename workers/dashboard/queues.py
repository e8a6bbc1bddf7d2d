"""Queue health for the dashboard: depth, age of the oldest waiting message, workers, last hour's work.

kombu keeps each queue as a Redis list, pushed with LPUSH and popped with BRPOP: the oldest waiting
message is at index -1. Its body (base64 JSON, Celery protocol 2: [args, kwargs, embed]) carries the event,
whose "at" says when it was emitted.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime
from typing import Any

from schemas.events import Step
from workers import keys
from workers.dashboard.queries import _text
from workers.runtime import Runtime


def message_emitted_at(raw: Any) -> float | None:
    """When the event in a kombu message was emitted (epoch seconds), or None if it cannot be told."""
    try:
        message = json.loads(_text(raw))
        body = message.get("body")
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0] if isinstance(body, str | bytes) else None
        at = args[0].get("at") if args else None
        return datetime.fromisoformat(at).timestamp() if isinstance(at, str) else None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None


def workers_by_queue(app: Any, timeout: float = 1.0) -> dict[str, list[str]]:
    """Worker node names consuming each queue; empty when no worker answers (or the broker is down)."""
    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception:  # no workers, or no broker: the dashboard still answers
        return {}
    out: dict[str, list[str]] = {}
    for worker, queues in replies.items():
        for queue in queues or []:
            out.setdefault(queue.get("name", ""), []).append(worker)
    return out


def last_hour(rt: Runtime, now: float) -> dict[str, dict[str, int]]:
    """Per step: deliveries that succeeded / failed / were retried in the last hour (the runner's tallies)."""
    return {step.value: rt.state.tallies(step, 60, now) for step in Step}


def queue_stats(app: Any, rt: Runtime, *, inspect_timeout: float = 1.0) -> dict[str, Any]:
    """{queues: [...], workers_answered, scanned_window}: one entry per step queue and the watch queue."""
    import redis

    now = time.time()
    broker = redis.Redis.from_url(rt.settings.broker_url or "", decode_responses=True)
    online = workers_by_queue(app, inspect_timeout)
    done = last_hour(rt, now)
    step_of = {q: s.value for s, q in keys.QUEUES.items()}
    out = []
    try:
        for queue in [*keys.QUEUES.values(), keys.WATCH_QUEUE]:
            pipe = broker.pipeline(transaction=False)
            pipe.llen(queue)
            pipe.lindex(queue, -1)
            depth, oldest = pipe.execute()
            at = message_emitted_at(oldest) if oldest else None
            step = step_of.get(queue)
            ended = done.get(step or "", {"succeeded": 0, "failed": 0, "retried": 0})
            finished = ended["succeeded"] + ended["failed"]
            out.append({
                "queue": queue, "step": step, "depth": int(depth),
                "oldest_age": round(now - at, 3) if at is not None else None,
                "workers": sorted(online.get(queue, [])),
                "last_hour": {**ended, "failure_rate": round(ended["failed"] / finished, 4) if finished else None}
                if step else None,
            })
    finally:
        broker.close()
    return {"queues": out, "at": now}
