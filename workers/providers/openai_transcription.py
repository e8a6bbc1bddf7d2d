"""The transcriber for any OpenAI-compatible /v1/audio/transcriptions endpoint (the `openai` SDK is imported
only here, so a run that needs no transcription never pays for loading it)."""

from __future__ import annotations

from pathlib import Path

import httpx2
import openai
import pydantic
from openai import Omit, omit

from schemas.artifacts import Segment
from workers.errors import PermanentError
from workers.providers.gate import ProviderGate
from workers.providers.limiter import Limits
from workers.providers.openai_client import (
    AnswerTooLarge,
    answer_json,
    answer_limit,
    classify,
    make_client,
    wrong_shape,
)
from workers.providers.transcription import (
    MAX_UPLOAD_BYTES,
    TranscriptionResult,
    is_whisper,
    probe_duration,
    transcript_char_limit,
)

SETTING_PREFIX = "PRESSROOM_TRANSCRIPTION"
LENGTH_SETTING = "PRESSROOM_MAX_TRANSCRIPT_CHARS_PER_SECOND"
# An answer body may hold this many bytes per allowed character (verbose_json carries the text twice, in
# "text" and in the segments, plus token ids and per-segment numbers, and a server may escape non-ASCII as
# \uXXXX: 6 bytes a character) and this many more; a larger one is refused before it is read.
ANSWER_BYTES_PER_CHAR = 24
ANSWER_BYTES_EXTRA = 64 * 1024

# whisper's verbose_json names the language ("english"); the rest of Pressroom uses ISO 639-1 codes
_LANGUAGE_CODES = {
    "english": "en", "chinese": "zh", "japanese": "ja", "korean": "ko", "german": "de", "french": "fr",
    "spanish": "es", "italian": "it", "portuguese": "pt", "russian": "ru", "dutch": "nl", "hindi": "hi",
}  # fmt: skip


