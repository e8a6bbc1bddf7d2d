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
from workers.dashboard.queries import _float, _text, hmget_many
from workers.runtime import Runtime

HOUR = 3600.0
LOOKBACK = 24 * HOUR  # runs created earlier than this are not scanned for last hour's step ends
MAX_SCANNED = 5000  # and at most this many of the newest: the scan stays bounded however busy it gets


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
    """Per step: how many ended succeeded / failed in the last hour, from the run hashes of recent runs."""
    kv = rt.state.kv
    ids: list[str]
    if hasattr(kv, "zrevrangebyscore"):
        ids = [_text(i) for i in kv.zrevrangebyscore(keys.runs_index_key(), "+inf", now - LOOKBACK,
                                                     start=0, num=MAX_SCANNED)]
    else:
        ids = [_text(i) for i in reversed(kv.zrange(keys.runs_index_key(), 0, -1))][:MAX_SCANNED]
    fields = ["updated"] + [f"{s}.{n}" for s in Step for n in ("status", "ended")]
    counts = {s.value: {"succeeded": 0, "failed": 0} for s in Step}
    for row in hmget_many(kv, [keys.run_key(i) for i in ids], fields):
        if (_float(row[0]) or 0) < now - HOUR:
            continue
        for n, step in enumerate(Step):
            status, ended = row[1 + 2 * n], _float(row[2 + 2 * n])
            if ended and ended >= now - HOUR and status in ("succeeded", "failed"):
                counts[step.value][status] += 1
    return counts


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
            ended = done.get(step or "", {"succeeded": 0, "failed": 0})
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
    return {"queues": out, "at": now,
            "last_hour_scope": f"runs created in the last {int(LOOKBACK // HOUR)} h, newest {MAX_SCANNED}"}
