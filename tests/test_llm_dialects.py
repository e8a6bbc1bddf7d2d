"""The LLM providers' dialects, end to end: a talk through `pressroom run` against the simulator speaking each
dialect gives a complete post; `auto` stops asking for JSON schema after the first rejection; a blank
JSON-mode answer is asked again and the paragraph still translated; a talk's translate requests share a
byte-identical prefix; profiles and their overrides."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_audio
from tests.harness import PRESSROOM, pressroom_env
from tests.pipeline_checks import assert_post_holds_transcript
from workers.providers.openai_llm import OpenAILLM, extract_json
from workers.providers.profiles import PROFILES
from workers.providers.simulator import SimulatorConfig, running_simulator
from workers.providers.simulator_dialects import DIALECTS
from workers.settings import load_settings
from workers.steps.translate import TranslationBatch


def _run(tmp_path: Path, base_url: str, **settings: str) -> tuple[str, Path]:
    out = tmp_path / "out"
    env = pressroom_env(PRESSROOM_DATA_DIR=str(tmp_path / "data"), PRESSROOM_TRANSCRIPTION_BASE_URL=base_url,
                        PRESSROOM_LLM_BASE_URL=base_url, **settings)
    audio = make_audio(tmp_path / "talk.wav", 75)
    done = subprocess.run([*PRESSROOM, "run", str(audio), "--out", str(out)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    [post] = out.glob("*.md")
    return post.read_text(), tmp_path / "data" / "store"


def _chat_log(base_url: str) -> list[dict[str, Any]]:
    log: list[dict[str, Any]] = httpx.get(base_url.removesuffix("/v1") + "/debug/chat-log", timeout=10).json()
    return log


def _transcript(store: Path) -> Any:
    from schemas.artifacts import Transcript

    [path] = store.glob("videos/*/transcribe/*/transcript.json")
    return Transcript.model_validate_json(path.read_bytes())


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_a_talk_through_each_dialect_gives_a_complete_post(dialect: str, tmp_path: Path) -> None:
    """The default profile (openai, `auto`) against every dialect: it settles on what the server takes."""
    with running_simulator(SimulatorConfig(dialect=dialect)) as base_url:
        post, store = _run(tmp_path, base_url)
        log = _chat_log(base_url)
    assert_post_holds_transcript(post, _transcript(store))
    assert "【待人工翻译】" not in post
    formats = [(entry["response_format"], entry["status"]) for entry in log]
    rejected = [i for i, (kind, status) in enumerate(formats) if status == 400]
    if DIALECTS[dialect].json_schema_error is None:
        assert not rejected and {kind for kind, _ in formats} == {"json_schema"}
    else:  # one rejection per way of asking it does not take; never again after it
        first = rejected[0]
        assert all(kind != "json_schema" for kind, _ in formats[first + 1:]), formats
        assert all(status == 200 for _, status in formats[rejected[-1] + 1:]), formats
        expected = "text" if not DIALECTS[dialect].json_object else "json_object"
        assert {kind for kind, _ in formats[rejected[-1] + 1:]} == {expected}


def test_the_deepseek_profile_asks_in_json_mode_from_the_start(tmp_path: Path) -> None:
    with running_simulator(SimulatorConfig(dialect="deepseek")) as base_url:
        post, store = _run(tmp_path, base_url, PRESSROOM_LLM_PROVIDER="deepseek")
        log = _chat_log(base_url)
    assert_post_holds_transcript(post, _transcript(store))
    assert {(e["response_format"], e["status"], e["model"]) for e in log} == {("json_object", 200, "deepseek-chat")}


def test_a_reasoning_model_gets_no_parameter_it_rejects(tmp_path: Path) -> None:
    with running_simulator(SimulatorConfig(dialect="openai")) as base_url:
        post, store = _run(tmp_path, base_url, PRESSROOM_LLM_MODEL="o4-mini")
        log = _chat_log(base_url)
    assert_post_holds_transcript(post, _transcript(store))
    assert {e["status"] for e in log} == {200}


def test_a_blank_json_mode_answer_is_asked_again_and_the_paragraph_translated(tmp_path: Path) -> None:
    """Half the JSON-mode answers are blank (spaces, finish_reason stop, as DeepSeek sends); with this seed the
    first three are: the translate request is asked again, blank again, so its batch is split like a cut-off
    answer, and one half is blank once more; every paragraph ends translated."""
    with running_simulator(SimulatorConfig(dialect="deepseek", fault_blank=0.5, seed=0)) as base_url:
        post, store = _run(tmp_path, base_url, PRESSROOM_LLM_PROVIDER="deepseek")
        log = _chat_log(base_url)
    assert_post_holds_transcript(post, _transcript(store))
    assert "【待人工翻译】" not in post
    assert len(log) >= 5  # without blanks: one translate request and one tag request


def test_a_talks_translate_requests_share_a_byte_identical_prefix(tmp_path: Path, simulator: str) -> None:
    """What a provider's prefix cache needs: the instructions, then the talk's title, description and glossary,
    the same bytes in every request of the talk; only then what differs."""
    captured: list[list[dict[str, str]]] = []
    llm = OpenAILLM(simulator, "k", "gpt-4.1-mini", 30)
    real = llm._client.chat.completions.with_raw_response.parse

    def spy(**kwargs: Any) -> Any:
        captured.append(kwargs["messages"])
        return real(**kwargs)

    llm._client.chat.completions.with_raw_response.parse = spy  # type: ignore[method-assign]
    from schemas.artifacts import Segment, Transcript, VideoMetadata
    from schemas.glossary import Glossary, GlossaryTerm
    from workers.steps.translate import translate

    sentences = [f"Sentence {i} is about Kubernetes and the Lattice scheduler, said slowly." for i in range(400)]
    segments = [Segment(start=i * 3.0, end=i * 3.0 + 3, text=t) for i, t in enumerate(sentences)]
    transcript = Transcript(video_id="v1", language="en", model="whisper-1", duration=1200.0, segments=segments)
    meta = VideoMetadata(video_id="v1", title="Scheduling at scale", description="A talk about schedulers. " * 20,
                         duration=1200.0)
    glossary = Glossary(terms=[GlossaryTerm(term="Kubernetes", zh="Kubernetes"),
                               GlossaryTerm(term="Lattice", zh="Lattice 调度器")])
    translate(transcript, meta, llm, glossary)
    batches = [m for m in captured if '"paragraphs"' in m[1]["content"]]
    assert len(batches) >= 3
    texts = [json.dumps(m, ensure_ascii=False) for m in batches]  # the messages as the request carries them
    shared = len(texts[0])
    for text in texts[1:]:
        shared = next((i for i, (a, b) in enumerate(zip(texts[0], text, strict=False)) if a != b), shared)
    prefix = texts[0][:shared]
    assert '\\"glossary\\": [{\\"term\\": \\"Kubernetes\\"' in prefix and "Lattice 调度器" in prefix  # the talk's…
    assert '\\"previous\\"' in texts[0][shared - 20:]  # …then what differs: a batch's own context and paragraphs


def test_profiles_and_overrides() -> None:
    s = load_settings(llm_provider="deepseek")
    profile = s.llm_profile()
    assert (profile.base_url, profile.model, profile.structured) == ("https://api.deepseek.com/v1", "deepseek-chat",
                                                                     "json_object")
    s = load_settings(llm_provider="deepseek", llm_base_url="http://127.0.0.1:9/v1", llm_model="deepseek-reasoner",
                      llm_usd_per_million_output=2.0, llm_structured_output="text")
    p = s.llm_profile()
    assert (p.base_url, p.model, p.structured, p.usd_per_million_output) == (
        "http://127.0.0.1:9/v1", "deepseek-reasoner", "text", 2.0)
    assert p.usd_per_million_cached_input == PROFILES["deepseek"].usd_per_million_cached_input
    assert p.cost(1_000_000, 900_000, 0) == pytest.approx(0.1 * 0.28 + 0.9 * 0.028)
    assert set(PROFILES) == {"openai", "deepseek", "qwen", "moonshot", "zhipu", "gemini", "openrouter", "ollama",
                             "vllm", "llamacpp"}


def test_json_is_taken_out_of_a_plain_answer() -> None:
    value = TranslationBatch(translations=[], sections=[]).model_dump_json()
    assert extract_json(f"Here is the JSON you asked for:\n```json\n{value}\n```\n") == value
    assert extract_json(f"Sure! {value} Hope that helps.") == value
