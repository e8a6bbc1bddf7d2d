"""What an operator who scales workers sees, through the real consumers: Prometheus' own parser reading
/metrics after a failed run and an operator's retry of it, and the real Flower showing the failed step as
FAILURE (Celery's own view agreeing with the run state)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from schemas.pipeline import Step
from tests.conftest import make_audio
from tests.harness import PRESSROOM, WorkerProcess, pressroom_env, serve_asgi
from workers import keys
from workers.app import create_app
from workers.settings import load_settings
from workers.state import RunState


def _env(redis_url: str, tmp_path: Path, simulator: str) -> dict[str, str]:
    return pressroom_env(PRESSROOM_BROKER_URL=redis_url, PRESSROOM_DATA_DIR=str(tmp_path / "data"),
                         PRESSROOM_TRANSCRIPTION_BASE_URL=simulator, PRESSROOM_LLM_BASE_URL=simulator)


def _submit(env: dict[str, str], *sources: Path) -> list[str]:
    out = subprocess.run([*PRESSROOM, "submit", *map(str, sources)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def _until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def _not_media(tmp_path: Path) -> Path:
    """A file that claims to be audio and is not: the download step fails it for good."""
    bad = tmp_path / "not-audio.wav"
    bad.write_bytes(b"RIFF" + b"\x00" * 4000)
    return bad


def _scrape(base: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of /metrics, parsed by prometheus-client's parser: name → {sorted labels: value}."""
    response = httpx.get(f"{base}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def _value(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float:
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def test_metrics_after_a_failed_run_and_its_retry(tmp_path: Path, clean_redis: redis.Redis, redis_url: str,
                                                  simulator: str) -> None:
    env = _env(redis_url, tmp_path, simulator)
    from workers.dashboard.api import create_api

    app = create_app(load_settings(broker_url=redis_url, data_dir=tmp_path / "data"))
    state = RunState(redis.Redis.from_url(redis_url, decode_responses=True))
    download = WorkerProcess("download", env, tmp_path / "worker.log")  # nobody works the other queues
    try:
        download.wait_ready()
        with serve_asgi(create_api(app, queue_interval=0.2)) as base:
            before = _scrape(base)
            assert _value(before, "pressroom_task_outcomes_total", step="download", kind="step", outcome="failed") == 0
            bad, good = _submit(env, _not_media(tmp_path), make_audio(tmp_path / "talk.wav", 12))
            _until(lambda: state.run(bad).get("status") == "failed", 60, "the bad run to fail")
            _until(lambda: state.run(good).get("download.status") == "succeeded", 60, "the good run's download")
            retried = subprocess.run([*PRESSROOM, "retry", bad], env=env, capture_output=True, text=True, timeout=60)
            assert retried.returncode == 0, retried.stderr
            _until(lambda: state.run(bad).get("status") == "failed" and state.run(bad).get("generation") == "1",
                   60, "the retried run to fail again")

            def settled() -> dict[str, Any] | None:
                got = _scrape(base)
                ready = _value(got, "pressroom_runs", status="failed") == 1 and \
                    _value(got, "pressroom_queue_waiting", queue=keys.QUEUES[Step.transcribe], step="transcribe") == 1
                return got if ready else None

            after = _until(settled, 30, "the gauges to catch up")
    finally:
        download.stop()
    outcomes = {o: _value(after, "pressroom_task_outcomes_total", step="download", kind="step", outcome=o)
                for o in ("failed", "succeeded")}
    assert outcomes == {"failed": 2, "succeeded": 1}  # the bad run, its retry; the good run
    durations = _value(after, "pressroom_task_duration_seconds_count", step="download", kind="step")
    assert durations == 3 and _value(after, "pressroom_task_duration_seconds_sum", step="download", kind="step") > 0
    assert _value(after, "pressroom_task_duration_seconds_bucket", step="download", kind="step", le="+Inf") == 3
    assert _value(after, "pressroom_runs", status="queued") + _value(after, "pressroom_runs", status="running") == 1
    transcribe = {"queue": keys.QUEUES[Step.transcribe], "step": "transcribe"}
    assert _value(after, "pressroom_queue_waiting", **transcribe) == 1  # the good run waits: no worker there
    assert _value(after, "pressroom_queue_workers", **transcribe) == 0
    assert _value(after, "pressroom_queue_oldest_age_seconds", **transcribe) > 0
    assert _value(after, "pressroom_queue_workers", queue=keys.QUEUES[Step.download], step="download") == 1
    assert _value(after, "pressroom_broker_up") == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_flower_shows_a_failed_step_as_failure(tmp_path: Path, clean_redis: redis.Redis, redis_url: str,
                                               simulator: str) -> None:
    """The real Flower, on Pressroom's app and broker, sees the download task of a failed run end in FAILURE
    with the run's error, and a succeeded one in SUCCESS, by name and queue."""
    env = _env(redis_url, tmp_path, simulator)
    port = _free_port()
    flower_log = tmp_path / "flower.log"
    with open(flower_log, "wb") as out:
        flower = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", "flower", f"--port={port}", "--address=127.0.0.1"],
            env={**env, "FLOWER_UNAUTHENTICATED_API": "true"}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    download = WorkerProcess("download", env, tmp_path / "worker.log")
    try:
        download.wait_ready()
        api = f"http://127.0.0.1:{port}/api"
        _until(lambda: _get(f"{api}/workers?refresh=1") not in (None, {}), 60, "Flower to see the worker")
        bad, good = _submit(env, _not_media(tmp_path), make_audio(tmp_path / "talk.wav", 8))

        def ended() -> dict[str, Any] | None:
            tasks = _get(f"{api}/tasks") or {}
            mine = {t["args"]: t for t in tasks.values() if t.get("name") == keys.task_name(Step.download)}
            states = {t["state"] for t in mine.values()}
            return mine if {"FAILURE", "SUCCESS"} <= states else None

        tasks = _until(ended, 60, f"Flower to show both tasks ({flower_log.read_text()[-1500:]})")
    finally:
        download.stop()
        flower.terminate()
        flower.wait(10)
    failed = next(t for t in tasks.values() if t["state"] == "FAILURE")
    succeeded = next(t for t in tasks.values() if t["state"] == "SUCCESS")
    assert bad in failed["args"] and good in succeeded["args"]
    assert "TaskFailed" in failed["exception"] and f"download of run {bad} failed" in failed["exception"]
    assert failed["routing_key"] == succeeded["routing_key"] == keys.QUEUES[Step.download]
    assert succeeded["result"] == "'succeeded'"


def _get(url: str) -> Any:
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def test_the_outcome_label_follows_celerys_state() -> None:
    from workers.errors import TaskFailed
    from workers.metrics.signals import outcome as outcome_of

    assert outcome_of("FAILURE", TaskFailed("download of run r1 failed (PermanentError): private")) == "failed"
    assert outcome_of("FAILURE", TaskFailed("malformed download message dropped: x")) == "malformed"
    assert outcome_of("SUCCESS", "reused") == "reused"
