"""The provider adapters against the simulator over real HTTP, and the error classification they rely on."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest
from pydantic import BaseModel

from workers.errors import PermanentError, TransientError
from workers.providers.openai_client import classify, retry_after_seconds
from workers.providers.openai_llm import OpenAILLM
from workers.providers.openai_transcription import OpenAITranscriber
from workers.providers.simulator import SimulatorConfig, running_simulator
from workers.providers.simulator_fake import MARK

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


class ParagraphTranslation(BaseModel):
    id: str
    zh: str


class SectionStart(BaseModel):
    paragraph_id: str
    heading: str


class TranslationBatch(BaseModel):
    translations: list[ParagraphTranslation]
    sections: list[SectionStart]


class Verdict(BaseModel):
    ok: bool
    reasons: list[str]
    score: float


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "talk.wav"
    cmd = ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=20"]
    subprocess.run([*cmd, "-ac", "1", "-ar", "16000", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_simulator() as url:
        yield url


def llm(url: str, key: str = "sk-test", timeout: float = 30) -> OpenAILLM:
    return OpenAILLM(url, key, "gpt-4.1-mini", timeout)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text
    return text


@needs_ffmpeg
def test_whisper_segments_are_ordered_and_within_duration(base_url: str, wav: Path) -> None:
    result = OpenAITranscriber(base_url, "k", "whisper-1", 30).transcribe(wav, prompt="OpenAI", language="en")
    assert result.language == "en"
    assert result.audio_seconds == pytest.approx(20.0, abs=0.05)
    assert result.duration == pytest.approx(20.0, abs=0.05)
    assert len(result.segments) >= 3
    assert result.segments[0].start == 0
    assert all(a.end <= b.start for a, b in zip(result.segments, result.segments[1:], strict=False))
    assert all(s.end <= result.duration and s.text == s.text.strip() and s.text for s in result.segments)
    assert result.segments[0].text.startswith(f"{MARK}Welcome back to the show")  # the sample, marked


@needs_ffmpeg
def test_gpt4o_transcribe_gives_one_segment_spanning_the_audio(base_url: str, wav: Path) -> None:
    result = OpenAITranscriber(base_url, "k", "gpt-4o-mini-transcribe", 30).transcribe(wav)
    assert len(result.segments) == 1
    only = result.segments[0]
    assert only.start == 0 and only.end == pytest.approx(20.0, abs=0.05)
    assert only.text.startswith(f"{MARK}Welcome back") and len(only.text.split()) > 20


def test_oversized_or_missing_audio_is_permanent(tmp_path: Path) -> None:
    big = tmp_path / "big.mp3"
    with big.open("wb") as fh:
        fh.truncate(26 * 1024 * 1024)
    transcriber = OpenAITranscriber("http://127.0.0.1:9/v1", "k", "whisper-1", 5)
    with pytest.raises(PermanentError, match="over the 25 MB upload limit"):
        transcriber.transcribe(big)
    with pytest.raises(PermanentError, match="missing"):
        transcriber.transcribe(tmp_path / "nope.m4a")


def test_unreadable_audio_is_permanent(base_url: str, tmp_path: Path) -> None:
    junk = tmp_path / "junk.m4a"
    junk.write_bytes(b"not audio at all")
    with pytest.raises(PermanentError, match=r"cannot read audio junk\.m4a"):
        OpenAITranscriber(base_url, "k", "whisper-1", 30).transcribe(junk)


def test_parse_into_a_small_model(base_url: str) -> None:
    result = llm(base_url).parse(system="Judge.", user="Is this fine?", schema=Verdict)
    assert result.value == Verdict(ok=False, reasons=[MARK], score=0.0)
    assert result.input_tokens > 0 and result.output_tokens > 0


def test_parse_translation_batch_returns_every_id(base_url: str) -> None:
    paragraphs = [{"id": f"p{i:04d}", "text": f"Sentence number {i} of the talk."} for i in range(1, 10)]
    user = json.dumps({"title": "A talk", "description": "", "paragraphs": paragraphs})
    result = llm(base_url).parse(system="Translate.", user=user, schema=TranslationBatch)
    assert [t.id for t in result.value.translations] == [p["id"] for p in paragraphs]
    assert all(t.zh.startswith(MARK) for t in result.value.translations)
    assert [s.paragraph_id for s in result.value.sections] == ["p0001", "p0007"]


def test_refusal_is_permanent() -> None:
    with (
        running_simulator(SimulatorConfig(fault_refusal=1.0)) as url,
        pytest.raises(PermanentError, match="refused to answer") as info,
    ):
        llm(url).parse(system="s", user="u", schema=Verdict)
    one_line(info.value)


def test_length_limit_is_permanent(base_url: str) -> None:
    with pytest.raises(PermanentError, match="length limit") as info:
        llm(base_url).parse(system="s", user="u", schema=Verdict, max_tokens=2)
    one_line(info.value)


@needs_ffmpeg
def test_429_is_transient_with_retry_after(wav: Path) -> None:
    with running_simulator(SimulatorConfig(fault_429=1.0, retry_after=3)) as url:
        with pytest.raises(TransientError) as chat:
            llm(url).parse(system="s", user="u", schema=Verdict)
        with pytest.raises(TransientError) as audio:
            OpenAITranscriber(url, "k", "whisper-1", 30).transcribe(wav)
    assert chat.value.retry_after == 3.0 and audio.value.retry_after == 3.0
    assert "(429)" in one_line(chat.value) and url in str(chat.value)
    assert str(audio.value).startswith(f"transcription server {url} is rate limiting")


def test_500_is_transient() -> None:
    with (
        running_simulator(SimulatorConfig(fault_500=1.0)) as url,
        pytest.raises(TransientError, match="failed with 500") as info,
    ):
        llm(url).parse(system="s", user="u", schema=Verdict)
    assert info.value.retry_after is None
    one_line(info.value)


@needs_ffmpeg
def test_wrong_key_is_permanent_and_names_the_setting(wav: Path) -> None:
    with running_simulator(SimulatorConfig(api_key="sk-right")) as url:
        with pytest.raises(PermanentError) as chat:
            llm(url, key="sk-wrong").parse(system="s", user="u", schema=Verdict)
        with pytest.raises(PermanentError) as audio:
            OpenAITranscriber(url, "sk-wrong", "whisper-1", 30).transcribe(wav)
        assert llm(url, key="sk-right").parse(system="s", user="u", schema=Verdict).value.ok is False
    assert one_line(audio.value) == (
        f"transcription server {url} rejected the API key (401): check PRESSROOM_TRANSCRIPTION_API_KEY"
    )
    assert "PRESSROOM_LLM_API_KEY" in one_line(chat.value)


def test_wrong_base_url_is_permanent(base_url: str) -> None:
    wrong = base_url.removesuffix("/v1") + "/nothing/v1"
    with pytest.raises(PermanentError, match=r"answered 404 .*PRESSROOM_LLM_BASE_URL") as info:
        llm(wrong).parse(system="s", user="u", schema=Verdict)
    one_line(info.value)


def test_unreachable_and_slow_servers_are_transient() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientError, match=r"unreachable .*PRESSROOM_LLM_BASE_URL"):
        llm(f"http://127.0.0.1:{port}/v1").parse(system="s", user="u", schema=Verdict)
    with (
        running_simulator(SimulatorConfig(fault_slow=1.0, slow_seconds=3)) as url,
        pytest.raises(TransientError, match=r"timed out.*PRESSROOM_LLM_TIMEOUT"),
    ):
        llm(url, timeout=0.5).parse(system="s", user="u", schema=Verdict)


def status_error(status: int, headers: dict[str, str], body: object) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://x/v1/chat/completions")
    response = httpx2.Response(status, headers=headers, request=request)
    cls = {429: openai.RateLimitError, 409: openai.ConflictError, 403: openai.PermissionDeniedError}
    return cls.get(status, openai.InternalServerError)(f"Error code: {status}", response=response, body=body)


def test_classify_status_codes_and_headers() -> None:
    def go(exc: BaseException) -> TransientError | PermanentError:
        return classify(exc, what="LLM server http://x/v1", setting_prefix="PRESSROOM_LLM")

    ms = go(status_error(429, {"retry-after-ms": "1500"}, {"message": "slow down"}))
    assert isinstance(ms, TransientError) and ms.retry_after == 1.5
    out_of_credit = {"message": "You exceeded your current quota", "code": "insufficient_quota"}
    quota = go(status_error(429, {}, out_of_credit))
    assert isinstance(quota, PermanentError) and "quota" in str(quota)
    assert isinstance(go(status_error(409, {}, None)), TransientError)
    busy = go(status_error(503, {"retry-after": "7"}, None))
    assert isinstance(busy, TransientError) and busy.retry_after == 7.0
    denied = go(status_error(403, {}, {"message": "Project does not\nhave access"}))
    assert isinstance(denied, PermanentError) and "Project does not have access" in one_line(denied)
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
