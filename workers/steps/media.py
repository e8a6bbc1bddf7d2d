"""Local media for the download step: probe with ffprobe, convert to the speech m4a, hash files.

Both sources end here: a YouTube download and an uploaded file become the same AAC, mono, 16 kHz,
48 kbps m4a (about 21.6 MB an hour), which is what speech models want and keeps talks of up to an
hour under the 25 MB transcription upload limit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from schemas.artifacts import Chapter, VideoMetadata
from schemas.base import Model
from workers.errors import PermanentError

log = logging.getLogger(__name__)

AUDIO_FILENAME = "audio.m4a"
SPEECH_SAMPLE_RATE = 16_000
SPEECH_BITRATE = "48k"
ACCEPTED_FORMATS = "mp4, mkv, webm, mov, m4a, mp3, wav, flac or ogg"
# ffprobe's names of the demuxers for real audio and video containers. Anything else is refused before it is
# opened for conversion: playlists (hls, concat, dash) and image sequences make ffmpeg read other files.
CONTAINERS = frozenset({
    "mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "mp3", "wav", "w64", "ogg", "flac", "aac",
    "avi", "mpegts", "mpeg", "asf", "flv", "aiff", "caf", "amr", "ape", "wv", "mpc", "mpc8", "tta", "dsf", "au",
})  # fmt: skip


@dataclass(frozen=True)
class InputLimits:
    """How big a talk the download step takes (PRESSROOM_MAX_INPUT_BYTES, PRESSROOM_MAX_INPUT_DURATION)."""

    max_bytes: int = 8 * 1024**3
    max_duration: float = 6 * 3600.0

    def check_bytes(self, size: int, what: str) -> None:
        if size > self.max_bytes:
            raise PermanentError(f"{what} is {size / 1e9:.2f} GB, over the limit of {self.max_bytes / 1e9:.2f} GB: "
                                 "give a smaller file, or raise PRESSROOM_MAX_INPUT_BYTES")

    def check_duration(self, seconds: float, what: str) -> None:
        if seconds > self.max_duration:
            raise PermanentError(f"{what} lasts {seconds / 3600:.1f} h, over the limit of "
                                 f"{self.max_duration / 3600:.1f} h: raise PRESSROOM_MAX_INPUT_DURATION to take it")


DEFAULT_LIMITS = InputLimits()
_HASH_CHUNK = 1 << 20
_PROBE_TIMEOUT = 120.0
_MIN_CONVERT_TIMEOUT = 600.0


class DownloadOutput(Model):
    """What the download step hands its task: the metadata and the local files the task uploads."""

    metadata: VideoMetadata
    audio_path: Path
    audio_format: Literal["m4a", "mp3"] = "m4a"
    captions: dict[str, Path] = Field(default_factory=dict, description="e.g. en.vtt, en-auto.vtt -> file")


@dataclass(frozen=True)
class MediaProbe:
    """The few facts ffprobe gives that the step needs."""

    path: Path
    duration: float
    audio_streams: int
    format_name: str = ""
    audio_codec: str | None = None
    channels: int | None = None
    sample_rate: int | None = None
    bit_rate: int | None = None
    title: str | None = None
    chapters: list[Chapter] = field(default_factory=list)


def file_video_id(path: Path) -> str:
    """A stable id for an uploaded file: the same bytes always map to the same run artifacts."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return "file-" + digest.hexdigest()[:12]


def _ffmpeg_input(path: Path, demuxer: str | None = None) -> list[str]:
    """Input args that read only this local file: no URL, no protocol prefix, no '-name' surprises; with
    demuxer, read as that container and nothing ffmpeg might guess from the bytes."""
    forced = ["-f", demuxer] if demuxer else []
    return ["-protocol_whitelist", "file", *forced, "-i", f"file:{path.resolve()}"]


def container(media: MediaProbe) -> str:
    """The demuxer to open a file with, if it is a real audio or video container; else a PermanentError."""
    names = [n for n in media.format_name.split(",") if n]
    if not names or not set(names) <= CONTAINERS:
        raise PermanentError(f"{media.path.name} is {media.format_name or 'an unknown format'}, not an audio or "
                             f"video file (a playlist or a list of other files is refused); upload one of "
                             f"{ACCEPTED_FORMATS}")
    return names[0]


def _last_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"


def _run(cmd: list[str], *, timeout: float, what: str) -> subprocess.CompletedProcess[str]:
    """Run ffmpeg/ffprobe; a missing binary or a hang is permanent (retrying will not install ffmpeg)."""
    try:
        return subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", timeout=timeout,
        )
    except FileNotFoundError:
        raise PermanentError(f"{cmd[0]} is not installed: install ffmpeg (apt-get install ffmpeg)") from None
    except subprocess.TimeoutExpired:
        raise PermanentError(
            f"{cmd[0]} took over {timeout:.0f} s on {what}: the file may be damaged"
        ) from None


