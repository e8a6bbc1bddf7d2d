"""Structured-output chat through any OpenAI-compatible server (the `openai` SDK is imported only here)."""

from __future__ import annotations

import openai
import pydantic
from openai import Omit, omit
from openai.types.chat import ChatCompletionMessageParam

from workers.errors import PermanentError, Refused
from workers.providers.llm import LLMResult, M
from workers.providers.openai_client import classify, make_client

SETTING_PREFIX = "PRESSROOM_LLM"


class OpenAILLM:
    """Chat completions with strict JSON-schema structured outputs (`chat.completions.parse`)."""

    def __init__(self, base_url: str, api_key: str, model: str, timeout: float, max_retries: int = 0) -> None:
        self.base_url = base_url
        self.model = model
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
        try:
            completion = self._client.chat.completions.parse(
                model=self.model, messages=messages, response_format=schema, max_completion_tokens=limit
            )
        except (openai.OpenAIError, pydantic.ValidationError) as exc:
            raise classify(exc, what=self._what, setting_prefix=SETTING_PREFIX) from exc
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
        usage = completion.usage
        return LLMResult(
            value=message.parsed,
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
        )
