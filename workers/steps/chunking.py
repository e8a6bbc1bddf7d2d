"""Long audio in chunks: split at silences so each chunk fits the transcription limits, then merge back.

Two limits bound a chunk: the 25 MB upload cap, and for the gpt-4o*-transcribe family a ~2,000-token
answer cap (a longer chunk comes back silently truncated). Chunks are contiguous and never overlap:
they cover [0, duration] exactly, so merging only shifts times by the planned chunk start.

Cuts go in the middle of a silence, so no word is split and none is heard twice. Only when a whole
search window has no silence (music, a noise floor above the threshold) is a chunk cut hard at
max_seconds: that one cut may split a word, which each side then transcribes as a fragment or drops.
The merge does not try to repair it: without overlap nothing is doubled, and with at most one word
at stake per hard cut an overlap-and-dedupe scheme is not worth it (text-only gpt-4o answers have no
word times to dedupe by). Hard cuts are logged as warnings.
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
from collections import deque
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

from pydantic import ConfigDict, Field, model_validator

from schemas.artifacts import Segment
from schemas.base import Model
from workers.errors import PermanentError
from workers.providers.transcription import MAX_UPLOAD_BYTES, is_whisper
from workers.steps.media import SPEECH_BITRATE, _ffmpeg_input, _last_line, probe, to_speech_m4a

log = logging.getLogger(__name__)

# cut_chunk re-encodes every chunk with media's speech settings, so this is the bitrate to plan with
CHUNK_BITRATE_BPS = float(SPEECH_BITRATE.removesuffix("k")) * 1000
# Keep chunks ≤ 5 min (PRESSROOM_TRANSCRIPTION_CHUNK_SECONDS) even when size allows ~70 min: a 3-hour
# talk then spreads over ~36 workers, a failed request repeats at most 5 min of audio, each request stays
# well inside server timeouts, and a short video waits at most one chunk's time for a transcribe worker
# that a long talk's chunks hold (workers/fairness.py; bench/fairness.py measured 10-min chunks at 2.4× a
# short video's time alone in the worst case, 5-min at 1.7×). Billing is per minute: cutting costs nothing.
DEFAULT_CAP_SECONDS = 5 * 60.0
# Room for the mp4 index (~1 % at 48 kbps) and AAC's bitrate wobble above nominal.
SIZE_MARGIN = 0.9
# gpt-4o*-transcribe answer at most 2,000 tokens. English runs ~1.35 tokens a word, and a fast talk
# runs ~200 words a minute, so ~7.4 min fits; the ~10 min that 150 wpm suggests would truncate fast
# speakers, and shorter chunks cost nothing extra (billing is per minute of audio).
MAX_OUTPUT_TOKENS = 2000
TOKENS_PER_WORD = 1.35
FAST_WORDS_PER_MINUTE = 200.0
TOKEN_CAP_SECONDS = 60.0 * MAX_OUTPUT_TOKENS / (TOKENS_PER_WORD * FAST_WORDS_PER_MINUTE)
# Pauses at least this long are all equally safe places to cut; among them the one nearest the target wins.
SAFE_SILENCE = 1.5
# No chunk (but the only one) is shorter than this: a sliver of audio is a wasted request.
MIN_CHUNK_SECONDS = 1.0
_DETECT_TIMEOUT = 600.0  # ffmpeg decodes 16 kHz AAC at ~3,600x real time: an hour takes ~1 s
_MIN_CUT_TIMEOUT = 600.0
_SILENCE_RE = re.compile(r"silence_(start|end): *(-?[0-9.]+(?:e[-+]?[0-9]+)?)")


class Chunk(Model):
    """One piece of the original audio, in its seconds; serialisable so tasks can hand chunks around."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0)
    start: float = Field(ge=0)
    end: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Chunk:
        if self.end < self.start:
            raise ValueError(f"chunk {self.index} ends ({self.end}) before it starts ({self.start})")
        return self

    @property
    def duration(self) -> float:
        return self.end - self.start


