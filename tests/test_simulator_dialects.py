"""The simulator's provider dialects over real HTTP: which response_format each takes, JSON mode's demands and
blank answers, answers built from the system message's schema line, reasoning models, prompt-cache usage."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

import httpx2
import openai
import pytest

from tests.test_simulator_faults import TranslationBatch  # the strict schema the simulator's answers must fit
from workers.providers import simulator
from workers.providers.simulator import SimulatorConfig, running_simulator
from workers.providers.simulator_dialects import DIALECTS, JSON_WORD_MESSAGE, DialectName, is_reasoning
from workers.providers.simulator_fake import MARK, SCHEMA_LINE, count_tokens, fake_zh

PARAGRAPHS = [{"id": f"p{i:04d}", "text": f"Sentence {i} of the talk, about GPT-5."} for i in range(1, 9)]
USER = json.dumps({"title": "A talk", "description": "", "paragraphs": PARAGRAPHS})
SCHEMA = TranslationBatch.model_json_schema()
SYSTEM = f"Translate each paragraph.\n{SCHEMA_LINE}{json.dumps(SCHEMA, separators=(',', ':'))}\nKeep the ids."
WITH_LINE = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
NO_JSON_WORD = [{"role": "system", "content": "Translate."}, {"role": "user", "content": "Bonjour"}]
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "TranslationBatch", "schema": SCHEMA, "strict": True}}
ACCEPT_SCHEMA = {"openai", "gemini", "openrouter", "ollama", "vllm", "llamacpp"}
FENCED = re.compile(r"```json\n(.*?)\n```", re.S)


@contextmanager
def sim(**config: Any) -> Iterator[tuple[httpx2.Client, str]]:
    with running_simulator(SimulatorConfig(**config)) as url, httpx2.Client(base_url=url, timeout=30) as http:
        yield http, url.removesuffix("/v1")


def chat(http: httpx2.Client, messages: list[dict[str, str]], model: str = "gpt-4.1-mini", **extra: Any) -> Any:
    return http.post("/chat/completions", json={"model": model, "messages": messages, **extra})


def batch_from(content: str) -> TranslationBatch:
    """The TranslationBatch in an answer: bare JSON, or the JSON of its fenced block."""
    fence = FENCED.search(content)
    return TranslationBatch.model_validate_json(fence.group(1) if fence else content)


def assert_full_batch(batch: TranslationBatch) -> None:
    assert [(t.id, t.zh) for t in batch.translations] == [(p["id"], fake_zh(p)) for p in PARAGRAPHS]
    assert [s.paragraph_id for s in batch.sections] == ["p0001", "p0007"]


def test_every_dialect_has_a_row() -> None:
    assert set(DIALECTS) == set(get_args(DialectName))
    assert SimulatorConfig().dialect == "openai"
    with pytest.raises(ValueError):
        SimulatorConfig.model_validate({"dialect": "klingon"})


@pytest.mark.parametrize("dialect", get_args(DialectName))
def test_response_formats_by_dialect(dialect: str) -> None:
    row = DIALECTS[dialect]
    with sim(dialect=dialect) as (http, root):
        strict = chat(http, WITH_LINE, response_format=JSON_SCHEMA)
        if dialect in ACCEPT_SCHEMA:
            assert strict.status_code == 200
            assert_full_batch(TranslationBatch.model_validate_json(strict.json()["choices"][0]["message"]["content"]))
        else:
            assert strict.status_code == 400
            error = strict.json()["error"]
            assert error["type"] == "invalid_request_error" and "response_format" in error["message"]
            assert dialect == "plain" or "json_schema" in error["message"] or dialect == "deepseek"

        mode = chat(http, WITH_LINE, response_format={"type": "json_object"})  # the schema line says "JSON"
        if dialect == "plain":
            assert mode.status_code == 400 and "response_format" in mode.json()["error"]["message"]
        else:
            assert mode.status_code == 200
            assert_full_batch(batch_from(mode.json()["choices"][0]["message"]["content"]))
            assert not FENCED.search(mode.json()["choices"][0]["message"]["content"])  # JSON mode: bare JSON

        wordless = chat(http, NO_JSON_WORD, response_format={"type": "json_object"})
        if row.json_word:
            assert wordless.status_code == 400 and wordless.json()["error"]["message"] == JSON_WORD_MESSAGE
        else:
            assert wordless.status_code == (400 if dialect == "plain" else 200)

        text = chat(http, WITH_LINE)
        assert text.status_code == 200
        content = text.json()["choices"][0]["message"]["content"]
        assert_full_batch(batch_from(content))
        if dialect in ("plain", "llamacpp"):
            assert content.startswith("Here is the JSON you asked for:\n```json\n") and content.endswith("\n```\n")

        sentence = chat(http, NO_JSON_WORD).json()["choices"][0]["message"]["content"]
        assert sentence.startswith(MARK) and "{" not in sentence  # no schema line: today's marked sentence

        log = httpx2.get(root + "/debug/chat-log").json()
    assert [(e["response_format"], e["status"]) for e in log] == [
        ("json_schema", strict.status_code), ("json_object", mode.status_code),
        ("json_object", wordless.status_code), ("text", 200), ("text", 200),
    ]  # fmt: skip
    assert all(e["model"] == "gpt-4.1-mini" and e["prompt_chars"] > 0 for e in log)
    assert log[0]["prompt_chars"] == len(json.dumps(WITH_LINE, ensure_ascii=False))


def test_deepseek_rejects_json_schema_as_deepseek_does() -> None:
    with sim(dialect="deepseek") as (http, _):
        got = chat(http, WITH_LINE, model="deepseek-chat", response_format=JSON_SCHEMA)
        wordless = chat(http, NO_JSON_WORD, model="deepseek-chat", response_format={"type": "json_object"})
    assert got.status_code == 400
    assert got.json()["error"]["message"] == "This response_format type is unavailable now"
    assert got.json()["error"]["type"] == "invalid_request_error"
    assert wordless.json()["error"]["message"] == (
        "Prompt must contain the word 'json' in some form to use 'response_format' of type 'json_object'"
    )


def test_the_sdk_sees_a_bad_request() -> None:
    with running_simulator(SimulatorConfig(dialect="qwen")) as url:
        sdk = openai.OpenAI(base_url=url, api_key="k", max_retries=0, timeout=30)
        with pytest.raises(openai.BadRequestError, match="json_schema"):
            sdk.chat.completions.parse(model="qwen-plus", messages=WITH_LINE, response_format=TranslationBatch)  # type: ignore[arg-type]


def test_blank_json_mode_answers() -> None:
    with sim(dialect="deepseek", fault_blank=1.0) as (http, _):
        blank = chat(http, WITH_LINE, response_format={"type": "json_object"}).json()["choices"][0]
        text = chat(http, WITH_LINE).json()["choices"][0]  # only JSON mode comes back blank
    assert blank["finish_reason"] == "stop" and blank["message"]["content"].strip() == ""
    assert blank["message"]["content"] == " " * 8
    assert_full_batch(batch_from(text["message"]["content"]))


def test_blank_answers_are_seeded() -> None:
    def blanks(seed: int) -> list[bool]:
        with sim(dialect="deepseek", fault_blank=0.5, seed=seed) as (http, _):
            answers = [chat(http, WITH_LINE, response_format={"type": "json_object"}) for _ in range(16)]
        return [not a.json()["choices"][0]["message"]["content"].strip() for a in answers]

    first = blanks(3)
    assert first == blanks(3) and True in first and False in first


def test_translation_faults_apply_to_the_schema_line() -> None:
    with sim(dialect="deepseek", fault_drop=1.0) as (http, _):
        dropped = batch_from(chat(http, WITH_LINE, response_format={"type": "json_object"}).json()["choices"][0]
                             ["message"]["content"])  # fmt: skip
    assert len(dropped.translations) == len(PARAGRAPHS) - 2  # 20% of 8, rounded
    with sim(dialect="plain", fault_cutoff=1.0) as (http, _):
        cut = chat(http, WITH_LINE).json()["choices"][0]
    assert cut["finish_reason"] == "length"
    assert cut["message"]["content"].startswith("Here is the JSON you asked for:\n```json\n{")
    assert not cut["message"]["content"].rstrip().endswith("```")  # cut inside the block


@pytest.mark.parametrize("model", ["deepseek-reasoner", "o3-mini", "gemini-2.5-flash-thinking"])
def test_reasoning_models(model: str) -> None:
    with sim(dialect="openai") as (http, _):
        done = chat(http, WITH_LINE, model=model, response_format=JSON_SCHEMA, max_completion_tokens=4000).json()
        too_old = chat(http, WITH_LINE, model=model, max_tokens=100)
        hot = chat(http, WITH_LINE, model=model, temperature=0.2)
        default = chat(http, WITH_LINE, model=model, temperature=1)
        top_p = chat(http, WITH_LINE, model=model, top_p=0.5)
        tight = chat(http, WITH_LINE, model=model, max_completion_tokens=20).json()
    message, usage = done["choices"][0]["message"], done["usage"]
    assert message["reasoning_content"].startswith(MARK)
    reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
    assert reasoning > 0
    assert reasoning == count_tokens(message["reasoning_content"])  # one token a CJK character
    assert usage["completion_tokens"] == reasoning + count_tokens(message["content"])
    assert_full_batch(TranslationBatch.model_validate_json(message["content"]))
    assert too_old.status_code == 400 and too_old.json()["error"]["message"] == (
        "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."
    )
    assert too_old.json()["error"]["param"] == "max_tokens"
    assert hot.status_code == 400 and "'temperature'" in hot.json()["error"]["message"]
    assert default.status_code == 200
    assert top_p.status_code == 400 and "'top_p'" in top_p.json()["error"]["message"]
    assert tight["choices"][0]["finish_reason"] == "length" and tight["usage"]["completion_tokens"] == 20


def test_which_models_reason() -> None:
    assert all(map(is_reasoning, ["deepseek-reasoner", "o1", "o1-mini", "o3", "o4-mini", "qwen3-max-thinking"]))
    assert not any(map(is_reasoning, ["gpt-4.1-mini", "gpt-4o", "deepseek-chat", "qwen-plus", "glm-4.6"]))
    with sim() as (http, _):
        plain = chat(http, WITH_LINE, max_tokens=4000, temperature=0.2).json()
    assert "reasoning_content" not in plain["choices"][0]["message"]
    assert "completion_tokens_details" not in plain["usage"]


LONG_SYSTEM = "You are a careful translator of long technical talks. " * 120  # 6,480 chars: ~1,620 tokens


def cached_prefix_tokens(first: list[dict[str, str]], second: list[dict[str, str]]) -> int:
    a, b = json.dumps(first, ensure_ascii=False), json.dumps(second, ensure_ascii=False)
    shared = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return shared // 512 * 128


@pytest.mark.parametrize("dialect", ["openai", "qwen", "deepseek", "ollama"])
def test_prompt_cache_usage(dialect: str) -> None:
    first = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "Paragraph one, json."}]
    second = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "Paragraph two, json."}]
    short = [{"role": "system", "content": "Short."}, {"role": "user", "content": "hello"}]
    with sim(dialect=dialect) as (http, root):
        usages = [chat(http, m).json()["usage"] for m in (first, second, short, short)]
        log = httpx2.get(root + "/debug/chat-log").json()
    expected = cached_prefix_tokens(first, second)
    assert expected >= 1024 and expected % 128 == 0 and expected <= usages[1]["prompt_tokens"]
    if dialect == "deepseek":
        assert [u["prompt_cache_hit_tokens"] for u in usages] == [0, expected, 0, 0]
        assert all(u["prompt_cache_hit_tokens"] + u["prompt_cache_miss_tokens"] == u["prompt_tokens"] for u in usages)
        assert all("prompt_tokens_details" not in u for u in usages)
    elif dialect == "ollama":
        assert all(not any(k.startswith("prompt_cache") or k == "prompt_tokens_details" for k in u) for u in usages)
        expected = 0
    else:
        assert [u["prompt_tokens_details"]["cached_tokens"] for u in usages] == [0, expected, 0, 0]
        assert all("prompt_cache_hit_tokens" not in u for u in usages)
    assert [e["cached_tokens"] for e in log] == [0, expected, 0, 0]


def test_the_cli_takes_a_dialect(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    shown = subprocess.run([sys.executable, "-m", "workers.cli", "simulate", "--help"], capture_output=True,
                           text=True, check=True, cwd=Path(__file__).parents[1]).stdout  # fmt: skip
    assert "--dialect" in shown and "{openai,deepseek,qwen,moonshot,zhipu,gemini,openrouter," in shown
    assert "--fault-blank" in shown and "--translation-ratio" in shown
    served: list[SimulatorConfig] = []
    monkeypatch.setattr(simulator, "serve", lambda port, config, host: served.append(config))
    simulator.main(["--dialect", "deepseek", "--fault-blank", "0.25"])
    assert served[0].dialect == "deepseek" and served[0].fault_blank == 0.25
    with pytest.raises(SystemExit):
        simulator.main(["--dialect", "klingon"])
    assert "invalid choice" in capsys.readouterr().err
