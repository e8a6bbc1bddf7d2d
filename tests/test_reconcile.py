"""The reconciler: a run whose message was lost is found and re-driven (and says so in its events and the
audit log); a healthy slow run, whose message a worker holds, is left alone."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from tests.conftest import make_audio
from tests.harness import PRESSROOM, pressroom_env, workers
from tests.pipeline_checks import STEPS, SUCCESS_TRAIL, event_trail, wait_for_runs
from workers import keys
from workers.dashboard import audit
from workers.providers.simulator import SimulatorConfig, running_simulator
from workers.runtime import Runtime
from workers.settings import load_settings
from workers.state import RunState


def _pressroom(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PRESSROOM, *args], env=env, capture_output=True, text=True, timeout=60)


def test_a_lost_run_is_redriven_and_a_slow_one_left_alone(tmp_path: Path, clean_redis: redis.Redis,
                                                           redis_url: str) -> None:
    state = RunState(redis.Redis.from_url(redis_url, decode_responses=True))
    with running_simulator(SimulatorConfig(latency=6.0)) as slow:
        env = pressroom_env(PRESSROOM_BROKER_URL=redis_url, PRESSROOM_STORAGE_URL=str(tmp_path / "store"),
                            PRESSROOM_TRANSCRIPTION_BASE_URL=slow, PRESSROOM_LLM_BASE_URL=slow,
                            PRESSROOM_STALL_AFTER="10")
        lost_talk, slow_talk = make_audio(tmp_path / "lost.wav", 8, 300), make_audio(tmp_path / "slow.wav", 8, 500)
        submitted = _pressroom(env, "submit", str(lost_talk))
        assert submitted.returncode == 0, submitted.stderr
        [lost] = submitted.stdout.split()
        clean_redis.delete(keys.QUEUES["download"])  # Redis lost the message (a restart without AOF, say)
        with workers(STEPS, env, tmp_path / "logs"):
            [slow_run] = _pressroom(env, "submit", str(slow_talk)).stdout.split()
            deadline = time.monotonic() + 60
            while state.run(slow_run).get("transcribe.status") != "running":
                assert time.monotonic() < deadline, state.run(slow_run)
                time.sleep(0.05)
            for run_id in (lost, slow_run):  # both idle far longer than PRESSROOM_STALL_AFTER
                state.kv.hset(keys.run_key(run_id), "updated", time.time() - 600)

            listed = _pressroom(env, "reconcile", "--dry-run")
            assert listed.returncode == 0, listed.stderr
            assert listed.stdout.split()[:3] == [lost, "download", "would"] and slow_run not in listed.stdout
            assert clean_redis.llen(keys.QUEUES["download"]) == 0  # a dry run sends nothing

            done = _pressroom(env, "reconcile")
            assert done.returncode == 0 and f"{lost}  download  re-driven" in done.stdout, done.stdout
            assert slow_run not in done.stdout
            runs = wait_for_runs(state, [lost, slow_run], timeout=120)
    assert {r["status"] for r in runs.values()} == {"succeeded"}, runs
    assert event_trail(state, lost) == [SUCCESS_TRAIL[0], "run.retried:download", *SUCCESS_TRAIL[1:]]
    assert state.events(lost)[1].by == "reconciler"  # type: ignore[union-attr]
    assert event_trail(state, slow_run) == SUCCESS_TRAIL  # never touched
    assert "stalled" not in {k for k, v in state.run(lost).items() if v}  # cleared once it moved again
    entries = audit.entries(Runtime(load_settings(broker_url=redis_url, storage_url=str(tmp_path / "store"))))
    assert [(e["who"], e["what"], e["run_id"]) for e in entries] == [("reconciler", "re-drive from download", lost)]


def test_a_run_whose_first_event_was_never_logged_is_still_redriven(tmp_path: Path, clean_redis: redis.Redis,
                                                                     redis_url: str) -> None:
    """Redis went away between creating the run and logging its request: the spec alone restarts it."""
    from schemas.artifacts import VideoSource
    from schemas.run import RunSpec
    from workers.app import create_app
    from workers.reconcile import reconcile

    app = create_app(load_settings(broker_url=redis_url, storage_url=str(tmp_path / "store")))
    rt = app.pressroom
    spec = RunSpec(run_id="r1", video_id="v1", source=VideoSource(kind="file", uri="uploads/x/talk.wav"))
    rt.state.create(spec)
    assert reconcile(app, rt) == []  # not idle long enough yet
    [(stall, sent)] = reconcile(app, rt, now=time.time() + 600)
    assert (stall.run_id, stall.step, sent) == ("r1", "download", True)
    assert clean_redis.llen(keys.QUEUES["download"]) == 1
    assert [e.kind for e in rt.state.events("r1")] == ["run.retried"]
    assert reconcile(app, rt, now=time.time() + 600) == []  # its message is waiting now: not stalled