def detect_silences(
    audio: Path, *, noise_db: float = -35, min_silence: float = 0.4, timeout: float = _DETECT_TIMEOUT
) -> list[tuple[float, float]]:
    """(start, end) of every silence ≥ min_silence quieter than noise_db, via ffmpeg silencedetect.

    stderr is read line by line from a pipe, so a long file's log never sits in memory whole.
    """
    if not audio.is_file():
        raise PermanentError(f"{audio.name}: file not found at {audio}; run the download step again")
    cmd = [
        "ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "info", *_ffmpeg_input(audio),
        "-map", "0:a:0", "-af", f"silencedetect=noise={noise_db}dB:d={min_silence}", "-f", "null", "-",
    ]  # fmt: skip
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, errors="replace",
        )  # fmt: skip
    except FileNotFoundError:
        raise PermanentError("ffmpeg is not installed: install ffmpeg (apt-get install ffmpeg)") from None
    timed_out = threading.Event()

    def _kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, _kill)
    timer.start()
    tail: deque[str] = deque(maxlen=8)
    try:
        with proc:
            assert proc.stderr is not None
            silences, dangling = _parse_silences(proc.stderr, tail)
    finally:
        timer.cancel()
    if timed_out.is_set():
        raise PermanentError(f"ffmpeg took over {timeout:g} s finding silences in {audio.name}: is it damaged?")
    if proc.returncode != 0:
        raise PermanentError(
            f"ffmpeg could not read {audio.name} to find silences: {_last_line(''.join(tail))}; "
            "run the download step again"
        )
    if dangling is not None:  # older ffmpeg leaves a silence that runs to the end unclosed
        end = probe(audio).duration
        if end > dangling:
            silences.append((dangling, end))
    return silences


def _parse_silences(lines: Iterable[str], tail: deque[str]) -> tuple[list[tuple[float, float]], float | None]:
    """Pair silence_start/silence_end lines; also returns a start still open at the end of the log."""
    silences: list[tuple[float, float]] = []
    start: float | None = None
    for line in lines:
        tail.append(line)
        match = _SILENCE_RE.search(line)
        if match is None:
            continue
        value = max(0.0, float(match.group(2)))  # the first silence may start at -0.001
        if match.group(1) == "start":
            start = value
        elif start is not None:
            if value > start:
                silences.append((start, value))
            start = None
    return silences, start


def max_chunk_seconds(
    bitrate_bps: float, *, max_bytes: int = MAX_UPLOAD_BYTES, model: str, cap_seconds: float = DEFAULT_CAP_SECONDS
) -> float:
    """The longest chunk that stays under max_bytes (with SIZE_MARGIN) and that the model can answer in full.

    whisper-* return segments without a token cap, so only size and cap_seconds bound them; every other
    model (gpt-4o*-transcribe and similar text-only models) also gets TOKEN_CAP_SECONDS.
    """
    if bitrate_bps <= 0 or max_bytes <= 0 or cap_seconds <= 0:
        raise ValueError(f"bitrate ({bitrate_bps}), max_bytes ({max_bytes}) and cap ({cap_seconds}) must be > 0")
    limit = min(max_bytes * 8 * SIZE_MARGIN / bitrate_bps, cap_seconds)
    if not is_whisper(model):
        limit = min(limit, TOKEN_CAP_SECONDS)
    return limit


