"""Shared provider limits (requests and tokens per minute, requests in flight, a 429's pause) across
processes through the real Redis, the gate every provider request passes, and a throttled delivery that
goes back to the queue without using one of the step's retries. Fair order: a long talk's messages wait
behind a short video's in the real broker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from schemas.artifacts import VideoSource
from schemas.events import RunRequested, Step, StepSucceeded
from schemas.run import RunSpec
from tests.conftest import make_audio
from workers import keys
from workers.app import create_app
from workers.errors import PermanentError, Throttled, TransientError
from workers.fairness import priority
from workers.metrics.families import PROVIDER_REQUESTS, PROVIDER_WAITS, TASK_OUTCOMES
from workers.metrics.store import MetricsStore
from workers.providers.gate import ProviderGate
from workers.providers.limiter import Limiter, Limits, MemoryLimiter, RedisLimiter
from workers.settings import load_settings
from workers.submit import resolve_source, submit
from workers.tasks import SPECS


@pytest.fixture(params=["redis", "memory"])
def make_limiter(request: pytest.FixtureRequest, clean_redis: redis.Redis, redis_url: str) -> Any:
    def make(limits: Limits, window: float = 1.0) -> Limiter:
        if request.param == "memory":
            return MemoryLimiter(limits, window=window)
        return RedisLimiter(redis.Redis.from_url(redis_url, decode_responses=True), "ep1", limits, window=window)

    return make


def test_requests_per_window_and_the_exact_wait(make_limiter: Any) -> None:
    limiter = make_limiter(Limits(rpm=3), window=1.0)
    granted = [limiter.try_acquire(0, 10) for _ in range(3)]
    assert all(a.grant for a in granted)
    refused = limiter.try_acquire(0, 10)
    assert refused.grant is None and refused.limit == "rpm" and 0.5 < refused.wait <= 1.0
    time.sleep(refused.wait + 0.02)
    assert limiter.try_acquire(0, 10).grant is not None


def test_tokens_per_window_count_what_was_used(make_limiter: Any) -> None:
    limiter = make_limiter(Limits(tpm=100), window=5.0)
    first = limiter.try_acquire(60, 10)
    assert first.grant
    refused = limiter.try_acquire(50, 10)
    assert refused.grant is None and refused.limit == "tpm" and refused.wait > 4
    limiter.settle(first.grant, 10)  # the answer used far less than estimated
    assert limiter.try_acquire(50, 10).grant


def test_requests_in_flight_and_a_pause(make_limiter: Any) -> None:
    limiter = make_limiter(Limits(concurrency=2), window=5.0)
    a, b = limiter.try_acquire(0, 10), limiter.try_acquire(0, 10)
    assert a.grant and b.grant
    assert limiter.try_acquire(0, 10).limit == "concurrency"
    limiter.release(a.grant)
    assert limiter.try_acquire(0, 10).grant
    limiter.pause(0.3)
    paused = limiter.try_acquire(0, 10)
    assert paused.limit == "pause" and 0 < paused.wait <= 0.3


def test_the_limits_are_shared_by_separate_clients(clean_redis: redis.Redis, redis_url: str) -> None:
    """Two workers' limiters (separate connections) draw on one allowance; another endpoint has its own."""
    one, two = (RedisLimiter(redis.Redis.from_url(redis_url), "ep", Limits(rpm=4), window=30) for _ in range(2))
    assert [bool(x.try_acquire(0, 10).grant) for x in (one, two, one, two, one, two)] == [True] * 4 + [False] * 2
    other = RedisLimiter(redis.Redis.from_url(redis_url), "other", Limits(rpm=4), window=30)
    assert other.try_acquire(0, 10).grant


def test_a_held_slot_lapses_when_its_holder_dies(clean_redis: redis.Redis, redis_url: str) -> None:
    limiter = RedisLimiter(redis.Redis.from_url(redis_url), "ep", Limits(concurrency=1))
    assert limiter.try_acquire(0, lease=0.2).grant  # never released: its process died
    assert limiter.try_acquire(0, lease=0.2).limit == "concurrency"
    time.sleep(0.25)
    assert limiter.try_acquire(0, lease=0.2).grant


def _gate(limiter: Limiter, limits: Limits, metrics: MetricsStore | None = None, max_wait: float = 0.0) -> ProviderGate:
    return ProviderGate("llm", "http://llm.example/v1", "m", limiter=limiter, limits=limits, metrics=metrics,
                        max_wait=max_wait, setting_prefix="PRESSROOM_LLM")


