"""Structured-output chat behind a small protocol: steps ask for a pydantic model and get one, or an error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class LLMResult(Generic[M]):
    """The parsed answer plus token counts, so steps can log cost without touching the SDK."""

    value: M
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0  # of input_tokens, read from the provider's prompt cache (billed cheaper)


class LLM(Protocol):
    """Anything that answers a system+user prompt with an instance of `schema`."""

    model: str

    def parse(
        self, *, system: str, user: str, schema: type[M], max_tokens: int | None = None
    ) -> LLMResult[M]: ...
