"""yt-dlp's failures sorted into Pressroom's: transient (retry) or permanent (fail, saying what to do).

YouTube reports most refusals as prose, so the rules match substrings of yt-dlp's messages; the first
matching rule wins, and anything unrecognised is transient so the step's retry limit caps it.
"""

from __future__ import annotations

import errno
import re
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from workers.errors import PermanentError, TransientError

VIDEO_ID_RE = re.compile(r"^[0-9A-Za-z_-]{11}$")


def number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# --- why a video cannot be downloaded (also used by check_available) -----------------------------
UNAVAILABLE = {
    "private": "is private: Pressroom cannot download it; ask the owner to make it public or unlisted",
    "premium_only": "is for YouTube Premium members only: Pressroom cannot download it; skip it",
    "subscriber_only": "is a members-only video: Pressroom cannot download it; skip it or provide cookies",
    "needs_auth": "needs a signed-in account (age-restricted or sign-in only): skip it or provide cookies",
}
LIVE = {
    "is_live": "is a live stream in progress: submit it again once the stream has ended",
    "is_upcoming": "is a scheduled live stream or premiere that has not started: "
    "submit it again after it airs",
    # post_live: ended, but YouTube has not processed the recording yet (yt-dlp can only get a partial
    # DVR copy). That takes hours, far past the download step's retries, so it fails now with advice.
    "post_live": "is a live stream that just ended and YouTube is still processing the recording: "
    "submit it again in a few hours",
}


# --- errors ---------------------------------------------------------------------------------------
# (substrings of yt-dlp's lower-cased message, reason, transient?, retry_after); first match wins.
_RULES: list[tuple[tuple[str, ...], str, bool, float | None]] = [
    (("try again later",), "YouTube rate-limited this worker for up to an hour: retrying later", True, 900.0),
    (("http error 429", "too many requests"), "YouTube is rate-limiting requests (HTTP 429): retrying",
     True, None),
    (("private video",), UNAVAILABLE["private"], False, None),
    (("members-only", "join this channel", "channel's members", "members on level"),
     UNAVAILABLE["subscriber_only"], False, None),
    (("youtube premium", "music premium"), UNAVAILABLE["premium_only"], False, None),
    (("live event will begin", "premieres in", "premiere will begin", "will begin in"),
     LIVE["is_upcoming"], False, None),
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
    vid = m.group("id") if m and m.group("id") and VIDEO_ID_RE.match(m.group("id")) else None
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
    seconds = number(value)
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


