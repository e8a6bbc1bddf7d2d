"""Operators' actions on runs: retry from the failed step (upstream untouched), re-run from any step,
retry refused for unknown or running runs, cancel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas.events import Step
from tests.conftest import make_audio
from workers.app import create_app
from workers.dashboard.queries import run_detail
from workers.embedded import embedded_worker
from workers.errors import PermanentError
from workers.follow import follow_run
from workers.operations import cancel, restore_runs, retry
from workers.providers.simulator import SimulatorConfig, running_simulator
from workers.settings import load_settings
from workers.state import MemoryKV, RunState
from workers.submit import resolve_source, submit


@pytest.fixture()
def locked_simulator() -> Iterator[str]:
    """A simulator that wants the key "right": a wrong key is a permanent 401."""
    with running_simulator(SimulatorConfig(api_key="right")) as url:
        yield url


def _app(tmp_path: Path, simulator: str, llm_key: str) -> Any:
    return create_app(load_settings(data_dir=tmp_path / "data", transcription_base_url=simulator,
                                    transcription_api_key="right", llm_base_url=simulator, llm_api_key=llm_key))


def _snapshot(store_root: Path, step: str) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in store_root.glob(f"videos/*/{step}/**/*") if p.is_file()}


def test_retry_resumes_at_the_failed_step_and_leaves_upstream_alone(tmp_path: Path, locked_simulator: str) -> None:
    app = _app(tmp_path, locked_simulator, llm_key="wrong")
    rt = app.pressroom
    source, video_id = resolve_source(str(make_audio(tmp_path / "talk.wav", 30)), rt)
    with embedded_worker(app, 2):
        run_id = submit(app, rt, source, video_id).run_id
        failed = follow_run(rt.state, run_id, timeout=120)
        assert failed.status == "failed" and "401" in (failed.error or "")
        assert failed.of(Step.translate).status == "failed"
        store = tmp_path / "data" / "store"
        upstream = {step: _snapshot(store, step) for step in ("download", "transcribe")}
        started = {step: failed.of(step).started for step in (Step.download, Step.transcribe)}
        assert all(upstream.values())

        rt.settings.llm_api_key = "right"  # the operator fixes the key …
        rt.__dict__.pop("llm", None)  # … and the worker picks it up
        assert retry(app, rt, run_id) is Step.translate
        done = follow_run(rt.state, run_id, timeout=120)

        assert done.status == "succeeded" and done.generation == 1
        usage = run_detail(rt, run_id)["usage"]  # type: ignore[index]
        assert usage["audio_minutes"] == 0.5 and usage["input_tokens"] > 0 and usage["output_tokens"] > 0
        assert usage["estimated_cost_usd"] == round(0.5 * 0.006 + usage["input_tokens"] * 0.40 / 1e6
                                                    + usage["output_tokens"] * 1.60 / 1e6, 4)
        assert {step: done.of(step).started for step in (Step.download, Step.transcribe)} == started
        assert {step: _snapshot(store, step) for step in ("download", "transcribe")} == upstream
        trail = [f"{e.kind}:{getattr(e, 'step', '')}" for e in rt.state.events(run_id)]
        # the history as it happened: the retry, not the upstream step a second time
        assert trail == ["run.requested:", "step.succeeded:download", "step.succeeded:transcribe",
                         "step.failed:translate", "run.retried:translate", "step.succeeded:translate",
                         "step.succeeded:tag", "step.succeeded:publish"]

        # re-run a finished run from any step: tag and publish again, nothing before them
        assert retry(app, rt, run_id, Step.tag) is Step.tag
        again = follow_run(rt.state, run_id, timeout=60)
        assert again.status == "succeeded" and again.generation == 2
        assert again.of(Step.tag).reused and again.of(Step.translate).started == done.of(Step.translate).started

    # Redis loses everything: the run comes back from the manifest stored with its artifacts
    events = rt.state.events(run_id)
    rt.__dict__["state"] = RunState(MemoryKV())
    assert restore_runs(rt) == 1 and restore_runs(rt) == 0
    restored = rt.state.run(run_id)
    assert restored["status"] == "succeeded" and restored["generation"] == "2"
    assert rt.state.events(run_id) == events


def test_retry_refuses_unknown_running_and_unreached(tmp_path: Path, simulator: str) -> None:
    app = _app(tmp_path, simulator, llm_key="any")
    rt = app.pressroom
    with pytest.raises(PermanentError, match="no run 'nope'"):
        retry(app, rt, "nope")
    source, video_id = resolve_source(str(make_audio(tmp_path / "t.wav", 5)), rt)
    run_id = submit(app, rt, source, video_id).run_id  # queued: no worker is running
    with pytest.raises(PermanentError, match="is queued: wait for it to end, or cancel it first"):
        retry(app, rt, run_id)
    cancel(rt, run_id)
    with pytest.raises(PermanentError, match="never reached tag"):
        retry(app, rt, run_id, Step.tag)
    with pytest.raises(PermanentError, match="only queued or running runs can be cancelled"):
        cancel(rt, run_id)


def test_a_cancelled_run_does_no_more_work(tmp_path: Path) -> None:
    with running_simulator(SimulatorConfig(latency=1.5)) as slow:
        app = _app(tmp_path, slow, llm_key="any")
        rt = app.pressroom
        source, video_id = resolve_source(str(make_audio(tmp_path / "talk.wav", 20)), rt)
        with embedded_worker(app, 2):
            run_id = submit(app, rt, source, video_id).run_id
            while rt.state.run(run_id).get("transcribe.status") != "running":
                time.sleep(0.02)
            cancel(rt, run_id)
            final = follow_run(rt.state, run_id, timeout=60)
            time.sleep(3)  # the transcription in flight finishes; nothing after it starts
        run = rt.state.run(run_id)
    assert final.status == "cancelled" and run["status"] == "cancelled"
    assert "translate.status" not in run and "tag.status" not in run
