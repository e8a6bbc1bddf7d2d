"""Speech-to-text behind a small protocol, so steps depend on segments, not on one vendor's response shape."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field

from schemas.artifacts import Segment
from workers.errors import PermanentError

MAX_UPLOAD_BYTES = 25 * 1024 * 1024


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


MIN_TRANSCRIPT_CHARS = 2000  # the floor of transcript_char_limit, so a few seconds of fast speech still fit


def transcript_char_limit(audio_seconds: float, chars_per_second: float) -> int:
    """The most characters a transcription of `audio_seconds` of audio may have before it is refused as not
    a transcription (speech runs at ~15 characters a second; PRESSROOM_MAX_TRANSCRIPT_CHARS_PER_SECOND)."""
    return max(MIN_TRANSCRIPT_CHARS, math.ceil(chars_per_second * audio_seconds))
