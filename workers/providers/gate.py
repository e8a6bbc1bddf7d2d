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
    audio_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def ok(self, *, input_tokens: int = 0, output_tokens: int = 0, audio_seconds: float = 0.0) -> None:
        self.status = "ok"
        self.tokens = (input_tokens, output_tokens)
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
                 setting_prefix: str = "") -> None:
        self.role, self.limits, self.limiter, self.metrics = role, limits, limiter, metrics
        self.prices, self.max_wait, self.lease, self.setting_prefix = prices, max_wait, lease, setting_prefix
        self.labels = {"role": role, "endpoint": urlparse(base_url).netloc or base_url}

    @contextlib.contextmanager
    def request(self, tokens: int = 0) -> Iterator[Call]:
        """Wait for the endpoint's limits (or raise Throttled), then let one request through."""
        grant = self._acquire(tokens)
        call = Call(self, grant)
        try:
            yield call
        finally:
            self._done(call, tokens)

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

    def _done(self, call: Call, estimated: int) -> None:
        try:
            if self.limiter is not None and call.grant is not None:
                if call.tokens is not None and self.limits.tpm:
                    self.limiter.settle(call.grant, sum(call.tokens))
                self.limiter.release(call.grant)
        except Exception as exc:  # the grant lapses on its own; never fail a request for this
            log.warning("could not settle a %s grant: %s", self.role, exc)
        self._count(PROVIDER_REQUESTS, status=call.status)
        cost = 0.0
        if call.tokens is not None and any(call.tokens):
            for direction, n in zip(("input", "output"), call.tokens, strict=True):
                self._count(PROVIDER_TOKENS, n, direction=direction)
            cost += (call.tokens[0] * self.prices.usd_per_million_input
                     + call.tokens[1] * self.prices.usd_per_million_output) / 1e6
        if call.audio_seconds:
            self._count(PROVIDER_AUDIO, call.audio_seconds)
            cost += call.audio_seconds / 60 * self.prices.usd_per_audio_minute
        if cost:
            self._count(PROVIDER_COST, cost)

    def _count(self, family: Any, amount: float = 1.0, **labels: str) -> None:
        if self.metrics is not None:
            self.metrics.inc(family, {**self.labels, **labels}, amount)
