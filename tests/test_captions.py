"""Captions → transcript segments: YouTube auto-caption fixtures (the real files' exact structure, our own
words), checked against their own timed words.

The expected words are read off the raw files here with small regexes, independently of the parser: every
`<timestamp><c> word</c>` word, the untimed words a timed line starts with, and the untimed lines that are
not the rolling repeat of the previous cue's last line.
"""

from __future__ import annotations

import html
import itertools
import json
import re
from pathlib import Path

import pytest

from schemas.artifacts import Segment
from workers.errors import PermanentError
from workers.steps.captions import (
    MAX_WORDS,
    captions_transcript,
    parse_json3,
    parse_vtt,
    pick_captions,
    segments_to_sentences,
)

FIXTURES = Path(__file__).parent / "fixtures"
MODERN = FIXTURES / "youtube-autocaptions-modern.vtt"
LEGACY = FIXTURES / "youtube-autocaptions-legacy.vtt"

TIMING_LINE = re.compile(r"^\d[\d:.]* --> .*$", re.M)
TIMESTAMP = re.compile(r"<\d\d:\d\d:\d\d\.\d{3}>")
TIMED_WORD = re.compile(r"<\d\d:\d\d:\d\d\.\d{3}>(?:<c[^>]*>)*([^<]*)")
TAGS = re.compile(r"<[^>]*>")
ENTITY = re.compile(r"&(#\d+|#x[0-9a-f]+|[a-z]+);", re.I)


def _plain(line: str) -> str:
    return " ".join(html.unescape(TAGS.sub("", line)).split())


def caption_tokens(vtt: str) -> list[str]:
    """The words as they appear on screen for the first time, `>>` marks included, from the raw file."""
    tokens: list[str] = []
    previous = ""
    for block in TIMING_LINE.split(vtt)[1:]:
        lines = [ln for ln in block.split("\n") if _plain(ln)]
        for k, line in enumerate(lines):
            if TIMESTAMP.search(line):
                tokens += _plain(TIMESTAMP.split(line, maxsplit=1)[0]).split()
                tokens += [html.unescape(w) for chunk in TIMED_WORD.findall(line) for w in chunk.split()]
            elif not (k == 0 and _plain(line) == previous):
                tokens += _plain(line).split()
        previous = _plain(lines[-1]) if lines else ""
    return tokens


def spoken(tokens: list[str]) -> tuple[list[str], set[int]]:
    """Tokens without `>>` marks and single-token [annotations]; the word indexes where a turn starts."""
    words: list[str] = []
    turns: set[int] = set()
    for tok in tokens:
        if tok.startswith(">>"):
            turns.add(len(words))
            tok = tok.lstrip(">")
        if tok and not re.fullmatch(r"\[.*\]", tok):
            words.append(tok)
    return words, turns


def assert_timeline(segments: list[Segment]) -> None:
    assert segments
    for seg in segments:
        assert seg.start <= seg.end and seg.text.strip()
    for a, b in itertools.pairwise(segments):
        assert a.start <= b.start and a.end <= b.start, (a, b)


def assert_matches_captions(segments: list[Segment], vtt: str) -> None:
    """Clean text whose words are exactly the captions' own new words, with a segment starting at each `>>`."""
    expected, turns = spoken(caption_tokens(vtt))
    for seg in segments:
        assert ">>" not in seg.text and not TAGS.search(seg.text) and not ENTITY.search(seg.text), seg.text
        assert not re.search(r"\[[^\]]*\]", seg.text), seg.text
    assert [w for s in segments for w in s.text.split()] == expected
    starts = [0, *itertools.accumulate(len(s.text.split()) for s in segments)][:-1]  # first word of each segment
    new_speaker = {n for i, n in enumerate(starts) if segments[i].speaker != (segments[i - 1].speaker if i else None)}
    assert turns <= set(starts) and new_speaker == turns  # a new segment and a new speaker exactly at each `>>`


@pytest.mark.parametrize("path", [MODERN, LEGACY], ids=["modern", "legacy"])
def test_fixture_parses_into_the_captions_own_words(path: Path) -> None:
    raw = path.read_text(encoding="utf-8")
    segments = parse_vtt(raw)
    assert_matches_captions(segments, raw)
    assert_timeline(segments)
    assert all(len(s.text.split()) <= MAX_WORDS for s in segments)


