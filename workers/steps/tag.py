"""Tag: title, summary, tags and entity lists from the talk; the rest of the front matter from defaults."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date

from schemas.artifacts import Translation, VideoMetadata
from schemas.post import FrontMatter, FrontMatterDefaults, TagSuggestion
from workers.providers.llm import LLM

PROMPT_VERSION = "tag-v1"
CONTEXT_CHARS = 24_000

SYSTEM = """You write the front matter of a Chinese tech blog post that translates an English talk. From \
the talk's title, description and transcript, give: a Chinese title (concise, specific), a 2–4 sentence \
Chinese summary of the whole talk, 3–8 topical tags as lowercase English slugs (e.g. \
reinforcement-learning), and the people, companies/organisations, products/models and media/books \
mentioned, each in its canonical spelling (e.g. ChatGPT, Quora, Los Alamos National Laboratory), with \
the main guest's name (empty if none)."""


@dataclass
class TagOutput:
    front_matter: FrontMatter
    input_tokens: int = 0
    output_tokens: int = 0


def slugify_tag(tag: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", tag.lower()).strip("-")


def _unique(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in (i.strip() for i in items):
        if item and item.lower() not in seen:
            seen.add(item.lower())
            out.append(item)
    return out


def tag(metadata: VideoMetadata, translation: Translation, llm: LLM, defaults: FrontMatterDefaults,
        source_url: str) -> TagOutput:
    english = " ".join(p.source for p in translation.paragraphs())
    payload = {
        "title": metadata.title,
        "channel": metadata.channel,
        "description": metadata.description[:2000],
        "chapters": [c.title for c in metadata.chapters],
        "transcript": english[:CONTEXT_CHARS],
    }
    result = llm.parse(system=SYSTEM, user=json.dumps(payload, ensure_ascii=False), schema=TagSuggestion)
    s = result.value
    day = metadata.upload_date or date.today()
    front = FrontMatter(
        area=defaults.area, category=defaults.category, project=list(defaults.project),
        speaker=defaults.speaker or metadata.channel, layout=defaults.layout, status=defaults.status,
        draft=defaults.draft, series=defaults.series, insight=defaults.insight,
        title=s.title.strip() or metadata.title, summary=" ".join(s.summary.split()),
        tags=sorted({t for t in (slugify_tag(x) for x in s.tags) if t}),
        people=_unique(s.people), companies_orgs=_unique(s.companies_orgs),
        products_models=_unique(s.products_models), media_books=_unique(s.media_books),
        guest=s.guest.strip(), date=day.isoformat(), source=source_url,
    )
    return TagOutput(front_matter=front, input_tokens=result.input_tokens, output_tokens=result.output_tokens)
