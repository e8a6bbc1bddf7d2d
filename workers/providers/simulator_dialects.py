"""How the simulator's chat endpoint speaks each provider's dialect of the OpenAI API: which response_format
types it takes, what JSON mode demands, how it reports cached prompt tokens, and how reasoning models answer.

The behaviour of each dialect is data (DIALECTS); the simulator consults it for every /v1/chat/completions
request. Transcription endpoints speak the same in every dialect.
"""

from __future__ import annotations

import collections
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from workers.providers import simulator_fake as fake
from workers.providers import simulator_faults as tfaults

DialectName = Literal[
    "openai", "deepseek", "qwen", "moonshot", "zhipu", "gemini", "openrouter", "ollama", "vllm", "llamacpp", "plain"
]
CacheUsage = Literal["details", "hit_miss", "none"]

CACHE_MIN_TOKENS = 1024  # OpenAI's rule: shorter prompts are never cached (applied to every dialect)
CACHE_BLOCK_TOKENS = 128  # cached prefixes count in whole blocks of this many tokens
CHARS_PER_TOKEN = fake.CHARS_PER_TOKEN  # cached prefixes are kept in blocks of this many characters a token
BLANK = " " * 8  # DeepSeek's JSON mode answers spaces when what it wrote was not JSON
FENCE_INTRO = "Here is the JSON you asked for:\n```json\n"
REASONING_PARAMETERS = ("max_tokens", "temperature", "top_p", "presence_penalty", "frequency_penalty", "logprobs")
JSON_WORD_MESSAGE = "Prompt must contain the word 'json' in some form to use 'response_format' of type 'json_object'"


@dataclass(frozen=True)
class Dialect:
    """One provider's behaviour on /v1/chat/completions."""

    name: str
    json_schema_error: str | None = None  # None: response_format json_schema accepted, else the 400's message
    json_object: bool = True  # response_format json_object accepted
    json_word: bool = False  # JSON mode needs the word "json" somewhere in the messages
    response_format_error: str | None = None  # any response_format at all is a 400 with this message
    fence_text: bool = False  # text mode with a schema line: prose around a ```json fenced block
    cache_usage: CacheUsage = "details"  # details: prompt_tokens_details.cached_tokens; hit_miss: DeepSeek's


_NOT_SCHEMA = "'response_format.type' json_schema is not supported by this model; use 'json_object' or 'text'"
DIALECTS: Mapping[str, Dialect] = {
    d.name: d
    for d in (
        Dialect("openai"),
        Dialect("deepseek", json_schema_error="This response_format type is unavailable now", json_word=True,
                cache_usage="hit_miss"),
        Dialect("qwen", json_schema_error=f"<400> InternalError.Algo.InvalidParameter: {_NOT_SCHEMA}", json_word=True),
        Dialect("moonshot", json_schema_error=f"Invalid request: {_NOT_SCHEMA}"),
        Dialect("zhipu", json_schema_error=f"Invalid API parameter: {_NOT_SCHEMA}"),
        Dialect("gemini"),
        Dialect("openrouter"),
        Dialect("ollama", cache_usage="none"),
        Dialect("vllm", cache_usage="none"),
        Dialect("llamacpp", fence_text=True, cache_usage="none"),
        Dialect("plain", json_schema_error="Unrecognized request argument supplied: response_format",
                json_object=False, fence_text=True, cache_usage="none",
                response_format_error="Unrecognized request argument supplied: response_format"),
    )
}


@dataclass(frozen=True)
class Rejection:
    """A 400 the dialect answers instead of a completion."""

    message: str
    param: str | None = None
    code: str | None = None


def format_type(body: Any) -> str:
    """The response_format type a request sent: "json_schema", "json_object" or "text" (also when absent)."""
    fmt = body.get("response_format") if isinstance(body, dict) else None
    return str(fmt.get("type") or "text") if isinstance(fmt, dict) else "text"


def is_reasoning(model: str) -> bool:
    """A reasoning model, by name: *reasoner*, o1*/o3*/o4*, *-thinking."""
    return "reasoner" in model or model.startswith(("o1", "o3", "o4")) or model.endswith("-thinking")


def check(dialect: Dialect, body: dict[str, Any], messages: list[Any]) -> Rejection | None:
    """The 400 this dialect answers to a well-formed request, if any: a parameter a reasoning model does not
    take, then a response_format it does not take (or JSON mode without the word "json" in the prompt)."""
    if is_reasoning(str(body.get("model"))):
        for name in REASONING_PARAMETERS:
            value = body.get(name)
            if value is None or (name == "temperature" and value == 1):
                continue
            if name == "max_tokens" and dialect.name not in ("openai", "openrouter"):
                continue  # DeepSeek's and the others' reasoning models take max_tokens; OpenAI's o-series do not
            if name == "temperature":
                return Rejection(f"Unsupported value: 'temperature' does not support {value} with this model. "
                                 "Only the default (1) value is supported.", name, "unsupported_value")  # fmt: skip
            instead = " Use 'max_completion_tokens' instead." if name == "max_tokens" else ""
            return Rejection(f"Unsupported parameter: '{name}' is not supported with this model.{instead}", name,
                             "unsupported_parameter")  # fmt: skip
    if body.get("response_format") is None:
        return None
    if dialect.response_format_error:
        return Rejection(dialect.response_format_error, "response_format")
    kind = format_type(body)
    if kind == "json_schema" and dialect.json_schema_error:
        return Rejection(dialect.json_schema_error, "response_format")
    if kind == "json_object" and not dialect.json_object:
        return Rejection("'response_format.type' json_object is not supported by this model", "response_format")
    texts = (fake.message_text(m).lower() for m in messages if isinstance(m, dict))
    if kind == "json_object" and dialect.json_word and not any("json" in text for text in texts):
        return Rejection(JSON_WORD_MESSAGE, "response_format")
    return None


