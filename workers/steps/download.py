"""Download step: a YouTube URL (through yt-dlp) or an uploaded file becomes metadata, speech audio, captions.

Plain functions over typed values; the Celery task uploads the files and emits the event. Every failure
leaves as TransientError (retry) or PermanentError (fail the run), with a one-line message saying what to do.
Local-file handling lives in workers/steps/media.py and is re-exported here.
"""

from __future__ import annotations

import logging
import re
import shutil
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from schemas.artifacts import Chapter, VideoMetadata
from workers.errors import NotAvailableYet, PermanentError, TransientError
from workers.steps.media import (
    AUDIO_FILENAME,
    DEFAULT_LIMITS,
    DownloadOutput,
    InputLimits,
    file_video_id,
    prepare_local,
    probe,
    to_speech_m4a,
)
from workers.steps.ytdlp_errors import LIVE, UNAVAILABLE, VIDEO_ID_RE, classify_download_error, number

__all__ = [
    "DownloadOutput",
    "check_available",
    "classify_download_error",
    "download_with_ytdlp",
    "download_youtube",
    "file_video_id",
    "metadata_from_info",
    "prepare_local",
    "ydl_options",
    "youtube_video_id",
]

log = logging.getLogger(__name__)

YTDLP_DIR = "yt-dlp"  # yt-dlp's own files (download, info.json, captions) stay apart from audio.m4a
_YT_HOST_RE = re.compile(r"(?:^|\.)(?:youtube\.com|youtube-nocookie\.com|youtubekids\.com)$")
_PATHVIDEO_ID_RE = re.compile(r"^/(?:shorts|live|embed|v|e)/([0-9A-Za-z_-]{11})(?:[/?#]|$)")


# --- URLs -----------------------------------------------------------------------------------------
def _ytdlp_match(url: str) -> str | None:
    """yt-dlp's own YoutubeIE pattern (offline regex); None if this yt-dlp no longer exposes it."""
    try:
        from yt_dlp.extractor.youtube import YoutubeIE

        match = YoutubeIE._match_valid_url(url)
    except Exception:  # a private API: any change in it sends us to the fallback
        return None
    if not match or not match.group("id"):
        return None
    tail = url[match.end("id") : match.end("id") + 1]
    return None if re.match(r"[0-9A-Za-z_-]", tail) else str(match.group("id"))  # no 12+ char "ids"