def test_modern_fixture_sentences_and_times() -> None:
    raw = MODERN.read_text(encoding="utf-8")
    timed_lines = [ln for ln in raw.splitlines() if TIMESTAMP.search(ln)]
    # The oracle really read the file: one untimed word opens each timed line, one word per timing tag,
    # and the last cue's new line "megabyte." has no timing at all.
    tokens = caption_tokens(raw)
    assert len(tokens) == len(timed_lines) + len(TIMESTAMP.findall(raw)) + 1 == 126 and tokens[-1] == "megabyte."
    segments = parse_vtt(raw)
    assert (segments[0].text, segments[0].start) == ("Does a cache really make the database faster?", 0.24)
    assert (segments[1].text, segments[1].start) == ("We measured it for 214 days.", 3.76)
    assert segments[-1].text == "So in our test, the cache was worth every megabyte."
    assert "Months later." in [s.text for s in segments]  # after a 19 s pause, starting at its cue (43.6)
    assert all(s.speaker is None for s in segments)  # no `>>` in this video


def test_legacy_fixture_colour_classes_and_missing_blank_lines() -> None:
    segments = parse_vtt(LEGACY.read_text(encoding="utf-8"))
    assert " ".join(s.text for s in segments) == "right so the cache expires and we're refilling"
    assert segments[0].start == pytest.approx(401.07)


AUTO_TURNS = """WEBVTT
Kind: captions
Language: en

00:00:01.000 --> 00:00:03.000 align:start position:0%

[Music]

00:00:03.000 --> 00:00:03.010 align:start position:0%
[Music]


00:00:03.010 --> 00:00:05.000 align:start position:0%
[Music]
so<00:00:03.400><c> what</c><00:00:03.800><c> about</c><00:00:04.100><c> R&amp;D</c><00:00:04.500><c> budgets?</c>

00:00:05.000 --> 00:00:05.010 align:start position:0%
so what about R&amp;D budgets?


00:00:05.010 --> 00:00:07.000 align:start position:0%
so what about R&amp;D budgets?
&gt;&gt; it&#39;s<00:00:05.400><c> growing</c><00:00:06.200><c> &gt;&gt;</c><00:00:06.500><c> really</c>

00:00:07.000 --> 00:00:07.010 align:start position:0%
&gt;&gt; it&#39;s growing &gt;&gt; really


00:00:07.010 --> 00:00:09.000 align:start position:0%
&gt;&gt; it&#39;s growing &gt;&gt; really
<c.colorE5E5E5>yes</c><00:00:07.400><c.colorCCCCCC><c> >>></c></c><00:00:07.800><c> next</c><00:00:08.100><c> topic</c>
"""


def test_auto_captions_speaker_turns_entities_and_sound_tags() -> None:
    segments = parse_vtt(AUTO_TURNS)
    assert_matches_captions(segments, AUTO_TURNS)
    assert_timeline(segments)
    assert [(s.text, s.speaker) for s in segments] == [
        ("so what about R&D budgets?", None),
        ("it's growing", "S1"),
        ("really yes", "S2"),
        ("next topic", "S3"),  # `>>>`, a topic change, is a turn too
    ]
    assert (segments[1].start, segments[2].start, segments[3].start) == (5.01, 6.5, 7.8)


REPEATED = """WEBVTT
Kind: captions
Language: en

00:00:01.000 --> 00:00:02.000 align:start position:0%

thank<00:00:01.500><c> you</c>

00:00:02.000 --> 00:00:02.010 align:start position:0%
thank you


00:00:02.010 --> 00:00:03.000 align:start position:0%
thank you
thank<00:00:02.500><c> you</c>

00:00:03.000 --> 00:00:03.010 align:start position:0%
thank you


00:00:03.010 --> 00:00:04.000 align:start position:0%
thank you
everyone<00:00:03.500><c> here</c>
"""


