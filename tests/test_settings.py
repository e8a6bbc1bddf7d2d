"""One settings object: PRESSROOM_ variables, OPENAI_ fallbacks, one-line errors at start."""

from __future__ import annotations

import pytest

from workers.errors import ConfigError
from workers.settings import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("PRESSROOM_", "OPENAI_")):
            monkeypatch.delenv(name)


def test_embedded_by_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = load_settings(data_dir=tmp_path)
    assert s.embedded and s.state_url is None and s.store_url == str(tmp_path / "store")


def test_distributed_state_defaults_to_the_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRESSROOM_BROKER_URL", "redis://r:6379/0")
    monkeypatch.setenv("PRESSROOM_STORAGE_URL", "s3://bucket/prefix")
    s = load_settings()
    assert not s.embedded and s.state_url == "redis://r:6379/0" and s.store_url == "s3://bucket/prefix"


def test_providers_fall_back_to_openai_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-shared")
    monkeypatch.setenv("PRESSROOM_TRANSCRIPTION_BASE_URL", "http://speech:8000/v1")
    monkeypatch.setenv("PRESSROOM_TRANSCRIPTION_API_KEY", "local")
    s = load_settings()
    assert s.transcription_endpoint() == ("http://speech:8000/v1", "local")
    assert s.llm_endpoint() == ("https://api.openai.com/v1", "sk-shared")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://gateway/v1")
    assert load_settings().llm_endpoint() == ("http://gateway/v1", "sk-shared")


def test_openai_without_a_key_says_how_to_fix() -> None:
    with pytest.raises(ConfigError, match="set PRESSROOM_LLM_API_KEY or OPENAI_API_KEY"):
        load_settings().llm_endpoint()
    # a local server needs no key
    assert load_settings(llm_base_url="http://127.0.0.1:9/v1").llm_endpoint()[1] == "unused"


@pytest.mark.parametrize(("name", "value", "message"), [
    ("PRESSROOM_BROKER_URL", "amqp://x", "PRESSROOM_BROKER_URL: 'amqp://x' is not a Redis URL"),
    ("PRESSROOM_STORAGE_URL", "s3://x", "PRESSROOM_STORAGE_URL: 's3://x' is not valid: use s3://bucket/prefix"),
    ("PRESSROOM_LLM_BASE_URL", "localhost:8000", "PRESSROOM_LLM_BASE_URL: 'localhost:8000' is not an http(s) URL"),
    ("PRESSROOM_VISIBILITY_TIMEOUT", "soon", "PRESSROOM_VISIBILITY_TIMEOUT: Input should be a valid integer"),
    ("PRESSROOM_FRONT_MATTER__DRAFT", "maybe", "PRESSROOM_FRONT_MATTER__DRAFT: Input should be a valid boolean"),
])
def test_bad_values_fail_at_start_naming_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                                      message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_front_matter_defaults_from_nested_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRESSROOM_FRONT_MATTER__SPEAKER", "a16z")
    monkeypatch.setenv("PRESSROOM_FRONT_MATTER__PROJECT", '["ai-impact-analysis"]')
    fm = load_settings().front_matter
    assert fm.speaker == "a16z" and fm.project == ["ai-impact-analysis"] and fm.layout == "post.njk"
