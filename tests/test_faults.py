"""Nothing lost to an infrastructure fault: Redis or the object store failing anywhere in a delivery retries
the delivery (never acks a run into limbo), a joiner that dies under its lease does not stop the join, and
the store's own outage is ridden out by real worker processes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from schemas.events import RunRequested, Step
from tests.conftest import make_audio
from tests.harness import TcpProxy, pressroom_env, workers
from tests.pipeline_checks import STEPS, SUCCESS_TRAIL, event_trail, wait_for_runs
from workers import delivery, keys
from workers.app import create_app
from workers.embedded import embedded_worker
from workers.errors import InfrastructureFault
from workers.follow import follow_run
from workers.retry import RetryPolicy
from workers.settings import load_settings
from workers.state import RunState
from workers.storage import open_store
from workers.submit import resolve_source, submit


@pytest.fixture()
def app(tmp_path: Path, clean_redis: redis.Redis, redis_url: str, simulator: str) -> Iterator[Any]:
    settings = load_settings(broker_url=redis_url, data_dir=tmp_path / "data", transcription_base_url=simulator,
                             llm_base_url=simulator)
    yield create_app(settings)


def _requested(app: Any, tmp_path: Path) -> RunRequested:
    rt = app.pressroom
    source, video_id = resolve_source(str(make_audio(tmp_path / "t.wav", 8)), rt)
    return RunRequested(run=submit(app, rt, source, video_id))


def _apply(app: Any, step: Step, event: Any) -> Any:
    return app.tasks[keys.task_name(step)].apply(args=[event.model_dump(mode="json")])


def _failing(times: int, error: Exception, real: Any) -> Any:
    """real, but raising error the first `times` calls."""
    calls = {"n": 0}

    def call(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= times:
            raise error
        return real(*args, **kwargs)

    return call


def test_a_store_outage_outside_the_step_retries_the_delivery(app: Any, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's own `exists` check fails twice: the delivery comes back (apply() runs retries at once)
    and the step succeeds on its first try of its own policy; nothing is acked into limbo."""
    event = _requested(app, tmp_path)
    store = app.pressroom.store
    monkeypatch.setattr(store, "exists", _failing(2, InfrastructureFault("object store down"), store.exists))
    assert _apply(app, Step.download, event).result == "succeeded"
    run = app.pressroom.state.run(event.run_id)
    assert run["download.status"] == "succeeded" and run["download.attempts"] == "3"  # three deliveries
    done = app.pressroom.state.events(event.run_id)[-1]
    assert done.kind == "step.succeeded" and done.attempt == 1  # the step's own retries were not used
    assert event_trail(app.pressroom.state, event.run_id) == ["run.requested:", "step.succeeded:download"]


def test_redis_failing_after_the_event_was_sent_logs_it_once(app: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             clean_redis: redis.Redis) -> None:
    """Redis drops the connection between sending the next event and recording success: the retried
    delivery only completes the record; the next step is sent once and the event logged once."""
    event = _requested(app, tmp_path)
    state = app.pressroom.state
    monkeypatch.setattr(state, "step_succeeded", _failing(1, redis.ConnectionError("Connection reset by peer"),
                                                          state.step_succeeded))
    assert _apply(app, Step.download, event).result == "duplicate"  # the retry found the event sent
    assert state.run(event.run_id)["download.status"] == "succeeded"
    assert event_trail(state, event.run_id) == ["run.requested:", "step.succeeded:download"]
    assert clean_redis.llen(keys.QUEUES[Step.transcribe]) == 1


