"""Counters and histograms kept in one Redis hash, so every process of every worker adds to the same series.

prometheus-client's own counters live in one process; Celery's prefork pool and replicas on other hosts
would each keep their own (and lose them when a process is recycled or a pod scaled in). Here a series is a
hash field (its family and labels as JSON) incremented with HINCRBYFLOAT; the exporter reads the hash back.
Histogram buckets are stored per bucket, not cumulated; the collector cumulates them.

Recording never fails a task: Redis being down loses the increments of that moment, with a warning.
"""

from __future__ import annotations

import bisect
import json
import logging
from typing import Any

from workers import keys
from workers.metrics.families import Family

log = logging.getLogger("pressroom.metrics")


def field(family: Family, labels: dict[str, str], suffix: str = "", le: str | None = None) -> str:
    """The hash field of one series: [name+suffix, [label values in the family's order], le]."""
    values = [str(labels.get(name, "")) for name in family.labels]
    return json.dumps([family.name + suffix, values, le], separators=(",", ":"))


class MetricsStore:
    """Adds to Pressroom's counters and histograms in Redis (or the embedded mode's in-memory stand-in)."""

    def __init__(self, kv: Any) -> None:
        self.kv = kv

    def inc(self, family: Family, labels: dict[str, str], amount: float = 1.0) -> None:
        self.add(increment(family, labels, amount))

    def observe(self, family: Family, labels: dict[str, str], value: float) -> None:
        self.add(observation(family, labels, value))

    def add(self, amounts: dict[str, float]) -> None:
        """Add these amounts to their series, in one round trip."""
        key = keys.metrics_key()
        try:
            if hasattr(self.kv, "pipeline"):
                pipe = self.kv.pipeline(transaction=False)
                for name, amount in amounts.items():
                    pipe.hincrbyfloat(key, name, amount)
                pipe.execute()
            else:
                for name, amount in amounts.items():
                    self.kv.hincrbyfloat(key, name, amount)
        except Exception as exc:  # metrics must never fail the work they measure
            log.warning("could not record metrics (%s: %s)", type(exc).__name__, str(exc)[:200])

    def read(self) -> dict[tuple[str, tuple[str, ...], str | None], float]:
        """Every stored series: (name, label values, le) → value."""
        out: dict[tuple[str, tuple[str, ...], str | None], float] = {}
        for raw, value in (self.kv.hgetall(keys.metrics_key()) or {}).items():
            try:
                name, values, le = json.loads(raw)
                out[(str(name), tuple(str(v) for v in values), le)] = float(value)
            except (ValueError, TypeError):
                continue
        return out


def increment(family: Family, labels: dict[str, str], amount: float = 1.0) -> dict[str, float]:
    return {field(family, labels): amount}


def observation(family: Family, labels: dict[str, str], value: float) -> dict[str, float]:
    """One observation: its bucket (the first bound at or above it, or +Inf), the sum and the count."""
    i = bisect.bisect_left(family.buckets, value)
    le = "+Inf" if i == len(family.buckets) else _bound(family.buckets[i])
    return {field(family, labels, "_bucket", le): 1, field(family, labels, "_sum"): value,
            field(family, labels, "_count"): 1}


def _bound(value: float) -> str:
    """A bucket bound as Prometheus writes it (1.0, 2.5, +Inf)."""
    return repr(float(value))
