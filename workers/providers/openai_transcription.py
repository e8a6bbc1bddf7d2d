"""The transcriber for any OpenAI-compatible /v1/audio/transcriptions endpoint (the `openai` SDK is imported
only here, so a run that needs no transcription never pays for loading it)."""

from __future__ import annotations

from pathlib import Path

import openai
from openai import Omit, omit
from openai.types.audio import TranscriptionVerbose

from schemas.artifacts import Segment
from workers.errors import PermanentError
from workers.providers.openai_client import classify, make_client
from workers.providers.transcription import MAX_UPLOAD_BYTES, TranscriptionResult, is_whisper, probe_duration

SETTING_PREFIX = "PRESSROOM_TRANSCRIPTION"

# whisper's verbose_json names the language ("english"); the rest of Pressroom uses ISO 639-1 codes
_LANGUAGE_CODES = {
    "english": "en", "chinese": "zh", "japanese": "ja", "korean": "ko", "german": "de", "french": "fr",
    "spanish": "es", "italian": "it", "portuguese": "pt", "russian": "ru", "dutch": "nl", "hindi": "hi",
}  # fmt: skip


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