class _Segment(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(allow_inf_nan=False)
    start: float
    end: float
    text: str


class _Answer(pydantic.BaseModel):
    """What Pressroom reads of a transcription: whisper's verbose_json, or json's {"text": …} alone."""

    model_config = pydantic.ConfigDict(allow_inf_nan=False)
    text: str
    segments: list[_Segment] | None = None
    language: str | None = None
    duration: float | None = pydantic.Field(default=None, ge=0)


class OpenAITranscriber:
    """Transcribes through any OpenAI-compatible /v1/audio/transcriptions endpoint."""

    def __init__(
        self, base_url: str, api_key: str, model: str, timeout: float, max_retries: int = 0,
        max_chars_per_second: float = 60.0, gate: ProviderGate | None = None,
    ) -> None:  # fmt: skip
        self.base_url = base_url
        self._gate = gate or ProviderGate("transcription", base_url, model, limiter=None, limits=Limits())
        self.model = model
        self.timeout = timeout
        self.max_chars_per_second = max_chars_per_second
        self._client = make_client(base_url, api_key, timeout, max_retries)
        self._what = f"transcription server {base_url}"

    def transcribe(
        self, audio: Path, *, prompt: str | None = None, language: str | None = None
    ) -> TranscriptionResult:
        """Upload one file (≤ 25 MB) and return its segments; errors come out as Pressroom errors."""
        size = self._check_file(audio)
        audio_seconds = probe_duration(audio)
        max_chars = transcript_char_limit(audio_seconds, self.max_chars_per_second)
        p: str | Omit = prompt if prompt else omit
        lang: str | Omit = language if language else omit
        whisper = is_whisper(self.model)
        with self._gate.request(audio_seconds=audio_seconds) as call:
            try:
                with audio.open("rb") as fh, answer_limit(ANSWER_BYTES_EXTRA + ANSWER_BYTES_PER_CHAR * max_chars):
                    upload = (audio.name, fh)
                    create = self._client.audio.transcriptions.with_raw_response.create
                    if whisper:
                        response = create(
                            file=upload, model=self.model, response_format="verbose_json",
                            timestamp_granularities=["segment"], prompt=p, language=lang,
                        ).http_response  # fmt: skip
                    else:
                        response = create(
                            file=upload, model=self.model, response_format="json", prompt=p, language=lang
                        ).http_response
            except AnswerTooLarge as exc:
                raise PermanentError(
                    f"{self._what} sent {exc.size:,}{'' if exc.declared else '+'} bytes for {audio_seconds:.1f} s "
                    f"of audio ({audio.name}), far more than {LENGTH_SETTING}={self.max_chars_per_second:g} "
                    f"allows; refused unread: {self._length_fix}"
                ) from exc
            except openai.OpenAIError as exc:
                error = classify(exc, what=self._what, setting_prefix=SETTING_PREFIX, timeout=self.timeout)
                raise call.failed(getattr(exc, "status_code", None), error) from exc
            except OSError as exc:
                raise PermanentError(f"cannot read audio {audio} ({size} bytes): {exc.strerror or exc}") from exc
            call.ok(audio_seconds=audio_seconds)
        answer = self._read(response, whisper)
        chars = max(len(answer.text), sum(len(s.text.strip()) for s in answer.segments or []))
        if chars > max_chars:
            raise PermanentError(
                f"{self._what} returned {chars:,} characters for {audio_seconds:.1f} s of audio ({audio.name}), "
                f"more than the {max_chars:,} that {LENGTH_SETTING}={self.max_chars_per_second:g} allows: "
                f"{self._length_fix}"
            )
        if whisper:
            return self._from_verbose(answer, audio_seconds, language)
        text = answer.text.strip()
        segments = [Segment(start=0.0, end=audio_seconds, text=text)] if text else []
        return TranscriptionResult(
            segments=segments, language=language, duration=audio_seconds, audio_seconds=audio_seconds
        )

    @property
    def _length_fix(self) -> str:
        return f"is the model looping? check {SETTING_PREFIX}_MODEL, or raise {LENGTH_SETTING} if this is real speech"

    def _read(self, response: httpx2.Response, whisper: bool) -> _Answer:
        """The answer's fields, or a PermanentError naming the server when it is not a transcription."""
        data = answer_json(response, what=self._what, setting_prefix=SETTING_PREFIX)
        try:
            return _Answer.model_validate(data)
        except pydantic.ValidationError as exc:
            kind = "a verbose_json transcription" if whisper else "a json transcription"
            fix = f"check that {SETTING_PREFIX}_BASE_URL is an OpenAI-compatible transcription API (…/v1)"
            raise wrong_shape(exc, what=self._what, answer=kind, fix=fix) from None

    def _check_file(self, audio: Path) -> int:
        try:
            size = audio.stat().st_size
        except OSError as exc:
            raise PermanentError(f"audio file {audio} is missing: {exc.strerror or exc}") from exc
        if size > MAX_UPLOAD_BYTES:
            raise PermanentError(
                f"audio {audio.name} is {size / 1024 / 1024:.1f} MB, over the 25 MB upload limit of "
                f"{self._what}: the transcribe step cuts long audio into chunks below it; this file skipped that"
            )
        return size

    def _from_verbose(self, verbose: _Answer, audio_seconds: float, asked: str | None) -> TranscriptionResult:
        """Whisper's segments, cleaned: stripped text, no negative spans, in time order."""
        segments: list[Segment] = []
        for raw in sorted(verbose.segments or [], key=lambda s: (s.start, s.end)):
            text = raw.text.strip()
            if not text:
                continue
            start = max(0.0, raw.start)
            segments.append(Segment(start=start, end=max(start, raw.end), text=text))
        if not segments and verbose.text.strip():  # a server that ignores timestamp_granularities
            segments = [Segment(start=0.0, end=verbose.duration or audio_seconds, text=verbose.text.strip())]
        reported = (verbose.language or "").strip().lower()
        language = _LANGUAGE_CODES.get(reported, reported) or asked
        return TranscriptionResult(
            segments=segments,
            language=language,
            duration=verbose.duration or audio_seconds,
            audio_seconds=audio_seconds,
        )
