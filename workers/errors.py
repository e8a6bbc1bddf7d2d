"""Error types: transient ones are retried per the step's policy, permanent ones fail the run at once.

Every message says what went wrong and how to fix it, in one line.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse, urlunparse


class PressroomError(Exception):
    """Base of Pressroom's own errors."""


class TransientError(PressroomError):
    """Worth retrying: rate limits, 5xx, timeouts, a busy store."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InfrastructureFault(TransientError):
    """Pressroom's own services (the object store; Redis and the broker raise their own types) are down
    or failing: the delivery is retried until they are back, without using up the step's retries."""


class Throttled(TransientError):
    """A provider endpoint's shared limits (or its 429) say wait longer than a task should hold its worker
    slot: the delivery goes back to the queue with a countdown, without using one of the step's retries."""

    def __init__(self, message: str, *, retry_after: float = 0.0, limit: str = "") -> None:  # defaults: pickling
        super().__init__(message, retry_after=retry_after)
        self.limit = limit


class TaskFailed(Exception):
    """Ends a step's Celery task in FAILURE once the run's failure is recorded (its message is acked as
    usual), so Celery, Flower and `celery events` say what the run state says."""


class PermanentError(PressroomError):
    """Retrying will not help: bad input, a refused request, a missing file, a wrong key."""


class ConfigError(PressroomError):
    """A setting is missing or malformed; raised at start, before any work."""


class AnswerCutOff(PermanentError):
    """The model's answer hit the length limit or is not valid JSON: ask for less at once."""


class Refused(PermanentError):
    """The model refused, or a content filter stopped it: the input itself is the problem."""


class NotAvailableYet(PermanentError):
    """A live stream in progress, or one not yet aired or processed: nothing to download now."""


class SkipRun(PressroomError):
    """The video is outside the channel's filters (e.g. too short): the run ends as skipped, not failed."""


def reason(exc: BaseException, limit: int = 160) -> str:
    """An exception's reason on one short line: the socket's own words ("Connection refused") when it has
    them, not a library's object reprs and the whole request URL."""
    text = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    if errno := re.search(r"\[Errno -?\d+\] ([^'\"()]+)", f"{text} {getattr(exc, 'kwargs', '')}"):
        text = errno.group(1).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redact(url: str) -> str:
    """A URL fit to print: its password replaced by ***."""
    parsed = urlparse(url)
    if not parsed.password:
        return url
    user = f"{parsed.username}:***@" if parsed.username else ":***@"
    host = parsed.hostname or ""
    netloc = f"{user}{host}" + (f":{parsed.port}" if parsed.port else "")
    return urlunparse(parsed._replace(netloc=netloc))
