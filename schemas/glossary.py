"""A channel's glossary: preferred spellings, Chinese renderings and known mis-hearings of its terms."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PrivateAttr

from schemas.base import Model


class GlossaryTerm(Model):
    term: str = Field(min_length=1, description="the canonical spelling, e.g. GPT-5")
    zh: str | None = Field(default=None, description="preferred Chinese rendering; default: keep the term")
    misheard: list[str] = Field(default_factory=list, description="what speech-to-text makes of it, e.g. GBT5")
    kind: Literal["person", "company", "product", "media", "other"] = "other"


class Glossary(Model):
    terms: list[GlossaryTerm] = Field(default_factory=list)
    _corrector: Any = PrivateAttr(default=None)  # workers.glossary compiles its mis-hearings once
