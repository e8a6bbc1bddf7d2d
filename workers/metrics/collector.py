"""The Prometheus collector: stored counters and histograms from Redis, and gauges from the queue monitor's
latest snapshot (queues, workers, runs), so a scrape never waits on the broker."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from schemas.pipeline import RunStatus, Step
from workers.metrics import families as f
from workers.metrics.store import MetricsStore, _bound


class PressroomCollector(Collector):
    def __init__(self, store: MetricsStore, snapshot: Any) -> None:
        self.store = store
        self.snapshot = snapshot  # () -> the QueueMonitor's snapshot

    def collect(self) -> Iterator[Metric]:
        yield from self._stored()
        yield from self._scraped()

    def _stored(self) -> Iterator[Metric]:
        # the outcomes alerts divide, at zero before anything happens: rate() and increase() then see the first
        series = {**ZEROS, **self.store.read()}
        for family in f.STORED:
            if family.kind == "counter":
                counter = CounterMetricFamily(family.name, family.help, labels=family.labels)
                for (name, values, _le), value in sorted(series.items()):
                    if name == family.name:
                        counter.add_metric(list(values), value)
                yield counter
            else:
                yield _histogram(family, series)

    def _scraped(self) -> Iterator[Metric]:
        snap = self.snapshot()
        known = snap.get("status") == "ok"
        gauges = {fam.name: GaugeMetricFamily(fam.name, fam.help, labels=fam.labels)
                  for fam in (f.QUEUE_WAITING, f.QUEUE_UNACKED, f.QUEUE_SCHEDULED, f.QUEUE_OLDEST_AGE,
                              f.QUEUE_WORKERS)}
        if known:
            for q in snap["queues"]:
                labels = [q["queue"], q["step"] or ""]
                gauges[f.QUEUE_WAITING.name].add_metric(labels, q["depth"])
                gauges[f.QUEUE_UNACKED.name].add_metric(labels, q["unacked"])
                gauges[f.QUEUE_SCHEDULED.name].add_metric(labels, q["scheduled"])
                gauges[f.QUEUE_OLDEST_AGE.name].add_metric(labels, q["oldest_age"] or 0.0)
                gauges[f.QUEUE_WORKERS.name].add_metric(labels, len(q["workers"] or []))
        yield from gauges.values()
        yield GaugeMetricFamily(f.BROKER_UP.name, f.BROKER_UP.help, value=1.0 if known else 0.0)
        runs = snap.get("runs")
        if runs is not None:
            by_status = GaugeMetricFamily(f.RUNS.name, f.RUNS.help, labels=f.RUNS.labels)
            for status in RunStatus:
                by_status.add_metric([status.value], runs.get(status.value, 0))
            yield by_status
            yield GaugeMetricFamily(f.RUNS_STALLED.name, f.RUNS_STALLED.help, value=snap.get("stalled") or 0)


def _zeros() -> dict[tuple[str, tuple[str, ...], str | None], float]:
    from workers.tasks import SPECS

    kinds = {step: ("step", "part") if SPECS[step].fanout else ("step",) for step in Step}
    return {
        **{(f.TASK_OUTCOMES.name, (step.value, kind, outcome), None): 0.0
           for step in Step for kind in kinds[step] for outcome in ("succeeded", "reused", "failed", "retried")},
        (f.RUNS_REDRIVEN.name, (), None): 0.0,
    }


ZEROS = _zeros()


def _histogram(family: f.Family, series: dict[tuple[str, tuple[str, ...], str | None], float]) -> Metric:
    hist = HistogramMetricFamily(family.name, family.help, labels=family.labels)
    buckets: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
    sums: dict[tuple[str, ...], float] = {}
    for (name, values, le), value in series.items():
        if name == family.name + "_bucket" and le is not None:
            buckets[values][le] = value
        elif name == family.name + "_sum":
            sums[values] = value
    for values, counts in sorted(buckets.items()):
        cumulative, out = 0.0, []
        for bound in [*family.buckets, math.inf]:
            le = "+Inf" if bound == math.inf else _bound(bound)
            cumulative += counts.get(le, 0.0)
            out.append((le, cumulative))
        hist.add_metric(list(values), out, sums.get(values, 0.0))
    return hist


def registry(store: MetricsStore, snapshot: Any) -> CollectorRegistry:
    """A registry of Pressroom's metrics alone (no process metrics of whichever process serves them)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(PressroomCollector(store, snapshot))
    return reg