def plan_chunks(
    duration: float, silences: list[tuple[float, float]], *, max_seconds: float, target_seconds: float | None = None
) -> list[Chunk]:
    """Contiguous chunks covering [0, duration], each ≤ max_seconds, cut mid-silence near target_seconds.

    Each cut looks in a window of ±(max - target) around the target (so [0.8, 1.0] × max by default),
    capped at max_seconds, and picks the longest silence there (all pauses ≥ SAFE_SILENCE tie), then
    the one nearest the target; it cuts in the middle of that silence's part inside the window. With
    no silence in the window it cuts hard at max_seconds. A cut never leaves a last chunk shorter than
    MIN_CHUNK_SECONDS.
    """
    target = 0.9 * max_seconds if target_seconds is None else target_seconds
    if not 0 < target <= max_seconds:
        raise ValueError(f"need 0 < target_seconds ({target}) <= max_seconds ({max_seconds})")
    if duration < 0:
        raise ValueError(f"duration must be >= 0, got {duration}")
    spans = sorted((max(0.0, a), min(duration, b)) for a, b in silences if min(duration, b) > max(0.0, a))
    min_chunk = min(MIN_CHUNK_SECONDS, max_seconds / 2)
    reach = max_seconds - target
    cuts: list[float] = []
    pos = 0.0
    while duration - pos > max_seconds:
        limit = min(pos + max_seconds, duration - min_chunk)
        aim = pos + target
        low = min(max(aim - reach, pos + min_chunk), limit)
        cut = _best_cut(spans, low, limit, aim)
        if cut is None:
            cut = limit
            log.warning("no silence in %.1f-%.1f s: hard cut at %.1f s may split a word", low, limit, cut)
        cuts.append(cut)
        pos = cut
    bounds = [0.0, *cuts, duration]
    return [Chunk(index=i, start=a, end=b) for i, (a, b) in enumerate(pairwise(bounds))]


def _best_cut(spans: list[tuple[float, float]], low: float, high: float, aim: float) -> float | None:
    """Middle of the best silence's part inside [low, high], or None when no silence reaches in."""
    best: tuple[float, float] | None = None
    cut: float | None = None
    for a, b in spans:
        if a >= high:
            break  # spans are sorted by start
        lo, hi = max(a, low), min(b, high)
        if hi <= lo:
            continue
        mid = (lo + hi) / 2
        score = (min(hi - lo, SAFE_SILENCE), -abs(mid - aim))
        if best is None or score > best:
            best, cut = score, mid
    return cut


def cut_chunk(audio: Path, chunk: Chunk, dest: Path) -> Path:
    """Write chunk's span of audio to dest as a speech m4a, re-encoded with media's settings.

    Re-encoding, not stream copy: a copied AAC stream starts on a 64 ms frame and is only exact if the
    decoder honours the mp4 edit list, which a transcription server may not; a re-encoded chunk's
    first sample is the planned start (measured to 0.1 ms). It also takes any input codec and fixes
    the bitrate that max_chunk_seconds plans with. Costs ~2.7 s per 8 min of audio, small next to the
    transcription request. Written to a .part name and renamed, so dest is complete or absent.
    """
    if not audio.is_file():
        raise PermanentError(f"{audio.name}: file not found at {audio}; run the download step again")
    if chunk.duration <= 0:
        raise ValueError(f"chunk {chunk.index} is empty ({chunk.start}-{chunk.end} s): nothing to cut")
    dest.parent.mkdir(parents=True, exist_ok=True)
    return to_speech_m4a(audio, dest, start=chunk.start, length=chunk.duration,
                         what=f"chunk {chunk.index} ({chunk.start:.1f}-{chunk.end:.1f} s) of {audio.name}",
                         fix="run the download step again")


def merge_transcripts(parts: list[tuple[Chunk, list[Segment]]]) -> list[Segment]:
    """One timeline from per-chunk segments: shifted by the planned chunk start, clamped into the chunk.

    Parts may come in any order (workers finish when they finish); they are merged in time order.
    Clamping keeps a segment that a model stretched past its chunk's end from overlapping the next
    chunk. Empty or blank segments are dropped; a chunk with none (silence) adds nothing.
    """
    merged: list[Segment] = []
    seen: set[int] = set()
    for chunk, segments in sorted(parts, key=lambda part: (part[0].start, part[0].index)):
        if chunk.index in seen:
            raise ValueError(f"chunk {chunk.index} appears twice: each chunk's transcript must be merged once")
        seen.add(chunk.index)
        for seg in sorted(segments, key=lambda s: (s.start, s.end)):
            text = seg.text.strip()
            if not text:
                continue
            start = min(max(chunk.start + seg.start, chunk.start), chunk.end)
            end = min(max(chunk.start + seg.end, start), chunk.end)
            merged.append(seg.model_copy(update={"start": start, "end": end, "text": text}))
    return merged
