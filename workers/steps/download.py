"""Download step: a YouTube URL (through yt-dlp) or an uploaded file becomes metadata, speech audio, captions.

Plain functions over typed values; the Celery task uploads the files and emits the event. Every failure
leaves as TransientError (retry) or PermanentError (fail the run), with a one-line message saying what to do.
Local-file handling lives in workers/steps/media.py and is re-exported here.
"""

from __future__ import annotations

import errno
import logging
import re
import shutil
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from schemas.artifacts import Chapter, VideoMetadata
from workers.errors import NotAvailableYet, PermanentError, TransientError
from workers.steps.media import (
    AUDIO_FILENAME,
    DownloadOutput,
    file_video_id,
    prepare_local,
    probe,
    to_speech_m4a,
)

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
_ID_RE = re.compile(r"^[0-9A-Za-z_-]{11}$")
_YT_HOST_RE = re.compile(r"(?:^|\.)(?:youtube\.com|youtube-nocookie\.com|youtubekids\.com)$")
_PATH_ID_RE = re.compile(r"^/(?:shorts|live|embed|v|e)/([0-9A-Za-z_-]{11})(?:[/?#]|$)")


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
        m = _PATH_ID_RE.match(parts.path)
        candidate = m.group(1) if m else ""
    return candidate if _ID_RE.match(candidate) else None


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
_UNAVAILABLE = {
    "private": "is private: Pressroom cannot download it; ask the owner to make it public or unlisted",
    "premium_only": "is for YouTube Premium members only: Pressroom cannot download it; skip it",
    "subscriber_only": "is a members-only video: Pressroom cannot download it; skip it or provide cookies",
    "needs_auth": "needs a signed-in account (age-restricted or sign-in only): skip it or provide cookies",
}
_LIVE = {
    "is_live": "is a live stream in progress: submit it again once the stream has ended",
    "is_upcoming": "is a scheduled live stream or premiere that has not started: "
    "submit it again after it airs",
    # post_live: ended, but YouTube has not processed the recording yet (yt-dlp can only get a partial
    # DVR copy). That takes hours, far past the download step's retries, so it fails now with advice.
    "post_live": "is a live stream that just ended and YouTube is still processing the recording: "
    "submit it again in a few hours",
}


def check_available(info: dict[str, Any]) -> None:
    """Refuse what Pressroom cannot or should not download, before any bytes move."""
    vid = info.get("id") or "?"
    kind = info.get("_type") or "video"
    if kind != "video":
        raise PermanentError(f"{kind} {vid} is not a single video: submit the URL of one video")
    reason = _UNAVAILABLE.get(str(info.get("availability")))
    if reason:
        raise PermanentError(f"video {vid} {reason}")
    live_status = info.get("live_status")
    if live_status is None and (info.get("is_live") or info.get("media_type") == "livestream"):
        live_status = "is_live"  # a stream whose state yt-dlp could not tell: treat it as live
    reason = _LIVE.get(str(live_status))
    if reason:
        raise NotAvailableYet(f"video {vid} {reason}")


def _upload_date(value: Any) -> date | None:
    try:
        return datetime.strptime(str(value), "%Y%m%d").date()
    except ValueError:
        return None


def _num(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _info_chapters(info: dict[str, Any]) -> list[Chapter]:
    duration = _num(info.get("duration"))
    chapters: list[Chapter] = []
    for i, ch in enumerate(info.get("chapters") or []):
        start = _num(ch.get("start_time"))
        end = _num(ch.get("end_time"))
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
        duration=max(_num(info.get("duration")) or 0.0, 0.0),
        description=str(info.get("description") or ""),
        chapters=_info_chapters(info),
        webpage_url=str(info.get("webpage_url") or info.get("original_url") or ""),
        language=info.get("language") or None,
    )


