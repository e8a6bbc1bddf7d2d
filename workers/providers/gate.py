"""Every request to a provider passes one gate per endpoint: the shared limits (workers/providers/limiter.py)
and the provider metrics (requests by answer, tokens, audio seconds, estimated cost, waits).

A request waits in its task only briefly (PRESSROOM_PROVIDER_MAX_WAIT); a longer wait raises Throttled, and
the delivery goes back to the queue with that countdown, so its worker slot serves other work meanwhile. A
429 pauses the whole endpoint for its Retry-After — every worker, not only the task that met it — and its
delivery waits like a throttled one, without using up the step's retries.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from workers.budget import CURRENT, Budget, Charge
from workers.errors import PermanentError, PressroomError, Throttled, TransientError
from workers.metrics.families import PROVIDER_AUDIO, PROVIDER_COST, PROVIDER_REQUESTS, PROVIDER_TOKENS, PROVIDER_WAITS
from workers.providers.limiter import Limiter, Limits

log = logging.getLogger("pressroom.providers")
DEFAULT_PAUSE = 5.0  # seconds an endpoint pauses after a 429 that names no Retry-After


@dataclass(frozen=True)
class Prices:
    usd_per_million_input: float = 0.0
    usd_per_million_output: float = 0.0
    usd_per_audio_minute: float = 0.0
    usd_per_million_cached_input: float = 0.0

    def cost(self, input_tokens: int = 0, output_tokens: int = 0, cached_tokens: int = 0,
             audio_seconds: float = 0.0) -> float:
        cached = min(cached_tokens, input_tokens)
        return ((input_tokens - cached) * self.usd_per_million_input + cached * self.usd_per_million_cached_input
                + output_tokens * self.usd_per_million_output) / 1e6 + audio_seconds / 60 * self.usd_per_audio_minute


def endpoint_id(base_url: str, model: str) -> str:
    """A short stable id of (server, model): providers count their limits per account and model."""
    return hashlib.sha256(f"{base_url}|{model}".encode()).hexdigest()[:12]


@dataclass
class Call:
    """One request through the gate; the caller reports how it went."""

    gate: ProviderGate
    grant: str | None
    status: str = "error"
    tokens: tuple[int, int] | None = None
    cached_tokens: int = 0
    audio_seconds: float = 0.0
    reserved: float = 0.0  # USD held against the budget caps until the call's real cost is known
    reservation: list[str] = field(default_factory=list)

    def ok(self, *, input_tokens: int = 0, output_tokens: int = 0, cached_tokens: int = 0,
           audio_seconds: float = 0.0) -> None:
        self.status = "ok"
        self.tokens = (input_tokens, output_tokens)
        self.cached_tokens = cached_tokens
        self.audio_seconds = audio_seconds

    def failed(self, status_code: int | None, error: PressroomError) -> PressroomError:
        """Record a failed answer; a 429 pauses the endpoint and comes back as Throttled (no retry used)."""
        if status_code == 429 and isinstance(error, TransientError) and not isinstance(error, Throttled):
            self.status = "429"
            wait = error.retry_after or DEFAULT_PAUSE
            self.gate.pause(wait)
            return Throttled(f"{error} (the endpoint is paused for {wait:g} s)", retry_after=wait, limit="429")
        if status_code is not None:
            self.status = "5xx" if status_code >= 500 else "4xx"
        elif "timed out" in str(error):
            self.status = "timeout"
        return error


class ProviderGate:
    def __init__(self, role: str, base_url: str, model: str, *, limiter: Limiter | None, limits: Limits,
                 metrics: Any = None, prices: Prices = Prices(), max_wait: float = 5.0, lease: float = 600.0,
                 setting_prefix: str = "", budget: Budget | None = None, usage: Any = None) -> None:
        self.role, self.limits, self.limiter, self.metrics = role, limits, limiter, metrics
        self.budget = budget
        self.usage = usage  # (run_id, step, {name: amount}) -> None: the run's own account of its usage
        self.prices, self.max_wait, self.lease, self.setting_prefix = prices, max_wait, lease, setting_prefix
        self.labels = {"role": role, "endpoint": urlparse(base_url).netloc or base_url}

    @contextlib.contextmanager
    def request(self, prompt_tokens: int = 0, max_output: int = 0, audio_seconds: float = 0.0) -> Iterator[Call]:
        """Reserve the call's most cost against the budget caps (or raise OverBudget), wait for the endpoint's
        limits (or raise Throttled), then let one request through."""
        charge = CURRENT.get()
        reserved = self.prices.cost(prompt_tokens, max_output, audio_seconds=audio_seconds)
        reservation: list[str] = []
        if self.budget is not None and self.budget.caps.any and charge is not None and reserved > 0:
            what = f"the next {self.role} request" + (f" ({audio_seconds / 60:.1f} min of audio)" if audio_seconds
                                                      else f" (~{prompt_tokens:,} tokens in, ≤{max_output:,} out)")
            reservation = self.budget.reserve(charge, reserved, what)
        try:
            grant = self._acquire(prompt_tokens + max_output)
        except BaseException:
            if reservation and self.budget is not None:
                self.budget.settle(reservation, -reserved)
            raise
        call = Call(self, grant, reserved=reserved, reservation=reservation)
        try:
            yield call
        finally:
            self._done(call, charge)

    def pause(self, seconds: float) -> None:
        if self.limiter is not None:
            with contextlib.suppress(Exception):
                self.limiter.pause(seconds)

    def _acquire(self, tokens: int) -> str | None:
        if self.limiter is None or not self.limits.any:
            return None
        if self.limits.tpm and tokens > self.limits.tpm:
            raise PermanentError(
                f"one {self.role} request needs about {tokens:,} tokens, more than "
                f"{self.setting_prefix}_TPM={self.limits.tpm:,} allows in a minute: raise it or send less per request")
        waited = 0.0
        while True:
            answer = self.limiter.try_acquire(tokens, self.lease)
            if answer.grant is not None:
                if waited:
                    self._count(PROVIDER_WAITS, limit="any", how="slept")
                return answer.grant
            if waited + answer.wait > self.max_wait:
                self._count(PROVIDER_WAITS, limit=answer.limit, how="requeued")
                delay = answer.wait * random.uniform(1.0, 1.1)  # spread the tasks that wait for the same moment
                raise Throttled(f"{self.role} endpoint {self.labels['endpoint']}: waiting {delay:.1f} s for its "
                                f"{answer.limit} limit ({self.setting_prefix}_{answer.limit.upper()})",
                                retry_after=delay, limit=answer.limit)
            time.sleep(answer.wait)
            waited += answer.wait

    def _done(self, call: Call, charge: Charge | None) -> None:
        try:
            if self.limiter is not None and call.grant is not None:
                if call.tokens is not None and self.limits.tpm:
                    self.limiter.settle(call.grant, sum(call.tokens))
                self.limiter.release(call.grant)
        except Exception as exc:  # the grant lapses on its own; never fail a request for this
            log.warning("could not settle a %s grant: %s", self.role, exc)
        tokens_in, tokens_out = call.tokens or (0, 0)
        cost = self.prices.cost(tokens_in, tokens_out, call.cached_tokens, call.audio_seconds)
        if call.reservation and self.budget is not None:
            with contextlib.suppress(Exception):  # a reservation left high only errs on the safe side
                self.budget.settle(call.reservation, cost - call.reserved)
        self._count(PROVIDER_REQUESTS, status=call.status)
        for direction, n in (("input", tokens_in), ("output", tokens_out), ("cached", call.cached_tokens)):
            if n:
                self._count(PROVIDER_TOKENS, n, direction=direction)
        if call.audio_seconds:
            self._count(PROVIDER_AUDIO, call.audio_seconds)
        if cost:
            self._count(PROVIDER_COST, cost)
        if self.usage is not None and charge is not None and (cost or call.cached_tokens):
            with contextlib.suppress(Exception):
                self.usage(charge.run_id, charge.step, {"cached_tokens": call.cached_tokens, "cost_usd": cost})

    def _count(self, family: Any, amount: float = 1.0, **labels: str) -> None:
        if self.metrics is not None:
            self.metrics.inc(family, {**self.labels, **labels}, amount)
