"""Translate: paragraphs → Simplified Chinese in chunks that can be worked in parallel, checked so no
line is lost: every id exactly once, non-empty, in Chinese. Missing, doubled or merged ids are asked
for again with what was wrong; a cut-off answer splits its batch; a refusal marks its paragraph."""

from __future__ import annotations

import json
import math
import re
from collections import Counter, deque
from dataclasses import dataclass

from pydantic import Field

from schemas.artifacts import Chapter, Paragraph, Section, Transcript, Translation, TranslationProblem, VideoMetadata
from schemas.base import Model
from schemas.glossary import Glossary
from workers.errors import AnswerCutOff, PermanentError, Refused
from workers.glossary import relevant_terms
from workers.providers.llm import LLM
from workers.steps.paragraphs import build_paragraphs

PROMPT_VERSION = "translate-v4"
CHUNK_WORDS = 1000  # English words per part at most: big enough that instructions and context stay under ~30%
MIN_CHUNK_WORDS = 300  # …and at least this many, when more parts would fill idle workers
DESCRIPTION_CHARS = 400  # the gist of the description; every request carries it
PREVIOUS_WORDS = 80  # the tail of the paragraphs before the chunk, for continuity
MAX_TRIES = 6  # bad answers for one paragraph before it is marked for a human
REFUSED_MARK = "【待人工翻译】模型拒绝翻译此段，原文见下。"
FAILED_MARK = "【待人工翻译】模型多次未能给出此段的译文，原文见下。"
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")

SYSTEM = """You translate English tech talks and podcasts into fluent, natural Simplified Chinese for a \
Chinese tech blog. You get JSON: the talk's title and description, a glossary, the paragraphs just \
before this part (context only, do not translate them), and the paragraphs to translate. Translate \
every paragraph on its own, keeping its id: exactly one item per id, never merged, split, skipped or \
summarised. Use the glossary's spellings and Chinese renderings; keep other product, company and \
person names in their usual form. Drop filler words (um, uh, you know) and false starts. Also mark \
where a new topic starts: give the id of each paragraph that starts a topical section and a short \
Chinese heading (4–16 characters) for it."""


class ParagraphTranslation(Model):
    id: str
    zh: str = Field(description="the paragraph in Simplified Chinese")


class SectionStart(Model):
    paragraph_id: str
    heading: str = Field(description="short Chinese section heading")


class TranslationBatch(Model):
    translations: list[ParagraphTranslation]
    sections: list[SectionStart]


class ChapterHeadings(Model):
    headings: list[str] = Field(description="each chapter title as a short Chinese heading, in order")


class ChunkContext(Model):
    """What a request carries besides its paragraphs. Title, description and glossary are the same for every
    request of a talk and come first, after the same instructions: a byte-identical prefix, which providers'
    prompt caches bill at a fraction of the price."""

    title: str
    description: str = ""
    glossary: list[dict[str, str]] | None = Field(default=None, description="the talk's glossary terms; None: "
                                                  "the terms each batch uses")
    previous: list[str] = Field(default_factory=list, description="English of the paragraphs just before")


def talk_context(title: str, description: str, paragraphs: list[Paragraph], glossary: Glossary) -> ChunkContext:
    """The context every request of this talk shares: its glossary is the terms the whole talk uses."""
    terms = relevant_terms(" ".join(p.source for p in paragraphs), glossary)
    return ChunkContext(title=title, description=description[:DESCRIPTION_CHARS],
                        glossary=[{"term": t.term, "zh": t.zh or t.term} for t in terms])


class ChunkResult(Model):
    """What one part stores: translations by id, section starts, and problems (marked, never dropped)."""

    translations: dict[str, str]
    headings: dict[str, str] = Field(default_factory=dict)
    problems: dict[str, str] = Field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0


def plan_chunks(paragraphs: list[Paragraph], words: int = CHUNK_WORDS, parts: int | None = None
                ) -> list[tuple[int, int]]:
    """Index ranges [start, end) of consecutive paragraphs: `parts` chunks (default: as many as `words`
    English words a chunk need), cut where the running word count passes each even share, so the chunks
    come out about equally long."""
    counts = [len(p.source.split()) for p in paragraphs]
    total = sum(counts)
    parts = max(1, parts or math.ceil(total / max(1, words)))
    ranges: list[tuple[int, int]] = []
    start, running = 0, 0
    for i, count in enumerate(counts):
        running += count
        if len(ranges) < parts - 1 and running >= total * (len(ranges) + 1) / parts:
            ranges.append((start, i + 1))
            start = i + 1
    if start < len(paragraphs):
        ranges.append((start, len(paragraphs)))
    return ranges


