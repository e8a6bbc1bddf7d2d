"""One place that builds `openai` clients and turns their exceptions into Pressroom's error types.

Retries belong to the Celery task policy, so the SDK's own retries are switched off; `classify` decides
whether a failure is worth retrying and writes the one-line message a user sees.
"""

from __future__ import annotations

import email.utils
import time

import openai
import pydantic

from workers.errors import AnswerCutOff, PermanentError, Refused, TransientError

_MAX_DETAIL = 200


def make_client(base_url: str, api_key: str, timeout: float, max_retries: int = 0) -> openai.OpenAI:
    """An SDK client that never retries by itself (the step's retry policy does that, visibly)."""
    return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)


def classify(exc: BaseException, *, what: str, setting_prefix: str) -> TransientError | PermanentError:
    """Map an `openai` (or parsing) exception to a retryable or final error with a one-line fix.

    `what` names the server, e.g. "transcription server http://127.0.0.1:8000/v1"; `setting_prefix`
    is the settings family to point at, e.g. "PRESSROOM_TRANSCRIPTION".
    """
    p = setting_prefix
    if isinstance(exc, openai.APITimeoutError):
        return TransientError(f"{what} timed out: retrying; raise {p}_TIMEOUT if this keeps happening")
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
