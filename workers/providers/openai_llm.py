"""Structured-output chat through any OpenAI-compatible server (the `openai` SDK is imported only here)."""

from __future__ import annotations

import httpx2
import openai
import pydantic
from openai import Omit, omit
from openai.types.chat import ChatCompletionMessageParam

from workers.errors import PermanentError, Refused
from workers.providers.gate import ProviderGate
from workers.providers.limiter import Limits
from workers.providers.llm import LLMResult, M
from workers.providers.openai_client import answer_json, classify, make_client, wrong_shape

SETTING_PREFIX = "PRESSROOM_LLM"


class _Message(pydantic.BaseModel):
    content: str | None = None
    refusal: str | None = None


class _Choice(pydantic.BaseModel):
    message: _Message


class _Usage(pydantic.BaseModel):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _Completion(pydantic.BaseModel):
    """The fields of a chat.completion Pressroom reads, checked before the SDK parses the answer (other
    fields and their types are the server's business)."""

    choices: list[_Choice]
    usage: _Usage | None = None


class OpenAILLM:
    """Chat completions with strict JSON-schema structured outputs (`chat.completions.parse`)."""

    def __init__(self, base_url: str, api_key: str, model: str, timeout: float, max_retries: int = 0,
                 gate: ProviderGate | None = None) -> None:
        self.base_url = base_url
        self._gate = gate or ProviderGate("llm", base_url, model, limiter=None, limits=Limits())
        self.model = model
        self.timeout = timeout
        self._client = make_client(base_url, api_key, timeout, max_retries)
        self._what = f"LLM server {base_url} (model {model})"

    def parse(
        self, *, system: str, user: str, schema: type[M], max_tokens: int | None = None
    ) -> LLMResult[M]:
        """One request; a refusal, a truncated answer or an unparseable one is a PermanentError."""
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]
        # max_completion_tokens: max_tokens is deprecated and rejected by reasoning models
        limit: int | Omit = max_tokens if max_tokens is not None else omit
        # what a provider counts against tokens per minute before it answers: the prompt and the most it may write
        estimate = (len(system) + len(user)) // 3 + (max_tokens or 1024)
        with self._gate.request(estimate) as call:
            try:
                raw = self._client.chat.completions.with_raw_response.parse(
                    model=self.model, messages=messages, response_format=schema, max_completion_tokens=limit
                )
                checked = self._check_shape(raw.http_response)
                completion = raw.parse()
            except (openai.OpenAIError, pydantic.ValidationError) as exc:
                error = classify(exc, what=self._what, setting_prefix=SETTING_PREFIX, timeout=self.timeout)
                raise call.failed(getattr(exc, "status_code", None), error) from exc
            usage = checked.usage or _Usage()
            call.ok(input_tokens=usage.prompt_tokens or 0, output_tokens=usage.completion_tokens or 0)
        if not completion.choices:
            raise PermanentError(f"{self._what} returned no choices: is it an OpenAI-compatible chat server?")
        message = completion.choices[0].message
        if message.refusal:
            refusal = " ".join(message.refusal.split())[:200]
            raise Refused(f"{self._what} refused to answer ({refusal}): review the input text")
        if message.parsed is None:
            raise PermanentError(
                f"{self._what} returned an empty answer for {schema.__name__}: check PRESSROOM_LLM_MODEL"
            )
        return LLMResult(
            value=message.parsed,
            input_tokens=usage.prompt_tokens or 0,
            output_tokens=usage.completion_tokens or 0,
        )

    def _check_shape(self, response: httpx2.Response) -> _Completion:
        """An HTML page, a body that is not JSON, or JSON without choices[].message is a PermanentError
        naming the server (the SDK would otherwise fail on it with an AttributeError or a JSONDecodeError)."""
        data = answer_json(response, what=self._what, setting_prefix=SETTING_PREFIX)
        try:
            return _Completion.model_validate(data)
        except pydantic.ValidationError as exc:
            fix = f"check that {SETTING_PREFIX}_BASE_URL is an OpenAI-compatible chat completions API (…/v1)"
            raise wrong_shape(exc, what=self._what, answer="a chat completion", fix=fix) from None
