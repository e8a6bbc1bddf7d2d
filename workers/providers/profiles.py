"""The LLM providers a Chinese content team uses, as data: where each is, how it gives structured answers,
what it charges and how much it holds. `PRESSROOM_LLM_PROVIDER` picks one; every field can be overridden
by its own setting (PRESSROOM_LLM_BASE_URL, _MODEL, _STRUCTURED_OUTPUT, _USD_PER_MILLION_*, ...).

Structured output: `json_schema` is strict structured outputs (response_format json_schema); `json_object`
is JSON mode, the schema and an example given in the prompt; `text` extracts the JSON from a plain answer;
`auto` tries json_schema and falls back to json_object when the server rejects it, remembering the choice
per endpoint and model. Every answer is validated against the step's schema whatever the mode.

Prices are list prices per million tokens in USD as published late 2026 (input, cached input, output):
check your account's and override them. Self-hosted servers cost nothing per token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Structured = Literal["auto", "json_schema", "json_object", "text"]
MaxTokensParam = Literal["max_completion_tokens", "max_tokens"]


@dataclass(frozen=True)
class Profile:
    name: str
    base_url: str
    model: str
    structured: Structured
    usd_per_million_input: float
    usd_per_million_cached_input: float
    usd_per_million_output: float
    context_window: int
    max_output: int
    max_tokens_param: MaxTokensParam = "max_tokens"  # what the server calls the output limit

    def cost(self, input_tokens: int, cached_tokens: int, output_tokens: int) -> float:
        """USD for one request's usage; cached input tokens at the cached price."""
        cached = min(cached_tokens, input_tokens)
        return ((input_tokens - cached) * self.usd_per_million_input + cached * self.usd_per_million_cached_input
                + output_tokens * self.usd_per_million_output) / 1e6


def is_reasoning(model: str) -> bool:
    """Models that think before they answer: reasoning content comes apart from the answer, and they reject
    sampling parameters (Pressroom sends none) and, on OpenAI, `max_tokens`."""
    name = model.lower().rsplit("/", 1)[-1]
    return "reasoner" in name or name.startswith(("o1", "o3", "o4")) or name.endswith("-thinking")


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("openai", "https://api.openai.com/v1", "gpt-4.1-mini", "auto", 0.40, 0.10, 1.60, 1_047_576, 32_768,
            "max_completion_tokens"),
    Profile("deepseek", "https://api.deepseek.com/v1", "deepseek-chat", "json_object", 0.28, 0.028, 0.42,
            128_000, 8_192),
    Profile("qwen", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "qwen-plus", "json_object",
            0.40, 0.08, 1.20, 131_072, 8_192),
    Profile("moonshot", "https://api.moonshot.ai/v1", "kimi-k2-turbo-preview", "json_object", 0.60, 0.15, 2.50,
            262_144, 16_384),
    Profile("zhipu", "https://open.bigmodel.cn/api/paas/v4", "glm-4.5-air", "json_object", 0.20, 0.03, 1.10,
            128_000, 16_384),
    Profile("gemini", "https://generativelanguage.googleapis.com/v1beta/openai", "gemini-2.5-flash", "auto",
            0.30, 0.075, 2.50, 1_048_576, 65_536),
    Profile("openrouter", "https://openrouter.ai/api/v1", "openai/gpt-4.1-mini", "auto", 0.40, 0.10, 1.60,
            1_047_576, 32_768),
    Profile("ollama", "http://127.0.0.1:11434/v1", "qwen2.5:14b", "auto", 0.0, 0.0, 0.0, 32_768, 8_192),
    Profile("vllm", "http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-14B-Instruct", "auto", 0.0, 0.0, 0.0, 32_768, 8_192),
    Profile("llamacpp", "http://127.0.0.1:8080/v1", "local", "auto", 0.0, 0.0, 0.0, 32_768, 8_192),
)}
ProviderName = Literal["openai", "deepseek", "qwen", "moonshot", "zhipu", "gemini", "openrouter", "ollama", "vllm",
                       "llamacpp"]
