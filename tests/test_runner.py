"""The runner's promises, task by task on a real Redis broker: duplicates emit once, stored artifacts
are reused, transient errors retry, permanent ones fail the run, bad messages never kill a worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from schemas.events import RunRequested, Step, StepSucceeded
from tests.conftest import make_audio
from tests.pipeline_checks import event_trail
from workers import keys
from workers.app import create_app
from workers.delivery import Outcome
from workers.errors import PermanentError, TransientError
from workers.retry import POLICIES, RetryPolicy
from workers.settings import load_settings
from workers.submit import resolve_source, submit
from workers.tasks import SPECS


@pytest.fixture()
def app(tmp_path: Path, clean_redis: redis.Redis, redis_url: str, simulator: str) -> Iterator[Any]:
    settings = load_settings(broker_url=redis_url, data_dir=tmp_path / "data", transcription_base_url=simulator,
                             llm_base_url=simulator)
    yield create_app(settings)


def _queued(client: redis.Redis, step: Step) -> list[dict[str, Any]]:
    """Messages waiting on a step's queue (kombu keeps a Redis list per queue)."""
    import json

    return [json.loads(m) for m in client.lrange(keys.QUEUES[step], 0, -1)]


def _requested(app: Any, tmp_path: Path) -> RunRequested:
    rt = app.pressroom
    source, video_id = resolve_source(str(make_audio(tmp_path / "t.wav", 8)), rt)
    spec = submit(app, rt, source, video_id)
    return RunRequested(run=spec)


def _apply(app: Any, step: Step, event: RunRequested | StepSucceeded) -> Any:
    return app.tasks[keys.task_name(step)].apply(args=[event.model_dump(mode="json")])


def test_a_duplicate_delivery_emits_one_event(app: Any, tmp_path: Path, clean_redis: redis.Redis) -> None:
    event = _requested(app, tmp_path)
    assert _apply(app, Step.download, event).result == "succeeded"
    assert _apply(app, Step.download, event).result == "duplicate"
    assert len(_queued(clean_redis, Step.transcribe)) == 1
    assert event_trail(app.pressroom.state, event.run_id) == ["run.requested:", "step.succeeded:download"]


def test_a_stored_artifact_is_reused_not_recomputed(app: Any, tmp_path: Path, clean_redis: redis.Redis,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    first = _requested(app, tmp_path)
    assert _apply(app, Step.download, first).result == "succeeded"
    calls: list[str] = []
    spec = SPECS[Step.download]
    monkeypatch.setitem(SPECS, Step.download, spec.__class__(
        spec.step, spec.outputs, spec.fingerprint, lambda *a: calls.append("ran") or Outcome({}), spec.reusable))
    second = _requested(app, tmp_path)  # a new run of the same file
    assert app.tasks[keys.task_name(Step.download)].apply(args=[second.model_dump(mode="json")]).result == "reused"
    assert calls == []
    done = app.pressroom.state.events(second.run_id)[-1]
    assert isinstance(done, StepSucceeded) and done.reused
    assert done.artifacts == app.pressroom.state.events(first.run_id)[-1].artifacts


def _break_step(monkeypatch: pytest.MonkeyPatch, step: Step, error: Exception) -> None:
    spec = SPECS[step]

    def handler(*args: Any) -> Outcome:
        raise error

    monkeypatch.setitem(SPECS, step, spec.__class__(spec.step, spec.outputs, spec.fingerprint, handler, False))


def test_transient_error_retries_then_fails_with_last_error(app: Any, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """apply() runs retries at once (eagerly); in a worker each waits its backoff."""
    event = _requested(app, tmp_path)
    seen: list[tuple[int, float]] = []
    state = app.pressroom.state
    original = state.step_retrying
    monkeypatch.setattr(state, "step_retrying", lambda run_id, step, attempt, error, delay: (
        seen.append((attempt, delay)), original(run_id, step, attempt, error, delay)))
    _break_step(monkeypatch, Step.download, TransientError("server busy (503)", retry_after=7))
    assert _apply(app, Step.download, event).state == "FAILURE"
    policy = POLICIES[Step.download]
    assert [a for a, _ in seen] == list(range(1, policy.max_retries + 1))
    assert all(7 <= d <= max(7, policy.backoff_max) for _, d in seen)  # honours Retry-After, capped
    run = state.run(event.run_id)
    assert run["status"] == "failed"
    assert run["error"] == f"download failed: server busy (503) (gave up after {policy.max_retries + 1} attempts)"
    # the dashboard's last-hour tallies count every retry and the final failure
    assert state.tallies(Step.download) == {"succeeded": 0, "failed": 1, "retried": policy.max_retries}


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(max_retries=10, backoff=2, backoff_max=60, time_limit=100)
    for attempt in range(1, 11):
        cap = min(60, 2 * 2 ** (attempt - 1))
        delays = {policy.delay(attempt) for _ in range(50)}
        assert all(cap / 2 <= d <= cap for d in delays) and len(delays) > 1
    assert policy.delay(1, retry_after=30) >= 30


def test_permanent_error_fails_the_run_at_once(app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               clean_redis: redis.Redis) -> None:
    event = _requested(app, tmp_path)
    _break_step(monkeypatch, Step.download, PermanentError("private video: cannot download it"))
    assert _apply(app, Step.download, event).state == "FAILURE"
    run = app.pressroom.state.run(event.run_id)
    assert run["status"] == "failed" and run["error"] == "download failed: private video: cannot download it"
    assert event_trail(app.pressroom.state, event.run_id) == ["run.requested:", "step.failed:download"]
    assert _queued(clean_redis, Step.transcribe) == []


def test_a_bug_fails_the_run_with_its_traceback(app: Any, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    event = _requested(app, tmp_path)
    _break_step(monkeypatch, Step.download, ZeroDivisionError("division by zero"))
    assert _apply(app, Step.download, event).state == "FAILURE"
    run = app.pressroom.state.run(event.run_id)
    assert "unexpected ZeroDivisionError" in run["error"] and "Traceback" in run["download.traceback"]


def test_a_malformed_message_is_dropped_not_fatal(app: Any) -> None:
    task = app.tasks[keys.task_name(Step.transcribe)]
    for payload in ({"kind": "step.succeeded", "junk": 1}, {}):
        result = task.apply(args=[payload])  # acked, and shown as a failure (Celery's FAILURE), never raised on
        assert result.state == "FAILURE" and "malformed transcribe message dropped" in str(result.result)


def test_a_video_outside_its_channels_limits_is_skipped_not_failed(app: Any, tmp_path: Path,
                                                                   clean_redis: redis.Redis) -> None:
    rt = app.pressroom
    source, video_id = resolve_source(str(make_audio(tmp_path / "short.wav", 8)), rt)
    spec = submit(app, rt, source, video_id, channel_id="UC" + "a" * 22, min_duration=300.0)
    assert _apply(app, Step.download, RunRequested(run=spec)).result == "succeeded"
    downloaded = rt.state.events(spec.run_id)[-1]
    assert _apply(app, Step.transcribe, downloaded).result == "skipped"
    run = rt.state.run(spec.run_id)
    assert run["status"] == "skipped" and "shorter than the channel's minimum 5.0 min" in run["skipped"]
    assert event_trail(rt.state, spec.run_id)[-1] == "run.skipped:transcribe"
    assert _queued(clean_redis, Step.translate) == []
