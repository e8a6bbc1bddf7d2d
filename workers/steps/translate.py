"""Translate: paragraphs → Simplified Chinese, grouped into sections with short Chinese headings."""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import Field

from schemas.artifacts import Paragraph, Section, Transcript, Translation, VideoMetadata
from schemas.base import Model
from workers.errors import PermanentError
from workers.providers.llm import LLM
from workers.steps.paragraphs import build_paragraphs

PROMPT_VERSION = "translate-v1"
BATCH_PARAGRAPHS = 40
MAX_REPAIRS = 2

SYSTEM = """You translate English tech talks and podcasts into fluent, natural Simplified Chinese for a \
Chinese tech blog. Translate every paragraph you are given, each on its own, keeping its id; never merge, \
split, skip or summarise paragraphs. Keep product, company and person names in their usual English form. \
Drop filler words (um, uh, you know) and false starts. Also group the paragraphs into topical sections: \
give the id of each section's first paragraph and a short Chinese heading (4–16 characters); the first \
paragraph always starts a section."""


class ParagraphTranslation(Model):
    id: str
    zh: str = Field(description="the paragraph in Simplified Chinese")


class SectionStart(Model):
    paragraph_id: str
    heading: str = Field(description="short Chinese section heading")


class TranslationBatch(Model):
    translations: list[ParagraphTranslation]
    sections: list[SectionStart]


@dataclass
class TranslateOutput:
    translation: Translation
    input_tokens: int = 0
    output_tokens: int = 0


def _request(metadata: VideoMetadata, batch: list[Paragraph], note: str = "") -> str:
    payload = {
        "title": metadata.title,
        "description": metadata.description[:1500],
        "paragraphs": [{"id": p.id, "text": p.source} for p in batch],
    }
    if note:
        payload["note"] = note
    return json.dumps(payload, ensure_ascii=False)


def translate(transcript: Transcript, metadata: VideoMetadata, llm: LLM) -> TranslateOutput:
    """Every paragraph comes back translated exactly once, or the step fails naming the ids."""
    paragraphs = build_paragraphs(transcript.segments)
    if not paragraphs:
        raise PermanentError(f"transcript of {transcript.video_id} has no text: is the audio silent?")
    out = TranslateOutput(translation=Translation(video_id=transcript.video_id, model=llm.model, sections=[]))
    zh: dict[str, str] = {}
    starts: dict[str, str] = {}
    for i in range(0, len(paragraphs), BATCH_PARAGRAPHS):
        batch = paragraphs[i : i + BATCH_PARAGRAPHS]
        wanted = batch
        note = ""
        for _ in range(1 + MAX_REPAIRS):
            result = llm.parse(system=SYSTEM, user=_request(metadata, wanted, note), schema=TranslationBatch)
            out.input_tokens += result.input_tokens
            out.output_tokens += result.output_tokens
            ids = {p.id for p in wanted}
            for item in result.value.translations:
                if item.id in ids and item.zh.strip() and item.id not in zh:
                    zh[item.id] = item.zh.strip()
            for s in result.value.sections:
                if s.paragraph_id in ids and s.heading.strip():
                    starts.setdefault(s.paragraph_id, s.heading.strip())
            wanted = [p for p in wanted if p.id not in zh]
            if not wanted:
                break
            note = "These paragraphs were missing or empty in your last answer; translate each one."
        if wanted:
            missing = ", ".join(p.id for p in wanted)
            raise PermanentError(f"the model left paragraphs {missing} untranslated after {MAX_REPAIRS} repairs")
    out.translation.sections = _sections(paragraphs, zh, starts)
    return out


def _sections(paragraphs: list[Paragraph], zh: dict[str, str], starts: dict[str, str]) -> list[Section]:
    sections: list[Section] = []
    for p in paragraphs:
        heading = starts.get(p.id)
        if heading or not sections:
            sections.append(Section(heading=heading or "正文", paragraphs=[]))
        sections[-1].paragraphs.append(p.model_copy(update={"translation": zh[p.id]}))
    return sections
