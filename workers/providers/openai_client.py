"""One place that builds `openai` clients and turns their exceptions into Pressroom's error types.

Retries belong to the Celery task policy, so the SDK's own retries are switched off; `classify` decides
whether a failure is worth retrying and writes the one-line message a user sees.

The SDK's `timeout` bounds each network operation (connect, one write, one read), so a server that trickles
its answer a byte at a time never times out. `DeadlineClient` makes the timeout a deadline on the whole
request instead; it can also refuse an answer body over a size set for the current call (`answer_limit`).
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpx2
import openai
import pydantic

from workers.errors import AnswerCutOff, PermanentError, Refused, TransientError

_MAX_DETAIL = 200
_MIN_WAIT = 0.001  # an operation that starts after the deadline still gets this long, then times out
_ANSWER_LIMIT: ContextVar[int | None] = ContextVar("pressroom_answer_limit", default=None)


def make_client(base_url: str, api_key: str, timeout: float, max_retries: int = 0) -> openai.OpenAI:
    """An SDK client that never retries by itself (the step's retry policy does that, visibly), and whose
    `timeout` is a deadline on each whole request (see DeadlineClient)."""
    http = DeadlineClient(deadline=timeout, timeout=timeout)
    return openai.OpenAI(
        base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries, http_client=http
    )


class AnswerTooLarge(openai.OpenAIError):
    """An answer body over the limit set with `answer_limit`, refused before it was read to the end."""

    def __init__(self, size: int, limit: int, *, declared: bool) -> None:
        super().__init__(f"{'' if declared else 'over '}{size:,} bytes, over the limit of {limit:,}")
        self.size, self.limit, self.declared = size, limit, declared


@contextmanager
def answer_limit(max_bytes: int) -> Iterator[None]:
    """Requests made in this block (on this thread) refuse an answer body over `max_bytes`."""
    token = _ANSWER_LIMIT.set(max_bytes)
    try:
        yield
    finally:
        _ANSWER_LIMIT.reset(token)


class DeadlineClient(openai.DefaultHttpxClient):
    """An httpx2 client (with the SDK's defaults) whose requests each end within `deadline` seconds: pool
    wait, connect, upload and the whole answer together. A request past it raises httpx2's own timeout
    exceptions, which the SDK turns into APITimeoutError as for any timeout.

    Two parts: every phase httpcore starts gets only the time left as its timeout (`_TimeLeft`), and the
    upload and the answer are checked between chunks (`_Bounded`), so a trickle of bytes, each well within
    a read timeout, still ends at the deadline (or at most one stalled read later)."""

    def __init__(self, *, deadline: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deadline = deadline

    def send(self, request: httpx2.Request, *, stream: bool = False, **kwargs: Any) -> httpx2.Response:
        deadline = time.monotonic() + self.deadline
        limits = request.extensions.get("timeout") or self.timeout.as_dict()
        request.extensions = {**request.extensions, "timeout": _TimeLeft(limits, deadline)}
        request.stream = _Bounded(request.stream, deadline, httpx2.WriteTimeout)
        response = super().send(request, stream=True, **kwargs)
        try:
            limit = _ANSWER_LIMIT.get()
            declared = response.headers.get("content-length", "")
            if limit is not None and declared.isdigit() and int(declared) > limit:
                raise AnswerTooLarge(int(declared), limit, declared=True)
            assert isinstance(response.stream, httpx2.SyncByteStream)
            response.stream = _Bounded(response.stream, deadline, httpx2.ReadTimeout, limit)
            if not stream:
                response.read()
        except BaseException:
            response.close()
            raise
        return response


class _TimeLeft(dict[str, float | None]):
    """httpcore's per-phase timeouts (the request's "timeout" extension), each cut to the time left before
    the deadline when httpcore looks it up as the phase begins (`.get("connect")`, `.get("read")`, …)."""

    def __init__(self, limits: Mapping[str, float | None], deadline: float) -> None:
        super().__init__(limits)
        self.deadline = deadline

    def get(self, key: str, default: float | None = None) -> float | None:  # type: ignore[override]
        left = max(_MIN_WAIT, self.deadline - time.monotonic())
        limit = super().get(key, default)
        return left if limit is None else min(limit, left)

    def __getitem__(self, key: str) -> float | None:
        return self.get(key, super().__getitem__(key))


class _Bounded(httpx2.SyncByteStream):
    """A request or response body that raises `timeout` once the deadline has passed between two chunks,
    and AnswerTooLarge once more than `max_bytes` have come."""

    def __init__(
        self, stream: Any, deadline: float, timeout: type[httpx2.TimeoutException], max_bytes: int | None = None
    ) -> None:
        self._stream, self._deadline, self._timeout, self._max_bytes = stream, deadline, timeout, max_bytes

    def __iter__(self) -> Iterator[bytes]:
        size = 0
        for chunk in self._stream:
            if time.monotonic() > self._deadline:
                raise self._timeout("the request went on past its deadline")
            size += len(chunk)
            if self._max_bytes is not None and size > self._max_bytes:
                raise AnswerTooLarge(size, self._max_bytes, declared=False)
            yield chunk

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


def answer_json(response: httpx2.Response, *, what: str, setting_prefix: str) -> dict[str, Any]:
    """The JSON object of a 2xx answer, or a PermanentError saying what came instead (an HTML page from a
    proxy or web server, a body that is not JSON, JSON that is not an object) and what to check."""
    fix = f"check that {setting_prefix}_BASE_URL is the server's OpenAI-compatible API (it ends in /v1)"
    body = response.content
    kind = response.headers.get("content-type", "").split(";")[0].strip() or "no content type"
    if "html" in kind or body.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        title = _html_title(body)
        raise PermanentError(f"{what} answered {response.status_code} with an HTML page{title}, not JSON: {fix}")
    try:
        value = json.loads(body)
    except ValueError as exc:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not UTF-8
        if not body.strip():
            reason = "an empty body"
        elif isinstance(exc, json.JSONDecodeError):
            reason = f"{exc.msg}: character {exc.pos:,} of {len(exc.doc):,}"
        else:
            reason = "not UTF-8"
        start = _one_line(body[:40].decode("utf-8", "replace"))
        raise PermanentError(
            f"{what} answered {response.status_code} with a body that is not JSON ({reason}; {kind}; "
            f"begins {start!r}): {fix}"
        ) from None
    if not isinstance(value, dict):
        raise PermanentError(f"{what} answered with a JSON {type(value).__name__}, not an object: {fix}")
    return value


_EXPECTED = {"missing": "is missing", "list_type": "is not a list", "model_type": "is not an object",
             "dict_type": "is not an object", "string_type": "is not a string", "float_type": "is not a number",
             "float_parsing": "is not a number", "int_type": "is not an integer", "int_parsing": "is not an integer",
             "finite_number": "is not a finite number", "greater_than_equal": "is negative"}  # fmt: skip


def wrong_shape(exc: pydantic.ValidationError, *, what: str, answer: str, fix: str) -> PermanentError:
    """A JSON answer without the fields Pressroom reads, e.g. "(segments is not a list)"."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "the answer"
    problem = _EXPECTED.get(first["type"]) or f": {_one_line(first['msg'])}"
    more = f", and {exc.error_count() - 1} more" if exc.error_count() > 1 else ""
    return PermanentError(f"{what} sent {answer} of the wrong shape ({where} {problem}{more}): {fix}")


def _html_title(body: bytes) -> str:
    text = body[:4096].decode("utf-8", "replace")
    low = text.lower()
    start, end = low.find("<title>"), low.find("</title>")
    title = _one_line(text[start + 7 : end]) if 0 <= start < end else ""
    return f" ({title!r})" if title else ""


def classify(
    exc: BaseException, *, what: str, setting_prefix: str, timeout: float | None = None
) -> TransientError | PermanentError:
    """Map an `openai` (or parsing) exception to a retryable or final error with a one-line fix.

    `what` names the server, e.g. "transcription server http://127.0.0.1:8000/v1"; `setting_prefix`
    is the settings family to point at, e.g. "PRESSROOM_TRANSCRIPTION"; `timeout` the deadline in seconds.
    """
    p = setting_prefix
    if isinstance(exc, openai.APITimeoutError):
        within = f" (no complete answer within {timeout:g} s)" if timeout is not None else ""
        return TransientError(f"{what} timed out{within}: retrying; raise {p}_TIMEOUT if this keeps happening")
    if isinstance(exc, AnswerTooLarge):
        return PermanentError(f"{what} sent an answer of {exc}: refused unread; check {p}_BASE_URL and {p}_MODEL")
    if isinstance(exc, openai.APIConnectionError):
        return TransientError(
            f"{what} is unreachable ({_cause(exc)}): check that it is running and {p}_BASE_URL is right"
        )
    if isinstance(exc, openai.LengthFinishReasonError):
        return AnswerCutOff(
            f"{what}: the answer hit the length limit before it was complete: "
            f"send less input per request or allow more output tokens"
        )
    if isinstance(exc, openai.ContentFilterFinishReasonError):
        return Refused(f"{what}: the answer was stopped by the content filter: review the input text")
    if isinstance(exc, openai.APIStatusError):
        return _classify_status(exc, what=what, p=p)
    if isinstance(exc, openai.APIResponseValidationError):
        return PermanentError(f"{what} sent an answer the SDK cannot read: check {p}_BASE_URL")
    if isinstance(exc, pydantic.ValidationError):
        return AnswerCutOff(
            f"{what}: the answer does not match the requested schema ({exc.error_count()} errors): "
            f"use a model/server that supports structured outputs ({p}_MODEL)"
        )
    return PermanentError(f"{what}: unexpected {type(exc).__name__}: {_one_line(str(exc))}")


def _classify_status(exc: openai.APIStatusError, *, what: str, p: str) -> TransientError | PermanentError:
    code = exc.status_code
    detail = _detail(exc)
    if code == 429:
        wait = retry_after_seconds(exc.response.headers)
        hint = f"retry after {wait:g} s" if wait is not None else "retrying later"
        if "insufficient_quota" in f"{exc.code} {detail}":
            return PermanentError(f"{what} says the account is out of quota (429): {detail}; add credit")
        return TransientError(f"{what} is rate limiting (429): {hint}", retry_after=wait)
    if code >= 500 or code in (408, 409):
        wait = retry_after_seconds(exc.response.headers)
        return TransientError(f"{what} failed with {code}: {detail}; retrying", retry_after=wait)
    if code == 401:
        return PermanentError(f"{what} rejected the API key (401): check {p}_API_KEY")
    if code == 403:
        return PermanentError(f"{what} refused access (403): {detail}; check {p}_API_KEY and its permissions")
    if code == 404:
        return PermanentError(f"{what} answered 404 ({detail}): check {p}_MODEL and {p}_BASE_URL (…/v1)")
    if code == 413:
        return PermanentError(f"{what} says the upload is too large (413): send a smaller file")
    if code in (400, 422):
        return PermanentError(f"{what} rejected the request ({code}): {detail}; check {p}_MODEL and input")
    return PermanentError(f"{what} failed with {code}: {detail}")


def retry_after_seconds(headers: object) -> float | None:
    """Seconds to wait, from `retry-after-ms` (OpenAI) or `retry-after` (seconds or an HTTP date)."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    ms = get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _detail(exc: openai.APIStatusError) -> str:
    """The server's own error message (OpenAI puts it in body.error.message), on one line."""
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return _one_line(err["message"])
        if isinstance(err, str):
            return _one_line(err)
        if isinstance(body.get("detail"), str):
            return _one_line(body["detail"])
    return _one_line(exc.message)


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return _one_line(str(cause) or type(cause).__name__) if cause else _one_line(str(exc))


def _one_line(text: str) -> str:
    flat = " ".join(text.split()).rstrip(" .")
    return flat if len(flat) <= _MAX_DETAIL else flat[: _MAX_DETAIL - 1] + "…"
