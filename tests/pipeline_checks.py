"""Checks shared by the pipeline tests: what a finished post must contain."""

from __future__ import annotations

import html
import re
import time

from schemas.artifacts import Transcript
from workers.state import RunState

STEPS = ["download", "transcribe", "translate", "tag", "publish"]
_ENGLISH = re.compile(r'<p class="english-text">(.*?)</p>', re.S)
_CHINESE = re.compile(r"\n\n([^<#\n][^\n]*)\n\n<details>")


def english_blocks(post: str) -> list[str]:
    return [html.unescape(m) for m in _ENGLISH.findall(post)]


def chinese_paragraphs(post: str) -> list[str]:
    return _CHINESE.findall(post)


def assert_post_holds_transcript(post: str, transcript: Transcript) -> None:
    """Every segment's text is in the English blocks, in order, nothing added or dropped."""
    english = " ".join(" ".join(b.split()) for b in english_blocks(post))
    expected = " ".join(" ".join(s.text.split()) for s in transcript.segments if s.text.strip())
    assert english == expected
    position = 0
    for seg in transcript.segments:
        found = english.find(" ".join(seg.text.split()), position)
        assert found >= position, f"segment {seg.text!r} missing or out of order"
        position = found
    chinese = chinese_paragraphs(post)
    assert len(chinese) == len(english_blocks(post)) and all(c.startswith("【模拟】") for c in chinese)


def wait_for_runs(state: RunState, run_ids: list[str], timeout: float = 120) -> dict[str, dict[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        runs = {r: state.run(r) for r in run_ids}
        if all(run.get("status") in {"succeeded", "failed"} for run in runs.values()):
            return runs
        if time.monotonic() > deadline:
            raise TimeoutError({r: run.get("status") for r, run in runs.items()})
        time.sleep(0.1)


def event_trail(state: RunState, run_id: str) -> list[str]:
    return [f"{e.kind}:{getattr(e, 'step', '')}" for e in state.events(run_id)]


SUCCESS_TRAIL = ["run.requested:"] + [f"step.succeeded:{s}" for s in STEPS]
