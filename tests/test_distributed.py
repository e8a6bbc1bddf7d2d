"""The distributed mode for real: Redis broker and run state, S3 over HTTP (moto), one worker
process per queue, the simulator over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from schemas.artifacts import Transcript
from tests.conftest import make_audio
from tests.harness import PRESSROOM, pressroom_env, workers
from tests.pipeline_checks import STEPS, SUCCESS_TRAIL, assert_post_holds_transcript, event_trail, wait_for_runs
from workers.providers.simulator import SimulatorConfig, running_simulator
from workers.state import RunState
from workers.storage import get_model, open_store


def _env(redis_url: str, s3_url: str, s3_endpoint: str, simulator: str, **extra: str) -> dict[str, str]:
    return pressroom_env(
        PRESSROOM_BROKER_URL=redis_url, PRESSROOM_STORAGE_URL=s3_url, PRESSROOM_S3_ENDPOINT_URL=s3_endpoint,
        PRESSROOM_S3_ACCESS_KEY_ID="test", PRESSROOM_S3_SECRET_ACCESS_KEY="test",
        PRESSROOM_TRANSCRIPTION_BASE_URL=simulator, PRESSROOM_LLM_BASE_URL=simulator, **extra,
    )


def _submit(env: dict[str, str], *sources: Path) -> list[str]:
    out = subprocess.run([*PRESSROOM, "submit", *map(str, sources)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.fixture()
def state(clean_redis: redis.Redis, redis_url: str) -> Iterator[RunState]:
    yield RunState(redis.Redis.from_url(redis_url, decode_responses=True))


def test_three_files_through_redis_and_s3(tmp_path: Path, state: RunState, redis_url: str, s3_url: str,
                                          s3_endpoint: str, simulator: str) -> None:
    env = _env(redis_url, s3_url, s3_endpoint, simulator)
    files = [make_audio(tmp_path / f"talk-{i}.wav", 20 + 10 * i, 300 + 100 * i) for i in range(3)]
    with workers(STEPS, env, tmp_path / "logs"):
        run_ids = _submit(env, *files)
        assert len(run_ids) == 3
        runs = wait_for_runs(state, run_ids)
    assert {r["status"] for r in runs.values()} == {"succeeded"}, runs

    store = open_store(s3_url, endpoint_url=s3_endpoint, access_key_id="test", secret_access_key="test")
    posts = sorted(store.list("posts/"))
    assert [p.rsplit("-", 1)[-1] for p in posts] == ["0.md", "1.md", "2.md"]
    for run_id in run_ids:
        assert event_trail(state, run_id) == SUCCESS_TRAIL
        final = state.events(run_id)[-1]
        transcript = get_model(store, final.artifacts["transcript"], Transcript)
        assert_post_holds_transcript(store.get_bytes(final.artifacts["post"]).decode(), transcript)
        # each step ran on its own queue's worker
        assert {state.run(run_id)[f"{s}.worker"].split("@")[0] for s in STEPS} == set(STEPS)

    status = subprocess.run([*PRESSROOM, "status", run_ids[0]], env=env, capture_output=True, text=True)
    assert status.returncode == 0 and status.stdout.startswith(f"run {run_ids[0]}: succeeded")
    assert status.stdout.count(" succeeded") == 6  # the run and its five steps
    post_key = state.events(run_ids[0])[-1].artifacts["post"]
    bucket, prefix = s3_url.removeprefix("s3://").split("/", 1)
    assert status.stdout.splitlines()[-1] == f"post: s3://{bucket}/{prefix}/{post_key}"  # where to fetch it
    missing = subprocess.run([*PRESSROOM, "status", "no-such-run"], env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and "no run 'no-such-run'" in missing.stderr


def _wait_for(predicate, timeout: float = 60, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def test_sigkill_mid_step_reruns_the_step_once(tmp_path: Path, state: RunState, redis_url: str, s3_url: str,
                                               s3_endpoint: str) -> None:
    with running_simulator(SimulatorConfig(latency=2.0)) as slow_simulator:
        env = _env(redis_url, s3_url, s3_endpoint, slow_simulator)
        wav = make_audio(tmp_path / "killed.wav", 20)
        with workers(STEPS, env, tmp_path / "logs"):
            [run_id] = _submit(env, wav)
            _wait_for(lambda: state.run(run_id).get("translate.status") == "running", what="translate start")
            pid = int(state.run(run_id)["translate.pid"])
            assert pid != os.getpid()
            os.kill(pid, signal.SIGKILL)  # the pool process, in the middle of its LLM call
            runs = wait_for_runs(state, [run_id])
    run = runs[run_id]
    assert run["status"] == "succeeded", run
    # the step's task and its one part, one of them twice (the one killed came back: its attempt 2)
    assert int(run["translate.task.deliveries"]) + int(run["translate.part0.deliveries"]) == 3
    assert int(run["translate.deliveries"]) == 3
    assert int(run["translate.redeliveries"]) == 1 and int(run["translate.attempts"]) == 2
    assert int(run["translate.pid"]) != pid
    assert event_trail(state, run_id) == SUCCESS_TRAIL  # one event per step: nothing doubled
    store = open_store(s3_url, endpoint_url=s3_endpoint, access_key_id="test", secret_access_key="test")
    assert len(list(store.list("posts/"))) == 1
    assert len(list(store.list("videos/"))) == len(set(store.list("videos/")))
    assert len([k for k in store.list("videos/") if k.endswith("translation.json")]) == 1


def test_killed_worker_messages_come_back(tmp_path: Path, state: RunState, redis_url: str, s3_url: str,
                                          s3_endpoint: str) -> None:
    """The whole worker dies (main process too): its unacked message returns after the visibility
    timeout and a new worker finishes the run."""
    with running_simulator(SimulatorConfig(latency=2.0)) as slow_simulator:
        env = _env(redis_url, s3_url, s3_endpoint, slow_simulator, PRESSROOM_VISIBILITY_TIMEOUT="6")
        wav = make_audio(tmp_path / "crash.wav", 15)
        others = [s for s in STEPS if s != "translate"]
        with workers(others, env, tmp_path / "logs"):
            with workers(["translate"], env, tmp_path / "logs-1") as first:
                [run_id] = _submit(env, wav)
                _wait_for(lambda: state.run(run_id).get("translate.status") == "running", what="translate")
                first["translate"].kill()
            with workers(["translate"], env, tmp_path / "logs-2"):
                runs = wait_for_runs(state, [run_id], timeout=90)
    assert runs[run_id]["status"] == "succeeded", runs[run_id]
    assert event_trail(state, run_id) == SUCCESS_TRAIL


def test_a_long_healthy_step_is_never_taken_from_its_worker(tmp_path: Path, state: RunState, redis_url: str,
                                                            s3_url: str, s3_endpoint: str) -> None:
    """Each LLM call takes 8 s, the visibility timeout is 6 s, and a second translate worker waits idle:
    the busy worker keeps its message fresh, so nothing is handed over and nothing runs twice."""
    with running_simulator(SimulatorConfig(latency=8.0)) as slow_simulator:
        env = _env(redis_url, s3_url, s3_endpoint, slow_simulator, PRESSROOM_VISIBILITY_TIMEOUT="6")
        wav = make_audio(tmp_path / "slow.wav", 15)
        others = [s for s in STEPS if s not in ("translate", "tag")]
        with workers(others, env, tmp_path / "logs"), workers(["translate"], env, tmp_path / "logs-1"), \
                workers(["translate"], env, tmp_path / "logs-2"):
            [run_id] = _submit(env, wav)
            _wait_for(lambda: state.run(run_id).get("translate.status") == "succeeded", timeout=90,
                      what="translate done")
    run = state.run(run_id)
    assert int(run["translate.part0.deliveries"]) == 1 and int(run["translate.task.deliveries"]) == 1, run
    assert "translate.redeliveries" not in run
