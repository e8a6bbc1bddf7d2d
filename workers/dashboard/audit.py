"""Who did what to which run. Two records, neither of which anyone without the token can grow:

- entries: every action of an authenticated caller (the operator, the reconciler), allowed or refused for a
  reason of its own (409 …), in a Redis sorted set scored by time. Each write drops the entries older than
  PRESSROOM_AUDIT_RETENTION_DAYS, so the log is bounded by age, not by a count a flood could fill.
- refusals before authentication (no token, a wrong one, a read-only dashboard): only counted, per minute
  and reason, in a hash per minute that expires with the retention. The counts gather in memory and reach
  Redis at most once a second per process, however many requests are refused.

An entry's `who` is a label, never anything derived from the token: "operator" (or the user name an
operator gives with HTTP basic auth), "reconciler".
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import threading
import time
from collections import Counter
from typing import Any

from workers import keys
from workers.runtime import Runtime
from workers.state import is_redis

OPERATOR = "operator"
REASONS = ("missing_token", "wrong_token", "read_only", "not_logged_in")  # the counters' only fields
FLUSH_EVERY = 1.0  # seconds between writes of the refusal counts, per process
_LABEL = re.compile(r"[^A-Za-z0-9_.@+-]")


def label(user: str | None = None) -> str:
    """The audit name of an authenticated caller: a basic-auth user name (cleaned, at most 40 characters)
    or "operator"."""
    cleaned = _LABEL.sub("", user or "")[:40]
    return cleaned or OPERATOR


def token_matches(given: str, expected: str) -> bool:
    """Constant-time, so response timing says nothing about how much of a guess was right."""
    return hmac.compare_digest(given.encode(), expected.encode())


def _retention(rt: Runtime) -> float:
    return rt.settings.audit_retention_days * 86400


def record(rt: Runtime, *, who: str, what: str, run_id: str | None, outcome: str, at: float | None = None) -> None:
    """Append an entry (for authenticated callers only: refusals before authentication go to count())."""
    kv = rt.state.kv
    at = time.time() if at is None else at
    entry = {"who": who, "what": what, "run_id": run_id, "outcome": " ".join(outcome.split()), "at": at,
             "id": secrets.token_hex(4)}  # two equal entries in one instant stay two members
    member = json.dumps(entry, ensure_ascii=False)
    if not is_redis(kv):  # embedded: the process's own MemoryKV, gone when it ends; read() skips the old
        kv.zadd(keys.audit_entries_key(), {member: at})
        return
    pipe = kv.pipeline(transaction=False)  # type: ignore[attr-defined]
    pipe.zadd(keys.audit_entries_key(), {member: at})
    pipe.zremrangebyscore(keys.audit_entries_key(), "-inf", f"({time.time() - _retention(rt)}")
    pipe.execute()


def entries(rt: Runtime, limit: int = 100) -> list[dict[str, Any]]:
    """The newest `limit` entries within the retention, newest first."""
    kv = rt.state.kv
    oldest = time.time() - _retention(rt)
    if is_redis(kv):
        raw = kv.zrevrangebyscore(keys.audit_entries_key(), "+inf", oldest,  # type: ignore[attr-defined]
                                  start=0, num=limit)
    else:
        raw = list(reversed(kv.zrange(keys.audit_entries_key(), 0, -1)))
    out = [json.loads(r) for r in raw]
    return [{k: v for k, v in e.items() if k != "id"} for e in out if e.get("at", 0) >= oldest][:limit]


def migrate_legacy(rt: Runtime) -> int:
    """Move the entries of the old list-shaped log into the sorted set, once: an authenticated one keeps its
    action under the label "operator" (it named the caller by a hash of the token), an anonymous refusal is
    dropped (those are only counted now). Returns how many moved."""
    kv = rt.state.kv
    if not is_redis(kv):
        return 0
    pipe = kv.pipeline(transaction=True)  # type: ignore[attr-defined]
    pipe.lrange(keys.audit_log_key(), 0, -1)
    pipe.delete(keys.audit_log_key())
    raw, _ = pipe.execute()  # MULTI/EXEC: two dashboards starting together do not both move them
    moved = 0
    for item in raw:
        try:
            entry = json.loads(item)
            who = str(entry.get("who") or "")
            if who == "anonymous":
                continue
            record(rt, who=OPERATOR if who.startswith("token:") else label(who), what=str(entry.get("what")),
                   run_id=entry.get("run_id"), outcome=str(entry.get("outcome")), at=float(entry["at"]))
            moved += 1
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
    return moved


class RefusalCounter:
    """Counts requests refused before authentication, by reason: in memory at once, in Redis (a hash per
    minute) at most once every FLUSH_EVERY seconds, so a flood costs Redis one write a second."""

    def __init__(self, rt: Runtime, timeout: float = 2.0) -> None:
        self.rt, self.timeout = rt, timeout
        self._lock = threading.Lock()
        self._pending: Counter[tuple[int, str]] = Counter()
        self._flushed = 0.0
        self._client: Any = None

    def _kv(self) -> Any:
        """Run state's Redis through a client of our own with timeouts (a flush at shutdown must not hang
        on a Redis that stopped answering), or the in-process KV."""
        url = self.rt.settings.state_url
        if url is None:
            return self.rt.state.kv
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(url, socket_timeout=self.timeout,
                                                socket_connect_timeout=self.timeout)
        return self._client

    def count(self, reason: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown refusal reason {reason!r}")
        now = time.time()
        with self._lock:
            self._pending[(int(now // 60), reason)] += 1
            due = now - self._flushed >= FLUSH_EVERY
        if due:
            self.flush()

    def flush(self) -> None:
        """Write what was counted since the last flush (called when due, by the gatherer, at shutdown)."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
            self._flushed = time.time()
        if not pending:
            return
        ttl = int(_retention(self.rt)) + 60
        try:
            kv = self._kv()
            if is_redis(kv):
                pipe = kv.pipeline(transaction=False)
                for (minute, reason), n in pending.items():
                    pipe.hincrby(keys.audit_refused_key(minute), reason, n)
                    pipe.expire(keys.audit_refused_key(minute), ttl)
                pipe.execute()
            else:
                for (minute, reason), n in pending.items():
                    kv.hincrby(keys.audit_refused_key(minute), reason, n)
        except Exception:  # Redis away: these counts are lost rather than piling up in memory
            return

    def totals(self, minutes: int, now: float | None = None) -> dict[str, int]:
        """Refusals per reason over the last `minutes` minutes (this process's unwritten ones included)."""
        self.flush()
        return refused(self.rt, minutes, now)


def refused(rt: Runtime, minutes: int, now: float | None = None) -> dict[str, int]:
    """Refusals before authentication per reason over the last `minutes` minutes, as written to Redis."""
    last = int((time.time() if now is None else now) // 60)
    names = [keys.audit_refused_key(m) for m in range(last - minutes + 1, last + 1)]
    kv = rt.state.kv
    if is_redis(kv):
        pipe = kv.pipeline(transaction=False)  # type: ignore[attr-defined]
        for name in names:
            pipe.hgetall(name)
        rows = pipe.execute()
    else:
        rows = [kv.hgetall(name) for name in names]
    total: Counter[str] = Counter()
    for row in rows:
        for reason, n in row.items():
            total[reason.decode() if isinstance(reason, bytes) else str(reason)] += int(n)
    return dict(total)