def test_a_phrase_really_said_twice_is_kept_twice() -> None:
    segments = parse_vtt(REPEATED)
    assert " ".join(s.text for s in segments) == "thank you thank you everyone here"
    assert_matches_captions(segments, REPEATED)
    assert_timeline(segments)


HUMAN = """WEBVTT
Kind: captions
Language: en

1
00:00:01.000 --> 00:00:03.000
[Music]

NOTE edited by hand

2
00:00:03.500 --> 00:00:06.000 line:90% align:center
&gt;&gt; Welcome to R&amp;D,
the <i>lab</i> where it&#39;s done.

00:00:06.000 --> 00:00:08.000
>> Thanks. >> You're welcome.

00:00:08.000 --> 00:00:09.500
No.

00:00:09.500 --> 00:00:11.000
No.
"""


def test_human_captions_one_segment_per_cue_split_at_turns() -> None:
    segments = parse_vtt(HUMAN)
    assert_timeline(segments)
    assert [(s.text, s.speaker) for s in segments] == [
        ("Welcome to R&D, the lab where it's done.", "S1"),
        ("Thanks.", "S2"),
        ("You're welcome.", "S3"),
        ("No.", "S3"),  # human captions are never deduplicated: both are said
        ("No.", "S3"),
    ]
    assert [(s.start, s.end) for s in segments[:2]] == [(3.5, 6.0), (6.0, pytest.approx(6.667, abs=1e-3))]
    assert [(s.start, s.end) for s in segments[3:]] == [(8.0, 9.5), (9.5, 11.0)]


def test_json3_auto_captions() -> None:
    data = {"wireMagic": "pb3", "events": [
        {"tStartMs": 0, "dDurationMs": 10000, "id": 1, "wpWinPosId": 1, "wsWinStyleId": 1},
        {"tStartMs": 1000, "dDurationMs": 3000, "wWinId": 1, "segs": [{"utf8": "[Music]", "acAsrConf": 0}]},
        {"tStartMs": 2000, "dDurationMs": 2000, "wWinId": 1, "aAppend": 1, "segs": [{"utf8": "\n"}]},
        {"tStartMs": 4000, "dDurationMs": 3000, "wWinId": 1, "segs": [
            {"utf8": "welcome", "acAsrConf": 0}, {"utf8": " back", "tOffsetMs": 400, "acAsrConf": 0},
            {"utf8": " everyone.", "tOffsetMs": 800, "acAsrConf": 0}]},
        {"tStartMs": 6000, "dDurationMs": 1000, "wWinId": 1, "aAppend": 1, "segs": [{"utf8": "\n"}]},
        {"tStartMs": 7000, "dDurationMs": 2000, "wWinId": 1, "segs": [
            {"utf8": ">>", "acAsrConf": 0}, {"utf8": " thanks", "tOffsetMs": 300}, {"utf8": " for", "tOffsetMs": 500},
            {"utf8": " having", "tOffsetMs": 700}, {"utf8": " me", "tOffsetMs": 900}]},
    ]}
    segments = parse_json3(json.dumps(data).encode())
    assert_timeline(segments)
    assert [(s.text, s.speaker, s.start, s.end) for s in segments] == [
        ("welcome back everyone.", None, 4.0, 7.0),
        ("thanks for having me", "S1", 7.3, 9.0),
    ]


def test_json3_human_captions() -> None:
    data = {"events": [
        {"tStartMs": 0, "dDurationMs": 2000, "segs": [{"utf8": ">> Hello there,\nfriends."}]},
        {"tStartMs": 2000, "dDurationMs": 1500, "segs": [{"utf8": "[Applause]"}]},
        {"tStartMs": 3500, "dDurationMs": 2000, "segs": [{"utf8": "Thanks"}, {"utf8": " a lot."}]},
    ]}
    segments = parse_json3(json.dumps(data))
    assert [(s.text, s.speaker, s.start, s.end) for s in segments] == [
        ("Hello there, friends.", "S1", 0.0, 2.0),
        ("Thanks a lot.", "S1", 3.5, 5.5),
    ]
    with pytest.raises(ValueError, match="events"):
        parse_json3('{"wireMagic": "pb3"}')


