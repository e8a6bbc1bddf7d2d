"""Chunking: silences found by real ffmpeg, plans that always cover the audio, accurate cuts, clean merges."""

from __future__ import annotations

import random
import subprocess
from collections import deque
from itertools import pairwise
from pathlib import Path

import pytest

from schemas.artifacts import Segment
from workers.errors import PermanentError
from workers.providers.transcription import MAX_UPLOAD_BYTES
from workers.steps.chunking import (
    CHUNK_BITRATE_BPS,
    DEFAULT_CAP_SECONDS,
    MIN_CHUNK_SECONDS,
    SIZE_MARGIN,
    TOKEN_CAP_SECONDS,
    Chunk,
    _parse_silences,
    cut_chunk,
    detect_silences,
    max_chunk_seconds,
    merge_transcripts,
    plan_chunks,
)
from workers.steps.media import probe, to_speech_m4a

# (kind, seconds): tones stand in for speech; the 0.2 s gap is shorter than min_silence and must be missed
PATTERN = [("t", 2.0), ("s", 1.0), ("t", 3.0), ("s", 1.5), ("t", 2.5), ("s", 0.6),
           ("t", 1.0), ("s", 0.2), ("t", 1.3), ("s", 1.2)]  # fmt: skip
SILENCES = [(2.0, 3.0), (6.0, 7.5), (10.0, 10.6), (13.1, 14.3)]
DURATION = 14.3


def _make_talk(dest: Path) -> Path:
    """Tones and silences joined by ffmpeg's concat filter, then made a speech m4a by the real converter."""
    args: list[str] = []
    for kind, seconds in PATTERN:
        src = f"sine=frequency=300:sample_rate=16000:duration={seconds}"
        args += ["-f", "lavfi", "-i", src if kind == "t" else f"anullsrc=r=16000:cl=mono:d={seconds}"]
    graph = "".join(f"[{i}:a]" for i in range(len(PATTERN))) + f"concat=n={len(PATTERN)}:v=0:a=1"
    wav = dest.with_suffix(".wav")
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args, "-filter_complex", graph,
                    "-ac", "1", "-ar", "16000", str(wav)], check=True)  # fmt: skip
    return to_speech_m4a(wav, dest)


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_talk(tmp_path_factory.mktemp("chunking") / "talk.m4a")


def _assert_covers(chunks: list[Chunk], duration: float, max_seconds: float) -> None:
    assert chunks[0].start == 0.0 and chunks[-1].end == duration
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for a, b in pairwise(chunks):
        assert a.end == b.start  # contiguous: no gap, no overlap
    assert all(c.duration <= max_seconds + 1e-9 for c in chunks)


def _inside(t: float, silences: list[tuple[float, float]]) -> bool:
    return any(a < t < b for a, b in silences)


# detect_silences


def test_detect_silences_finds_the_gaps(talk: Path) -> None:
    found = detect_silences(talk)
    assert len(found) == len(SILENCES)
    for (a, b), (ea, eb) in zip(found, SILENCES, strict=True):
        assert abs(a - ea) < 0.1 and abs(b - eb) < 0.1


def test_detect_silences_min_silence_and_threshold(talk: Path) -> None:
    assert len(detect_silences(talk, min_silence=0.1)) == len(SILENCES) + 1  # now the 0.2 s gap counts
    long_only = [t for span in detect_silences(talk, min_silence=1.1) for t in span]
    assert long_only == pytest.approx([6.0, 7.5, 13.1, 14.3], abs=0.1)
    everything = detect_silences(talk, noise_db=0)  # every sample is below 0 dBFS
    assert len(everything) == 1 and everything[0][1] == pytest.approx(DURATION, abs=0.1)


def test_detect_silences_bad_input(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="file not found"):
        detect_silences(tmp_path / "missing.m4a")
    junk = tmp_path / "junk.m4a"
    junk.write_text("not audio\n")
    with pytest.raises(PermanentError, match=r"could not read junk\.m4a") as err:
        detect_silences(junk)
    assert "\n" not in str(err.value)


def test_parse_silences_pairs_lines_and_reports_open_end() -> None:
    lines = ["Input #0, mov\n", "[silencedetect @ 0x1] silence_start: -0.00133\n",
             "[silencedetect @ 0x1] silence_end: 1.5 | silence_duration: 1.5\n", "size=N/A time=00:00:02\n",
             "[silencedetect @ 0x1] silence_start: 2.25\n", "[silencedetect @ 0x1] silence_end: 2.9 | x\n",
             "[silencedetect @ 0x1] silence_start: 8e+00\n"]  # fmt: skip
    tail: deque[str] = deque(maxlen=2)
    silences, dangling = _parse_silences(iter(lines), tail)
    assert silences == [(0.0, 1.5), (2.25, 2.9)]
    assert dangling == 8.0 and len(tail) == 2


# plan_chunks


def test_short_audio_is_one_chunk() -> None:
    assert plan_chunks(300.0, [(10, 11)], max_seconds=600) == [Chunk(index=0, start=0.0, end=300.0)]
    assert plan_chunks(600.0, [], max_seconds=600) == [Chunk(index=0, start=0.0, end=600.0)]
    assert plan_chunks(0.0, [], max_seconds=600) == [Chunk(index=0, start=0.0, end=0.0)]