# --- errors ---------------------------------------------------------------------------------------
# (substrings of yt-dlp's lower-cased message, reason, transient?, retry_after); first match wins.
_RULES: list[tuple[tuple[str, ...], str, bool, float | None]] = [
    (("try again later",), "YouTube rate-limited this worker for up to an hour: retrying later", True, 900.0),
    (("http error 429", "too many requests"), "YouTube is rate-limiting requests (HTTP 429): retrying",
     True, None),
    (("private video",), _UNAVAILABLE["private"], False, None),
    (("members-only", "join this channel", "channel's members", "members on level"),
     _UNAVAILABLE["subscriber_only"], False, None),
    (("youtube premium", "music premium"), _UNAVAILABLE["premium_only"], False, None),
    (("live event will begin", "premieres in", "premiere will begin", "will begin in"),
     _LIVE["is_upcoming"], False, None),
    (("confirm your age", "age-restricted", "inappropriate for some users"),
     "is age-restricted: Pressroom cannot download it without an adult account; skip it or provide cookies",
     False, None),
    (("confirm you're not a bot", "confirm you\u2019re not a bot", "ip is likely being blocked", "captcha"),
     "could not be fetched: YouTube wants this worker to sign in (bot check); "
     "provide cookies or run the worker from another network",
     False, None),
    (("copyright",), "was blocked on copyright grounds: Pressroom cannot download it; skip it", False, None),
    (("not made this video available in your country", "geo restrict", "not available in your country"),
     "is blocked in this worker's country: skip it or run the worker elsewhere", False, None),
    (("drm protected",), "is DRM-protected: Pressroom cannot download it; skip it", False, None),
    (("removed by the uploader", "account associated with this video has been terminated",
      "video unavailable", "video is unavailable", "no longer available", "has been removed",
      "recording is not available", "this video is not available", "live event has ended"),
     "is unavailable (removed, deleted or blocked): check the URL in a browser; skip it", False, None),
    (("unsupported url", "is not a valid url"),
     "is not a URL yt-dlp can download: submit a YouTube video URL", False, None),
    (("requested format is not available", "no video formats found", "only images are available"),
     "offers no downloadable audio: update yt-dlp (and its JS runtime) or skip the video", False, None),
    (("ffmpeg not found", "ffprobe and ffmpeg not found", "ffmpeg is not installed"),
     "cannot be converted: ffmpeg is missing on this worker; install ffmpeg", False, None),
]
_NETWORK_WORDS = (
    "timed out", "timeout", "connection reset", "connection refused", "connection aborted", "broken pipe",
    "temporary failure in name resolution", "name or service not known", "remote end closed",
    "network is unreachable", "did not get any data blocks", "giving up after", "bytes read",
    "incomplete read", "eof occurred in violation of protocol",
)
_HTTP_RE = re.compile(r"HTTP Error (\d{3})")
_PREFIX_RE = re.compile(r"^(?:ERROR:\s*)?(?:\[[\w:.-]+\]\s*)?(?:(?P<id>[\w-]+):\s+)?")
_BOILERPLATE = (
    " (caused by", " Use --cookies", " See  http", " See http", " Also see",
    "; please report", " Please report",
)


def _chain(exc: BaseException) -> list[BaseException]:
    """The error and what it wraps: DownloadError.exc_info, ExtractorError.cause, __cause__, __context__."""
    found: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(found) < 12:
        e = todo.pop(0)
        if e is None or any(e is f for f in found):
            continue
        found.append(e)
        exc_info = getattr(e, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) == 3 and isinstance(exc_info[1], BaseException):
            todo.append(exc_info[1])
        cause = getattr(e, "cause", None)
        todo += [cause if isinstance(cause, BaseException) else None, e.__cause__, e.__context__]
    return found