def test_a_fault_inside_the_step_does_not_use_up_its_retries(app: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    event = _requested(app, tmp_path)
    store = app.pressroom.store
    monkeypatch.setattr(store, "put_file", _failing(6, InfrastructureFault("object store down"), store.put_file))
    assert _apply(app, Step.download, event).result == "succeeded"  # 6 faults > the step's 5 retries
    assert app.pressroom.state.events(event.run_id)[-1].attempt == 1


def test_a_fault_that_never_ends_fails_the_run_visibly(app: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    event = _requested(app, tmp_path)
    monkeypatch.setattr(delivery, "INFRA_POLICY", RetryPolicy(max_retries=3, backoff=0.01, backoff_max=0.01,
                                                            time_limit=0))
    monkeypatch.setattr(app.pressroom.store, "exists", _failing(99, InfrastructureFault("object store down"),
                                                                app.pressroom.store.exists))
    assert _apply(app, Step.download, event).state == "FAILURE"
    run = app.pressroom.state.run(event.run_id)
    assert run["status"] == "failed" and run["error"] == "download failed: object store down (gave up after 4 tries)"


def test_a_joiner_that_died_under_its_lease_does_not_stop_the_join(tmp_path: Path, simulator: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The part that completed the set took the join lease and died: the last part's delivery finds the
    lease held, comes back when it could have lapsed, and joins."""
    monkeypatch.setattr(delivery, "EMIT_LEASE", 2)
    settings = load_settings(data_dir=tmp_path / "data", transcription_base_url=simulator, llm_base_url=simulator)
    app = create_app(settings)
    rt = app.pressroom
    source, video_id = resolve_source(str(make_audio(tmp_path / "t.wav", 20)), rt)
    claimed: list[str] = []
    real_part_done = rt.state.part_done

    def part_done(run_id: str, step: Step, digest: str, index: int) -> int:
        done = real_part_done(run_id, step, digest, index)
        if step is Step.translate and not claimed:  # a joiner takes the lease here, then dies
            key = keys.emit_key(run_id, step, digest)
            assert rt.state.claim_emit(key, 2)
            claimed.append(key)
        return done

    monkeypatch.setattr(rt.state, "part_done", part_done)
    with embedded_worker(app, 2):
        spec = submit(app, rt, source, video_id)
        run = follow_run(rt.state, spec.run_id, timeout=60, out=open("/dev/null", "w"))  # noqa: SIM115
    assert claimed and run.status == "succeeded", run
    assert event_trail(rt.state, spec.run_id) == SUCCESS_TRAIL


def test_workers_ride_out_an_object_store_outage(tmp_path: Path, clean_redis: redis.Redis, redis_url: str,
                                                 s3_url: str, s3_endpoint: str, simulator: str) -> None:
    """Real worker processes, S3 behind a proxy that is cut for 8 s while runs are in flight: every run
    finishes, each step's event once, one post per run."""
    proxy = TcpProxy(int(s3_endpoint.rsplit(":", 1)[1]))
    env = pressroom_env(
        PRESSROOM_BROKER_URL=redis_url, PRESSROOM_STORAGE_URL=s3_url, PRESSROOM_S3_ENDPOINT_URL=proxy.url,
        PRESSROOM_S3_ACCESS_KEY_ID="test", PRESSROOM_S3_SECRET_ACCESS_KEY="test",
        PRESSROOM_TRANSCRIPTION_BASE_URL=simulator, PRESSROOM_LLM_BASE_URL=simulator)
    files = [make_audio(tmp_path / f"talk-{i}.wav", 15 + 5 * i, 300 + 50 * i) for i in range(3)]
    state = RunState(redis.Redis.from_url(redis_url, decode_responses=True))
    with workers(STEPS, env, tmp_path / "logs"):
        import subprocess

        from tests.harness import PRESSROOM

        out = subprocess.run([*PRESSROOM, "submit", *map(str, files)], env=env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        run_ids = out.stdout.split()
        deadline = time.monotonic() + 30
        while not any(state.run(r).get("transcribe.status") for r in run_ids) and time.monotonic() < deadline:
            time.sleep(0.05)
        proxy.cut()
        threading.Timer(8.0, proxy.restore).start()
        runs = wait_for_runs(state, run_ids, timeout=120)
    assert {r["status"] for r in runs.values()} == {"succeeded"}, runs
    for run_id in run_ids:
        assert event_trail(state, run_id) == SUCCESS_TRAIL
    store = open_store(s3_url, endpoint_url=s3_endpoint, access_key_id="test", secret_access_key="test")
    assert len(list(store.list("posts/"))) == 3
