"""Speech-to-text behind a small protocol, so steps depend on segments, not on one vendor's response shape."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Protocol

import openai
from openai import Omit, omit
from openai.types.audio import TranscriptionVerbose
from pydantic import BaseModel, Field

from schemas.artifacts import Segment
from workers.errors import PermanentError
from workers.providers.openai_client import classify, make_client

MAX_UPLOAD_BYTES = 25 * 1024 * 1024
SETTING_PREFIX = "PRESSROOM_TRANSCRIPTION"

# whisper's verbose_json names the language ("english"); the rest of Pressroom uses ISO 639-1 codes
_LANGUAGE_CODES = {
    "english": "en", "chinese": "zh", "japanese": "ja", "korean": "ko", "german": "de", "french": "fr",
    "spanish": "es", "italian": "it", "portuguese": "pt", "russian": "ru", "dutch": "nl", "hindi": "hi",
}  # fmt: skip


class TranscriptionResult(BaseModel):
    """What a transcriber returns: timed segments plus the numbers cost accounting needs."""

    segments: list[Segment]
    language: str | None = None
    duration: float = Field(ge=0, description="seconds of speech the server reports (or the probe's)")
    audio_seconds: float = Field(ge=0, description="length of the uploaded file, probed locally")

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)


class Transcriber(Protocol):
    """Anything that turns one audio file into timed segments."""

    model: str

    def transcribe(
        self, audio: Path, *, prompt: str | None = None, language: str | None = None
    ) -> TranscriptionResult: ...


def probe_duration(path: Path) -> float:
    """Length of a media file in seconds, via ffprobe (reads the container, not the whole stream)."""
    cmd = ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise PermanentError("ffprobe is not installed: install ffmpeg (apt-get install ffmpeg)") from None
    except subprocess.TimeoutExpired:
        raise PermanentError(f"ffprobe took over 60 s on {path.name}: is the file readable?") from None
    out = proc.stdout.strip().splitlines()
    try:
        return max(0.0, float(out[0]))
    except (IndexError, ValueError):
        reason = " ".join(proc.stderr.split())[:160] or "no duration found"
        raise PermanentError(f"cannot read audio {path.name} ({reason}): is it an audio file?") from None


def is_whisper(model: str) -> bool:
    """whisper-* models give segment timestamps; gpt-4o*-transcribe models only json/text."""
    return "whisper" in model.lower()  # whisper-1, openai/whisper-large-v3, Systran/faster-whisper-…


class OpenAITranscriber:
    """Transcribes through any OpenAI-compatible /v1/audio/transcriptions endpoint."""

    def __init__(self, base_url: str, api_key: str, model: str, timeout: float, max_retries: int = 0) -> None:
        self.base_url = base_url
        self.model = model
        self._client = make_client(base_url, api_key, timeout, max_retries)
        self._what = f"transcription server {base_url}"

    def transcribe(
        self, audio: Path, *, prompt: str | None = None, language: str | None = None
    ) -> TranscriptionResult:
        """Upload one file (≤ 25 MB) and return its segments; errors come out as Pressroom errors."""
        size = self._check_file(audio)
        audio_seconds = probe_duration(audio)
        p: str | Omit = prompt if prompt else omit
        lang: str | Omit = language if language else omit
        try:
            with audio.open("rb") as fh:
                upload = (audio.name, fh)
                if is_whisper(self.model):
                    verbose = self._client.audio.transcriptions.create(
                        file=upload, model=self.model, response_format="verbose_json",
                        timestamp_granularities=["segment"], prompt=p, language=lang,
                    )  # fmt: skip
                    return self._from_verbose(verbose, audio_seconds, language)
                plain = self._client.audio.transcriptions.create(
                    file=upload, model=self.model, response_format="json", prompt=p, language=lang
                )
        except openai.OpenAIError as exc:
            raise classify(exc, what=self._what, setting_prefix=SETTING_PREFIX) from exc
        except OSError as exc:
            raise PermanentError(f"cannot read audio {audio} ({size} bytes): {exc.strerror or exc}") from exc
        text = plain.text.strip()
        segments = [Segment(start=0.0, end=audio_seconds, text=text)] if text else []
        return TranscriptionResult(
            segments=segments, language=language, duration=audio_seconds, audio_seconds=audio_seconds
        )

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

    def _from_verbose(
        self, verbose: TranscriptionVerbose, audio_seconds: float, asked: str | None
    ) -> TranscriptionResult:
        """Whisper's segments, cleaned: stripped text, no negative spans, in time order."""
        segments: list[Segment] = []
        for raw in sorted(verbose.segments or [], key=lambda s: (s.start, s.end)):
            text = raw.text.strip()
            if not text:
                continue
            start = max(0.0, float(raw.start))
            segments.append(Segment(start=start, end=max(start, float(raw.end)), text=text))
        if not segments and verbose.text.strip():  # a server that ignores timestamp_granularities
            segments = [Segment(start=0.0, end=verbose.duration or audio_seconds, text=verbose.text.strip())]
        reported = (verbose.language or "").strip().lower()
        language = _LANGUAGE_CODES.get(reported, reported) or asked
        return TranscriptionResult(
            segments=segments,
            language=language,
            duration=float(verbose.duration or audio_seconds),
            audio_seconds=audio_seconds,
        )
