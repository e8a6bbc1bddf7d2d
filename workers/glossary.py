"""Applying a glossary: correct mis-heard names, hint the transcriber, guide the translator, and give
the tags canonical spellings. Pure functions; the glossary itself is loaded once per run."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from schemas.artifacts import VideoMetadata
from schemas.glossary import Glossary, GlossaryTerm
from workers.errors import PermanentError
from workers.settings import Settings

PROMPT_CHARS = 800  # whisper reads 224 tokens of prompt; ~3.5 characters a token leaves a margin


@dataclass(frozen=True)
class GlossaryLimits:
    """How big a glossary may be (PRESSROOM_MAX_GLOSSARY_BYTES, PRESSROOM_MAX_GLOSSARY_TERMS)."""

    max_bytes: int = 1_000_000
    max_terms: int = 5000

    @classmethod
    def of(cls, settings: Settings | None) -> GlossaryLimits:
        return cls() if settings is None else cls(settings.max_glossary_bytes, settings.max_glossary_terms)


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: a few hundred bytes of nested aliases expand to billions of nodes
    (the "billion laughs"), and a glossary never needs them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.events.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a glossary",
                                              self.peek_event().start_mark)  # type: ignore[no-untyped-call]
        return super().compose_node(parent, index)


def parse_glossary(text: str | bytes, where: str = "glossary", limits: GlossaryLimits = GlossaryLimits()) -> Glossary:
    """YAML: `terms: [{term, zh, misheard: [...], kind}]`, or a plain mapping term → zh."""
    if len(text) > limits.max_bytes:
        raise PermanentError(f"{where}: {len(text)} bytes is over the glossary limit of {limits.max_bytes}: "
                             "split it per channel, or raise PRESSROOM_MAX_GLOSSARY_BYTES")
    try:
        data = yaml.load(text, Loader=_NoAliasLoader) or {}
        if isinstance(data, dict) and "terms" not in data:
            data = {"terms": [{"term": k, "zh": v} for k, v in data.items()]}
        glossary = Glossary.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PermanentError(
            f"{where}: not a valid glossary ({first}); write `terms:` with entries like "
            "{term: GPT-5, zh: GPT-5, misheard: [GBT5]}"
        ) from None
    if len(glossary.terms) > limits.max_terms:
        raise PermanentError(f"{where}: {len(glossary.terms)} terms is over the limit of {limits.max_terms}: keep "
                             "the names this channel's talks use, or raise PRESSROOM_MAX_GLOSSARY_TERMS")
    return glossary


def load_glossary(path: Path, settings: Settings | None = None) -> Glossary:
    """A glossary file, checked against the limits before it is read."""
    limits = GlossaryLimits.of(settings)
    fix = "check PRESSROOM_GLOSSARY_FILE, --glossary or the channel's glossary"
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise PermanentError(f"{path}: is a directory, not a glossary file; {fix}")
        if size > limits.max_bytes:
            raise PermanentError(f"{path}: {size} bytes is over the glossary limit of {limits.max_bytes}: split "
                                 "it per channel, or raise PRESSROOM_MAX_GLOSSARY_BYTES")
        return parse_glossary(path.read_bytes(), str(path), limits)
    except FileNotFoundError:
        raise PermanentError(f"{path}: no such glossary file; {fix}") from None
    except OSError as exc:
        raise PermanentError(f"{path}: cannot read the glossary ({exc.strerror or exc}); {fix}") from None


def _corrector(glossary: Glossary) -> tuple[re.Pattern[str], dict[str, str]] | None:
    """The mis-hearings as one regex, compiled once per glossary (correct() runs per segment)."""
    if glossary._corrector is None:
        glossary._corrector = (_compile(glossary),)
    return glossary._corrector[0]  # type: ignore[no-any-return]


def _compile(glossary: Glossary) -> tuple[re.Pattern[str], dict[str, str]] | None:
    table: dict[str, str] = {}
    for t in glossary.terms:
        for wrong in t.misheard:
            if wrong.strip() and wrong.strip().lower() != t.term.lower():
                table[" ".join(wrong.lower().split())] = t.term
    if not table:
        return None
    variants = sorted(table, key=len, reverse=True)  # longest first: "chat gbt 5" before "chat gbt"
    body = "|".join(r"\s+".join(map(re.escape, v.split())) for v in variants)
    return re.compile(rf"(?<![\w-])(?:{body})(?![\w-])", re.IGNORECASE), table


def correct(text: str, glossary: Glossary) -> str:
    """Replace every known mis-hearing with the canonical term (whole words, any case)."""
    compiled = _corrector(glossary)
    if compiled is None:
        return text
    pattern, table = compiled
    return pattern.sub(lambda m: table[" ".join(m.group(0).lower().split())], text)


def canonical(name: str, glossary: Glossary) -> str:
    """An entity name in its canonical spelling (for tags)."""
    fixed = correct(name.strip(), glossary)
    for t in glossary.terms:
        if fixed.lower() == t.term.lower():
            return t.term
    return fixed


def relevant_terms(text: str, glossary: Glossary) -> list[GlossaryTerm]:
    """Terms that occur in a chunk: what the translator needs to see, and no more."""
    lowered = text.lower()
    return [t for t in glossary.terms if t.term.lower() in lowered]


_CANDIDATE = re.compile(
    r"\b(?:[A-Z][a-z]+(?:[ \t]+[A-Z][a-z]+)+"  # multi-word names: Sam Altman, Los Alamos
    r"|[A-Za-z]*[A-Z][a-z]+[A-Z]\w*"  # CamelCase: OpenAI, ChatGPT, YouTube
    r"|[A-Za-z]+-?\d[\w.]*"  # with digits: GPT-5, o3, Llama3.1
    r"|[A-Z]{2,}\w*)\b"  # acronyms: MIT, API
)


def candidate_terms(metadata: VideoMetadata, limit: int = 40) -> list[str]:
    """Names the video's own title, description and chapters spell for us: hints for the transcriber."""
    text = "\n".join([metadata.title, metadata.description, *(c.title for c in metadata.chapters)])
    text = re.sub(r"https?://\S+", " ", text)
    seen: dict[str, None] = {}
    for match in _CANDIDATE.findall(text):
        if len(match) > 2 and match.lower() not in {s.lower() for s in seen}:
            seen[match] = None
    return list(seen)[:limit]


def transcription_prompt(glossary: Glossary, metadata: VideoMetadata) -> str | None:
    """A vocabulary hint within the model's prompt limit: glossary terms first, then the video's own."""
    words: list[str] = []
    seen: set[str] = set()
    length = 0
    for term in itertools.chain((t.term for t in glossary.terms), candidate_terms(metadata)):
        if term.lower() in seen:
            continue
        if length + len(term) + 2 * bool(words) > PROMPT_CHARS:
            break  # whisper reads no more: stop, however long the glossary is
        seen.add(term.lower())
        words.append(term)
        length += len(term) + 2 * (len(words) > 1)
    return f"{', '.join(words)}." if words else None
