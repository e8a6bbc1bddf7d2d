"""Limits on what a provider may do to a call: a whole-request deadline (a server that trickles its answer
a byte at a time still times out), answers of the wrong kind (not JSON, an HTML page, JSON of the wrong
shape) and transcripts far longer than the audio could hold — each one line naming the server and a fix."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest
from pydantic import BaseModel

from workers.errors import PermanentError, TransientError
from workers.providers.openai_client import AnswerTooLarge, DeadlineClient, answer_limit
from workers.providers.openai_llm import OpenAILLM
from workers.providers.openai_transcription import OpenAITranscriber
from workers.providers.simulator import SimulatorConfig, running_simulator
from workers.providers.simulator_fake import MARK
from workers.providers.transcription import MIN_TRANSCRIPT_CHARS, transcript_char_limit
from workers.runtime import Runtime
from workers.settings import Settings

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


class Verdict(BaseModel):
    ok: bool
    reasons: list[str]


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "talk.wav"
    source = ["-f", "lavfi", "-i", "sine=frequency=440:duration=20"]
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *source, "-ac", "1", "-ar", "8000", str(path)], check=True)
    return path


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text and "unexpected" not in text
    return text


def timed(call: Callable[[], object]) -> tuple[BaseException, float]:
    start = time.monotonic()
    with pytest.raises((TransientError, PermanentError)) as info:
        call()
    return info.value, time.monotonic() - start


# --- whole-request deadline -------------------------------------------------------------------------------
@needs_ffmpeg
def test_a_trickled_answer_ends_at_the_deadline_not_per_read(wav: Path) -> None:
    """One byte a second never trips a 3 s read timeout; the answer (hundreds of bytes) would take minutes.
    The deadline ends each call after ~3 s with the same TransientError as any timeout."""
    with running_simulator(SimulatorConfig(trickle_seconds=1.0)) as url:
        chat, chat_took = timed(
            lambda: OpenAILLM(url, "k", "gpt-4.1-mini", 3).parse(system="s", user="u", schema=Verdict)
        )
        audio, audio_took = timed(lambda: OpenAITranscriber(url, "k", "whisper-1", 3).transcribe(wav))
    assert isinstance(chat, TransientError) and isinstance(audio, TransientError)
    assert one_line(chat).startswith(f"LLM server {url} (model gpt-4.1-mini) timed out")
    assert "within 3 s" in str(chat) and "raise PRESSROOM_LLM_TIMEOUT" in str(chat)
    assert one_line(audio).startswith(f"transcription server {url} timed out")
    assert "raise PRESSROOM_TRANSCRIPTION_TIMEOUT" in str(audio)
    assert 2.9 <= chat_took < 8, chat_took
    assert 2.9 <= audio_took < 8, audio_took


@needs_ffmpeg
def test_a_trickle_that_ends_before_the_deadline_is_a_normal_answer(wav: Path) -> None:
    with running_simulator(SimulatorConfig(trickle_seconds=0.001)) as url:
        verdict = OpenAILLM(url, "k", "gpt-4.1-mini", 30).parse(system="s", user="u", schema=Verdict)
        result = OpenAITranscriber(url, "k", "gpt-4o-mini-transcribe", 30).transcribe(wav)
    assert verdict.value == Verdict(ok=False, reasons=[MARK])
    assert result.segments[0].text.startswith(f"{MARK}Welcome back")


def slow_body(chunks: int, every: float) -> Iterator[bytes]:
    for _ in range(chunks):
        time.sleep(every)
        yield b"x"


def test_deadline_client_bounds_the_whole_body_and_shrinks_later_timeouts() -> None:
    seen: dict[str, float | None] = {}

    def handler(request: httpx2.Request) -> httpx2.Response:
        time.sleep(0.5)  # the server thinks: the read timeout of any phase after this gets only what is left
        seen["read"] = request.extensions["timeout"].get("read")
        return httpx2.Response(200, content=slow_body(40, 0.1))

    client = DeadlineClient(deadline=2.0, timeout=2.0, transport=httpx2.MockTransport(handler))
    start = time.monotonic()
    with pytest.raises(httpx2.ReadTimeout, match="deadline"):
        client.get("http://x/slow")
    took = time.monotonic() - start
    assert 2.0 <= took < 2.5, took  # 4 s of body, each chunk 0.1 s apart: only a deadline stops it
    assert seen["read"] is not None and 1.3 < seen["read"] <= 1.5
    fast = DeadlineClient(deadline=2.0, timeout=2.0, transport=httpx2.MockTransport(lambda r: httpx2.Response(200)))
    assert fast.get("http://x/").status_code == 200


def test_deadline_client_bounds_a_slow_upload() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=request.read())

    client = DeadlineClient(deadline=1.0, timeout=1.0, transport=httpx2.MockTransport(handler))
    start = time.monotonic()
    with pytest.raises(httpx2.WriteTimeout, match="deadline"):
        client.post("http://x/upload", content=slow_body(40, 0.1))
    assert 1.0 <= time.monotonic() - start < 1.5
    assert client.post("http://x/upload", content=slow_body(3, 0.1)).content == b"xxx"


def test_answer_limit_refuses_a_large_body_declared_or_streamed() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/declared":
            return httpx2.Response(200, content=b"x" * 5000)
        return httpx2.Response(200, content=iter([b"x" * 600] * 10))  # chunked: no Content-Length

    client = DeadlineClient(deadline=5.0, timeout=5.0, transport=httpx2.MockTransport(handler))
    with answer_limit(1000):
        with pytest.raises(AnswerTooLarge) as declared:
            client.get("http://x/declared")
        with pytest.raises(AnswerTooLarge) as streamed:
            client.get("http://x/streamed")
    assert declared.value.declared and declared.value.size == 5000
    assert not streamed.value.declared and streamed.value.size == 1200
    assert len(client.get("http://x/streamed").content) == 6000  # no limit outside the block


# --- answers of the wrong kind ----------------------------------------------------------------------------
EXPECTED = {
    "not_json": r"answered 200 with a body that is not JSON \(Unterminated string",
    "html": r"answered 200 with an HTML page \('Sign in to continue'\), not JSON",
    "wrong_shape": r"of the wrong shape \(",
}


@needs_ffmpeg
@pytest.mark.parametrize("fault", list(EXPECTED))
def test_answers_of_the_wrong_kind_are_one_line_permanent_errors(fault: str, wav: Path) -> None:
    with running_simulator(SimulatorConfig(**{f"fault_{fault}": 1.0})) as url:
        chat, _ = timed(lambda: OpenAILLM(url, "k", "gpt-4.1-mini", 30).parse(system="s", user="u", schema=Verdict))
        whisper, _ = timed(lambda: OpenAITranscriber(url, "k", "whisper-1", 30).transcribe(wav))
        plain, _ = timed(lambda: OpenAITranscriber(url, "k", "gpt-4o-transcribe", 30).transcribe(wav))
    for error, prefix in [(chat, "PRESSROOM_LLM"), (whisper, "PRESSROOM_TRANSCRIPTION"),
                          (plain, "PRESSROOM_TRANSCRIPTION")]:  # fmt: skip
        assert isinstance(error, PermanentError)
        assert url in one_line(error) and f"{prefix}_BASE_URL" in str(error)
        assert re.search(EXPECTED[fault], str(error)), str(error)
    if fault == "wrong_shape":
        assert "(choices.0.message is not an object)" in str(chat)
        assert "(segments is not a list)" in str(whisper)
        assert "(text is missing)" in str(plain)


# --- transcript length relative to the audio --------------------------------------------------------------
def test_transcript_char_limit_has_a_floor() -> None:
    assert transcript_char_limit(1.0, 60) == MIN_TRANSCRIPT_CHARS == 2000
    assert transcript_char_limit(100.0, 60) == 6000
    assert transcript_char_limit(200.5, 15) == 3008


@needs_ffmpeg
@pytest.mark.parametrize("model", ["whisper-1", "gpt-4o-mini-transcribe"])
def test_a_transcript_longer_than_the_audio_could_hold_is_refused(model: str, wav: Path) -> None:
    config = SimulatorConfig(fault_long_transcript=1.0, long_transcript_chars=5000)
    with running_simulator(config) as url:
        with pytest.raises(PermanentError) as info:
            OpenAITranscriber(url, "k", model, 30).transcribe(wav)
        # 20 s at 300 characters a second allows 6000: the same answer passes
        allowed = OpenAITranscriber(url, "k", model, 30, max_chars_per_second=300).transcribe(wav)
    assert one_line(info.value).startswith(f"transcription server {url} returned 5,000 characters for 20.0 s")
    assert "more than the 2,000 that PRESSROOM_MAX_TRANSCRIPT_CHARS_PER_SECOND=60 allows" in str(info.value)
    assert 4900 <= len(allowed.text) <= 5000


@needs_ffmpeg
def test_an_absurdly_large_answer_is_refused_unread(wav: Path) -> None:
    config = SimulatorConfig(fault_long_transcript=1.0, long_transcript_chars=20_000_000)
    with running_simulator(config) as url:
        error, took = timed(lambda: OpenAITranscriber(url, "k", "whisper-1", 30).transcribe(wav))
    assert isinstance(error, PermanentError)
    assert "refused unread" in one_line(error) and "PRESSROOM_MAX_TRANSCRIPT_CHARS_PER_SECOND=60" in str(error)
    assert url in str(error) and "20.0 s of audio" in str(error)
    assert took < 10


def test_runtime_passes_the_transcript_limit(tmp_path: Path) -> None:
    settings = Settings(transcription_base_url="http://127.0.0.1:9/v1", max_transcript_chars_per_second=42,
                        transcription_timeout=7, data_dir=tmp_path)  # fmt: skip
    transcriber = Runtime(settings).transcriber
    assert isinstance(transcriber, OpenAITranscriber)
    assert transcriber.max_chars_per_second == 42 and transcriber.timeout == 7