def _fallback_match(url: str) -> str | None:
    """The same answers from the URL's parts, for when yt-dlp's pattern is unavailable."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host == "youtu.be":
        candidate = parts.path[1:].split("/")[0]
    elif parts.path.rstrip("/") in ("/watch", ""):
        candidate = (parse_qs(parts.query).get("v") or [""])[0]
    else:
        m = _PATHVIDEO_ID_RE.match(parts.path)
        candidate = m.group(1) if m else ""
    return candidate if VIDEO_ID_RE.match(candidate) else None


def youtube_video_id(url: str) -> str | None:
    """The 11-character video id of a YouTube video URL (watch, youtu.be, shorts, live, embed, m., music.).

    None for anything else, including playlists, channels and other sites, so a run is keyed by the
    video and never by how its link was written.
    """
    url = url.strip()
    if not url or any(c.isspace() for c in url):
        return None
    if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", url):
        url = "https:" + url if url.startswith("//") else "https://" + url
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not (host == "youtu.be" or _YT_HOST_RE.search(host)):
        return None
    return _ytdlp_match(url) or _fallback_match(url)


def watch_url(video_id: str) -> str:
    """The canonical URL yt-dlp is given: no playlist, timestamp or tracking parameters."""
    return f"https://www.youtube.com/watch?v={video_id}"


# --- availability and metadata --------------------------------------------------------------------
def check_available(info: dict[str, Any]) -> None:
    """Refuse what Pressroom cannot or should not download, before any bytes move."""
    vid = info.get("id") or "?"
    kind = info.get("_type") or "video"
    if kind != "video":
        raise PermanentError(f"{kind} {vid} is not a single video: submit the URL of one video")
    reason = UNAVAILABLE.get(str(info.get("availability")))
    if reason:
        raise PermanentError(f"video {vid} {reason}")
    live_status = info.get("live_status")
    if live_status is None and (info.get("is_live") or info.get("media_type") == "livestream"):
        live_status = "is_live"  # a stream whose state yt-dlp could not tell: treat it as live
    reason = LIVE.get(str(live_status))
    if reason:
        raise NotAvailableYet(f"video {vid} {reason}")


def _upload_date(value: Any) -> date | None:
    try:
        return datetime.strptime(str(value), "%Y%m%d").date()
    except ValueError:
        return None




def _info_chapters(info: dict[str, Any]) -> list[Chapter]:
    duration = number(info.get("duration"))
    chapters: list[Chapter] = []
    for i, ch in enumerate(info.get("chapters") or []):
        start = number(ch.get("start_time"))
        end = number(ch.get("end_time"))
        end = end if end is not None else duration
        if start is None or end is None or start < 0 or end < start:
            continue
        chapters.append(Chapter(title=str(ch.get("title") or f"Chapter {i + 1}"), start=start, end=end))
    return chapters


def metadata_from_info(info: dict[str, Any]) -> VideoMetadata:
    """Keep only what later steps use from yt-dlp's info dict; missing fields get harmless defaults."""
    vid = str(info["id"])
    return VideoMetadata(
        video_id=vid,
        title=str(info.get("title") or vid),
        channel=str(info.get("channel") or info.get("uploader") or ""),
        channel_id=str(info.get("channel_id") or ""),
        upload_date=_upload_date(info.get("upload_date")),
        duration=max(number(info.get("duration")) or 0.0, 0.0),
        description=str(info.get("description") or ""),
        chapters=_info_chapters(info),
        webpage_url=str(info.get("webpage_url") or info.get("original_url") or ""),
        language=info.get("language") or None,
    )


# --- yt-dlp ---------------------------------------------------------------------------------------
class _YtDlpLogger:
    """Sends yt-dlp's output to logging: a worker's stdout stays clean, and errors come back as exceptions."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def info(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def warning(self, msg: str) -> None:
        log.warning("yt-dlp: %s", msg)

    def error(self, msg: str) -> None:
        log.info("yt-dlp: %s", msg)  # raised right after as DownloadError; the caller logs the outcome


def ydl_options(
    workdir: Path,
    *,
    captions_langs: tuple[str, ...] = ("en", "en-orig"),
    auto_captions: bool = True,
    cookiefile: Path | None = None,
) -> dict[str, Any]:
    """The YoutubeDL options of the download step, shared by download_youtube and its offline test.

    m4a AAC is preferred so FFmpegExtractAudio usually just keeps it; anything else (opus) is converted to
    m4a, never left as .opus, which the transcription API rejects. download_with_ytdlp then re-encodes it
    to the same AAC mono 16 kHz 48 kbps as an upload (the 25 MB transcription limit). Captions are VTT.
    """
    opts: dict[str, Any] = {
        "format": "bestaudio[ext=m4a]/bestaudio/best",
        "postprocessors": [{"key": "FFmpegExtractAudio", "preferredcodec": "m4a"}],
        "final_ext": "m4a",  # lets a retry in the same workdir see the finished file and skip the download
        "paths": {"home": str(workdir / YTDLP_DIR)},
        "outtmpl": {"default": "%(id)s.%(ext)s"},
        "writeinfojson": True,
        "writesubtitles": bool(captions_langs),
        "writeautomaticsub": auto_captions and bool(captions_langs),
        "subtitleslangs": list(captions_langs),
        "subtitlesformat": "vtt",
        "noplaylist": True,
        "quiet": True,
        "noprogress": True,
        "logger": _YtDlpLogger(),
        "socket_timeout": 30,
        "js_runtimes": {"deno": {}, "node": {}},  # YouTube's JS challenges; whichever is installed
    }
    if cookiefile is not None:
        opts["cookiefile"] = str(cookiefile)
    return opts


def _caption_files(result: dict[str, Any]) -> dict[str, Path]:
    """Written captions as {"en.vtt": path, "en-orig-auto.vtt": path}; '-auto' marks YouTube's ASR."""
    manual = result.get("subtitles") or {}
    captions: dict[str, Path] = {}
    for lang, sub in (result.get("requested_subtitles") or {}).items():
        path = Path(sub["filepath"]) if sub.get("filepath") else None
        if path is not None and path.is_file():
            captions[f"{lang}{'' if lang in manual else '-auto'}.{sub.get('ext') or path.suffix[1:]}"] = path
    return captions


