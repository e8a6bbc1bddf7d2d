"""Transcript segments → readable paragraphs with stable ids (p0001…) and time ranges."""

from __future__ import annotations

import re

from schemas.artifacts import Paragraph, Segment

_SENTENCE_END = re.compile(r"[.!?…][\"')\]]*$")


def build_paragraphs(segments: list[Segment], *, target_words: int = 60, max_words: int = 140) -> list[Paragraph]:
    """Join segments in order, breaking at a sentence end once a paragraph is long enough,
    at a speaker change, or (mid-sentence) at the hard cap. No text is dropped or reordered."""
    paragraphs: list[Paragraph] = []
    texts: list[str] = []
    words = 0
    start = end = 0.0
    speaker: str | None = None

    def flush() -> None:
        nonlocal texts, words
        if texts:
            paragraphs.append(Paragraph(
                id=f"p{len(paragraphs) + 1:04d}", start=start, end=end,
                source=" ".join(texts), translation="", speaker=speaker,
            ))
        texts, words = [], 0

    for seg in segments:
        text = " ".join(seg.text.split())
        if not text:
            continue
        if texts and seg.speaker != speaker:
            flush()
        if not texts:
            start, speaker = seg.start, seg.speaker
        texts.append(text)
        end = seg.end
        words += len(text.split())
        if (words >= target_words and _SENTENCE_END.search(text)) or words >= max_words:
            flush()
    flush()
    return paragraphs
