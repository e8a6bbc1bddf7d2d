"""Infrastructure faults — Redis, the broker, the object store, a provider's address — told in one line:
which service, at which address, and what to start or fix. Commands print it instead of a traceback."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

from workers.errors import InfrastructureFault, reason, redact
from workers.settings import Settings


def _redis_where(settings: Settings) -> tuple[str, str]:
    setting = "PRESSROOM_REDIS_URL" if settings.redis_url else "PRESSROOM_BROKER_URL"
    return redact(settings.state_url or settings.broker_url or "redis://"), setting


def _s3_where(settings: Settings) -> str:
    endpoint = settings.s3_endpoint_url or f"AWS S3 ({settings.s3_region})"
    return f"{settings.storage_url} at {endpoint}"


def is_infra_fault(exc: BaseException) -> bool:
    """Redis, the broker or the object store is unreachable or failing: worth retrying the whole delivery
    until it is back (anything else is about the work itself)."""
    import kombu.exceptions
    import redis.exceptions

    return isinstance(exc, InfrastructureFault | kombu.exceptions.OperationalError | redis.exceptions.ConnectionError
                      | redis.exceptions.TimeoutError | redis.exceptions.ReadOnlyError)


def explain(exc: BaseException, settings: Settings) -> str | None:
    """One line for an infrastructure fault, or None when exc is not one (a bug keeps its traceback)."""
    import botocore.exceptions as boto
    import kombu.exceptions
    import redis.exceptions

    if isinstance(exc, redis.exceptions.AuthenticationError) or (
        isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith(("NOAUTH", "WRONGPASS"))
    ):
        url, setting = _redis_where(settings)
        return f"Redis at {url} refused the credentials ({reason(exc)}): put the right password in {setting}"
    if isinstance(exc, redis.exceptions.BusyLoadingError | redis.exceptions.ReadOnlyError):
        url, setting = _redis_where(settings)
        return f"Redis at {url} cannot take writes now ({reason(exc)}): wait, or point {setting} at the primary"
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        url, setting = _redis_where(settings)
        return f"cannot reach Redis at {url} ({reason(exc)}): start redis-server there or fix {setting}"
    if isinstance(exc, kombu.exceptions.OperationalError):
        return (f"cannot reach the broker at {redact(settings.broker_url or 'memory://')} ({reason(exc)}): "
                "start redis-server there or fix PRESSROOM_BROKER_URL")
    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
        return (f"no credentials for the object store {_s3_where(settings)}: set PRESSROOM_S3_ACCESS_KEY_ID and "
                "PRESSROOM_S3_SECRET_ACCESS_KEY")
    if isinstance(exc, boto.ConnectionError | boto.HTTPClientError):
        return (f"cannot reach the object store {_s3_where(settings)} ({reason(exc)}): start it or fix "
                "PRESSROOM_S3_ENDPOINT_URL")
    if isinstance(exc, boto.ClientError):
        err = exc.response.get("Error", {})
        return (f"the object store {_s3_where(settings)} refused a request ({err.get('Code', '?')}: "
                f"{err.get('Message', '')}): check the bucket in PRESSROOM_STORAGE_URL and the S3 credentials")
    if isinstance(exc, boto.BotoCoreError):
        return f"the object store {_s3_where(settings)} failed: {reason(exc)}: check the PRESSROOM_S3_* settings"
    return None


def unreachable(url: str, timeout: float = 3.0) -> str | None:
    """Why nothing answers at an http(s) URL's host and port (None when something does): a quick check
    before a run, so a server that is not started is one line at once, not retries for minutes."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__
