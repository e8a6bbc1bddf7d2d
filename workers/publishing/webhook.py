"""The webhook target: each post POSTed as signed JSON to a receiver (a site's build hook, a CMS bridge).

The request:

    POST <PRESSROOM_PUBLISH_WEBHOOK_URL>
    Content-Type: application/json
    X-Pressroom-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes, keyed with the secret>
    Idempotency-Key: <video id>:<first 32 hex of the markdown's SHA-256>

    {"draft": …, "front_matter": {…}, "markdown": "…", "name": "….md", "run_id": "…", "video_id": "…"}

The same post sent again (a retry, a redelivered task) carries the same key, so a receiver can drop the
repeat; a re-run that changed the text has a new key. 2xx = done; 408, 429, 5xx and network failures are
TransientError (429's and 503's Retry-After in `retry_after`); another 4xx is PermanentError with the
receiver's words. The whole request, answer included, has a deadline (`workers.http.client`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlparse

import httpx
from pydantic import SecretStr

from workers import http
from workers.errors import PermanentError, TransientError, reason, redact
from workers.publishing.base import PostFile, one_line

SIGNATURE_HEADER = "X-Pressroom-Signature"
ANSWER_LIMIT = 4096  # bytes of the receiver's answer read (for its words, or the post's URL)


def _jsonable(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def body_of(post: PostFile) -> bytes:
    """The exact bytes sent (and signed)."""
    payload = {"name": post.name, "markdown": post.text, "front_matter": post.front_matter,
               "video_id": post.video_id, "run_id": post.run_id, "draft": post.draft}
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                      default=_jsonable).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def idempotency_key(post: PostFile) -> str:
    return f"{post.video_id}:{hashlib.sha256(post.data).hexdigest()[:32]}"


def retry_after(value: str | None, limit: float = 3600.0) -> float | None:
    """Retry-After in seconds (a number, or an HTTP date), at most `limit`; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), limit)


def _words(data: bytes) -> str:
    """What the receiver said, on one line: a JSON answer's error/message/detail, else its text."""
    text = data.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        for key in ("error", "message", "detail"):
            if isinstance(parsed.get(key), str) and parsed[key].strip():
                text = parsed[key]
                break
    return one_line(text, 160)


class WebhookTarget:
    name = "webhook"

    def __init__(self, url: str, secret: str | SecretStr, *, timeout: float = 30.0, retries: int = 1,
                 quick_wait: float = 2.0) -> None:
        """`retries` quick retries (a network failure, 408/429/5xx asking to wait at most `quick_wait` s)
        before the TransientError goes to the caller, whose own policy retries it later."""
        parsed = urlparse(url)
        if parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise PermanentError(f"webhook target: {redact(url)!r} is not an http(s) URL: set "
                                 "PRESSROOM_PUBLISH_WEBHOOK_URL")
        key = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if not key:
            raise PermanentError("webhook target: no secret to sign with: set PRESSROOM_PUBLISH_WEBHOOK_SECRET")
        self.url, self.where, self._secret = url, redact(url), key
        self.timeout, self.retries, self.quick_wait = timeout, max(0, retries), quick_wait

    def headers(self, post: PostFile, body: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json", SIGNATURE_HEADER: signature(self._secret, body),
                "Idempotency-Key": idempotency_key(post), "User-Agent": "pressroom-publish"}

    def publish(self, post: PostFile) -> str:
        body = body_of(post)
        headers = self.headers(post, body)
        attempt = 0
        while True:
            try:
                return self._send(body, headers)
            except TransientError as exc:
                wait = exc.retry_after if exc.retry_after is not None else 0.5 * (attempt + 1)
                if attempt >= self.retries or wait > self.quick_wait:
                    raise
            attempt += 1
            time.sleep(wait)

    def _send(self, body: bytes, headers: dict[str, str]) -> str:
        try:
            with http.client(self.timeout) as client, client.stream("POST", self.url, content=body,
                                                                      headers=headers) as response:
                status = response.status_code
                answer = b""
                try:
                    for chunk in response.iter_bytes():
                        answer += chunk
                        if len(answer) >= ANSWER_LIMIT:
                            break
                except httpx.HTTPError:
                    pass  # the status has been given: an answer cut short does not change it
        except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.LocalProtocolError) as exc:
            raise PermanentError(f"webhook target: cannot send to {self.where} ({reason(exc)}): set "
                                 "PRESSROOM_PUBLISH_WEBHOOK_URL") from None
        except httpx.HTTPError as exc:
            raise TransientError(f"webhook target: no answer from {self.where} ({reason(exc)}); will retry") from None
        if 200 <= status < 300:
            return self._location(answer)
        words = _words(answer[:ANSWER_LIMIT])
        said = f"{status} {words}".strip()
        if status in (408, 425, 429) or status >= 500:
            raise TransientError(f"webhook target: {self.where} answered {said}; will retry",
                                 retry_after=retry_after(response.headers.get("retry-after")))
        if 300 <= status < 400:
            to = redact(response.headers.get("location", "")) or "nowhere"
            raise PermanentError(f"webhook target: {self.where} answered {status}, a redirect to {one_line(to, 120)}: "
                                 "set PRESSROOM_PUBLISH_WEBHOOK_URL to the final address")
        if status in (401, 403):
            fix = "check PRESSROOM_PUBLISH_WEBHOOK_SECRET (the receiver checks X-Pressroom-Signature with it)"
        elif status in (404, 405, 410):
            fix = "check PRESSROOM_PUBLISH_WEBHOOK_URL"
        else:
            fix = "fix the receiver or PRESSROOM_PUBLISH_WEBHOOK_URL"
        if status >= 400:
            raise PermanentError(f"webhook target: {self.where} refused the post ({said}): {fix}")
        raise TransientError(f"webhook target: {self.where} answered {said}; will retry")

    def _location(self, answer: bytes) -> str:
        """Where the post went: the receiver's {"url": …} when it gives one, else the webhook's URL."""
        try:
            parsed: Any = json.loads(answer.decode("utf-8"))
        except ValueError:
            return self.where
        url = parsed.get("url") if isinstance(parsed, dict) else None
        if isinstance(url, str) and len(url) < 2000 and urlparse(url).scheme in {"http", "https"}:
            return redact(one_line(url, 2000))
        return self.where
