"""Applying a glossary: correct mis-heard names, hint the transcriber, guide the translator, and give
the tags canonical spellings. Pure functions; the glossary itself is loaded once per run."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import ValidationError

from schemas.artifacts import VideoMetadata
from schemas.glossary import Glossary, GlossaryTerm
from workers.errors import PermanentError

PROMPT_CHARS = 800  # whisper reads 224 tokens of prompt; ~3.5 characters a token leaves a margin


def parse_glossary(text: str | bytes, where: str = "glossary") -> Glossary:
    """YAML: `terms: [{term, zh, misheard: [...], kind}]`, or a plain mapping term → zh."""
    try:
        data = yaml.safe_load(text) or {}
        if isinstance(data, dict) and "terms" not in data:
            data = {"terms": [{"term": k, "zh": v} for k, v in data.items()]}
        return Glossary.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PermanentError(
            f"{where}: not a valid glossary ({first}); write `terms:` with entries like "
            "{term: GPT-5, zh: GPT-5, misheard: [GBT5]}"
        ) from None


def load_glossary(path: Path) -> Glossary:
    try:
        return parse_glossary(path.read_bytes(), str(path))
    except FileNotFoundError:
        raise PermanentError(f"{path}: no such glossary file; check PRESSROOM_GLOSSARY_FILE or --glossary") from None


@lru_cache(maxsize=64)
def _corrector(glossary_json: str) -> tuple[re.Pattern[str], dict[str, str]] | None:
    glossary = Glossary.model_validate_json(glossary_json)
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
    compiled = _corrector(glossary.model_dump_json())
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
    for term in [t.term for t in glossary.terms] + candidate_terms(metadata):
        if term.lower() not in {w.lower() for w in words}:
            words.append(term)
    prompt = ""
    for word in words:
        nxt = f"{prompt}, {word}" if prompt else word
        if len(nxt) > PROMPT_CHARS:
            break
        prompt = nxt
    return f"{prompt}." if prompt else None
