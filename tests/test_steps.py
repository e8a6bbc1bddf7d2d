"""The translate and tag steps as plain functions, over a scripted LLM (the provider interface's fake)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from pydantic import BaseModel

from schemas.artifacts import Segment, Transcript, VideoMetadata
from schemas.post import FrontMatterDefaults, TagSuggestion
from workers.errors import AnswerCutOff, Refused
from workers.providers.llm import LLMResult
from workers.steps.paragraphs import build_paragraphs
from workers.steps.tag import tag
from workers.steps.translate import (
    FAILED_MARK,
    MAX_TRIES,
    PREVIOUS_WORDS,
    REFUSED_MARK,
    TranslationBatch,
    is_chinese,
    plan_chunks,
    translate,
)


class ScriptedLLM:
    """Answers each request with a function of the request; records what it was asked."""

    model = "scripted"

    def __init__(self, answer: Callable[[dict[str, Any], int], dict[str, Any]]) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []

    def parse(self, *, system: str, user: str, schema: type[Any], max_tokens: int | None = None) -> LLMResult[Any]:
        request = json.loads(user)
        self.requests.append(request)
        value: BaseModel = schema.model_validate(self.answer(request, len(self.requests)))
        return LLMResult(value=value, input_tokens=len(user) // 4, output_tokens=10)


def _transcript(n: int) -> Transcript:
    segs = [Segment(start=i * 4, end=i * 4 + 4, text=f"Sentence number {i} is about topic {i // 10}.")
            for i in range(n)]
    return Transcript(video_id="vid", model="m", segments=segs)


META = VideoMetadata(video_id="vid", title="A Talk", description="About things.", upload_date=date(2025, 11, 28),
                     webpage_url="https://www.youtube.com/watch?v=vid")


def _translate_all(request: dict[str, Any], _: int) -> dict[str, Any]:
    ids = [p["id"] for p in request["paragraphs"]]
    return {"translations": [{"id": i, "zh": f"译文{i}"} for i in ids],
            "sections": [{"paragraph_id": ids[0], "heading": "开场"}]}


def test_paragraphs_keep_every_word_in_order() -> None:
    transcript = _transcript(57)
    paragraphs = build_paragraphs(transcript.segments)
    assert " ".join(p.source for p in paragraphs) == transcript.text
    assert [p.id for p in paragraphs] == [f"p{i:04d}" for i in range(1, len(paragraphs) + 1)]
    assert all(len(p.source.split()) <= 140 for p in paragraphs) and len(paragraphs) > 3
    assert paragraphs[0].start == 0 and paragraphs[-1].end == 57 * 4


def test_paragraphs_break_at_speaker_turns() -> None:
    segs = [Segment(start=0, end=1, text="Hi.", speaker="A"), Segment(start=1, end=2, text="Hello.", speaker="B"),
            Segment(start=2, end=3, text="So.", speaker="B")]
    assert [p.source for p in build_paragraphs(segs)] == ["Hi.", "Hello. So."]


def test_translate_covers_every_paragraph_in_sections() -> None:
    llm = ScriptedLLM(_translate_all)
    out = translate(_transcript(400), META, llm)
    paragraphs = out.translation.paragraphs()
    assert [p.translation for p in paragraphs] == [f"译文{p.id}" for p in paragraphs]
    assert " ".join(p.source for p in paragraphs) == _transcript(400).text
    assert len(llm.requests) == len(plan_chunks(build_paragraphs(_transcript(400).segments))) > 1
    assert llm.requests[0]["title"] == "A Talk" and llm.requests[0]["previous"] == []
    before = " ".join(p.source for p in paragraphs if p.id in _ids_before(llm.requests[1]["paragraphs"][0]["id"], 2))
    assert llm.requests[1]["previous"] == [" ".join(before.split()[-PREVIOUS_WORDS:])]
    assert out.translation.sections[0].heading == "开场" and out.translation.problems == []


def _ids_before(first: str, n: int) -> set[str]:
    k = int(first[1:])
    return {f"p{i:04d}" for i in range(k - n, k)}


def test_translate_re_requests_missing_and_suspect_ids_with_the_reason() -> None:
    def drop_every_third(request: dict[str, Any], n: int) -> dict[str, Any]:
        full = _translate_all(request, n)
        if n == 1:
            full["translations"] = [t for i, t in enumerate(full["translations"]) if i % 3]
        return full

    llm = ScriptedLLM(drop_every_third)
    out = translate(_transcript(60), META, llm)
    assert all(p.translation == f"译文{p.id}" for p in out.translation.paragraphs())
    first = [p["id"] for p in llm.requests[0]["paragraphs"]]
    second = [p["id"] for p in llm.requests[1]["paragraphs"]]
    dropped = first[::3]
    assert set(dropped) <= set(second) < set(first)  # only the missing ones and their possible merge partners
    assert f"{dropped[1]}: missing" in llm.requests[1]["note"]
    assert "may hold the next paragraph" in llm.requests[1]["note"]


def test_a_paragraph_the_model_never_translates_is_marked_not_dropped() -> None:
    llm = ScriptedLLM(lambda request, n: {"translations": [], "sections": []})
    out = translate(_transcript(5), META, llm)
    paragraphs = out.translation.paragraphs()
    assert " ".join(p.source for p in paragraphs) == _transcript(5).text
    assert all(p.translation == FAILED_MARK for p in paragraphs)
    assert {pr.id for pr in out.translation.problems} == {p.id for p in paragraphs}
    assert len(llm.requests) == MAX_TRIES


def test_a_refusal_is_isolated_to_its_paragraph() -> None:
    def refuse_bad(request: dict[str, Any], n: int) -> dict[str, Any]:
        if any("topic 2" in p["text"] and "number 25" in p["text"] for p in request["paragraphs"]):
            raise Refused("simulated refusal")
        return _translate_all(request, n)

    llm = ScriptedLLM(refuse_bad)
    out = translate(_transcript(60), META, llm)
    marked = [p for p in out.translation.paragraphs() if p.translation == REFUSED_MARK]
    assert len(marked) == 1 and "number 25" in marked[0].source
    assert [pr.id for pr in out.translation.problems] == [marked[0].id]
    assert all(p.translation.startswith("译文") for p in out.translation.paragraphs() if p is not marked[0])


def test_a_cut_off_answer_splits_the_batch() -> None:
    answered: list[int] = []

    def cut_big(request: dict[str, Any], n: int) -> dict[str, Any]:
        if len(request["paragraphs"]) > 2:
            raise AnswerCutOff("finish_reason=length")
        answered.append(len(request["paragraphs"]))
        return _translate_all(request, n)

    llm = ScriptedLLM(cut_big)
    out = translate(_transcript(60), META, llm)
    assert all(p.translation == f"译文{p.id}" for p in out.translation.paragraphs())
    assert sum(answered) == len(out.translation.paragraphs()) and max(answered) <= 2


def test_chinese_check() -> None:
    assert is_chinese("我们希望将 ChatGPT 作为一个第一方应用。") and is_chinese("【模拟】第1段译文")
    assert not is_chinese("We want ChatGPT as a first party app.") and not is_chinese("")


def test_tag_builds_front_matter_from_suggestion_and_defaults() -> None:
    suggestion = TagSuggestion(
        title=" 标题 ", summary="第一句。\n第二句。", tags=["Reinforcement Learning", "LLM", "llm", ""],
        people=["Sam Altman", "sam altman", " "], companies_orgs=["OpenAI"], products_models=["ChatGPT"],
        media_books=[], guest="Sherman Wu",
    )
    llm = ScriptedLLM(lambda request, n: suggestion.model_dump())
    defaults = FrontMatterDefaults(area="tech-insights", category="technology", project=["ai"], speaker="a16z")
    from schemas.artifacts import Paragraph, Section, Translation

    translation = Translation(video_id="vid", model="m", sections=[Section(heading="h", paragraphs=[
        Paragraph(id="p0001", start=0, end=1, source="Hello ChatGPT.", translation="你好")])])
    fm = tag(META, translation, llm, defaults, META.webpage_url).front_matter
    assert fm.title == "标题" and fm.summary == "第一句。 第二句。"
    assert fm.tags == ["llm", "reinforcement-learning"]
    assert fm.people == ["Sam Altman"] and fm.guest == "Sherman Wu"
    assert (fm.area, fm.speaker, fm.project, fm.date) == ("tech-insights", "a16z", ["ai"], "2025-11-28")
    assert fm.source == "https://www.youtube.com/watch?v=vid"
    assert "Hello ChatGPT." in llm.requests[0]["transcript"]


def test_batch_schema_is_strict() -> None:
    with pytest.raises(ValueError):
        TranslationBatch.model_validate({"translations": [{"id": "p1", "zh": "x", "extra": 1}], "sections": []})


def test_tags_of_a_long_talk_come_from_all_of_it() -> None:
    """Map-reduce: notes on every piece, then the front matter from the notes, not the first minutes."""
    from schemas.artifacts import Paragraph, Section, Translation
    from schemas.glossary import Glossary, GlossaryTerm
    from workers.steps.tag import CONTEXT_CHARS, PartNotes

    words = "word " * 150
    paragraphs = [Paragraph(id=f"p{i:04d}", start=i, end=i + 1, source=f"Part {i}: {words}", translation="译")
                  for i in range(400)]
    paragraphs[-1] = paragraphs[-1].model_copy(update={"source": "At the very end we talk about Kora."})
    translation = Translation(video_id="v", model="m", sections=[Section(heading="h", paragraphs=paragraphs)])
    asked: list[tuple[str, dict[str, Any]]] = []

    class MapReduceLLM:
        model = "scripted"

        def parse(self, *, system: str, user: str, schema: type[Any], max_tokens: int | None = None
                  ) -> LLMResult[Any]:
            request = json.loads(user)
            asked.append((schema.__name__, request))
            if schema is PartNotes:
                named = ["Kora"] if "Kora" in request["transcript_part"] else []
                return LLMResult(PartNotes(summary="s", topics=[], people=[], companies_orgs=named,
                                           products_models=[], media_books=[]), 100, 10)
            orgs = [o for n in request["notes_on_each_part"] for o in n["companies_orgs"]]
            return LLMResult(TagSuggestion(title="标题", summary="摘要", tags=["x"], people=[], companies_orgs=orgs,
                                           products_models=[], media_books=[], guest=""), 50, 5)

    glossary = Glossary(terms=[GlossaryTerm(term="Quora", misheard=["Kora"])])
    out = tag(META, translation, MapReduceLLM(), FrontMatterDefaults(), "src", glossary)
    pieces = [r for name, r in asked if name == "PartNotes"]
    assert len(pieces) >= 5 and all(len(p["transcript_part"]) <= CONTEXT_CHARS for p in pieces)
    assert "".join(p["transcript_part"] for p in pieces).count("Part ") == 399
    assert out.front_matter.companies_orgs == ["Quora"]  # found at the very end, in canonical spelling
    assert out.input_tokens == 100 * len(pieces) + 50
