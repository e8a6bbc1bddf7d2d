"""The simulator's answers: deterministic fake transcripts and schema-valid fake JSON, no I/O but file reads.

Everything it invents is marked, so a rehearsal can never pass for real output: every Chinese string and
every name starts with 【模拟】, every tag with "simulated-", and each sentence of the built-in sample
transcript (the English a rehearsal "hears" unless given a transcript of its own) with 【模拟】 too.

What it invents has the real shape, so benchmarks and rehearsals measure real work: a paragraph's "translation"
is about `ratio` times as many tokens as its English (marked text padded with filler Chinese), a summary is
a few sentences long. Ratio 0 gives short stubs instead.
"""

from __future__ import annotations

import json
import re
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

MARK = "【模拟】"
WORDS_PER_SECOND = 150 / 60  # a typical speaking rate
SAMPLE_TRANSCRIPT = Path(__file__).with_name("sample_transcript.txt")
GROUP = 6  # paragraphs per simulated section
TRANSLATION_RATIO = 1.0  # default Chinese tokens per English token of a simulated translation
CHARS_PER_TOKEN = 4  # characters per token of any text but CJK (one token a character)
JSON_TOKENS_PER_ITEM = 10  # the JSON around one translation item, with its share of the section list
SUMMARY_CHARS = 200  # a summary's length in characters (2-4 Chinese sentences)
NOTES_TOKENS = 120  # the length of a part's notes (3-5 English sentences)
_FILLER_ZH = "我们在这里讨论的是模型在真实产品中的表现，以及团队如何一步一步改进它。这段文字只是占位，长度与原文相当。"
_FILLER_EN = " This simulated note stands in for a real summary of the part, at about the length of one."
# one token each: CJK ideographs (extension A, unified, compatibility), CJK punctuation and fullwidth forms
_CJK_TOKEN = re.compile("[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_STOPWORD_TEXT = (
    "about after again also although always another because been before being between both could does "
    "doing down during each even every from have having here into just like made make many more most much "
    "must never only other over really right same should since some something still such than that their "
    "them then there these they thing things think this those through time very want well were what when "
    "where which while will with would your yours you're it's i'm that's don't we're going know people "
    "title description paragraphs text summary first years year biggest small actually honestly later"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_ORGS = ("OpenAI", "Quora", "Google", "Microsoft", "Anthropic", "Meta", "Nvidia", "DeepMind", "Stanford")
_PRODUCTS = ("ChatGPT", "GPT-4", "GPT-4o", "Claude", "Gemini", "Llama", "Whisper", "Copilot", "Poe")
_MEDIA = ("YouTube", "Twitter", "Substack", "The Mythical Man-Month", "Wikipedia", "Reddit")
_NAME = re.compile(r"(?<=[a-z,] )([A-Z][a-z]+(?: [A-Z][a-z']+)+)")
_NOT_NAMES = {"The", "A", "An", "This", "That", "Mythical", "Man"}
# product-like terms as a speech model spells them (ChatGPT, ChatGBT, GPT-5, GBT5): carried into the fake
# Chinese and the fake tags, so a test can see whether a mis-hearing reached them
_TERM = re.compile(r"(?<![\w-])(?:[A-Za-z]*[a-z][A-Z]\w*|[A-Z][A-Za-z]*-?\d\w*(?:\.\d+)*)(?![\w-])")


# --- transcription ----------------------------------------------------------------------------------------
def load_sentences(path: Path | None) -> list[str]:
    """Sentences of the configured transcript, one per list item; the built-in sample's marked as simulated
    (a transcript of the user's own is their text, so it is left as it is)."""
    text = (path or SAMPLE_TRANSCRIPT).read_text(encoding="utf-8")
    sentences = [s.strip() for line in text.splitlines() for s in _SENTENCE_END.split(line)]
    sentences = [s for s in sentences if s]
    if not sentences:
        raise ValueError(f"transcript {path} has no text")
    return sentences if path else [MARK + s for s in sentences]


def layout_segments(sentences: list[str], duration: float) -> list[dict[str, Any]]:
    """Whisper-style segments: sentences back to back at ~150 wpm from 0, cycling, never past `duration`."""
    segments: list[dict[str, Any]] = []
    t = 0.0
    i = 0
    while True:
        sentence = sentences[i % len(sentences)]
        length = max(1, len(sentence.split())) / WORDS_PER_SECOND
        end = round(t + length, 2)
        if end > duration:
            if segments and duration - t < 1.0:
                break
            end = duration  # the last sentence is cut short by the end of the audio
        segments.append(_segment(len(segments), t, end, sentence))
        if end >= duration:
            break
        t, i = end, i + 1
    return segments


def _segment(index: int, start: float, end: float, sentence: str) -> dict[str, Any]:
    return {
        "id": index,
        "seek": int(start // 30) * 3000,
        "start": start,
        "end": end,
        "text": " " + sentence,
        "tokens": [50364 + zlib.crc32(w.encode()) % 50000 for w in sentence.split()],
        "temperature": 0.0,
        "avg_logprob": -0.2 - (zlib.crc32(sentence.encode()) % 20) / 100,
        "compression_ratio": 1.4,
        "no_speech_prob": 0.01,
    }


def transcription_answer(sentences: list[str], duration: float, response_format: str) -> dict[str, Any] | str:
    """The body of a /v1/audio/transcriptions answer in the requested format (json, text, verbose_json)."""
    segments = layout_segments(sentences, duration)
    text = "".join(s["text"] for s in segments).strip()
    if response_format == "text":
        return text + "\n"
    if response_format == "verbose_json":
        return {
            "task": "transcribe",
            "language": "english",
            "duration": duration,
            "text": text,
            "segments": segments,
            "usage": {"type": "duration", "seconds": max(1, round(duration))},
        }
    return {"text": text, "usage": {"type": "duration", "seconds": max(1, round(duration))}}


def looping_transcript(answer: dict[str, Any] | str, chars: int) -> dict[str, Any] | str:
    """The answer of a model stuck in a loop: its last sentence said again and again until the text has
    `chars` characters (a 20 s file can come back as megabytes of text)."""
    text = (answer if isinstance(answer, str) else str(answer["text"])).rstrip()
    if len(text) >= chars:
        return answer
    last = _SENTENCE_END.split(text)[-1].strip() or MARK
    looped = (text + (" " + last) * ((chars - len(text)) // (len(last) + 1) + 1))[:chars]
    if isinstance(answer, str):
        return looped + "\n"
    segments = answer.get("segments")
    if isinstance(segments, list) and segments:
        tail = looped[len(text) :]
        segments = [*segments[:-1], {**segments[-1], "text": segments[-1]["text"] + tail}]
        return {**answer, "text": looped, "segments": segments}
    return {**answer, "text": looped}


# --- chat ----------------------------------------------------------------------------------------------
SCHEMA_LINE = "JSON schema of the answer: "  # a system-message line, then the schema as compact JSON


def requested_schema(
    messages: list[Any], response_format: dict[str, Any] | None
) -> tuple[str, dict[str, Any]] | None:
    """What JSON the request asks for, as (name, schema): response_format's json_schema, else the SCHEMA_LINE
    of a system message (how a client asks in json_object and text modes; the name is the schema's title)."""
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        spec = spec if isinstance(spec, dict) else {}
        schema = spec.get("schema")
        return str(spec.get("name", "")), schema if isinstance(schema, dict) and schema else {"type": "object"}
    for message in messages:
        if isinstance(message, dict) and message.get("role") in ("system", "developer"):
            for line in message_text(message).splitlines():
                if line.startswith(SCHEMA_LINE) and isinstance(schema := _load_json(line[len(SCHEMA_LINE) :]), dict):
                    return str(schema.get("title", "")), schema
    return None


def chat_answer(
    messages: list[dict[str, Any]], response_format: dict[str, Any] | None, ratio: float = TRANSLATION_RATIO
) -> str:
    """The assistant's content: JSON when a schema is asked for (requested_schema), a small JSON object in
    JSON mode without one, a short marked sentence otherwise. `ratio`: a translation's tokens per English
    token (0: short stubs, for translations and summaries alike)."""
    user = last_user_text(messages)
    asked = requested_schema(messages, response_format)
    if asked is not None:
        name, schema = asked
        if name == "TranslationBatch":
            value = fake_translation_batch(schema, user, ratio)
        elif name in {"TagSuggestion", "PartNotes"}:  # notes on a part of a long talk: the same entities
            value = fake_tag_suggestion(schema, user, ratio, notes=name == "PartNotes")
        else:
            value = fake_value(schema, schema)
        return json.dumps(value, ensure_ascii=False)
    if (response_format or {}).get("type") == "json_object":
        return json.dumps({"answer": f"{MARK}收到{len(user)}个字符。"}, ensure_ascii=False)
    return f"{MARK}收到，共{len(user)}个字符。"


def message_text(message: dict[str, Any]) -> str:
    """A message's text, whether content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return message_text(users[-1]) if users else ""


def fake_translation_batch(schema: dict[str, Any], user: str, ratio: float = TRANSLATION_RATIO) -> dict[str, Any]:
    """One marked "translation" per paragraph (fake_zh), in order, and a section start every 6 paragraphs.

    A paragraph's "translation" depends on its id and text alone, never on the rest of the batch."""
    props = _properties(schema, schema)
    request = _load_json(user)
    paragraphs = request.get("paragraphs") if isinstance(request, dict) else None
    if "translations" not in props or not isinstance(paragraphs, list):
        return fake_object(schema, schema, {})
    items = [p for p in paragraphs if isinstance(p, dict) and "id" in p]
    translation_schema = _items(props["translations"], schema)
    translations = [
        fake_object(translation_schema, schema, {"id": str(p["id"]), "zh": fake_zh(p, ratio)}) for p in items
    ]
    overrides: dict[str, Any] = {"translations": translations}
    if "sections" in props:
        section_schema = _items(props["sections"], schema)
        overrides["sections"] = [
            fake_object(section_schema, schema, {"paragraph_id": str(p["id"]), "heading": f"{MARK}第{n}节"})
            for n, p in enumerate(items[::GROUP], start=1)
        ]
    return fake_object(schema, schema, overrides)


def fake_tag_suggestion(
    schema: dict[str, Any], user: str, ratio: float = TRANSLATION_RATIO, *, notes: bool = False
) -> dict[str, Any]:
    """Marked title/summary, slugs of the most frequent words, and entities that appear in the text. The
    summary is SUMMARY_CHARS long (a part's notes: NOTES_TOKENS of English) unless ratio is 0."""
    text = " ".join(_strings(_load_json(user))) or user
    words = [w.lower() for w in re.findall(r"[A-Za-z][A-Za-z'-]+", text)]
    summary = f"{MARK}这是一段模拟摘要，原文约{len(words)}个词。"
    if ratio and notes:
        summary = padded(f"{MARK}Simulated notes on {len(words)} words.", NOTES_TOKENS, _FILLER_EN)
    elif ratio:
        summary = padded(summary, SUMMARY_CHARS)
    common = Counter(w for w in words if len(w) >= 4 and w not in _STOPWORDS).most_common()
    tags = [re.sub(r"[^a-z0-9]+", "-", w).strip("-") for w, _ in common[:5]]
    people = [n for n in dict.fromkeys(_NAME.findall(text)) if n.split()[0] not in _NOT_NAMES][:5]
    return fake_object(schema, schema, {
        "title": f"{MARK}{(tags or ['访谈'])[0]}访谈",
        "summary": summary,
        "tags": [f"simulated-{t}" for t in dict.fromkeys(tags) if t] or ["simulated"],
        "people": _marked(people),
        "companies_orgs": _marked([o for o in _ORGS if re.search(rf"\b{re.escape(o)}\b", text)]),
        "products_models": _marked(list(dict.fromkeys(
            [p for p in _PRODUCTS if re.search(rf"\b{re.escape(p)}(?![\w-])", text)]
            + [t for t in _TERM.findall(text) if t not in _ORGS and t not in _MEDIA]))[:8]),
        "media_books": _marked([m for m in _MEDIA if m in text]),
        "guest": MARK + people[0] if people else "",
    })  # fmt: skip


def _marked(names: list[str]) -> list[str]:
    return [MARK + n for n in names]


# --- generic JSON-schema values ---------------------------------------------------------------------------
def fake_value(schema: dict[str, Any], root: dict[str, Any], depth: int = 0) -> Any:
    """A small value that validates against `schema` ($ref/$defs, anyOf/oneOf/allOf, enum, const)."""
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [_resolve(o, root) for o in schema[key]]
            non_null = [o for o in options if o.get("type") != "null"]
            return fake_value(non_null[0], root, depth + 1) if non_null else None
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(_resolve(part, root))
        return fake_value(merged, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        return fake_object(schema, root, {}, depth)
    if kind == "array":
        count = 0 if depth > 8 or schema.get("maxItems") == 0 else max(1, schema.get("minItems", 1))
        return [fake_value(schema.get("items", {}), root, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
        return max(0, low) if "maximum" not in schema else min(max(0, low), schema["maximum"])
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return _fake_string(schema)


def fake_object(
    schema: dict[str, Any], root: dict[str, Any], overrides: dict[str, Any], depth: int = 0
) -> dict[str, Any]:
    """Every declared property (strict mode requires them all), generated unless given in `overrides`."""
    props = _properties(schema, root)
    return {k: overrides[k] if k in overrides else fake_value(v, root, depth + 1) for k, v in props.items()}


def _fake_string(schema: dict[str, Any]) -> str:
    fmt = schema.get("format")
    if fmt == "date":
        return "2026-01-01"
    if fmt == "date-time":
        return "2026-01-01T00:00:00Z"
    if fmt in ("uri", "url"):
        return "https://example.com/simulated"
    if fmt == "email":
        return "simulated@example.com"
    text: str = MARK + "模" * max(0, int(schema.get("minLength", 0)) - len(MARK))
    limit = schema.get("maxLength")
    return text[: int(limit)] if isinstance(limit, int) else text


def _resolve(schema: Any, root: dict[str, Any]) -> dict[str, Any]:
    """Follow local `#/...` references (pydantic puts nested models under $defs)."""
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and seen < 32:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **extra}
        seen += 1
    return schema if isinstance(schema, dict) else {}


def _properties(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    props = _resolve(schema, root).get("properties", {})
    return props if isinstance(props, dict) else {}


def _items(array_schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    return _resolve(_resolve(array_schema, root).get("items", {}), root)


def fake_zh(paragraph: dict[str, Any], ratio: float = TRANSLATION_RATIO) -> str:
    """Unmistakably fake: the mark, the paragraph number (the id's last digits, else the id itself), the
    source's word count and the product-like terms it mentions, padded with filler Chinese to `ratio` times
    the English's tokens (less the JSON around an item, so a whole answer is about ratio times its English).
    Ratio 0, or a paragraph too short to pad, gives the stub alone. The same paragraph reads the same however
    it is batched."""
    digits = re.findall(r"\d+", str(paragraph["id"]))
    number = int(digits[-1]) if digits else str(paragraph["id"])
    text = str(paragraph.get("text", ""))
    terms = list(dict.fromkeys(_TERM.findall(text)))[:3]
    mentions = f"，提到 {'、'.join(terms)}" if terms else ""
    stub = f"{MARK}第{number}段译文，原文{len(text.split())}个词{mentions}。"
    return padded(stub, round(ratio * count_tokens(text)) - JSON_TOKENS_PER_ITEM) if ratio else stub


def padded(text: str, tokens: int, filler: str = _FILLER_ZH) -> str:
    """`text` followed by `filler` (cycled, from its start) until it is `tokens` tokens long, if it is shorter."""
    short = tokens - count_tokens(text)
    if short <= 0:
        return text
    return cut_to_tokens(text + filler * (short * CHARS_PER_TOKEN // len(filler) + 1), tokens)


# --- tokens ----------------------------------------------------------------------------------------------
def count_tokens(text: str) -> int:
    """Tokens as the simulator counts them: one per CJK character (ideographs, CJK punctuation, fullwidth
    forms) plus one per CHARS_PER_TOKEN other characters, rounded up."""
    cjk = len(_CJK_TOKEN.findall(text))
    return cjk + -(-(len(text) - cjk) // CHARS_PER_TOKEN)


def cut_to_tokens(text: str, budget: int) -> str:
    """The longest start of `text` of at most `budget` tokens (exactly `budget` when `text` has more)."""
    cjk = other = 0
    for i, char in enumerate(text):
        if _CJK_TOKEN.match(char):
            cjk += 1
        else:
            other += 1
        if cjk + -(-other // CHARS_PER_TOKEN) > budget:
            return text[:i]
    return text


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