def _tag(tags: Any, name: str) -> str | None:
    """Container tags differ in case (mp4 'title', mkv 'TITLE')."""
    if not isinstance(tags, dict):
        return None
    for key, value in tags.items():
        if str(key).lower() == name and str(value).strip():
            return str(value).strip()
    return None


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _chapters(raw: Any) -> list[Chapter]:
    chapters: list[Chapter] = []
    for i, ch in enumerate(raw if isinstance(raw, list) else []):
        start, end = _float(ch.get("start_time")), _float(ch.get("end_time"))
        if start is None or end is None or start < 0 or end < start:
            continue
        title = _tag(ch.get("tags"), "title") or f"Chapter {i + 1}"
        chapters.append(Chapter(title=title, start=start, end=end))
    return chapters


def probe(path: Path) -> MediaProbe:
    """ffprobe a file; an unreadable one is a PermanentError naming the file and the formats that work."""
    if not path.is_file():
        raise PermanentError(f"{path.name}: file not found at {path}; upload the media file again")
    cmd = ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
           "-show_chapters", *_ffmpeg_input(path)]
    proc = _run(cmd, timeout=_PROBE_TIMEOUT, what=path.name)
    try:
        data = json.loads(proc.stdout) if proc.returncode == 0 else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("format"), dict):
        raise PermanentError(
            f"{path.name} is not a readable audio or video file ({_last_line(proc.stderr)}); "
            f"upload one of {ACCEPTED_FORMATS}"
        )
    fmt = data["format"]
    audio = [s for s in data.get("streams") or [] if s.get("codec_type") == "audio"]
    first = audio[0] if audio else {}
    duration = _float(fmt.get("duration")) or _float(first.get("duration")) or 0.0
    return MediaProbe(
        path=path,
        duration=max(duration, 0.0),
        audio_streams=len(audio),
        format_name=str(fmt.get("format_name") or ""),
        audio_codec=first.get("codec_name"),
        channels=_int(first.get("channels")),
        sample_rate=_int(first.get("sample_rate")),
        bit_rate=_int(first.get("bit_rate")),
        title=_tag(fmt.get("tags"), "title"),
        chapters=_chapters(data.get("chapters")),
    )


def is_speech_aac(media: MediaProbe) -> bool:
    """Already what to_speech_m4a makes (AAC, mono, 16 kHz, at most ~64 kbps): copy it, don't re-encode."""
    return (media.audio_codec == "aac" and media.channels == 1 and media.sample_rate == SPEECH_SAMPLE_RATE
            and media.bit_rate is not None and media.bit_rate <= 64_000)


def to_speech_m4a(src: Path, dest: Path, *, duration: float = 0.0, start: float | None = None,
                  length: float | None = None, what: str | None = None,
                  fix: str = f"upload one of {ACCEPTED_FORMATS}", copy: bool = False,
                  demuxer: str | None = None) -> Path:
    """Convert the first audio stream (or the span start..start+length of it) to AAC mono 16 kHz 48 kbps,
    file to file (never in memory). A span is re-encoded from an exact sample, not cut on AAC frames.

    Written to a temporary name and renamed, so dest is either complete or absent; src may equal dest.
    """
    tmp = dest.with_name(dest.name + ".part")
    span = [] if start is None else ["-ss", f"{start:.6f}", *(["-t", f"{length:.6f}"] if length else [])]
    cmd = [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *span, *_ffmpeg_input(src, demuxer),
        "-map", "0:a:0", "-vn", "-sn", "-dn", "-map_metadata", "-1", "-map_chapters", "-1",
        *(["-c:a", "copy"] if copy else
          ["-ac", "1", "-ar", str(SPEECH_SAMPLE_RATE), "-c:a", "aac", "-b:a", SPEECH_BITRATE]),
        "-movflags", "+faststart", "-f", "ipod", f"file:{tmp.resolve()}",
    ]
    timeout = max(_MIN_CONVERT_TIMEOUT, length or duration)  # AAC at 16 kHz mono runs far faster than real time
    proc = _run(cmd, timeout=timeout, what=what or src.name)
    if proc.returncode != 0 or not tmp.is_file():
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise PermanentError(f"ffmpeg could not convert {what or src.name} to m4a: {_last_line(proc.stderr)}; {fix}")
    os.replace(tmp, dest)
    return dest


def prepare_local(
    media_path: Path, workdir: Path, *, video_id: str, title: str | None = None,
    limits: InputLimits = DEFAULT_LIMITS,
) -> DownloadOutput:
    """An uploaded file becomes the same speech m4a and metadata a YouTube download gives."""
    if media_path.is_file():
        limits.check_bytes(media_path.stat().st_size, media_path.name)
    src = probe(media_path)
    demuxer = container(src)
    limits.check_duration(src.duration, media_path.name)
    if src.audio_streams == 0:
        raise PermanentError(
            f"{media_path.name} has no audio stream, so there is nothing to transcribe; "
            f"upload a file with sound ({ACCEPTED_FORMATS})"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    audio = to_speech_m4a(media_path, workdir / AUDIO_FILENAME, duration=src.duration, copy=is_speech_aac(src),
                          demuxer=demuxer)
    out = probe(audio)
    if out.duration <= 0:
        raise PermanentError(f"{media_path.name} has an empty audio stream; upload a file with sound")
    log.info("prepared %s: %.1f s -> %s", media_path.name, out.duration, audio)
    metadata = VideoMetadata(
        video_id=video_id,
        title=title or src.title or media_path.stem,
        duration=out.duration,
        chapters=src.chapters,
    )
    return DownloadOutput(metadata=metadata, audio_path=audio, audio_format="m4a")