def download_with_ytdlp(url: str, workdir: Path, options: dict[str, Any],
                        limits: InputLimits = DEFAULT_LIMITS) -> DownloadOutput:
    """Extract, check, download and convert with yt-dlp; any URL yt-dlp supports (tests use a local one).

    Captions are a bonus: if only they fail, the audio is downloaded without them.
    """
    from yt_dlp import YoutubeDL
    from yt_dlp.utils import YoutubeDLError

    (workdir / YTDLP_DIR).mkdir(parents=True, exist_ok=True)
    video_id = youtube_video_id(url)
    options = {**options, "max_filesize": limits.max_bytes}  # yt-dlp stops a download that would pass it
    try:
        with YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=False)
            if not isinstance(info, dict):
                raise PermanentError(f"{url}: yt-dlp found nothing to download; check the URL")
            check_available(info)
            limits.check_duration(number(info.get("duration")) or 0.0, f"{url} ({info.get('title') or 'video'})")
            try:
                result = ydl.process_ie_result(dict(info), download=True)
            except YoutubeDLError as exc:
                if "unable to download video subtitles" not in str(exc).lower():
                    raise
                log.warning("%s: captions failed, downloading audio without them: %s", info.get("id"), exc)
                with YoutubeDL({**options, "writesubtitles": False, "writeautomaticsub": False}) as bare:
                    result = bare.process_ie_result(dict(info), download=True)
    except (YoutubeDLError, OSError) as exc:
        raise classify_download_error(exc, video_id=video_id) from exc

    downloads = result.get("requested_downloads") or []
    fetched = Path(downloads[0]["filepath"]) if downloads and downloads[0].get("filepath") else None
    if fetched is None or not fetched.is_file():
        raise TransientError(f"{url}: yt-dlp reported success but wrote no audio file: retrying")
    audio = to_speech_m4a(fetched, workdir / AUDIO_FILENAME, duration=number(result.get("duration")) or 0.0)
    fetched.unlink(missing_ok=True)  # the speech m4a replaces it; long talks would otherwise double the disk
    metadata = metadata_from_info(result)
    if not metadata.duration:
        metadata = metadata.model_copy(update={"duration": probe(audio).duration})
    captions = _caption_files(result)
    return DownloadOutput(metadata=metadata, audio_path=audio, audio_format="m4a", captions=captions)


def download_youtube(
    url: str,
    workdir: Path,
    *,
    captions_langs: tuple[str, ...] = ("en", "en-orig"),
    auto_captions: bool = True,
    cookiefile: Path | None = None,
    limits: InputLimits = DEFAULT_LIMITS,
) -> DownloadOutput:
    """A YouTube video's metadata, speech m4a and captions, downloaded into workdir.

    Only YouTube video URLs are accepted; yt-dlp gets the canonical watch URL, so playlist and tracking
    parameters never reach it. cookiefile (Netscape format) lets members-only or age-restricted
    videos through.
    """
    video_id = youtube_video_id(url)
    if video_id is None:
        raise PermanentError(
            f"{url!r} is not a YouTube video URL: submit a youtube.com/watch?v=... or youtu.be link"
        )
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        raise PermanentError("ffmpeg/ffprobe are not installed on this worker: install ffmpeg")
    options = ydl_options(
        workdir, captions_langs=captions_langs, auto_captions=auto_captions, cookiefile=cookiefile
    )
    return download_with_ytdlp(watch_url(video_id), workdir, options, limits)
