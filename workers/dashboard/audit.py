"""Who did what to which run: every dashboard action (allowed or refused) is appended to a Redis list."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from workers import keys
from workers.runtime import Runtime

KEEP = 10_000  # entries kept; older ones are trimmed so the list cannot grow without bound


def fingerprint(token: str | None) -> str:
    """Names a caller without storing their token: the first 12 hex digits of its SHA-256."""
    return "anonymous" if not token else "token:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def token_matches(given: str, expected: str) -> bool:
    """Constant-time, so response timing says nothing about how much of a guess was right."""
    return hmac.compare_digest(given.encode(), expected.encode())


def record(rt: Runtime, *, who: str, what: str, run_id: str | None, outcome: str) -> None:
    kv = rt.state.kv
    entry = {"who": who, "what": what, "run_id": run_id, "outcome": outcome, "at": time.time()}
    kv.rpush(keys.audit_log_key(), json.dumps(entry, ensure_ascii=False))
    ltrim = getattr(kv, "ltrim", None)  # MemoryKV has none; an embedded process is short-lived anyway
    if ltrim is not None:
        ltrim(keys.audit_log_key(), -KEEP, -1)


def entries(rt: Runtime, limit: int = 100) -> list[dict[str, Any]]:
    """The newest `limit` entries, newest first."""
    raw = rt.state.kv.lrange(keys.audit_log_key(), -limit, -1)
    return [json.loads(r) for r in reversed(raw)]
