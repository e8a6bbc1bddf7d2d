"""`pressroom run` on the embedded default: no Redis, no S3; the simulator over HTTP."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from schemas.artifacts import Transcript
from tests.conftest import make_audio
from tests.harness import PRESSROOM, pressroom_env
from tests.pipeline_checks import assert_post_holds_transcript, chinese_paragraphs, english_blocks
from workers.providers.simulator_fake import MARK


def _run(source: Path | str, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PRESSROOM, "run", str(source), "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=240)


def test_run_writes_a_complete_post(tmp_path: Path, simulator: str) -> None:
    wav = make_audio(tmp_path / "some.wav", 75)
    env = pressroom_env(PRESSROOM_DATA_DIR=str(tmp_path / "data"),
                        PRESSROOM_TRANSCRIPTION_BASE_URL=simulator, PRESSROOM_LLM_BASE_URL=simulator)
    result = _run(wav, tmp_path / "out", env)
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.parent == tmp_path / "out" and path.name.endswith("-some.md")
    post = path.read_text()
    assert post.startswith("---\n") and "\n### " in post
    transcripts = list((tmp_path / "data" / "store" / "videos").glob("*/transcribe/*/transcript.json"))
    assert len(transcripts) == 1
    transcript = Transcript.model_validate_json(transcripts[0].read_bytes())
    assert len(transcript.segments) > 5
    assert_post_holds_transcript(post, transcript)
    for step in ("download", "transcribe", "translate", "tag", "publish"):
        assert f"{step}" in result.stderr  # progress, step by step
    assert_rehearsal_is_marked(post)

    # the same file again: every stored artifact is reused, and the same post comes out
    again = _run(wav, tmp_path / "out2", env)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("reused stored artifact") == 4
    assert Path(again.stdout.strip().splitlines()[-1]).read_text() == post


def assert_rehearsal_is_marked(post: str) -> None:
    """Nothing the simulator invented can pass for a real transcription or translation."""
    front = yaml.safe_load(post.split("---\n")[1])
    english = english_blocks(post)
    assert english and all(block.startswith(MARK) for block in english)  # the built-in sample, marked
    assert all(zh.startswith(MARK) for zh in chinese_paragraphs(post))
    assert front["title"].startswith(MARK) and front["summary"].startswith(MARK)
    names = [*front["people"], *front["companies_orgs"], *front["products_models"], *front["media_books"]]
    assert names and all(n.startswith(MARK) for n in names) and front["guest"].startswith(MARK)
    assert front["tags"] and all(t.startswith("simulated") for t in front["tags"])
    assert "### " + MARK in post


def test_run_failure_is_one_clear_line(tmp_path: Path, simulator: str) -> None:
    wav = make_audio(tmp_path / "talk.wav", 10)
    env = pressroom_env(PRESSROOM_DATA_DIR=str(tmp_path / "data"), PRESSROOM_TRANSCRIPTION_BASE_URL=simulator,
                        PRESSROOM_LLM_BASE_URL=simulator + "/nowhere")
    result = _run(wav, tmp_path / "out", env)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("pressroom: run ") and "translate failed" in last and "404" in last
    assert result.stdout == ""


def test_bad_source_is_one_clear_line(tmp_path: Path, simulator: str) -> None:
    env = pressroom_env(PRESSROOM_DATA_DIR=str(tmp_path / "data"), PRESSROOM_TRANSCRIPTION_BASE_URL=simulator,
                        PRESSROOM_LLM_BASE_URL=simulator)
    for source, expected in [(tmp_path / "missing.wav", "no such file"),
                             ("https://vimeo.com/123", "not a YouTube video URL")]:
        result = _run(source, tmp_path / "out", env)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and expected in result.stderr


def test_bad_setting_is_one_clear_line(tmp_path: Path) -> None:
    wav = make_audio(tmp_path / "talk.wav", 2)
    env = pressroom_env(PRESSROOM_DATA_DIR=str(tmp_path / "data"), PRESSROOM_BROKER_URL="http://nope")
    result = _run(wav, tmp_path / "out", env)
    assert result.returncode == 2
    assert result.stderr.strip() == ("pressroom: bad setting — PRESSROOM_BROKER_URL: 'http://nope' is not a "
                                     "Redis URL: use redis://host:6379/0 (or leave unset for embedded)")


def test_missing_api_key_fails_before_any_work(tmp_path: Path) -> None:
    wav = make_audio(tmp_path / "talk.wav", 2)
    result = _run(wav, tmp_path / "out", pressroom_env(PRESSROOM_DATA_DIR=str(tmp_path / "data")))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("pressroom: no API key for https://api.openai.com/v1")
    assert not (tmp_path / "data").exists()


def test_two_files_with_the_same_name_never_overwrite_each_others_post(tmp_path: Path, simulator: str) -> None:
    env = pressroom_env(PRESSROOM_DATA_DIR=str(tmp_path / "data"), PRESSROOM_TRANSCRIPTION_BASE_URL=simulator,
                        PRESSROOM_LLM_BASE_URL=simulator)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_audio(tmp_path / "a" / "same-title.wav", 12, 300)
    second = make_audio(tmp_path / "b" / "same-title.wav", 14, 500)  # another talk, the same file name
    paths = []
    for source in (first, second, first):
        result = _run(source, tmp_path / "out", env)
        assert result.returncode == 0, result.stderr
        paths.append(Path(result.stdout.strip().splitlines()[-1]))
    assert paths[0].name.endswith("-same-title.md") and paths[1] != paths[0] and paths[2] == paths[0]
    assert paths[1].name.startswith(paths[0].name.removesuffix(".md") + "-file-")  # told apart by its id
    posts = sorted((tmp_path / "data" / "store" / "posts").iterdir())
    assert [p.name for p in posts] == sorted({paths[0].name, paths[1].name})
    assert posts[0].read_text() != posts[1].read_text()  # each holds its own talk
