"""The glossary: mis-heard names corrected in the English, the Chinese and the tags."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from schemas.artifacts import Chapter, VideoMetadata
from tests.conftest import make_audio
from tests.harness import PRESSROOM, pressroom_env
from tests.pipeline_checks import chinese_paragraphs, english_blocks
from workers.errors import PermanentError
from workers.glossary import candidate_terms, canonical, correct, parse_glossary, transcription_prompt
from workers.providers.simulator import SimulatorConfig, running_simulator
from workers.providers.simulator_fake import MARK

GLOSSARY = """
terms:
  - {term: ChatGPT, misheard: [ChatGBT, chat GBT], kind: product}
  - {term: GPT-5, misheard: [GBT5, GBT 5, GPT five], kind: product}
  - {term: Quora, misheard: [Kora], kind: company}
  - {term: Los Alamos National Laboratory, zh: 洛斯阿拉莫斯国家实验室, misheard: [Atlas Alamos National Labs]}
"""

TALK = """We want ChatGBT as a first party app. Millions of people use chat GBT every week.
The next model, GBT5, is trained with reinforcement learning. I learned a lot at Kora in those years.
We also worked with Atlas Alamos National Labs on science. Kora is where I met Adam.
Then GBT 5 shipped, and ChatGBT got much better at code. That changed everything for us.
"""


def test_corrections_are_whole_words_any_case_longest_first() -> None:
    g = parse_glossary(GLOSSARY)
    assert correct("chatgbt, Chat GBT and GBT5; gbt 5 and Kora (not Korah).", g) == (
        "ChatGPT, ChatGPT and GPT-5; GPT-5 and Quora (not Korah).")
    assert correct("Atlas Alamos National Labs", g) == "Los Alamos National Laboratory"
    assert canonical("kora", g) == "Quora" and canonical("chatgpt", g) == "ChatGPT"


def test_plain_mapping_and_bad_glossaries() -> None:
    assert parse_glossary("ChatGPT: ChatGPT\nQuora: 知乎问答").terms[1].zh == "知乎问答"
    with pytest.raises(PermanentError, match="not a valid glossary"):
        parse_glossary("terms: [{misheard: [x]}]", "g.yaml")
    with pytest.raises(PermanentError, match="not a valid glossary"):
        parse_glossary("terms: [", "g.yaml")


def test_transcription_prompt_stays_within_the_limit() -> None:
    meta = VideoMetadata(video_id="x", title="OpenAI's Sherman Wu on GPT-5", description="With Sam Altman.",
                         chapters=[Chapter(title="Quora years", start=0, end=10)])
    assert candidate_terms(meta)[:3] == ["OpenAI", "Sherman Wu", "GPT-5"]
    big = parse_glossary(yaml.safe_dump({"terms": [{"term": f"Term{i:03d}"} for i in range(400)]}))
    prompt = transcription_prompt(big, meta)
    assert prompt is not None and len(prompt) <= 801 and prompt.startswith("Term000, Term001")
    assert transcription_prompt(parse_glossary(""), VideoMetadata(video_id="x", title="talk")) is None


def _post(tmp_path: Path, glossary: Path | None, simulator: str) -> tuple[str, dict[str, object]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    wav = make_audio(tmp_path / "names.wav", 40)
    extra = ["--glossary", str(glossary)] if glossary else []
    result = subprocess.run(
        [*PRESSROOM, "run", str(wav), "--out", str(tmp_path / "out"), *extra],
        env=pressroom_env(PRESSROOM_DATA_DIR=str(tmp_path / "data"), PRESSROOM_TRANSCRIPTION_BASE_URL=simulator,
                          PRESSROOM_LLM_BASE_URL=simulator),
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    post = Path(result.stdout.strip().splitlines()[-1]).read_text()
    return post, yaml.safe_load(post.split("---\n")[1])


def test_a_glossary_fixes_names_in_the_english_the_chinese_and_the_tags(tmp_path: Path) -> None:
    (tmp_path / "talk.txt").write_text(TALK)
    (tmp_path / "glossary.yaml").write_text(GLOSSARY)
    with running_simulator(SimulatorConfig(transcript_path=tmp_path / "talk.txt")) as simulator:
        raw_post, raw_front = _post(tmp_path / "without", None, simulator)
        post, front = _post(tmp_path / "with", tmp_path / "glossary.yaml", simulator)
    # without the glossary the mis-hearings flow everywhere, as in the reference post
    assert "ChatGBT" in " ".join(english_blocks(raw_post)) and "GBT5" in " ".join(chinese_paragraphs(raw_post))
    assert f"{MARK}ChatGBT" in raw_front["products_models"]  # type: ignore[operator]
    # with it, none of them is left
    english, chinese = " ".join(english_blocks(post)), " ".join(chinese_paragraphs(post))
    for wrong in ("ChatGBT", "chat GBT", "GBT5", "GBT 5", "Kora", "Atlas Alamos"):
        assert wrong not in english and wrong not in chinese and wrong not in yaml.safe_dump(front)
    assert "ChatGPT" in english and "GPT-5" in english and "Quora" in english
    assert "Los Alamos National Laboratory" in english
    assert "ChatGPT" in chinese and "GPT-5" in chinese
    # the simulator marks every name it reports; the glossary spells what follows the mark
    assert {f"{MARK}ChatGPT", f"{MARK}GPT-5"} <= set(front["products_models"])  # type: ignore[arg-type]
    assert f"{MARK}Quora" in front["companies_orgs"]  # type: ignore[operator]