def test_cuts_at_silence_midpoints() -> None:
    # default target 540 s, window 480-600 s: 530-530.6 is as long as 490-490.6 and nearer the target;
    # next window 1010.3-1130.3: the 2 s pause beats the 1010-1011 one (clipped to 0.7 s)
    silences = [(100.0, 101.0), (490.0, 490.6), (530.0, 530.6), (1010.0, 1011.0), (1100.0, 1102.0)]
    chunks = plan_chunks(1500.0, silences, max_seconds=600)
    assert [c.end for c in chunks] == [530.3, 1101.0, 1500.0]
    _assert_covers(chunks, 1500.0, 600)


def test_longer_silence_wins_over_nearer() -> None:
    chunks = plan_chunks(1000.0, [(485.0, 486.0), (539.0, 539.4)], max_seconds=600)
    assert chunks[0].end == 485.5


def test_silence_straddling_the_limit_is_cut_inside_the_window() -> None:
    chunks = plan_chunks(1000.0, [(590.0, 640.0)], max_seconds=600)
    assert chunks[0].end == 595.0  # middle of the part before the limit, still 5 s from any sound
    _assert_covers(chunks, 1000.0, 600)


def test_hard_cut_without_silence(caplog: pytest.LogCaptureFixture) -> None:
    chunks = plan_chunks(1500.0, [(100.0, 101.0)], max_seconds=600)
    assert [(c.start, c.end) for c in chunks] == [(0.0, 600.0), (600.0, 1200.0), (1200.0, 1500.0)]
    assert "hard cut at 600.0 s" in caplog.text


def test_no_sliver_at_the_end() -> None:
    chunks = plan_chunks(600.4, [], max_seconds=600)
    assert [c.end for c in chunks] == [600.4 - MIN_CHUNK_SECONDS, 600.4]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="target_seconds"):
        plan_chunks(100.0, [], max_seconds=10, target_seconds=11)
    with pytest.raises(ValueError, match="target_seconds"):
        plan_chunks(100.0, [], max_seconds=0)
    with pytest.raises(ValueError, match="duration"):
        plan_chunks(-1.0, [], max_seconds=10)


def test_three_hour_talk() -> None:
    rng = random.Random(3)
    silences, t = [], 0.0
    while t < 10_800:
        t += rng.uniform(5.0, 9.0)
        length = rng.uniform(0.4, 1.2)
        silences.append((t, t + length))
        t += length
    max_s = max_chunk_seconds(CHUNK_BITRATE_BPS, model="gpt-4o-transcribe")
    chunks = plan_chunks(10_800.0, silences, max_seconds=max_s)
    _assert_covers(chunks, 10_800.0, max_s)
    assert 10_800 / max_s < len(chunks) <= 10_800 / (0.8 * max_s) + 1  # cuts land in 0.8-1.0 × max
    assert all(_inside(c.end, silences) for c in chunks[:-1])


def test_random_plans_are_contiguous_and_bounded() -> None:
    rng = random.Random(20260101)
    for _ in range(200):
        duration = rng.choice([0.0, rng.uniform(0, 50), rng.uniform(50, 20_000)])
        max_s = rng.uniform(2.0, 1500.0)
        target = rng.choice([None, max_s * rng.uniform(0.3, 1.0)])
        silences = []
        for _ in range(rng.randint(0, 400)):  # unsorted, overlapping, some past either end
            a = rng.uniform(-10, duration + 10)
            silences.append((a, a + rng.uniform(0.05, 30.0 if rng.random() < 0.1 else 2.0)))
        chunks = plan_chunks(duration, silences, max_seconds=max_s, target_seconds=target)
        _assert_covers(chunks, duration, max_s)
        if len(chunks) > 1:
            assert all(c.duration >= min(MIN_CHUNK_SECONDS, max_s / 2) - 1e-9 for c in chunks)
        for c in chunks[:-1]:  # every cut is in a silence, or a hard cut at the limit
            hard = c.duration == pytest.approx(max_s) or c.end == pytest.approx(duration - MIN_CHUNK_SECONDS)
            assert hard or _inside(c.end, silences)


# max_chunk_seconds


def test_max_chunk_seconds() -> None:
    assert max_chunk_seconds(CHUNK_BITRATE_BPS, model="whisper-1") == DEFAULT_CAP_SECONDS  # size allows ~65 min
    assert max_chunk_seconds(CHUNK_BITRATE_BPS, model="gpt-4o-transcribe") == DEFAULT_CAP_SECONDS  # the lower
    assert max_chunk_seconds(CHUNK_BITRATE_BPS, model="gpt-4o-transcribe", cap_seconds=3600) == TOKEN_CAP_SECONDS
    assert 420 < TOKEN_CAP_SECONDS < 600  # 2,000 tokens of fast English speech
    assert max_chunk_seconds(CHUNK_BITRATE_BPS, model="whisper-1", cap_seconds=7200) == pytest.approx(
        MAX_UPLOAD_BYTES * 8 * SIZE_MARGIN / 48_000
    )
    assert max_chunk_seconds(320_000, model="whisper-1", cap_seconds=3600) == pytest.approx(
        MAX_UPLOAD_BYTES * 8 * 0.9 / 320_000)
    assert max_chunk_seconds(48_000, model="gpt-4o-mini-transcribe", max_bytes=1_000_000) == pytest.approx(150.0)
    with pytest.raises(ValueError):
        max_chunk_seconds(0, model="whisper-1")