def test_the_gate_waits_briefly_in_place_and_hands_longer_waits_back(clean_redis: redis.Redis,
                                                                     redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    metrics = MetricsStore(client)
    limits = Limits(rpm=1)
    slow = _gate(RedisLimiter(client, "ep", limits, window=0.3), limits, metrics, max_wait=1.0)
    with slow.request() as call:
        call.ok(input_tokens=10, output_tokens=5)
    started = time.monotonic()
    with slow.request() as call:  # waits ~0.3 s in place: within PRESSROOM_PROVIDER_MAX_WAIT
        call.ok()
    assert 0.2 < time.monotonic() - started < 1.0
    strict = _gate(RedisLimiter(client, "ep2", limits, window=30), limits, metrics, max_wait=1.0)
    with strict.request() as call:
        call.ok()
    with pytest.raises(Throttled) as raised, strict.request():
        pass
    assert raised.value.limit == "rpm" and 29 < (raised.value.retry_after or 0) < 34
    assert "PRESSROOM_LLM_RPM" in str(raised.value)
    series = metrics.read()
    endpoint = ("llm", "llm.example")
    assert series[(PROVIDER_REQUESTS.name, (*endpoint, "ok"), None)] == 3
    assert series[(PROVIDER_WAITS.name, (*endpoint, "any", "slept"), None)] == 1
    assert series[(PROVIDER_WAITS.name, (*endpoint, "rpm", "requeued"), None)] == 1


def test_a_429_pauses_every_worker_and_is_a_wait_not_a_retry(clean_redis: redis.Redis, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    limits = Limits(rpm=100)
    gate = _gate(RedisLimiter(client, "ep", limits), limits)
    with gate.request() as call:
        error = call.failed(429, TransientError("LLM server: rate limited (429)", retry_after=20))
    assert isinstance(error, Throttled) and error.retry_after == 20
    elsewhere = _gate(RedisLimiter(redis.Redis.from_url(redis_url), "ep", limits), limits)  # another worker
    with pytest.raises(Throttled) as raised, elsewhere.request():
        pass
    assert raised.value.limit == "pause" and 18 < (raised.value.retry_after or 0) <= 22


def test_a_request_larger_than_the_token_limit_is_refused_with_the_setting(make_limiter: Any) -> None:
    limits = Limits(tpm=1000)
    gate = _gate(make_limiter(limits), limits)
    with pytest.raises(PermanentError, match="PRESSROOM_LLM_TPM=1,000"), gate.request(5000):
        pass


@pytest.fixture()
def app(tmp_path: Path, clean_redis: redis.Redis, redis_url: str, simulator: str) -> Iterator[Any]:
    settings = load_settings(broker_url=redis_url, data_dir=tmp_path / "data", transcription_base_url=simulator,
                             llm_base_url=simulator)
    yield create_app(settings)


def test_a_throttled_delivery_waits_without_using_a_retry(app: Any, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Eagerly applied, the task's retries run at once: throttled more times than a message may be delivered
    to dying workers (max_deliveries), then through, on the step's first attempt."""
    rt = app.pressroom
    source, video_id = resolve_source(str(make_audio(tmp_path / "t.wav", 5)), rt)
    event = RunRequested(run=submit(app, rt, source, video_id))
    spec = SPECS[Step.download]
    real = spec.handler
    assert real is not None
    calls: list[int] = []

    def throttled(*args: Any) -> Any:
        calls.append(1)
        if len(calls) <= 6:
            raise Throttled("waiting 0.0 s for the rpm limit", retry_after=0.0, limit="rpm")
        return real(*args)

    monkeypatch.setitem(SPECS, Step.download, spec.__class__(spec.step, spec.outputs, spec.fingerprint, throttled))
    result = app.tasks[keys.task_name(Step.download)].apply(args=[event.model_dump(mode="json")])
    assert result.result == "succeeded" and len(calls) == 7
    run = rt.state.view(event.run_id)
    assert run is not None and run.of(Step.download).redeliveries == 0
    assert rt.state.events(event.run_id)[-1].attempt == 1  # no retry of the step's policy was used
    series = rt.metrics.read()
    assert series.get((TASK_OUTCOMES.name, ("download", "step", "waited"), None)) == 6, series
    assert (TASK_OUTCOMES.name, ("download", "step", "retried"), None) not in series
    assert series[(TASK_OUTCOMES.name, ("download", "step", "succeeded"), None)] == 1


def _event(minutes: float | None, name: str) -> StepSucceeded:
    spec = RunSpec(run_id=name, video_id=name, source=VideoSource(kind="file", uri=f"uploads/x/{name}.wav"))
    return StepSucceeded(run=spec, step=Step.download, attempt=1,
                         duration=minutes * 60 if minutes is not None else None)


def test_priority_grows_with_the_sources_length() -> None:
    assert [priority(_event(m, "r")) for m in (None, 5, 10, 15, 60, 180, 100000)] == [0, 0, 0, 1, 3, 5, 9]


def test_a_short_videos_message_is_taken_before_a_long_talks_waiting_ones(app: Any) -> None:
    """Through the real broker: the long talk's messages were sent first, the worker's fetch takes the
    short video's first (kombu serves the priority lists in order)."""
    from workers.events import send

    for i in range(3):
        send(app, _event(180, f"long{i}"))
    send(app, _event(5, "short"))
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(keys.QUEUES[Step.transcribe], no_ack=True)
        order = []
        for _ in range(4):
            message = queue.get(timeout=5)
            args = message.payload[0]  # Celery's protocol 2 body: [args, kwargs, embed]
            order.append(args[0]["run"]["run_id"])
        queue.close()
    assert order == ["short", "long0", "long1", "long2"]
