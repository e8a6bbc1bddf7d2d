"""Structured answers from any OpenAI-compatible chat server, in the dialect it speaks (the `openai` SDK is
imported only here).

Modes (workers/providers/profiles.py): `json_schema` sends strict structured outputs; `json_object` sends
JSON mode with the schema and an example in the system prompt (DeepSeek, Qwen, Moonshot and GLM take only
this; DeepSeek also wants the word "json" in the prompt); `text` sends neither and takes the JSON out of the
answer; `auto` tries json_schema and, when the server rejects it (a 400/422 naming response_format or the
schema), falls back at once to json_object, and from that to text, remembering the mode that worked for
the endpoint and model (in Redis: every worker learns it from the first rejection). Whatever the mode, the
answer is validated against the step's pydantic model; a blank answer (DeepSeek's JSON mode answers spaces
when it cannot) or JSON that does not fit is asked again once, then handled like a cut-off answer (the step
halves its batch; nothing is dropped).
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

import httpx2
import openai
import pydantic
from openai.types.chat import ChatCompletionMessageParam

from workers import keys
from workers.errors import AnswerCutOff, PermanentError, Refused
from workers.providers.gate import ProviderGate, endpoint_id
from workers.providers.limiter import Limits
from workers.providers.llm import LLMResult, M
from workers.providers.openai_client import answer_json, classify, make_client, wrong_shape
from workers.providers.profiles import PROFILES, Profile, is_reasoning

SETTING_PREFIX = "PRESSROOM_LLM"
SCHEMA_LINE = "JSON schema of the answer: "  # the simulator reads the schema from this line (json_object, text)
BLANK_TRIES = 2  # a blank or unparseable answer is asked again this many times in all before it counts as cut off
_REJECTS_SCHEMA = re.compile(r"response_format|json_schema|schema|structured", re.IGNORECASE)
_FALLBACK = {"json_schema": "json_object", "json_object": "text"}  # what `auto` tries when a server rejects a mode
_FENCE = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)
log = logging.getLogger("pressroom.providers")


class _Message(pydantic.BaseModel):
    content: str | None = None
    refusal: str | None = None


class _Choice(pydantic.BaseModel):
    message: _Message
    finish_reason: str | None = None


class _PromptDetails(pydantic.BaseModel):
    cached_tokens: int | None = None


class _Usage(pydantic.BaseModel):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None  # reasoning tokens included, as OpenAI and DeepSeek count them
    prompt_tokens_details: _PromptDetails | None = None
    prompt_cache_hit_tokens: int | None = None  # DeepSeek

    @property
    def cached(self) -> int:
        details = self.prompt_tokens_details.cached_tokens if self.prompt_tokens_details else None
        return int(details or self.prompt_cache_hit_tokens or 0)


class _Completion(pydantic.BaseModel):
    """The fields of a chat.completion Pressroom reads (reasoning content and the rest are not read)."""

    choices: list[_Choice]
    usage: _Usage | None = None


class ModeMemory:
    """Which mode an `auto` endpoint turned out to accept, shared by every worker through run state's KV.
    Read at most every RECHECK seconds per endpoint (most endpoints never fall back: nothing to find)."""

    RECHECK = 30.0

    def __init__(self, kv: Any = None) -> None:
        self.kv = kv
        self._local: dict[str, tuple[str | None, float]] = {}

    def get(self, endpoint: str) -> str | None:
        mode, checked = self._local.get(endpoint, (None, -self.RECHECK))
        if mode is not None or self.kv is None or time.monotonic() - checked < self.RECHECK:
            return mode
        try:
            value = self.kv.get(keys.llm_mode_key(endpoint))
        except Exception:  # Redis away for a moment: json_schema is tried again, which is only a request
            value = None
        mode = value.decode() if isinstance(value, bytes) else value
        self._local[endpoint] = (mode, time.monotonic())
        return mode

    def set(self, endpoint: str, mode: str) -> None:
        self._local[endpoint] = (mode, time.monotonic())
        if self.kv is not None:
            try:
                self.kv.set(keys.llm_mode_key(endpoint), mode)
            except Exception as exc:
                log.warning("could not share the LLM mode %s: %s", mode, exc)


def example_of(schema: dict[str, Any], root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A small example value of a JSON schema, for the prompt of JSON mode."""
    root = root or schema
    if "$ref" in schema:
        schema = root.get("$defs", {}).get(schema["$ref"].rsplit("/", 1)[-1], {})
    if "anyOf" in schema:
        schema = next((s for s in schema["anyOf"] if s.get("type") != "null"), schema["anyOf"][0])
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {k: example_of(v, root, depth + 1) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [example_of(schema.get("items", {}), root, depth + 1)] if depth < 4 else []
    if kind in ("integer", "number"):
        return 0
    if kind == "boolean":
        return False
    return "…"


def extract_json(text: str) -> str:
    """The JSON object in an answer: a fenced ```json block, or from the first { to the last }."""
    if fenced := _FENCE.search(text):
        return fenced.group(1)
    start, end = text.find("{"), text.rfind("}")
    return text[start:end + 1] if 0 <= start < end else text


class OpenAILLM:
    """Chat completions answered as a pydantic model, in the server's structured-output dialect."""

    def __init__(self, base_url: str, api_key: str, model: str, timeout: float, max_retries: int = 0,
                 gate: ProviderGate | None = None, profile: Profile | None = None,
                 modes: ModeMemory | None = None) -> None:
        self.base_url = base_url
        self.model = model
        self.timeout = timeout
        self.profile = profile or PROFILES["openai"]
        self._gate = gate or ProviderGate("llm", base_url, model, limiter=None, limits=Limits())
        self._client = make_client(base_url, api_key, timeout, max_retries)
        self._what = f"LLM server {base_url} (model {model})"
        self._modes = modes or ModeMemory()
        self._endpoint = endpoint_id(base_url, model)

    @property
    def mode(self) -> str:
        """The mode the next request is sent in."""
        if self.profile.structured != "auto":
            return self.profile.structured
        return self._modes.get(self._endpoint) or "json_schema"

    def parse(self, *, system: str, user: str, schema: type[M], max_tokens: int | None = None) -> LLMResult[M]:
        """One answer as `schema`; a refusal, a truncated or (after a second try) blank answer is an error."""
        mode, attempt = self.mode, 1
        while True:
            try:
                return self._ask(mode, system, user, schema, max_tokens)
            except _SchemaRejected as rejected:
                mode = _FALLBACK[mode]
                log.warning("%s rejects this way of asking for JSON (%s): using %s from now on", self._what,
                            rejected, mode)
                self._modes.set(self._endpoint, mode)
            except _Blank as blank:
                if attempt == BLANK_TRIES:
                    raise AnswerCutOff(f"{self._what} answered {blank} {BLANK_TRIES} times: asking for less at once"
                                       ) from None
                attempt += 1

    def _ask(self, mode: str, system: str, user: str, schema: type[M], max_tokens: int | None) -> LLMResult[M]:
        if mode != "json_schema":
            system = (f"{system}\n\nAnswer with one JSON object (json) only, no other text.\n"
                      f"{SCHEMA_LINE}{json.dumps(schema.model_json_schema(), separators=(',', ':'))}\n"
                      f"An example answer: {json.dumps(example_of(schema.model_json_schema()), ensure_ascii=False)}")
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]
        options: dict[str, Any] = {}
        if max_tokens is not None:
            # reasoning models on OpenAI reject max_tokens; others may not know max_completion_tokens
            param = "max_completion_tokens" if is_reasoning(self.model) and self.profile.name == "openai" \
                else self.profile.max_tokens_param
            options[param] = min(max_tokens, self.profile.max_output)
        if mode == "json_object":
            options["response_format"] = {"type": "json_object"}
        # what a provider counts against tokens per minute before it answers: the prompt and the most it may write
        with self._gate.request((len(system) + len(user)) // 3, max_tokens or 1024) as call:
            try:
                if mode == "json_schema":
                    raw: Any = self._client.chat.completions.with_raw_response.parse(
                        model=self.model, messages=messages, response_format=schema, **options)
                else:
                    raw = self._client.chat.completions.with_raw_response.create(
                        model=self.model, messages=messages, **options)
                checked = self._check_shape(raw.http_response)
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                if mode in _FALLBACK and self.profile.structured == "auto" and _REJECTS_SCHEMA.search(str(exc)):
                    call.status = "4xx"
                    raise _SchemaRejected(" ".join(str(exc).split())[:200]) from None
                error = classify(exc, what=self._what, setting_prefix=SETTING_PREFIX, timeout=self.timeout)
                raise call.failed(exc.status_code, error) from exc
            except (openai.OpenAIError, pydantic.ValidationError) as exc:
                error = classify(exc, what=self._what, setting_prefix=SETTING_PREFIX, timeout=self.timeout)
                raise call.failed(getattr(exc, "status_code", None), error) from exc
            usage = checked.usage or _Usage()
            call.ok(input_tokens=usage.prompt_tokens or 0, output_tokens=usage.completion_tokens or 0,
                    cached_tokens=usage.cached)
        value = self._value(mode, raw, checked, schema)
        return LLMResult(value=value, input_tokens=usage.prompt_tokens or 0,
                         output_tokens=usage.completion_tokens or 0, cached_tokens=usage.cached)

    def _value(self, mode: str, raw: Any, checked: _Completion, schema: type[M]) -> M:
        if not checked.choices:
            raise PermanentError(f"{self._what} returned no choices: is it an OpenAI-compatible chat server?")
        choice = checked.choices[0]
        if choice.message.refusal:
            refusal = " ".join(choice.message.refusal.split())[:200]
            raise Refused(f"{self._what} refused to answer ({refusal}): review the input text")
        if choice.finish_reason == "length":
            raise AnswerCutOff(f"{self._what}: the answer hit the length limit before it was complete: "
                               "send less input per request or allow more output tokens")
        if choice.finish_reason == "content_filter":
            raise Refused(f"{self._what}: the answer was stopped by the content filter: review the input text")
        if mode == "json_schema":
            try:
                parsed = raw.parse().choices[0].message.parsed
            except (openai.OpenAIError, pydantic.ValidationError) as exc:
                raise classify(exc, what=self._what, setting_prefix=SETTING_PREFIX, timeout=self.timeout) from exc
            if parsed is None:
                raise _Blank("an empty answer")
            return parsed  # type: ignore[no-any-return]
        content = (choice.message.content or "").strip()
        if not content:
            raise _Blank("a blank answer")
        try:
            return schema.model_validate_json(extract_json(content) if mode == "text" else content)
        except pydantic.ValidationError as exc:
            raise _Blank(f"JSON that does not fit {schema.__name__} ({exc.error_count()} errors)") from None

    def _check_shape(self, response: httpx2.Response) -> _Completion:
        """An HTML page, a body that is not JSON, or JSON without choices[].message is a PermanentError
        naming the server (the SDK would otherwise fail on it with an AttributeError or a JSONDecodeError)."""
        data = answer_json(response, what=self._what, setting_prefix=SETTING_PREFIX)
        try:
            return _Completion.model_validate(data)
        except pydantic.ValidationError as exc:
            fix = f"check that {SETTING_PREFIX}_BASE_URL is an OpenAI-compatible chat completions API (…/v1)"
            raise wrong_shape(exc, what=self._what, answer="a chat completion", fix=fix) from None


class _SchemaRejected(Exception):
    """The server rejected a JSON-schema request: use JSON mode."""


class _Blank(Exception):
    """A blank answer, or JSON that does not fit the schema: worth asking once more."""
