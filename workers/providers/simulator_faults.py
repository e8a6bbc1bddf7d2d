"""Translation faults: the ways a real model gets a TranslationBatch wrong, applied to the simulator's answer.

Each fault fires with its own probability, drawn from a Random seeded by (request seed, fault name), so the
draws are independent of each other and of which other faults are switched on. One paragraph containing
REFUSE_MARKER makes the whole batch a refusal, as when a content filter trips on a single paragraph.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workers.providers.simulator_fake import last_user_text, requested_schema

REFUSE_MARKER = "[[refuse]]"
REFUSAL = "【模拟】I'm sorry, I can't help with that request."
FAULTS = ("merge", "drop", "empty", "english", "cutoff")  # applied in this order
DROP_FRACTION = 0.2
CUTOFF_FRACTION = 0.6


@dataclass(frozen=True)
class Tampered:
    """The (possibly defective) answer text, and whether it was cut off by the simulated length limit."""

    content: str
    cut_off: bool
    fired: frozenset[str]


def translation_paragraphs(
    messages: list[Any], response_format: dict[str, Any] | None
) -> list[dict[str, Any]] | None:
    """The paragraphs ({"id", "text"}) of a TranslationBatch request (by json_schema or the system message's
    schema line, whatever the response_format); None for any other request."""
    asked = requested_schema(messages, response_format)
    if asked is None or asked[0] != "TranslationBatch":
        return None
    try:
        request = json.loads(last_user_text(messages))
    except ValueError:
        return None
    paragraphs = request.get("paragraphs") if isinstance(request, dict) else None
    if not isinstance(paragraphs, list):
        return None
    return [p for p in paragraphs if isinstance(p, dict) and "id" in p]


def trips_filter(paragraphs: list[dict[str, Any]]) -> bool:
    """True when any paragraph carries REFUSE_MARKER (content-triggered, never random)."""
    return any(REFUSE_MARKER in str(p.get("text", "")) for p in paragraphs)


def tamper(content: str, paragraphs: list[dict[str, Any]], rates: Mapping[str, float], seed: int) -> Tampered:
    """Apply each fault in FAULTS whose draw falls under its rate; `rates` maps fault name → probability."""
    rngs = {name: random.Random(f"{seed}:{name}") for name in FAULTS}
    fired = frozenset(name for name in FAULTS if rngs[name].random() < rates.get(name, 0.0))
    if not fired:
        return Tampered(content, False, fired)
    value = json.loads(content)
    items: list[dict[str, Any]] = value.get("translations", []) if isinstance(value, dict) else []
    if not all(isinstance(t, dict) and {"id", "zh"} <= t.keys() for t in items):
        items = []  # not the translation shape we know: only the cut-off can apply
    touched: set[str] = set()  # each defect goes to an item no other defect has touched, while there is one
    if "merge" in fired and len(items) >= 2:
        i = rngs["merge"].randrange(len(items) - 1)
        first, second = items[i], items.pop(i + 1)
        first["zh"] = f"{first['zh']}{second['zh']}"
        touched.add(first["id"])
    if "drop" in fired and items:
        fresh = [t for t in items if t["id"] not in touched] or items
        count = min(len(fresh), max(1, round(DROP_FRACTION * len(items))))
        gone = {t["id"] for t in rngs["drop"].sample(fresh, count)}
        items[:] = [t for t in items if t["id"] not in gone]
    texts = {str(p["id"]): str(p.get("text", "")) for p in paragraphs}
    for name in ("empty", "english"):
        if name in fired and items:
            item = rngs[name].choice([t for t in items if t["id"] not in touched] or items)
            item["zh"] = "" if name == "empty" else texts.get(item["id"], "")
            touched.add(item["id"])
    content = json.dumps(value, ensure_ascii=False)
    if "cutoff" in fired:
        content = content[: int(len(content) * CUTOFF_FRACTION)]
    return Tampered(content, "cutoff" in fired, fired)