def test_segments_to_sentences_breaks_and_keeps_every_word() -> None:
    segments = [
        Segment(start=0, end=3, text="one two three"),
        Segment(start=3, end=4, text="four. five"),
        Segment(start=10, end=12, text="six seven"),
        Segment(start=12, end=13, text="eight", speaker="S1"),
    ]
    out = segments_to_sentences(segments)
    assert [(s.text, s.speaker) for s in out] == [
        ("one two three four.", None), ("five", None), ("six seven", None), ("eight", "S1")]
    long_run = [Segment(start=i, end=i + 1, text=f"w{i}a w{i}b") for i in range(30)]  # 60 words, no pauses
    out = segments_to_sentences(long_run)
    assert [len(s.text.split()) for s in out] == [25, 25, 10]
    assert " ".join(s.text for s in out) == " ".join(s.text for s in long_run)
    assert_timeline(out)
    clause = [Segment(start=0, end=20, text=" ".join([f"x{i}" for i in range(16)] + ["then,", "more", "words"]))]
    assert [len(s.text.split()) for s in segments_to_sentences(clause)] == [17, 2]


def test_pick_captions() -> None:
    every = {"en.vtt": "k/en.vtt", "en-auto.vtt": "k/en-auto.vtt", "en-orig-auto.vtt": "k/en-orig-auto.vtt"}
    assert pick_captions(every, allow_auto=True) == "k/en.vtt"
    auto = {"en-auto.vtt": "k/en-auto.vtt", "en-orig-auto.vtt": "k/en-orig-auto.vtt", "fr.vtt": "k/fr.vtt"}
    assert pick_captions(auto, allow_auto=True) == "k/en-orig-auto.vtt"
    assert pick_captions({"en-auto.vtt": "k/en-auto.vtt"}, allow_auto=True) == "k/en-auto.vtt"
    assert pick_captions(auto, allow_auto=False) is None
    assert pick_captions({"fr.vtt": "k/fr.vtt", "de-auto.vtt": "k/de"}, allow_auto=True) is None
    assert pick_captions({}, allow_auto=True) is None
    assert pick_captions({"en-GB.vtt": "k/gb", "en-orig-auto.vtt": "k/auto"}, allow_auto=True) == "k/gb"


def test_captions_transcript(tmp_path: Path) -> None:
    path = tmp_path / "en-orig-auto.vtt"
    path.write_bytes(MODERN.read_bytes())
    transcript = captions_transcript(path, "vid123")
    assert (transcript.video_id, transcript.model, transcript.language) == ("vid123", "captions", "en")
    assert transcript.segments == parse_vtt(MODERN.read_text(encoding="utf-8"))
    assert transcript.duration == transcript.segments[-1].end
    json3 = tmp_path / "en-auto.json3"
    json3.write_text(json.dumps({"events": [{"tStartMs": 0, "dDurationMs": 1000, "segs": [{"utf8": "Hi."}]}]}))
    assert captions_transcript(json3, "v").language == "en"  # from the download step's name
    crlf = tmp_path / "talk.vtt"
    crlf.write_bytes(b"\xef\xbb\xbf" + MODERN.read_bytes().replace(b"\n", b"\r\n"))  # BOM, Windows line ends
    assert captions_transcript(crlf, "v").language == "en"  # from the header
    assert captions_transcript(crlf, "v").segments == transcript.segments


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("en.vtt", b"", "no text"),
    ("en.vtt", b"WEBVTT\nKind: captions\nLanguage: en\n\n", "no text"),
    ("en.vtt", b"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n[Music]\n", "no text"),
    ("en.vtt", b"WEBVTT\n\n\xff\xfe bad\n", "unreadable"),
    ("en.json3", b"", "no text"),
    ("en.json3", b'{"events": [', "unreadable"),
    ("en.srt", b"1\n00:00:01,000 --> 00:00:02,000\nHi\n", ".vtt or .json3"),
])
def test_captions_transcript_errors_name_the_file(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(PermanentError, match=re.escape(reason)) as err:
        captions_transcript(path, "vid")
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(PermanentError, match="cannot read"):
        captions_transcript(tmp_path / "missing.vtt", "vid")
