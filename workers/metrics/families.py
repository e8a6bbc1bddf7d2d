"""Every metric Pressroom exports, declared once: its name, type, help and labels.

Counters and histograms are kept in Redis (keys.metrics_key), so every worker process on every host adds to
the same series and one scrape of the exporter sees them all; gauges are read from the broker and run
state when scraped (workers/metrics/collector.py). Alert rules and the Grafana dashboard in infra/ use
these names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str  # without the _total suffix a counter is exposed with
    kind: str  # "counter", "histogram" or "gauge"
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)

# --- kept in Redis, added to by workers -----------------------------------------------------------------
TASK_OUTCOMES = Family(
    "pressroom_task_outcomes", "counter",
    "Deliveries of a step's task (kind=step) or of one of its parts (kind=part), by how they ended: succeeded, "
    "reused, failed, retried, waited (for a provider limit), skipped, duplicate, part-done, fanned-out, stale, "
    "cancelled, malformed.",
    ("step", "kind", "outcome"))
TASK_DURATION = Family(
    "pressroom_task_duration_seconds", "histogram",
    "Wall time of one delivery of a step's task or part, whatever its outcome.",
    ("step", "kind"), DURATION_BUCKETS)
PROVIDER_REQUESTS = Family(
    "pressroom_provider_requests", "counter",
    "Requests to a provider (role llm or transcription) by answer: ok, 429, 5xx, 4xx, timeout, error.",
    ("role", "endpoint", "status"))
PROVIDER_TOKENS = Family(
    "pressroom_provider_tokens", "counter", "Tokens a provider reported using, by direction (input, output).",
    ("role", "endpoint", "direction"))
PROVIDER_AUDIO = Family(
    "pressroom_provider_audio_seconds", "counter", "Seconds of audio sent for transcription.", ("role", "endpoint"))
PROVIDER_COST = Family(
    "pressroom_provider_cost_usd", "counter",
    "Estimated spend at the configured prices (PRESSROOM_LLM_USD_PER_MILLION_*, "
    "PRESSROOM_TRANSCRIPTION_USD_PER_MINUTE).", ("role", "endpoint"))
PROVIDER_WAITS = Family(
    "pressroom_provider_limit_waits", "counter",
    "Requests that had to wait for the endpoint's shared limits, by limit (rpm, tpm, concurrency, pause) and "
    "how (slept in the task, or handed back to the queue).", ("role", "endpoint", "limit", "how"))
RUNS_REDRIVEN = Family(
    "pressroom_runs_redriven", "counter", "Runs the reconciler found stalled and re-drove.", ())

# --- read when scraped -----------------------------------------------------------------------------------
QUEUE_WAITING = Family("pressroom_queue_waiting", "gauge",
                       "Messages waiting in a queue, at every priority.", ("queue", "step"))
QUEUE_UNACKED = Family("pressroom_queue_unacked", "gauge",
                       "Messages delivered to a worker and not yet acked (running, prefetched or scheduled).",
                       ("queue", "step"))
QUEUE_SCHEDULED = Family("pressroom_queue_scheduled", "gauge",
                         "Messages held by a worker until a retry's countdown ends.", ("queue", "step"))
QUEUE_OLDEST_AGE = Family("pressroom_queue_oldest_age_seconds", "gauge",
                          "Age of the oldest waiting message's event (0 when none waits).", ("queue", "step"))
QUEUE_WORKERS = Family("pressroom_queue_workers", "gauge",
                       "Worker nodes consuming a queue (those that answered the last control broadcast).",
                       ("queue", "step"))
BROKER_UP = Family("pressroom_broker_up", "gauge",
                   "1 when the last round read the broker and the workers; 0 when it could not.", ())
RUNS = Family("pressroom_runs", "gauge", "Runs by status.", ("status",))
RUNS_STALLED = Family("pressroom_runs_stalled", "gauge",
                      "Active runs with no progress for longer than PRESSROOM_STALL_AFTER.", ())

STORED = (TASK_OUTCOMES, TASK_DURATION, PROVIDER_REQUESTS, PROVIDER_TOKENS, PROVIDER_AUDIO, PROVIDER_COST,
          PROVIDER_WAITS, RUNS_REDRIVEN)
SCRAPED = (QUEUE_WAITING, QUEUE_UNACKED, QUEUE_SCHEDULED, QUEUE_OLDEST_AGE, QUEUE_WORKERS, BROKER_UP, RUNS,
           RUNS_STALLED)
ALL = STORED + SCRAPED