class Draws(Protocol):
    """The simulator's seeded fault draws that shape an answer's content."""

    rates: dict[str, float]  # translation fault → probability

    def blank(self) -> bool: ...

    def translation_seed(self) -> int: ...


def content(draws: Draws, dialect: Dialect, body: dict[str, Any], messages: list[Any], refuse: bool,
            refuse_paragraph: bool, ratio: float = fake.TRANSLATION_RATIO) -> tuple[str | None, bool]:  # fmt: skip
    """The answer text (None = refuse) and whether a translation fault cut it off at the length limit;
    `ratio`: a translation's tokens per English token (fake.chat_answer)."""
    fmt, kind = body.get("response_format"), format_type(body)
    blank = kind == "json_object" and draws.blank()  # drawn for every JSON-mode answer, refused or not
    paragraphs = tfaults.translation_paragraphs(messages, fmt)
    if paragraphs is None:
        text, cut = (None if refuse else fake.chat_answer(messages, fmt, ratio)), False
    else:
        seed = draws.translation_seed()  # drawn even when refused, so later batches keep their faults
        if refuse or (refuse_paragraph and tfaults.trips_filter(paragraphs)):
            return None, False
        answer = tfaults.tamper(fake.chat_answer(messages, fmt, ratio), paragraphs, draws.rates, seed)
        text, cut = answer.content, answer.cut_off
    if text is None:
        return None, False
    if blank:
        return BLANK, False
    if kind == "text" and dialect.fence_text and fake.requested_schema(messages, fmt) is not None:
        return fenced(text, cut), cut
    return text, cut


def fenced(content: str, cut: bool) -> str:
    """JSON as a chatty model answers it in text mode: prose around a fenced block (unclosed if cut off)."""
    return FENCE_INTRO + content + ("" if cut else "\n```\n")


def tokens(text: str) -> int:
    """A text's tokens: one per CJK character, one per four other characters (fake.count_tokens)."""
    return fake.count_tokens(text)


def prompt_tokens(messages: list[Any]) -> int:
    return sum(tokens(fake.message_text(m)) for m in messages if isinstance(m, dict))


class PromptCache:
    """The prompts seen, kept as hashes of their prefixes at every block boundary (as providers key their
    caches), the least recently used forgotten beyond `capacity` blocks."""

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._blocks: collections.OrderedDict[bytes, None] = collections.OrderedDict()

    def see(self, prompt: str, prompt_tokens: int) -> int:
        """Record `prompt` (the serialized messages); return the tokens of it an earlier prompt had cached:
        the longest shared prefix in whole blocks, at most prompt_tokens, 0 for a prompt under the minimum."""
        size = CACHE_BLOCK_TOKENS * CHARS_PER_TOKEN
        running = hashlib.blake2b(digest_size=16)
        digests = []
        for start in range(0, len(prompt) - size + 1, size):
            running.update(prompt[start : start + size].encode())
            digests.append(running.copy().digest())
        shared = next((i for i, d in enumerate(digests) if d not in self._blocks), len(digests))
        for digest in digests:
            self._blocks[digest] = None
            self._blocks.move_to_end(digest)
        while len(self._blocks) > self.capacity:
            self._blocks.popitem(last=False)
        if prompt_tokens < CACHE_MIN_TOKENS:
            return 0
        return min(shared * CACHE_BLOCK_TOKENS, prompt_tokens // CACHE_BLOCK_TOKENS * CACHE_BLOCK_TOKENS)


def completion(
    dialect: Dialect, body: dict[str, Any], messages: list[Any], content: str | None, cut: bool, n: int, cached: int
) -> dict[str, Any]:
    """A chat.completion object (a refusal when content is None); output cut by the simulated length limit
    (`cut`) or beyond max(_completion)_tokens ends with finish_reason=length, as the OpenAI API reports it.
    A reasoning model's answer carries reasoning_content, and its reasoning tokens count in completion_tokens
    and against the limit."""
    prompt = prompt_tokens(messages)
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    reasoning = 0
    if is_reasoning(str(body["model"])):
        user = fake.last_user_text(messages)
        message["reasoning_content"] = f"{fake.MARK}先通读这{len(user)}个字符的请求，再照要求的格式作答。"
        reasoning = tokens(message["reasoning_content"])
    finish = "length" if cut else "stop"
    if content is None:
        message["refusal"] = tfaults.REFUSAL
        completion_tokens = reasoning + tokens(message["refusal"])
    else:
        completion_tokens = reasoning + tokens(content)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and completion_tokens > limit:
            reasoning = min(reasoning, limit)  # a model that thinks past the limit has nothing left to say
            content = fake.cut_to_tokens(content, limit - reasoning)
            completion_tokens, finish = reasoning + tokens(content), "length"
        message["content"] = content
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }
    if dialect.cache_usage == "details":
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    elif dialect.cache_usage == "hit_miss":
        usage["prompt_cache_hit_tokens"], usage["prompt_cache_miss_tokens"] = cached, prompt - cached
    if reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return {
        "id": f"chatcmpl-sim{n:08d}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body["model"]),
        "system_fingerprint": "pressroom-simulator",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage,
    }


def reported_cache(dialect: Dialect, cached: int) -> int:
    """The cached tokens an answer reports in this dialect (0 where it has no field for them)."""
    return 0 if dialect.cache_usage == "none" else cached
