"""The simulator over real HTTP with a raw openai client: shapes, determinism, faults, OpenAI-style errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from workers.providers.simulator import SimulatorConfig, running_simulator
from workers.providers.simulator_fake import MARK, fake_value, layout_segments, load_sentences

VERBOSE: Literal["verbose_json"] = "verbose_json"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "x"}]

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


def make_wav(path: Path, seconds: float) -> Path:
    source = ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", *source, "-ac", "1", "-ar", "8000", str(path)], check=True
    )
    return path


@pytest.fixture(scope="module")
def wav20(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_wav(tmp_path_factory.mktemp("audio") / "talk.wav", 20)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_simulator() as url:
        yield url


def client(url: str, key: str = "sk-test") -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=30)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def test_health_and_models(base_url: str) -> None:
    assert get_json(base_url.removesuffix("/v1") + "/health") == {"status": "ok"}
    ids = [m.id for m in client(base_url).models.list()]
    assert "whisper-1" in ids and "gpt-4.1-mini" in ids


def test_verbose_json_is_whisper_shaped_ordered_and_deterministic(base_url: str, wav20: Path) -> None:
    c = client(base_url)
    with wav20.open("rb") as fh:
        first = c.audio.transcriptions.create(file=fh, model="whisper-1", response_format="verbose_json")
    with wav20.open("rb") as fh:
        again = c.audio.transcriptions.create(file=fh, model="whisper-1", response_format="verbose_json")
    assert first.model_dump() == again.model_dump()
    assert first.language == "english" and first.duration == pytest.approx(20.0, abs=0.05)
    segs = first.segments or []
    assert len(segs) >= 3
    assert [s.id for s in segs] == list(range(len(segs)))
    assert segs[0].start == 0 and all(a.end == b.start for a, b in pairwise(segs))
    assert all(s.start < s.end <= first.duration for s in segs)
    assert all(s.text.startswith(" ") and s.tokens for s in segs)
    assert segs[0].text.strip() == load_sentences(None)[0]
    assert first.text == "".join(s.text for s in segs).strip()


def test_json_and_text_formats(base_url: str, wav20: Path) -> None:
    c = client(base_url)
    with wav20.open("rb") as fh:
        plain = c.audio.transcriptions.create(file=fh, model="gpt-4o-mini-transcribe", response_format="json")
    with wav20.open("rb") as fh:
        text = c.audio.transcriptions.create(file=fh, model="gpt-4o-transcribe", response_format="text")
    assert plain.text.startswith(load_sentences(None)[0])
    assert text.strip() == plain.text


def test_gpt4o_transcribe_rejects_verbose_json_like_openai(base_url: str, wav20: Path) -> None:
    with wav20.open("rb") as fh, pytest.raises(openai.BadRequestError, match="not compatible"):
        client(base_url).audio.transcriptions.create(
            file=fh, model="gpt-4o-transcribe", response_format="verbose_json"
        )


def test_non_audio_upload_is_a_400(base_url: str, tmp_path: Path) -> None:
    junk = tmp_path / "notes.mp3"
    junk.write_text("this is not audio")
    with junk.open("rb") as fh, pytest.raises(openai.BadRequestError, match="could not be decoded"):
        client(base_url).audio.transcriptions.create(file=fh, model="whisper-1")


def test_layout_never_exceeds_duration_and_cycles() -> None:
    sentences = ["One two three four five.", "Six seven eight nine ten."]  # 2 s each at 150 wpm
    long = layout_segments(sentences, 11.0)
    assert [s["text"].strip() for s in long[:3]] == [sentences[0], sentences[1], sentences[0]]
    assert long[-1]["end"] == 11.0 and all(s["end"] <= 11.0 for s in long)
    short = layout_segments(sentences, 0.4)
    assert len(short) == 1 and short[0]["start"] == 0 and short[0]["end"] == 0.4
    assert layout_segments(sentences, 4.5)[-1]["end"] == 4.0  # a remainder under 1 s is left silent


def test_custom_transcript_file(tmp_path: Path, wav20: Path) -> None:
    script = tmp_path / "script.txt"
    script.write_text("Alpha beta gamma. Delta epsilon!\nZeta eta theta?")
    with running_simulator(SimulatorConfig(transcript_path=script)) as url, wav20.open("rb") as fh:
        out = client(url).audio.transcriptions.create(file=fh, model="whisper-1", response_format=VERBOSE)
    texts = [s.text.strip() for s in out.segments or []]
    assert texts[:4] == ["Alpha beta gamma.", "Delta epsilon!", "Zeta eta theta?", "Alpha beta gamma."]


def schema_format(name: str, schema: dict[str, Any]) -> Any:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def test_translation_batch_answer(base_url: str) -> None:
    string = {"type": "string"}
    item = {"type": "object", "properties": {"id": string, "zh": string}}
    section = {"type": "object", "properties": {"paragraph_id": string, "heading": string}}
    arrays = {
        "translations": {"type": "array", "items": item},
        "sections": {"type": "array", "items": section},
    }
    schema = {"type": "object", "properties": arrays}
    paragraphs = [{"id": f"p{i:04d}", "text": "word " * i} for i in range(1, 14)]
    user = json.dumps({"title": "T", "description": "", "paragraphs": paragraphs})
    done = client(base_url).chat.completions.create(
        model="gpt-4.1-mini", messages=[{"role": "user", "content": user}],
        response_format=schema_format("TranslationBatch", schema),
    )  # fmt: skip
    value = json.loads(done.choices[0].message.content or "")
    assert [t["id"] for t in value["translations"]] == [p["id"] for p in paragraphs]
    assert value["translations"][2]["zh"] == f"{MARK}第3段译文，原文3个词。"
    assert [s["paragraph_id"] for s in value["sections"]] == ["p0001", "p0007", "p0013"]
    assert value["sections"][1]["heading"] == f"{MARK}第2节"
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.prompt_tokens == -(-len(user) // 4)


def test_generic_schema_value_handles_refs_and_anyof() -> None:
    schema = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 3}]},
            "flag": {"type": "boolean"},
            "kind": {"enum": ["a", "b"]},
        },
        "$defs": {"Item": {"type": "object", "properties": {"name": {"type": "string"}}}},
    }
    assert fake_value(schema, schema) == {"items": [{"name": MARK}], "maybe": 3, "flag": False, "kind": "a"}


def test_plain_chat_and_length_cut(base_url: str) -> None:
    c = client(base_url)
    done = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hello"}])
    assert (done.choices[0].message.content or "").startswith(MARK)
    cut = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    assert cut.choices[0].finish_reason == "length" and cut.usage and cut.usage.completion_tokens == 1


def statuses(config: SimulatorConfig, n: int = 12) -> list[int]:
    with running_simulator(config) as url:
        raw = client(url).with_options(max_retries=0).chat.completions.with_raw_response
        out = []
        for _ in range(n):
            try:
                out.append(raw.create(model="m", messages=HELLO).status_code)
            except openai.APIStatusError as exc:
                out.append(exc.status_code)
        return out


def test_faults_are_deterministic_per_seed() -> None:
    first = statuses(SimulatorConfig(fault_429=0.3, fault_500=0.3, seed=7))
    assert first == statuses(SimulatorConfig(fault_429=0.3, fault_500=0.3, seed=7))
    assert {200, 429, 500} <= set(first)
    assert first != statuses(SimulatorConfig(fault_429=0.3, fault_500=0.3, seed=8))


def answers(config: SimulatorConfig, n: int = 12) -> list[str]:
    """What each chat answer was: a status code, or html / not_json / wrong_shape / ok for a 200."""
    out = []
    with running_simulator(config) as url, httpx2.Client(timeout=30) as http:
        for _ in range(n):
            got = http.post(url + "/chat/completions", json={"model": "m", "messages": HELLO})
            if got.status_code != 200:
                out.append(str(got.status_code))
            elif got.headers["content-type"].startswith("text/html"):
                out.append("html")
            else:
                try:
                    message = got.json()["choices"][0]["message"]
                except ValueError:
                    out.append("not_json")
                    continue
                out.append("ok" if isinstance(message, dict) else "wrong_shape")
    return out


def test_answer_faults_are_seeded_and_leave_the_other_faults_alone() -> None:
    kinds = {"fault_not_json": 0.2, "fault_html": 0.2, "fault_wrong_shape": 0.2}
    first = answers(SimulatorConfig(fault_500=0.3, seed=7, **kinds), n=30)
    assert first == answers(SimulatorConfig(fault_500=0.3, seed=7, **kinds), n=30)
    assert {"500", "html", "not_json", "wrong_shape", "ok"} <= set(first)
    plain = answers(SimulatorConfig(fault_500=0.3, seed=7), n=30)
    assert [a == "500" for a in first] == [a == "500" for a in plain]  # the 500s fall where they fell


def test_trickle_sends_the_same_answer_slowly() -> None:
    def answer(config: SimulatorConfig) -> tuple[dict[str, Any], float]:
        with running_simulator(config) as url:
            start = time.monotonic()
            body = httpx2.post(url + "/chat/completions", json={"model": "m", "messages": HELLO}, timeout=30)
            took = time.monotonic() - start
        return {k: v for k, v in body.json().items() if k != "created"}, took

    fast, _ = answer(SimulatorConfig())
    slow, took = answer(SimulatorConfig(trickle_seconds=0.002))
    assert slow == fast
    assert took >= 0.002 * (len(json.dumps(fast)) // 2)


def test_429_carries_retry_after() -> None:
    with (
        running_simulator(SimulatorConfig(fault_429=1.0, retry_after=2.5)) as url,
        pytest.raises(openai.RateLimitError) as info,
    ):
        client(url).chat.completions.create(model="m", messages=HELLO)
    assert info.value.response.headers["retry-after"] == "2.5"


def test_api_key_and_unknown_path_answer_openai_errors() -> None:
    with running_simulator(SimulatorConfig(api_key="sk-right")) as url:
        with pytest.raises(openai.AuthenticationError):
            client(url, "sk-wrong").chat.completions.create(model="m", messages=HELLO)
        ok = client(url, "sk-right").chat.completions.create(model="m", messages=HELLO)
        assert ok.choices[0].message.content
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(url + "/nowhere", timeout=5)
    assert info.value.code == 404
    assert "/v1/nowhere" in json.loads(info.value.read())["error"]["message"]


def test_only_the_built_in_sample_is_marked(tmp_path: Path) -> None:
    """The sample is invented, so each of its sentences says so; a user's own transcript is theirs."""
    sample = load_sentences(None)
    assert len(sample) > 10 and all(s.startswith(MARK) and len(s) > len(MARK) + 3 for s in sample)
    own = tmp_path / "mine.txt"
    own.write_text("We shipped it on Friday. Nobody noticed!\nThen it broke.\n")
    assert load_sentences(own) == ["We shipped it on Friday.", "Nobody noticed!", "Then it broke."]


def test_it_counts_requests_made_twice(tmp_path: Path) -> None:
    """What the chaos benchmark reads: work a client asked for more than once."""
    with running_simulator(SimulatorConfig()) as url:
        c = client(url)
        for text in ("one", "two", "one"):
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": text}])
        with urllib.request.urlopen(url.removesuffix("/v1") + "/debug/requests") as answer:
            assert json.loads(answer.read()) == {"requests": 3, "distinct": 2, "repeated": 1}