def is_chinese(text: str) -> bool:
    cjk = len(_CJK.findall(text))
    return cjk > 0 and cjk >= 0.3 * (cjk + len(_LATIN.findall(text)) / 4)


def _request(ctx: ChunkContext, glossary: Glossary, batch: list[Paragraph], note: str) -> str:
    text = " ".join(p.source for p in batch)
    terms = ctx.glossary if ctx.glossary is not None else \
        [{"term": t.term, "zh": t.zh or t.term} for t in relevant_terms(text, glossary)]
    payload: dict[str, object] = {  # what every request of the talk shares first (the cacheable prefix)
        "title": ctx.title,
        "description": ctx.description[:DESCRIPTION_CHARS],
        "glossary": terms,
        "previous": ctx.previous,
        "paragraphs": [{"id": p.id, "text": p.source} for p in batch],
    }
    if note:
        payload["note"] = note
    return json.dumps(payload, ensure_ascii=False)


def _budget(batch: list[Paragraph]) -> int:
    """Output tokens to allow: Chinese runs ~2-3 tokens an English word, plus the JSON around it."""
    return 3 * sum(len(p.source.split()) for p in batch) + 40 * len(batch) + 300


def translate_chunk(llm: LLM, ctx: ChunkContext, paragraphs: list[Paragraph], glossary: Glossary) -> ChunkResult:
    """Ask until every paragraph has a good translation or has been marked; a bad answer for one paragraph
    costs that paragraph a try, a cut-off answer halves its batch (and costs a lone paragraph a try)."""
    result = ChunkResult(translations={})
    tries: Counter[str] = Counter()
    work: deque[tuple[list[Paragraph], str]] = deque([(paragraphs, "")])
    while work:
        batch, note = work.popleft()
        result.requests += 1
        try:
            answer = llm.parse(system=SYSTEM, user=_request(ctx, glossary, batch, note), schema=TranslationBatch,
                               max_tokens=_budget(batch))
        except (AnswerCutOff, Refused) as exc:
            if len(batch) > 1:  # halve until the cut-off fits or the refused paragraph stands alone
                work.extendleft([(batch[len(batch) // 2:], note), (batch[: len(batch) // 2], note)])
                continue
            only = batch[0].id
            tries[only] += 1
            if isinstance(exc, Refused):
                result.problems[only] = f"refused: {exc}"
            elif tries[only] < MAX_TRIES:
                work.append((batch, "Your last answer was cut off; answer briefly."))
            else:
                result.problems[only] = f"cut off: {exc}"
            continue
        result.input_tokens += answer.input_tokens
        result.output_tokens += answer.output_tokens
        retry, reasons = _check(batch, answer.value, result)
        for s in answer.value.sections:
            if s.heading.strip() and any(p.id == s.paragraph_id for p in batch):
                result.headings.setdefault(s.paragraph_id, s.heading.strip())
        again = []
        for p in retry:
            tries[p.id] += 1
            if tries[p.id] < MAX_TRIES:
                again.append(p)
            else:
                result.problems[p.id] = f"no usable translation after {MAX_TRIES} requests ({reasons[p.id]})"
        if again:
            wrong = "; ".join(f"{p.id}: {reasons[p.id]}" for p in again)
            work.append((again, f"Your last answer had problems ({wrong}). Translate each of these paragraphs "
                                "as its own item with its own id."))
    return result


def _check(batch: list[Paragraph], answer: TranslationBatch, result: ChunkResult
           ) -> tuple[list[Paragraph], dict[str, str]]:
    """Accept the good items; return the paragraphs to ask for again, with what was wrong with each."""
    counts = Counter(t.id for t in answer.translations)
    given = {t.id: t.zh.strip() for t in answer.translations}
    reasons: dict[str, str] = {}
    for i, p in enumerate(batch):
        zh = given.get(p.id, "")
        if counts[p.id] == 0:
            reasons[p.id] = "missing"
            if i > 0 and batch[i - 1].id in given:  # a missing id after a present one: likely merged into it
                reasons.setdefault(batch[i - 1].id, "may hold the next paragraph's translation too")
        elif counts[p.id] > 1:
            reasons[p.id] = "given more than once"
        elif not zh:
            reasons[p.id] = "empty"
        elif not is_chinese(zh):
            reasons[p.id] = "not in Chinese"
    for p in batch:
        if p.id not in reasons:
            result.translations[p.id] = given[p.id]
        else:
            result.translations.pop(p.id, None)
    return [p for p in batch if p.id in reasons], reasons


def assemble(video_id: str, model: str, paragraphs: list[Paragraph], parts: list[ChunkResult],
             chapters: list[Chapter], chapter_headings: list[str]) -> Translation:
    """Every paragraph, in order, into sections: the video's chapters when it has them, else the model's."""
    translations: dict[str, str] = {}
    headings: dict[str, str] = {}
    problems: dict[str, str] = {}
    for part in parts:
        translations.update(part.translations)
        headings.update(part.headings)
        problems.update(part.problems)
    sections: list[Section] = []
    chapter = -1
    for p in paragraphs:
        heading = None
        if len(chapters) > 1:
            here = max((i for i, c in enumerate(chapters) if c.start <= p.start + 0.5), default=0)
            if here != chapter:
                chapter = here
                heading = chapter_headings[here] if here < len(chapter_headings) else chapters[here].title
        else:
            heading = headings.get(p.id)
        if heading or not sections:
            sections.append(Section(heading=heading or "开场", paragraphs=[]))
        zh = translations.get(p.id)
        if zh is None:
            reason = problems.get(p.id, "no translation came back")
            problems[p.id] = reason
            zh = REFUSED_MARK if reason.startswith("refused") else FAILED_MARK
        sections[-1].paragraphs.append(p.model_copy(update={"translation": zh}))
    return Translation(video_id=video_id, model=model, sections=sections,
                       problems=[TranslationProblem(id=i, reason=r) for i, r in problems.items()])


def chapter_headings(llm: LLM, title: str, chapters: list[Chapter]) -> tuple[list[str], int, int]:
    """The chapters' titles as Chinese headings (one small request); their own titles if that fails."""
    if len(chapters) < 2:
        return [], 0, 0
    payload = json.dumps({"talk": title, "chapters": [c.title for c in chapters]}, ensure_ascii=False)
    try:
        answer = llm.parse(system="Turn each chapter title of this English talk into a short Simplified "
                                  "Chinese section heading (4–16 characters), in order.",
                           user=payload, schema=ChapterHeadings)
    except (AnswerCutOff, Refused):
        return [c.title for c in chapters], 0, 0
    got = [h.strip() for h in answer.value.headings]
    if len(got) != len(chapters) or not all(got):
        got = [g or c.title for g, c in zip(got + [""] * len(chapters), chapters, strict=False)]
    return got, answer.input_tokens, answer.output_tokens


@dataclass
class TranslateOutput:
    translation: Translation
    input_tokens: int = 0
    output_tokens: int = 0


def translate(transcript: Transcript, metadata: VideoMetadata, llm: LLM, glossary: Glossary | None = None
              ) -> TranslateOutput:
    """The whole step in one process, chunk after chunk (the tasks run the chunks in parallel)."""
    glossary = glossary or Glossary()
    paragraphs = build_paragraphs(transcript.segments)
    if not paragraphs:
        raise PermanentError(f"transcript of {transcript.video_id} has no text: is the audio silent?")
    ctx = talk_context(metadata.title, metadata.description, paragraphs, glossary)
    parts = [translate_chunk(llm, context_for(ctx, paragraphs, a), paragraphs[a:b], glossary)
             for a, b in plan_chunks(paragraphs)]
    headings, hin, hout = chapter_headings(llm, metadata.title, metadata.chapters)
    translation = assemble(transcript.video_id, llm.model, paragraphs, parts, metadata.chapters, headings)
    return TranslateOutput(translation, sum(p.input_tokens for p in parts) + hin,
                           sum(p.output_tokens for p in parts) + hout)


def context_for(ctx: ChunkContext, paragraphs: list[Paragraph], start: int, previous: int = 2) -> ChunkContext:
    """The chunk's context: the last PREVIOUS_WORDS words of the paragraphs just before it."""
    words = " ".join(p.source for p in paragraphs[max(0, start - previous):start]).split()
    return ctx.model_copy(update={"previous": [" ".join(words[-PREVIOUS_WORDS:])] if words else []})
