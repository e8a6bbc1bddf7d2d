"""Tag: title, summary, tags and entity lists from the whole talk (map-reduce over chunks when it is
long), names in their canonical spelling; the rest of the front matter from the channel's defaults."""

from __future__ import annotations

import contextvars
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date

from pydantic import Field

from schemas.artifacts import Translation, VideoMetadata
from schemas.base import Model
from schemas.glossary import Glossary
from schemas.post import FrontMatter, FrontMatterDefaults, TagSuggestion
from workers.glossary import canonical
from workers.providers.llm import LLM

PROMPT_VERSION = "tag-v2"
CONTEXT_CHARS = 24_000  # one request reads up to this much English; longer talks are mapped in pieces
MAP_WORKERS = 4

SYSTEM = """You write the front matter of a Chinese tech blog post that translates an English talk. From \
the talk's title, description and transcript (or notes on all of its parts), give: a Chinese title \
(concise, specific), a 2–4 sentence Chinese summary of the whole talk, 3–8 topical tags as lowercase \
English slugs (e.g. reinforcement-learning), and the people, companies/organisations, products/models \
and media/books mentioned, each in its canonical spelling (e.g. ChatGPT, Quora, Los Alamos National \
Laboratory; use the glossary's spellings), with the main guest's name (empty if none)."""

MAP_SYSTEM = """You take notes on one part of an English talk for whoever writes its blog post: a short \
English summary of this part, its topics, and every person, company/organisation, product/model and \
medium/book it mentions, in canonical spelling (use the glossary's spellings)."""


class PartNotes(Model):
    summary: str = Field(description="3-5 sentences on this part")
    topics: list[str]
    people: list[str]
    companies_orgs: list[str]
    products_models: list[str]
    media_books: list[str]


@dataclass
class TagOutput:
    front_matter: FrontMatter
    input_tokens: int = 0
    output_tokens: int = 0


def slugify_tag(tag: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", tag.lower()).strip("-")


def _unique(items: list[str], glossary: Glossary) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in (canonical(i, glossary) for i in items):
        if item and item.lower() not in seen:
            seen.add(item.lower())
            out.append(item)
    return out


def _pieces(texts: list[str], limit: int) -> list[str]:
    pieces: list[str] = [""]
    for text in texts:
        if pieces[-1] and len(pieces[-1]) + len(text) > limit:
            pieces.append("")
        pieces[-1] = f"{pieces[-1]} {text}".strip()
    return pieces


def tag(metadata: VideoMetadata, translation: Translation, llm: LLM, defaults: FrontMatterDefaults,
        source_url: str, glossary: Glossary | None = None) -> TagOutput:
    glossary = glossary or Glossary()
    english = [p.source for p in translation.paragraphs()]
    payload: dict[str, object] = {
        "title": metadata.title,
        "channel": metadata.channel,
        "description": metadata.description[:2000],
        "chapters": [c.title for c in metadata.chapters],
        "glossary": [t.term for t in glossary.terms],
    }
    tokens_in = tokens_out = 0
    pieces = _pieces(english, CONTEXT_CHARS)
    if len(pieces) == 1:
        payload["transcript"] = pieces[0]
    else:
        def notes(piece: str) -> tuple[PartNotes, int, int]:
            part = {"title": metadata.title, "glossary": payload["glossary"], "transcript_part": piece}
            r = llm.parse(system=MAP_SYSTEM, user=json.dumps(part, ensure_ascii=False), schema=PartNotes)
            return r.value, r.input_tokens, r.output_tokens

        with ThreadPoolExecutor(MAP_WORKERS) as pool:  # each in a copy of this context: the calls' payer
            mapped = list(pool.map(lambda piece: contextvars.copy_context().run(notes, piece), pieces))
        payload["notes_on_each_part"] = [m[0].model_dump() for m in mapped]
        tokens_in, tokens_out = sum(m[1] for m in mapped), sum(m[2] for m in mapped)
    result = llm.parse(system=SYSTEM, user=json.dumps(payload, ensure_ascii=False), schema=TagSuggestion)
    s = result.value
    day = metadata.upload_date or date.today()
    front = FrontMatter(
        area=defaults.area, category=defaults.category, project=list(defaults.project),
        speaker=defaults.speaker or metadata.channel, layout=defaults.layout, status=defaults.status,
        draft=defaults.draft, series=defaults.series, insight=defaults.insight,
        title=s.title.strip() or metadata.title, summary=" ".join(s.summary.split()),
        tags=sorted({t for t in (slugify_tag(x) for x in s.tags) if t}),
        people=_unique(s.people, glossary), companies_orgs=_unique(s.companies_orgs, glossary),
        products_models=_unique(s.products_models, glossary), media_books=_unique(s.media_books, glossary),
        guest=canonical(s.guest, glossary), date=day.isoformat(), source=source_url,
    )
    return TagOutput(front, tokens_in + result.input_tokens, tokens_out + result.output_tokens)
