"""The simulator's answers have the real shape: translations about `translation_ratio` times as many tokens as
their English, summaries a few sentences long, the output produced at llm_tokens_per_second; all still marked."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx2
import pytest

from schemas.artifacts import Paragraph
from schemas.glossary import Glossary
from schemas.post import TagSuggestion
from workers.providers import simulator
from workers.providers.openai_llm import OpenAILLM
from workers.providers.simulator import SimulatorConfig, running_simulator
from workers.providers.simulator_fake import (
    JSON_TOKENS_PER_ITEM,
    MARK,
    count_tokens,
    cut_to_tokens,
    fake_zh,
    load_sentences,
)
from workers.steps.tag import PartNotes
from workers.steps.translate import ChunkContext, TranslationBatch, is_chinese, translate_chunk

SAMPLE = " ".join(s.removeprefix(MARK) for s in load_sentences(None)).split()
NAMES = "We moved from ChatGBT to GPT-5 and Claude, and then GPT-4o shipped."


def paragraphs(words: int, per: int = 80) -> list[dict[str, str]]:
    """`words` words of the built-in sample in paragraphs of `per` words (a Pressroom paragraph is 60-140);
    the first says some product names."""
    text = (SAMPLE * (words // len(SAMPLE) + 1))[:words]
    out = [{"id": f"p{i // per + 1:04d}", "text": " ".join(text[i : i + per])} for i in range(0, words, per)]
    out[0]["text"] = NAMES + " " + out[0]["text"]
    return out


def json_schema(model: Any) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {"type": "json_schema", "json_schema": {"name": model.__name__, "schema": schema, "strict": True}}


def ask(url: str, user: Any, model: Any = TranslationBatch, **extra: Any) -> dict[str, Any]:
    body = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": json.dumps(user, ensure_ascii=False)}],
            "response_format": json_schema(model), **extra}  # fmt: skip
    answer = httpx2.post(url + "/chat/completions", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_token_rule_counts_cjk_characters_one_each() -> None:
    texts = ("", "abcd", "abcde", "中文", "【模拟】", "，。", "ＡＢ", "㐀丽")
    assert [count_tokens(t) for t in texts] == [0, 1, 2, 2, 4, 2, 2, 2]
    assert count_tokens("我们用 ChatGPT。") == 4 + -(-8 // 4)  # 我们用。 and " ChatGPT"
    english = "The quick brown fox jumps over the lazy dog."
    assert count_tokens(english) == -(-len(english) // 4)  # English counts as it always did
    assert cut_to_tokens("中文abcdefg", 3) == "中文abcd" and count_tokens(cut_to_tokens("中文abcdefg", 3)) == 3
    assert cut_to_tokens("中文", 5) == "中文" and cut_to_tokens("中文", 0) == ""


@pytest.mark.parametrize("ratio", [1.0, 0.5])
def test_a_translation_is_ratio_times_its_english(ratio: float) -> None:
    batch = paragraphs(1000)
    english = sum(count_tokens(p["text"]) for p in batch)
    with running_simulator(SimulatorConfig(translation_ratio=ratio)) as url:
        answer = ask(url, {"title": "T", "description": "", "paragraphs": batch})
    content = answer["choices"][0]["message"]["content"]
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"]["completion_tokens"] == count_tokens(content)
    assert answer["usage"]["completion_tokens"] == pytest.approx(english * ratio, rel=0.15)
    value = TranslationBatch.model_validate_json(content)
    assert [t.id for t in value.translations] == [p["id"] for p in batch]
    for item, p in zip(value.translations, batch, strict=True):
        assert item.zh == fake_zh(p, ratio) and item.zh.startswith(MARK) and is_chinese(item.zh)
        short = count_tokens(fake_zh(p, 0))  # the stub: a paragraph's shortest "translation"
        assert count_tokens(item.zh) == max(short, round(count_tokens(p["text"]) * ratio) - JSON_TOKENS_PER_ITEM)
    assert all(name in value.translations[0].zh for name in ("ChatGBT", "GPT-5", "GPT-4o"))  # names it heard
    assert all(s.heading.startswith(MARK) and 4 <= len(s.heading) <= 16 for s in value.sections)


def test_ratio_zero_gives_the_short_stub() -> None:
    batch = paragraphs(400)
    with running_simulator(SimulatorConfig(translation_ratio=0)) as url:
        answer = ask(url, {"paragraphs": batch})
    value = TranslationBatch.model_validate_json(answer["choices"][0]["message"]["content"])
    assert [t.zh for t in value.translations] == [fake_zh(p, 0) for p in batch]
    words = len(batch[0]["text"].split())
    assert value.translations[0].zh == f"{MARK}第1段译文，原文{words}个词，提到 ChatGBT、GPT-5、GPT-4o。"
    assert all(re.fullmatch(f"{MARK}第{i}段译文，原文80个词(，提到 [^。]+)?。", t.zh)
               for i, t in enumerate(value.translations[1:], start=2))
    assert answer["usage"]["completion_tokens"] < 0.4 * sum(count_tokens(p["text"]) for p in batch)


def test_the_answer_takes_as_long_as_its_tokens() -> None:
    with running_simulator(SimulatorConfig(llm_tokens_per_second=200)) as url:
        start = time.monotonic()
        answer = ask(url, {"paragraphs": paragraphs(280)})
        took = time.monotonic() - start
    tokens = answer["usage"]["completion_tokens"]
    assert 400 <= tokens <= 460 and took >= 2.0 and took >= tokens / 200  # a lower bound only: machines vary


def test_max_tokens_cuts_the_long_answer() -> None:
    with running_simulator() as url:
        answer = ask(url, {"paragraphs": paragraphs(500)}, max_tokens=300)
    content = answer["choices"][0]["message"]["content"]
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == count_tokens(content) == 300


def test_pressroom_translate_step_gets_whole_real_length_answers() -> None:
    """The step asks for ≈ 3 tokens an English word (+ JSON): real-length answers fit, first time."""
    batch = [Paragraph(id=p["id"], start=0, end=1, source=p["text"], translation="") for p in paragraphs(1000)]
    with running_simulator() as url:
        result = translate_chunk(OpenAILLM(url, "k", "gpt-4.1-mini", 30), ChunkContext(title="T"), batch, Glossary())
    assert not result.problems and result.requests == 1 and len(result.translations) == len(batch)
    english = sum(count_tokens(p.source) for p in batch)
    assert result.output_tokens == pytest.approx(english, rel=0.15)


def test_summaries_are_a_few_sentences_long() -> None:
    talk = {"title": "T", "transcript": " ".join(p["text"] for p in paragraphs(600))}
    with running_simulator() as url:
        tags = TagSuggestion.model_validate_json(ask(url, talk, TagSuggestion)["choices"][0]["message"]["content"])
        notes = PartNotes.model_validate_json(ask(url, talk, PartNotes)["choices"][0]["message"]["content"])
    with running_simulator(SimulatorConfig(translation_ratio=0)) as url:
        stub = TagSuggestion.model_validate_json(ask(url, talk, TagSuggestion)["choices"][0]["message"]["content"])
    assert tags.summary.startswith(MARK) and is_chinese(tags.summary) and 150 <= len(tags.summary) <= 250
    assert tags.title.startswith(MARK) and f"{MARK}ChatGBT" in tags.products_models
    assert notes.summary.startswith(MARK) and 80 <= count_tokens(notes.summary) <= 160
    assert stub.summary.startswith(MARK) and len(stub.summary) < 40


def test_the_cli_takes_a_translation_ratio(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[SimulatorConfig] = []
    monkeypatch.setattr(simulator, "serve", lambda port, config, host: served.append(config))
    simulator.main(["--translation-ratio", "0.5"])
    simulator.main([])
    assert [c.translation_ratio for c in served] == [0.5, 1.0]
    with pytest.raises(ValueError, match="translation_ratio"):
        simulator.main(["--translation-ratio", "-1"])
