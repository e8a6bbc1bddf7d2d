"""Translation faults of the simulator through the real SDK (OpenAILLM → chat.completions.parse): each defect
a translation checker must catch (dropped, merged, empty, untranslated, cut-off, refused) on demand."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from pydantic import BaseModel, ConfigDict

from workers.errors import AnswerCutOff, Refused
from workers.providers.openai_llm import OpenAILLM
from workers.providers.simulator import SimulatorConfig, running_simulator
from workers.providers.simulator_fake import MARK, fake_zh
from workers.providers.simulator_faults import REFUSE_MARKER


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="k", max_retries=0, timeout=30)


class ParagraphTranslation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    zh: str


class SectionStart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paragraph_id: str
    heading: str


class TranslationBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    translations: list[ParagraphTranslation]
    sections: list[SectionStart]


PARAGRAPHS = [{"id": f"p{i:04d}", "text": f"Sentence number {i} of the talk, said {'very ' * i}slowly."}
              for i in range(1, 11)]  # fmt: skip
EXPECTED = {p["id"]: fake_zh(p) for p in PARAGRAPHS}
TEXTS = {p["id"]: p["text"] for p in PARAGRAPHS}


def translate(llm: OpenAILLM | str, paragraphs: list[dict[str, str]] = PARAGRAPHS) -> TranslationBatch:
    llm = OpenAILLM(llm, "k", "gpt-4.1-mini", 30) if isinstance(llm, str) else llm
    user = json.dumps({"title": "A talk", "description": "", "paragraphs": paragraphs})
    return llm.parse(system="Translate.", user=user, schema=TranslationBatch).value


def defects(batch: TranslationBatch) -> set[str]:
    """Which faults the answer shows, judged only from the answer (as a translation checker would)."""
    got = {t.id: t.zh for t in batch.translations}
    merged = [i for i, zh in got.items() if zh.count(MARK) == 2]
    found = {"merge"} if merged else set()
    if len(EXPECTED) - len(got) > len(merged):
        found.add("drop")
    if "" in got.values():
        found.add("empty")
    if any(zh == TEXTS[i] for i, zh in got.items()):
        found.add("english")
    return found


@pytest.mark.parametrize("fault", ["drop", "merge", "empty", "english"])
def test_each_translation_fault_shows_exactly_its_defect(fault: str) -> None:
    with running_simulator(SimulatorConfig(**{f"fault_{fault}": 1.0})) as url:
        batch = translate(url)
    got = {t.id: t.zh for t in batch.translations}
    assert defects(batch) == {fault}
    assert list(got) == [i for i in EXPECTED if i in got]  # order kept
    untouched = {i: zh for i, zh in got.items() if zh == EXPECTED[i]}
    if fault == "drop":
        assert len(got) == 8 and untouched == got  # 20% of 10
    elif fault == "merge":
        (gone,) = set(EXPECTED) - set(got)
        before = list(EXPECTED)[list(EXPECTED).index(gone) - 1]
        assert got[before] == EXPECTED[before] + EXPECTED[gone] and len(untouched) == 8
    else:
        assert list(got) == list(EXPECTED) and len(untouched) == 9
        (bad,) = set(got) - set(untouched)
        assert got[bad] == ("" if fault == "empty" else TEXTS[bad])


def test_cutoff_is_a_200_with_finish_reason_length_and_truncated_json() -> None:
    with running_simulator(SimulatorConfig(fault_cutoff=1.0)) as url:
        with pytest.raises(AnswerCutOff, match="length limit"):
            translate(url)
        user = json.dumps({"title": "A talk", "description": "", "paragraphs": PARAGRAPHS})
        with pytest.raises(openai.LengthFinishReasonError) as info:
            client(url).chat.completions.parse(
                model="m", messages=[{"role": "user", "content": user}], response_format=TranslationBatch
            )
    choice = info.value.completion.choices[0]
    assert choice.finish_reason == "length" and choice.message.refusal is None
    content = choice.message.content or ""
    with running_simulator() as url:
        whole = translate(url).model_dump_json()
    assert len(content) == int(len(json.dumps(json.loads(whole), ensure_ascii=False)) * 0.6)
    with pytest.raises(ValueError):
        json.loads(content)


def test_a_marked_paragraph_makes_the_whole_batch_a_refusal() -> None:
    bad = [*PARAGRAPHS[:3], {"id": "p0099", "text": f"Something awful {REFUSE_MARKER} here."}]
    with running_simulator(SimulatorConfig(fault_refuse_paragraph=True)) as url:
        with pytest.raises(Refused, match="refused to answer"):
            translate(url, bad)
        assert defects(translate(url)) == set()  # no marker, no refusal
        raw = client(url).chat.completions.parse(
            model="m", messages=[{"role": "user", "content": json.dumps({"paragraphs": bad})}],
            response_format=TranslationBatch,
        )  # fmt: skip
    message = raw.choices[0].message
    assert message.refusal and message.content is None and message.parsed is None
    with running_simulator() as url:  # off by default
        assert [t.id for t in translate(url, bad).translations] == [p["id"] for p in bad]


def test_translation_fault_rates_at_ten_percent() -> None:
    rates = dict.fromkeys(["drop", "merge", "cutoff", "empty", "english"], 0.1)
    seen = dict.fromkeys(rates, 0)
    n = 200
    with running_simulator(SimulatorConfig(**{f"fault_{k}": v for k, v in rates.items()}, seed=3)) as url:
        llm = OpenAILLM(url, "k", "gpt-4.1-mini", 30)
        for _ in range(n):
            try:
                found = defects(translate(llm))
            except AnswerCutOff:
                found = {"cutoff"}  # the other defects of a cut-off answer are not observable
            for name in found:
                seen[name] += 1
    answered = n - seen["cutoff"]
    observed = {k: v / (n if k == "cutoff" else answered) for k, v in seen.items()}
    assert all(0.04 <= r <= 0.18 for r in observed.values()), observed


def test_translation_faults_are_deterministic_and_independent() -> None:
    def run(**faults: Any) -> list[list[tuple[str, str]]]:
        with running_simulator(SimulatorConfig(**faults)) as url:
            llm = OpenAILLM(url, "k", "gpt-4.1-mini", 30)
            return [[(t.id, t.zh) for t in translate(llm).translations] for _ in range(30)]

    first = run(fault_drop=0.3, fault_english=0.3, seed=5)
    assert first == run(fault_drop=0.3, fault_english=0.3, seed=5)
    assert first != run(fault_drop=0.3, fault_english=0.3, seed=6)
    drop_only = run(fault_drop=0.3, seed=5)  # switching English on does not move which ids are dropped
    assert [[i for i, _ in b] for b in first] == [[i for i, _ in b] for b in drop_only]


def test_fake_translation_depends_only_on_the_paragraph() -> None:
    odd = [{"id": "intro", "text": "Hello there."}, *PARAGRAPHS[6:9], {"id": "long", "text": "We talked. " * 40}]
    with running_simulator() as url:
        alone = {t.id: t.zh for t in translate(url, odd).translations}
        together = {t.id: t.zh for t in translate(url, PARAGRAPHS[:6] + odd[::-1]).translations}
    assert alone == {i: together[i] for i in alone}
    assert alone["long"] == fake_zh(odd[-1]) and len(alone["long"]) > 80  # padded to the English's length
    assert alone["p0008"] == EXPECTED["p0008"] == f"{MARK}第8段译文，原文{len(TEXTS['p0008'].split())}个词。"
    assert alone["intro"] == f"{MARK}第intro段译文，原文2个词。"
