"""Spending caps: per run, per watched channel per UTC day, and everything per UTC day.

Every paid provider call is charged to the run it is made for (`charging`, set around a step's work). Before
the call, its estimated cost (the prompt and the most it may write, or the audio's minutes) is reserved
against every cap at once — atomically, so parallel parts cannot together pass a cap — and a call that would
pass one is not made: OverBudget, a permanent error that stops the run at that step with the figures.
After the call the reservation is corrected to what the provider reported. Raise the cap and `pressroom
retry` the run: it goes on from that step, reusing what is stored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from workers import keys
from workers.errors import PermanentError

SPEND_TTL = 40 * 86400  # seconds a run's or a day's spend is kept


class OverBudget(PermanentError):
    """A paid call would pass a spending cap."""


@dataclass(frozen=True)
class Charge:
    """Who pays for the provider calls made now."""

    run_id: str
    step: str
    channel_id: str | None = None


CURRENT: ContextVar[Charge | None] = ContextVar("pressroom_charge", default=None)


@contextmanager
def charging(charge: Charge) -> Iterator[None]:
    token = CURRENT.set(charge)
    try:
        yield
    finally:
        CURRENT.reset(token)


@dataclass(frozen=True)
class Caps:
    per_run: float | None = None
    per_channel_day: float | None = None
    per_day: float | None = None

    @property
    def any(self) -> bool:
        return bool(self.per_run or self.per_channel_day or self.per_day)


_RESERVE = """
for i = 1, #KEYS do
  local cap = tonumber(ARGV[i + 1])
  if cap > 0 and tonumber(redis.call('GET', KEYS[i]) or '0') + tonumber(ARGV[1]) > cap then
    return {i, redis.call('GET', KEYS[i]) or '0'}
  end
end
for i = 1, #KEYS do
  redis.call('INCRBYFLOAT', KEYS[i], ARGV[1])
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[#ARGV]))
end
return {0, '0'}
"""

_CAP_NAMES = ("this run", "this channel today", "all runs today")
_CAP_SETTINGS = ("PRESSROOM_BUDGET_USD_PER_RUN", "PRESSROOM_BUDGET_USD_PER_CHANNEL_DAY", "PRESSROOM_BUDGET_USD_PER_DAY")


class Budget:
    """Reserves and settles spend against the caps, in Redis (or this process, embedded)."""

    def __init__(self, kv: Any, caps: Caps) -> None:
        self.kv, self.caps = kv, caps
        self._script = kv.register_script(_RESERVE) if hasattr(kv, "register_script") else None
        self._memory: dict[str, float] = {}
        self._lock = threading.Lock()

    def _keys(self, charge: Charge) -> tuple[list[str], list[float]]:
        day = time.strftime("%Y-%m-%d", time.gmtime())
        names = [keys.spend_key(f"run:{charge.run_id}"), keys.spend_key(f"day:{day}")]
        caps = [self.caps.per_run or 0.0, self.caps.per_day or 0.0]
        if charge.channel_id:
            names.insert(1, keys.spend_key(f"channel:{charge.channel_id}:{day}"))
            caps.insert(1, self.caps.per_channel_day or 0.0)
        return names, caps

    def reserve(self, charge: Charge, usd: float, what: str) -> list[str]:
        """Count `usd` against every cap, or raise OverBudget naming the cap, the figures and the fix."""
        names, caps = self._keys(charge)
        if self._script is not None:
            index, spent = self._script(keys=names, args=[usd, *caps, SPEND_TTL])
            index, spent = int(index), float(spent)
        else:
            with self._lock:
                index, spent = next(((i + 1, self._memory.get(n, 0.0)) for i, (n, cap) in
                                     enumerate(zip(names, caps, strict=True))
                                     if cap and self._memory.get(n, 0.0) + usd > cap), (0, 0.0))
                if not index:
                    for n in names:
                        self._memory[n] = self._memory.get(n, 0.0) + usd
        if index:
            name = names[index - 1]
            which = 0 if ":run:" in name else (1 if ":channel:" in name else 2)
            cap = caps[index - 1]
            raise OverBudget(
                f"over budget: {_CAP_NAMES[which]} has spent ${spent:.4f} of its ${cap:.4f} cap "
                f"({_CAP_SETTINGS[which]}) and {what} would cost up to ${usd:.4f}: raise the cap, then "
                f"`pressroom retry {charge.run_id}`")
        return names

    def settle(self, names: list[str], delta: float) -> None:
        """Correct a reservation by what the call really cost (actual − reserved)."""
        if not delta:
            return
        if self._script is not None:
            pipe = self.kv.pipeline(transaction=False)
            for n in names:
                pipe.incrbyfloat(n, delta)
            pipe.execute()
        else:
            with self._lock:
                for n in names:
                    self._memory[n] = self._memory.get(n, 0.0) + delta

    def spent(self, charge: Charge) -> dict[str, float]:
        names, _ = self._keys(charge)
        if self._script is not None:
            return {n: float(v or 0) for n, v in zip(names, self.kv.mget(names), strict=True)}
        with self._lock:
            return {n: self._memory.get(n, 0.0) for n in names}
