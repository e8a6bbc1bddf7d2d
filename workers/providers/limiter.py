"""Shared limits per provider endpoint — requests per minute, tokens per minute, requests in flight — kept in
Redis so every worker process on every host draws on one allowance, plus a pause a 429's Retry-After sets.

A sliding window, not a fixed minute: each grant is a member of a sorted set scored by when it was given
(Redis's own clock, so hosts' clocks do not matter), with the tokens it was granted for in its name; a
request is granted while fewer than `rpm` grants and no more than `tpm` tokens fall within the last
`window` seconds. So no 60-second span ever holds more than the limits, whichever minute the provider
counts. Each try is one Lua script: atomic, one round trip. When the answer is "not yet", it says how long
until the oldest grant in the way leaves the window, so a caller can wait exactly that.

Why not the `limits` library: it has no concurrency limit and no pause, and it keeps one list entry per unit
of cost (a token budget of 200,000 would be 200,000 entries).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from workers import keys

WINDOW = 61.0  # seconds: a minute, plus a margin for the time between a grant and the provider's clock
CONCURRENCY_POLL = 0.25  # seconds to wait before looking again when every slot in flight is taken


@dataclass(frozen=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None

    @property
    def any(self) -> bool:
        return bool(self.rpm or self.tpm or self.concurrency)


@dataclass(frozen=True)
class Answer:
    grant: str | None  # the grant's id when granted
    wait: float  # seconds until it may be granted, when not
    limit: str  # which limit said no: rpm, tpm, concurrency, pause ("" when granted)


class Limiter(Protocol):
    def try_acquire(self, tokens: int, lease: float) -> Answer: ...
    def settle(self, grant: str, tokens: int) -> None: ...
    def release(self, grant: str) -> None: ...
    def pause(self, seconds: float) -> None: ...


_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, tpm, conc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local window, tokens, id, lease = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local paused = tonumber(redis.call('GET', KEYS[3]) or '0')
if paused > now then return {0, paused - now, 'pause'} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if rpm > 0 and n >= rpm then
  local oldest = redis.call('ZRANGE', KEYS[1], n - rpm, n - rpm, 'WITHSCORES')
  return {0, tonumber(oldest[2]) + window - now, 'rpm'}
end
if tpm > 0 then
  local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  local used = 0
  for i = 1, #entries, 2 do used = used + tonumber(string.match(entries[i], ':(%d+)$')) end
  if used + tokens > tpm then
    for i = 1, #entries, 2 do
      used = used - tonumber(string.match(entries[i], ':(%d+)$'))
      if used + tokens <= tpm then return {0, tonumber(entries[i + 1]) + window - now, 'tpm'} end
    end
    return {0, window, 'tpm'}
  end
end
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= conc then return {0, -1, 'concurrency'} end
  redis.call('ZADD', KEYS[2], now + lease, id)
  redis.call('PEXPIRE', KEYS[2], lease + 1000)
end
redis.call('ZADD', KEYS[1], now, id .. ':' .. tokens)
redis.call('PEXPIRE', KEYS[1], window + 1000)
return {1, 0, ''}
"""

_SETTLE = """
local cursor, found = '0', {}
repeat
  local page = redis.call('ZSCAN', KEYS[1], cursor, 'MATCH', ARGV[1] .. ':*', 'COUNT', 1000)
  cursor = page[1]
  for i = 1, #page[2], 2 do found[#found + 1] = {page[2][i], page[2][i + 1]} end
until cursor == '0'
for _, entry in ipairs(found) do
  redis.call('ZREM', KEYS[1], entry[1])
  redis.call('ZADD', KEYS[1], entry[2], ARGV[1] .. ':' .. ARGV[2])
end
return #found
"""

_PAUSE = """
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
if until_ms > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], until_ms, 'PX', tonumber(ARGV[1]) + 1000)
end
return 1
"""


class RedisLimiter:
    """The shared limiter: one endpoint's limits over Redis."""

    def __init__(self, client: Any, endpoint: str, limits: Limits, window: float = WINDOW) -> None:
        self.limits, self.window, self._client = limits, window, client
        self._keys = [keys.limiter_key(endpoint, what) for what in ("requests", "held", "pause")]
        self._acquire = client.register_script(_ACQUIRE)
        self._settle = client.register_script(_SETTLE)
        self._pause = client.register_script(_PAUSE)

    def try_acquire(self, tokens: int, lease: float) -> Answer:
        grant = uuid.uuid4().hex
        ok, wait_ms, limit = self._acquire(keys=self._keys, args=[
            self.limits.rpm or 0, self.limits.tpm or 0, self.limits.concurrency or 0, int(self.window * 1000),
            max(0, int(tokens)), grant, int(lease * 1000)])
        limit = limit.decode() if isinstance(limit, bytes) else str(limit)
        if int(ok):
            return Answer(grant, 0.0, "")
        wait = CONCURRENCY_POLL if int(wait_ms) < 0 else max(int(wait_ms), 1) / 1000
        return Answer(None, wait, limit)

    def settle(self, grant: str, tokens: int) -> None:
        """Count what the request really used instead of its estimate."""
        if self.limits.tpm:
            self._settle(keys=self._keys[:1], args=[grant, max(0, int(tokens))])

    def release(self, grant: str) -> None:
        if self.limits.concurrency:
            self._client.zrem(self._keys[1], grant)

    def pause(self, seconds: float) -> None:
        self._pause(keys=self._keys[2:], args=[max(1, int(seconds * 1000))])


class MemoryLimiter:
    """The same limits within one process (the embedded mode), by the same rules."""

    def __init__(self, limits: Limits, window: float = WINDOW) -> None:
        self.limits, self.window = limits, window
        self._lock = threading.Lock()
        self._grants: dict[str, tuple[float, int]] = {}  # id -> (when, tokens)
        self._held: dict[str, float] = {}  # id -> lease end
        self._paused_until = 0.0

    def try_acquire(self, tokens: int, lease: float) -> Answer:
        with self._lock:
            now = time.monotonic()
            if self._paused_until > now:
                return Answer(None, self._paused_until - now, "pause")
            self._grants = {g: v for g, v in self._grants.items() if v[0] > now - self.window}
            oldest = sorted(self._grants.values())
            rpm, tpm, conc = self.limits.rpm, self.limits.tpm, self.limits.concurrency
            if rpm and len(oldest) >= rpm:
                return Answer(None, oldest[len(oldest) - rpm][0] + self.window - now, "rpm")
            used = sum(n for _, n in oldest)
            if tpm and used + tokens > tpm:
                for at, n in oldest:
                    used -= n
                    if used + tokens <= tpm:
                        return Answer(None, at + self.window - now, "tpm")
                return Answer(None, self.window, "tpm")
            grant = uuid.uuid4().hex
            if conc:
                self._held = {g: end for g, end in self._held.items() if end > now}
                if len(self._held) >= conc:
                    return Answer(None, CONCURRENCY_POLL, "concurrency")
                self._held[grant] = now + lease
            self._grants[grant] = (now, max(0, int(tokens)))
            return Answer(grant, 0.0, "")

    def settle(self, grant: str, tokens: int) -> None:
        with self._lock:
            if grant in self._grants:
                self._grants[grant] = (self._grants[grant][0], max(0, int(tokens)))

    def release(self, grant: str) -> None:
        with self._lock:
            self._held.pop(grant, None)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