# cut_chunk


def test_cut_chunks_match_the_plan(talk: Path, tmp_path: Path) -> None:
    found = detect_silences(talk)
    duration = probe(talk).duration
    chunks = plan_chunks(duration, found, max_seconds=5.0, target_seconds=3.5)
    assert [c.end for c in chunks[:-1]] == pytest.approx([2.5, 6.75, 10.3], abs=0.1)  # silence midpoints
    chunks.append(Chunk(index=len(chunks), start=3.7, end=8.3))  # boundaries in the middle of tones
    for chunk in chunks:
        part = cut_chunk(talk, chunk, tmp_path / "chunks" / f"{chunk.index:04d}.m4a")
        info = probe(part)
        assert info.audio_codec == "aac" and info.sample_rate == 16_000 and info.channels == 1
        assert info.duration == pytest.approx(chunk.duration, abs=0.05)
        assert part.stat().st_size * 8 / info.duration < CHUNK_BITRATE_BPS / SIZE_MARGIN
        assert part.stat().st_size < MAX_UPLOAD_BYTES
        # silences inside the chunk sit where the planned start says they do
        expected = [(max(a, chunk.start) - chunk.start, min(b, chunk.end) - chunk.start) for a, b in found
                    if min(b, chunk.end) - max(a, chunk.start) > 0.5]  # fmt: skip
        got = detect_silences(part)
        assert len(got) == len(expected), (chunk, got, expected)
        for (a, b), (ea, eb) in zip(got, expected, strict=True):
            assert abs(a - ea) < 0.05
            # a silence running to the chunk's end ends where decoding does: AAC pads the last frame (≤ 64 ms)
            assert abs(b - eb) < 0.05 if eb < chunk.duration else 0 <= b - eb < 0.07
    assert not list((tmp_path / "chunks").glob("*.part"))


def test_cut_chunk_errors(talk: Path, tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="file not found"):
        cut_chunk(tmp_path / "missing.m4a", Chunk(index=0, start=0, end=1), tmp_path / "c.m4a")
    with pytest.raises(ValueError, match="empty"):
        cut_chunk(talk, Chunk(index=0, start=1, end=1), tmp_path / "c.m4a")
    junk = tmp_path / "junk.m4a"
    junk.write_text("not audio\n")
    with pytest.raises(PermanentError, match="could not convert chunk 0"):
        cut_chunk(junk, Chunk(index=0, start=0, end=1), tmp_path / "c.m4a")
    assert not list(tmp_path.glob("c.m4a*"))


# merge_transcripts


def _seg(start: float, end: float, text: str, speaker: str | None = None) -> Segment:
    return Segment(start=start, end=end, text=text, speaker=speaker)


def test_merge_shifts_clamps_and_orders() -> None:
    c0, c1 = Chunk(index=0, start=0, end=430.5), Chunk(index=1, start=430.5, end=860)
    c2 = Chunk(index=2, start=860, end=900)
    parts = [
        (c2, []),  # silence: nothing to add
        (c1, [_seg(12.0, 20.0, "third", "A"), _seg(0.0, 11.5, " second "), _seg(425.0, 431.0, "fourth")]),
        (c0, [_seg(0.2, 430.9, "first"), _seg(3.0, 4.0, "   ")]),
    ]
    merged = merge_transcripts(parts)
    assert [s.text for s in merged] == ["first", "second", "third", "fourth"]
    assert [(s.start, s.end) for s in merged] == [(0.2, 430.5), (430.5, 442.0), (442.5, 450.5), (855.5, 860.0)]
    assert merged[2].speaker == "A"
    assert all(a.end <= b.start for a, b in pairwise(merged))


def test_merge_text_only_models_and_empty() -> None:
    # gpt-4o answers one segment spanning the chunk file, whose probed length runs a little past the plan
    chunks = plan_chunks(1000.0, [(440.0, 441.0)], max_seconds=TOKEN_CAP_SECONDS)
    parts = [(c, [_seg(0.0, c.duration + 0.03, f"chunk {c.index}")]) for c in chunks]
    merged = merge_transcripts(parts)
    assert [(s.start, s.end) for s in merged] == [(c.start, c.end) for c in chunks]
    assert " ".join(s.text for s in merged) == "chunk 0 chunk 1 chunk 2"
    assert merge_transcripts([]) == []


def test_merge_rejects_a_chunk_twice() -> None:
    chunk = Chunk(index=0, start=0, end=10)
    with pytest.raises(ValueError, match="appears twice"):
        merge_transcripts([(chunk, [_seg(0, 1, "a")]), (chunk, [_seg(0, 1, "a")])])
