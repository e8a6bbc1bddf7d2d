"""Long-form fidelity end to end: long audio is chunked and joined, captions replace transcription,
and every word of a 3-hour talk reaches the post once, in order, translated — through faults."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

from schemas.artifacts import DownloadArtifact, Transcript, VideoMetadata, VideoSource
from schemas.events import RunRequested, Step
from schemas.run import RunSpec
from tests.harness import PRESSROOM, pressroom_env
from tests.pipeline_checks import assert_post_holds_transcript, chinese_paragraphs
from workers import keys
from workers.app import create_app
from workers.delivery import input_hash
from workers.embedded import embedded_worker
from workers.events import emit
from workers.follow import follow_run
from workers.providers.simulator import SimulatorConfig, running_simulator
from workers.providers.transcription import MAX_UPLOAD_BYTES, TranscriptionResult
from workers.settings import load_settings
from workers.storage import put_model
from workers.tasks import SPECS


def make_talk(path: Path, seconds: int) -> Path:
    """Speech-like audio: 8 s of tone, 1 s of silence, repeated (the silences are where chunks are cut)."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", f"sine=frequency=300:sample_rate=16000:duration={seconds}",
         "-af", "volume='if(lt(mod(t,9),8),1,0)':eval=frame", "-ac", "1", "-c:a", "aac", "-b:a", "32k", str(path)],
        check=True,
    )
    return path


def _run(source: Path, tmp_path: Path, simulator: str, *extra: str, **env: str) -> tuple[str, Path]:
    data = tmp_path / "data"
    result = subprocess.run(
        [*PRESSROOM, "run", str(source), "--out", str(tmp_path / "out"), *extra],
        env=pressroom_env(PRESSROOM_DATA_DIR=str(data), PRESSROOM_TRANSCRIPTION_BASE_URL=simulator,
                          PRESSROOM_LLM_BASE_URL=simulator, **env),
        capture_output=True, text=True, timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(result.stdout.strip().splitlines()[-1]).read_text(), data / "store"


def _transcript(store: Path) -> tuple[Transcript, Path]:
    [path] = store.glob("videos/*/transcribe/*/transcript.json")
    return Transcript.model_validate_json(path.read_bytes()), path.parent


def test_a_long_talk_is_chunked_at_silences_and_joined_exactly(tmp_path: Path, simulator: str) -> None:
    post, store = _run(make_talk(tmp_path / "talk.m4a", 25 * 60), tmp_path, simulator)
    transcript, step_dir = _transcript(store)
    plan = json.loads((step_dir / "plan.json").read_text())
    assert len(plan) == 8 and plan[-1]["end"] == transcript.duration  # ≤ 5 min each, in waves of 4 (embedded)
    assert all(a["end"] == b["start"] for a, b in itertools.pairwise(plan))
    assert all(p["end"] % 9 >= 8 for p in plan[:-1])  # every cut is in a silence (8 s tone, 1 s silence)
    parts = [TranscriptionResult.model_validate_json((step_dir / "parts" / f"{i:04d}.json").read_bytes())
             for i in range(len(plan))]
    # every part's segments, shifted by its chunk's start, once each and in order: nothing lost or doubled
    expected = [(round(s.start + p["start"], 2), s.text.strip()) for p, r in zip(plan, parts, strict=True)
                for s in r.segments]
    assert [(round(s.start, 2), s.text) for s in transcript.segments] == expected
    starts = [s.start for s in transcript.segments]
    assert starts == sorted(starts) and transcript.segments[-1].end <= transcript.duration
    assert_post_holds_transcript(post, transcript)


def test_captions_replace_transcription(tmp_path: Path, simulator: str) -> None:
    """A video's auto-captions become the transcript; the transcription server (a dead port) is never asked."""
    settings = load_settings(data_dir=tmp_path / "data", captions="auto",
                             transcription_base_url="http://127.0.0.1:9/v1", llm_base_url=simulator)
    app = create_app(settings)
    rt = app.pressroom
    run = RunSpec(run_id="captioned", video_id="abcdefghijk", captions="auto",
                  source=VideoSource(kind="youtube", uri="https://www.youtube.com/watch?v=abcdefghijk"))
    # what the download step would have stored for a video with auto-captions
    prefix = keys.step_prefix(run.video_id, Step.download,
                              input_hash(SPECS[Step.download].fingerprint(RunRequested(run=run), settings)))
    rt.store.put_bytes(prefix + "captions/en-auto.vtt",
                       (Path(__file__).parent / "fixtures" / "youtube-autocaptions-modern.vtt").read_bytes())
    rt.store.put_bytes(prefix + "audio.m4a", b"never read when captions exist")
    put_model(rt.store, prefix + "download.json", DownloadArtifact(
        metadata=VideoMetadata(video_id=run.video_id, title="Captioned", duration=60.0),
        audio_key=prefix + "audio.m4a", audio_format="m4a", audio_bytes=30,
        captions={"en-auto.vtt": prefix + "captions/en-auto.vtt"}))
    with embedded_worker(app, 2):
        rt.state.create(run)
        emit(app, rt.state, RunRequested(run=run))
        final = follow_run(rt.state, run.run_id, timeout=180)
    assert final.status == "succeeded", final
    assert final.of(Step.download).reused
    transcript, step_dir = _transcript(tmp_path / "data" / "store")
    assert json.loads((step_dir / "plan.json").read_text()) == []  # no parts: nothing sent to transcription
    assert transcript.model == "captions" and len(transcript.segments) > 3
    assert ">>" not in transcript.text and "<" not in transcript.text
    post = rt.store.get_bytes(rt.state.events(run.run_id)[-1].artifacts["post"]).decode()
    assert_post_holds_transcript(post, transcript)


def test_three_hour_talk_every_word_once_in_order_through_faults(tmp_path: Path) -> None:
    audio = make_talk(tmp_path / "three-hours.m4a", 3 * 3600)
    assert audio.stat().st_size > MAX_UPLOAD_BYTES  # over the API's upload limit: must be chunked
    faults = SimulatorConfig(fault_429=0.1, fault_500=0.1, fault_drop=0.1, fault_merge=0.1, fault_cutoff=0.1,
                             retry_after=0.05, seed=7)
    with running_simulator(faults) as simulator:
        post, store = _run(audio, tmp_path, simulator, PRESSROOM_EMBEDDED_CONCURRENCY="4")
    transcript, step_dir = _transcript(store)
    assert len(transcript.segments) >= 1500
    assert len(json.loads((step_dir / "plan.json").read_text())) >= 9  # 20-minute chunks at most
    assert_post_holds_transcript(post, transcript)  # the English, concatenated, is the transcript
    chinese = chinese_paragraphs(post)
    assert all(c.startswith("【模拟】") for c in chinese)  # every paragraph translated, none marked