def _detail(exc: BaseException) -> tuple[str, str | None]:
    """yt-dlp's message on one short line, and the video id it names, if any."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    m = _PREFIX_RE.match(first)
    vid = m.group("id") if m and m.group("id") and _ID_RE.match(m.group("id")) else None
    msg = first[m.end() :] if m and vid else re.sub(r"^ERROR:\s*", "", first)
    for cut in _BOILERPLATE:
        msg = msg.split(cut)[0]
    msg = " ".join(msg.split()).rstrip(". ")
    return (msg[:197] + "..." if len(msg) > 200 else msg) or type(exc).__name__, vid


def _http_status(chain: list[BaseException], text: str) -> tuple[int | None, float | None]:
    """The HTTP status behind the error (yt-dlp's HTTPError, else 'HTTP Error NNN') and its Retry-After."""
    for e in chain:
        status = getattr(e, "status", None)
        if type(e).__name__ == "HTTPError" and isinstance(status, int):
            headers = getattr(getattr(e, "response", None), "headers", None) or {}
            return status, _retry_after(headers.get("Retry-After") if hasattr(headers, "get") else None)
    m = _HTTP_RE.search(text)
    return (int(m.group(1)), None) if m else (None, None)


def _retry_after(value: Any) -> float | None:
    if value is None:
        return None
    seconds = _num(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        return max((parsedate_to_datetime(str(value)) - datetime.now().astimezone()).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


def _is_network(e: BaseException) -> bool:
    names = {cls.__name__ for cls in type(e).__mro__}
    if names & {"TransportError", "IncompleteRead", "ContentTooShortError", "URLError"}:
        return True
    if isinstance(e, TimeoutError | ConnectionError):
        return True
    return isinstance(e, OSError) and e.errno == errno.ENOSPC  # a full disk frees up as other runs finish


def classify_download_error(
    exc: BaseException, *, video_id: str | None = None
) -> TransientError | PermanentError:
    """Map a yt-dlp failure to retry-or-fail with a one-line message.

    Known video conditions (private, members-only, removed, upcoming, copyright, age, geo) are permanent;
    rate limits, 5xx, 403/408, timeouts and connection errors are transient. Anything unrecognised is
    transient too, so the step's bounded retry policy decides, and the message says to update yt-dlp.
    """
    chain = _chain(exc)
    detail, named = _detail(exc)
    named = named or next((str(v) for e in chain if (v := getattr(e, "video_id", None))), None)
    who = f"video {video_id or named}" if (video_id or named) else "the video"
    text = " | ".join(str(e) for e in chain)
    lower = text.lower()
    for needles, reason, transient, retry_after in _RULES:
        if any(n in lower for n in needles):
            if transient:
                wait = _http_status(chain, text)[1] or retry_after
                return TransientError(f"{who}: {reason} (yt-dlp: {detail})", retry_after=wait)
            return PermanentError(f"{who} {reason} (yt-dlp: {detail})")
    status, retry_after = _http_status(chain, text)
    if status is not None:
        if status in (403, 408, 425) or status >= 500:
            return TransientError(f"{who}: download got HTTP {status}: retrying (yt-dlp: {detail})",
                                  retry_after=retry_after)
        return PermanentError(
            f"{who}: download got HTTP {status}; check the URL in a browser (yt-dlp: {detail})"
        )
    if any(_is_network(e) for e in chain) or any(w in lower for w in _NETWORK_WORDS):
        return TransientError(f"{who}: network error while downloading: retrying (yt-dlp: {detail})")
    if any(type(e).__name__ == "GeoRestrictedError" for e in chain):
        return PermanentError(f"{who} is blocked in this worker's country (yt-dlp: {detail})")
    if any(type(e).__name__ == "UnsupportedError" for e in chain):
        return PermanentError(f"{who}: not a URL yt-dlp can download (yt-dlp: {detail})")
    return TransientError(
        f"{who}: yt-dlp failed: retrying; if it keeps failing, update yt-dlp (yt-dlp: {detail})"
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


def download_with_ytdlp(url: str, workdir: Path, options: dict[str, Any]) -> DownloadOutput:
    """Extract, check, download and convert with yt-dlp; any URL yt-dlp supports (tests use a local one).

    Captions are a bonus: if only they fail, the audio is downloaded without them.
    """
    from yt_dlp import YoutubeDL
    from yt_dlp.utils import YoutubeDLError

    (workdir / YTDLP_DIR).mkdir(parents=True, exist_ok=True)
    video_id = youtube_video_id(url)
    try:
        with YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=False)
            if not isinstance(info, dict):
                raise PermanentError(f"{url}: yt-dlp found nothing to download; check the URL")
            check_available(info)
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
    audio = to_speech_m4a(fetched, workdir / AUDIO_FILENAME, duration=_num(result.get("duration")) or 0.0)
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
    return download_with_ytdlp(watch_url(video_id), workdir, options)
