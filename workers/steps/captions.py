"""Captions → transcript segments, so a video that has YouTube captions needs no paid transcription.

Human VTT captions show each cue once. Automatic ("rolling") ones repeat the previous cue's last line as
each cue's first line, add a line whose words carry inline timings (`We<00:00:04.000><c> tested</c>`),
and put 10 ms cues between that re-show the finished line. A word is new iff its line carries a timing
tag or is not that repeat: only the *adjacent* cue's last line is collapsed, so a phrase really said
twice (each time with its own timings) stays twice. json3 has no rolling repeats.

Decisions:
- `>>` (new speaker) and `>>>` (new topic) never reach the text: each starts a new segment with a new
  label "S1", "S2", … one per turn. Captions mark turns, not identities, so labels are never reused (one
  person may get several); text before the first `>>` has speaker None, as does a file without `>>`.
- Bracketed annotations ([Music], [Applause], [laughter], YouTube's bleep [ __ ]) are dropped: they are
  not speech, and would be translated as if they were.
- Auto-captions are regrouped into sentence-like segments (segments_to_sentences' rules) using the
  inline word timings; human captions keep one segment per cue (lines joined), split only at `>>`
  (the cue's time then shared by word count).
- Segments never overlap: a cue end running past the next word's start is clipped to it.
"""

from __future__ import annotations

import html
import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from schemas.artifacts import Segment, Transcript
from workers.errors import PermanentError

PAUSE_SECONDS = 1.5  # a longer gap between two words' starts ends a segment
MAX_WORDS = 25  # hard cap on a regrouped segment
SOFT_MAX_WORDS = 15  # past this, a comma/semicolon/colon ends the segment too

_TS = r"(?:(\d+):)?(\d{2}):(\d{2})[.,](\d{3})"
_TIMING_LINE = re.compile(rf"^\s*{_TS}\s+-->\s+{_TS}")
_TIME_TAG = re.compile(rf"^{_TS}$")
_TAG = re.compile(r"<([^>]*)>")
_TURN = re.compile(r"^>{2,}")
_SENTENCE_END = re.compile(r"[.!?…][\"')\]]*$")
_CLAUSE_END = re.compile(r"[,;:][\"')\]]*$")
_ABBREVIATIONS = frozenset({"mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "vs.", "e.g.", "i.e."})
# The download step's names: "<lang>.<ext>" for human captions, "<lang>-auto.<ext>" for YouTube's ASR.
_CAPTION_NAME = re.compile(r"^(?P<lang>[A-Za-z]{2,3}(?:-[A-Za-z0-9]+)*?)(?P<auto>-auto)?\.(?P<ext>vtt|json3)$")

Token = tuple[str, float | None]  # a word and the inline timing in force where it starts (None: untimed)


@dataclass
class _Word:
    """One spoken word; segments are cut from runs of these so their times are the words' own."""

    text: str
    start: float
    end: float
    turn: bool = False  # a `>>` came right before it
    brk: bool = False  # first word of a human cue: always starts a segment
    speaker: str | None = None


@dataclass(frozen=True)
class _Line:
    tokens: tuple[Token, ...]
    timed: bool  # carries inline timing tags, so every word on it is new

    @property
    def plain(self) -> str:
        return " ".join(tok for tok, _ in self.tokens)


class _Cue(NamedTuple):
    start: float
    end: float
    lines: tuple[_Line, ...]  # only lines with text left after tags are removed


def _seconds(groups: Iterable[str | None]) -> float:
    h, m, s, ms = (int(g or 0) for g in groups)
    return h * 3600 + m * 60 + s + ms / 1000


def _split_line(raw: str) -> _Line:
    """Tags out, entities unescaped; each word keeps the timing tag in force where it starts, so a colour
    tag or a timing tag in mid-word cannot split or mis-time it."""
    text, marks = "", []
    for i, part in enumerate(_TAG.split(raw)):
        if i % 2 == 0:
            text += html.unescape(part)
        elif m := _TIME_TAG.match(part.strip()):
            marks.append((len(text), _seconds(m.groups())))
    tokens: list[Token] = []
    for m in re.finditer(r"\S+", text):
        times = [t for pos, t in marks if pos <= m.start()]
        tokens.append((m.group(), times[-1] if times else None))
    return _Line(tuple(tokens), bool(marks))


def _vtt_language(text: str) -> str | None:
    """The header's "Language: en", if any (the header ends at the first blank line)."""
    header = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n\n", 1)[0]
    return m.group(1) if (m := re.search(r"^Language:[ \t]*(\S+)", header, re.M)) else None


def _vtt_cues(text: str) -> list[_Cue]:
    """A cue runs to the next timing line, not the next blank line: YouTube puts blank lines inside cues
    and sometimes omits the one between cues."""
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    timings = [(i, m) for i, line in enumerate(lines) if (m := _TIMING_LINE.match(line))]
    cues = []
    for n, (i, timing) in enumerate(timings):
        last = n + 1 == len(timings)
        body = lines[i + 1 : len(lines) if last else timings[n + 1][0]]
        if not last and len(body) >= 2 and not body[-2].strip() and "<" not in body[-1]:
            body = body[:-1]  # the next cue's identifier (a line between a blank line and the timing line)
        kept, note = [], False
        for k, raw in enumerate(body):
            if k > 0 and not body[k - 1].strip() and re.match(r"NOTE(\s|$)", raw):
                note = True  # a comment block, up to the next blank line
            elif not raw.strip():
                note = False
            if not note:
                kept.append(_split_line(raw))
        g = timing.groups()
        cues.append(_Cue(_seconds(g[:4]), _seconds(g[4:]), tuple(ln for ln in kept if ln.tokens)))
    return cues


def _drop_annotations(tokens: list[Token]) -> list[Token]:
    """The tokens without bracketed sound tags ([Music], [Applause])."""
    out, i = [], 0
    while i < len(tokens):  # a word opening '[' up to the word closing ']' within 8 words
        window = range(i, min(i + 8, len(tokens))) if tokens[i][0].lstrip("(\"'").startswith("[") else range(0)
        close = next((j for j in window if tokens[j][0].rstrip(".,!?;:)\"'").endswith("]")), None)
        if close is None:
            out.append(tokens[i])
        i = i + 1 if close is None else close + 1
    return out


class _Words:
    """Caption words in spoken order; `>>` marks become a turn flag on the next word as they arrive."""

    def __init__(self) -> None:
        self.words: list[_Word] = []
        self._turn = False

    def add(self, tokens: list[Token], start: float, end: float, *, brk: bool) -> None:
        """One cue's new words; untimed ones are spread evenly over the cue."""
        kept: list[tuple[str, float | None, bool]] = []
        for tok, t in _drop_annotations(tokens):
            if _TURN.match(tok):
                self._turn, tok = True, tok.lstrip(">")
            if tok:
                kept.append((tok, t, self._turn))
                self._turn = False
        untimed = sum(t is None for _, t, _ in kept)
        n = 0
        for i, (tok, t, turn) in enumerate(kept):
            if t is None:
                t, n = start + (end - start) * n / untimed, n + 1
            self.words.append(_Word(tok, t, max(end, t), turn=turn, brk=brk and i == 0))


def _fix_times(words: list[_Word]) -> list[_Word]:
    """Starts made non-decreasing, and each word ended no later than the next starts (no overlaps)."""
    fixed: list[_Word] = []
    for k, w in enumerate(words):
        start = max(w.start, fixed[-1].start) if fixed else w.start
        nxt = max(words[k + 1].start, start) if k + 1 < len(words) else w.end
        fixed.append(replace(w, start=start, end=max(start, min(w.end, nxt))))
    return fixed


def _ends_sentence(current: list[_Word], nxt: _Word) -> bool:
    """Auto-captions carry no cue-per-sentence structure, so segments end where a reader would pause."""
    last, n = current[-1].text, len(current)
    sentence_end = bool(_SENTENCE_END.search(last)) and last.lower() not in _ABBREVIATIONS
    clause_end = n >= SOFT_MAX_WORDS and bool(_CLAUSE_END.search(last))
    return sentence_end or clause_end or n >= MAX_WORDS or nxt.start - current[-1].start > PAUSE_SECONDS


def _group(words: list[_Word], *, sentences: bool) -> list[Segment]:
    """Words → segments, breaking at human cues, speaker changes and (if sentences) _ends_sentence."""
    groups: list[list[_Word]] = []
    for w in words:
        cur = groups[-1] if groups else []
        if not cur or w.brk or w.speaker != cur[0].speaker or (sentences and _ends_sentence(cur, w)):
            groups.append([w])
        else:
            cur.append(w)
    return [Segment(start=g[0].start, end=g[-1].end, text=" ".join(w.text for w in g), speaker=g[0].speaker)
            for g in groups]


def _finish(words: list[_Word], *, sentences: bool) -> list[Segment]:
    """Times fixed, a new speaker label at each turn (see the module docstring), then grouped."""
    turns, fixed = 0, _fix_times(words)
    for w in fixed:
        turns += w.turn
        w.speaker = f"S{turns}" if turns else None
    return _group(fixed, sentences=sentences)


def _is_rolling(cues: list[_Cue]) -> bool:
    """Auto-captions: inline word timings, or (without them) most cues opening with the previous last line."""
    if any(line.timed for cue in cues for line in cue.lines):
        return True
    pairs = [(a, b) for a, b in itertools.pairwise(cues) if a.lines and b.lines]
    repeats = sum(b.lines[0].plain == a.lines[-1].plain for a, b in pairs)
    return len(pairs) >= 2 and 2 * repeats >= len(pairs)


def parse_vtt(text: str) -> list[Segment]:
    """YouTube VTT (human or automatic captions) → clean, ordered segments; [] if it holds no text."""
    cues = _vtt_cues(text)
    words = _Words()
    if not _is_rolling(cues):
        for cue in cues:
            words.add([tok for line in cue.lines for tok in line.tokens], cue.start, cue.end, brk=True)
        return _finish(words.words, sentences=False)
    previous = ""  # the last line on screen after the previous cue
    for cue in cues:
        fresh: list[Token] = []
        for k, line in enumerate(cue.lines):
            if k == 0 and not line.timed and line.plain == previous:
                continue  # the rolling repeat of the line already shown
            # On a timed line, words before its first timing tag start with the cue.
            fresh += [(tok, cue.start if t is None and line.timed else t) for tok, t in line.tokens]
        words.add(fresh, cue.start, cue.end, brk=False)
        previous = cue.lines[-1].plain if cue.lines else ""
    return _finish(words.words, sentences=True)


def parse_json3(data: str | bytes) -> list[Segment]:
    """YouTube json3 → segments; raises ValueError if it is not json3. Events holding only "\\n" (aAppend
    placeholders) add nothing; word-timed (automatic) captions are regrouped like VTT ones."""
    doc: Any = json.loads(data.lstrip("\ufeff") if isinstance(data, str) else data)
    events = doc.get("events") if isinstance(doc, dict) else None
    if not isinstance(events, list):
        raise ValueError("no 'events' list: not YouTube json3 captions")
    try:
        timed = any("tOffsetMs" in s or "acAsrConf" in s for e in events for s in e.get("segs") or [])
        words = _Words()
        for e in events:
            start = float(e.get("tStartMs", 0)) / 1000
            end = start + float(e.get("dDurationMs", 0)) / 1000
            tokens: list[Token] = []
            for s in e.get("segs") or []:
                t = start + float(s.get("tOffsetMs", 0)) / 1000 if timed else None
                tokens += [(tok, t) for tok in str(s.get("utf8", "")).split()]
            if tokens:
                words.add(tokens, start, end, brk=not timed and not e.get("aAppend"))
    except (AttributeError, TypeError) as exc:
        raise ValueError(f"malformed json3 event ({exc})") from exc
    return _finish(words.words, sentences=timed)


def segments_to_sentences(segments: list[Segment]) -> list[Segment]:
    """Caption fragments → sentence-like segments, breaking at a speaker change, after sentence punctuation,
    at a pause > PAUSE_SECONDS, after a comma past SOFT_MAX_WORDS, or at MAX_WORDS; words kept exactly, their
    times spread evenly within each input segment (the parsers use the captions' own word timings)."""
    words: list[_Word] = []
    for seg in segments:
        toks = seg.text.split()
        words += [_Word(tok, seg.start + (seg.end - seg.start) * i / len(toks), seg.end, speaker=seg.speaker)
                  for i, tok in enumerate(toks)]
    return _group(_fix_times(words), sentences=True)


def _language_code(tag: str | None) -> str | None:
    """ISO 639-1, as the rest of Pressroom uses: "en-orig" and "en-US" are "en"."""
    code = (tag or "").split("-")[0].lower()
    return code if re.fullmatch(r"[a-z]{2,3}", code) else None


def captions_transcript(path: Path, video_id: str) -> Transcript:
    """A caption file (.vtt or .json3) as the transcript step's Transcript, model "captions"."""
    suffix = path.suffix.lower()
    if suffix not in (".vtt", ".json3"):
        raise PermanentError(f"{path}: not a caption file Pressroom reads (.vtt or .json3): transcribe the audio")
    try:
        raw = path.read_bytes()
        if suffix == ".vtt":
            text = raw.decode("utf-8-sig")
            segments, language = parse_vtt(text), _vtt_language(text)
        else:
            segments, language = (parse_json3(raw) if raw.strip() else []), None
    except OSError as exc:
        raise PermanentError(f"{path}: cannot read the captions ({exc.strerror or exc}): download them again") from exc
    except ValueError as exc:  # also UnicodeDecodeError, json.JSONDecodeError
        reason = " ".join(str(exc).split())
        raise PermanentError(f"{path}: unreadable captions ({reason}): transcribe the audio instead") from exc
    if not segments:
        raise PermanentError(f"{path}: the captions hold no text: transcribe the audio instead")
    stem = path.name.rsplit(".", 1)[0].rsplit(".", 1)[-1].removesuffix("-auto")  # "en-auto", "<id>.en"
    return Transcript(video_id=video_id, language=_language_code(language or stem), model="captions",
                      duration=segments[-1].end, segments=segments)


def pick_captions(captions: dict[str, str], *, allow_auto: bool) -> str | None:
    """The key of the best English captions in the download step's {name: key} map, or None.

    Human captions first ("en" before regional variants), then, if allowed, YouTube's ASR: "en-orig-auto"
    (the spoken English itself) before "en-auto" (which may be a machine translation of another language).
    json3 beats VTT for the same track: it has no rolling repeats to undo.
    """
    ranked: list[tuple[int, int, str, str]] = []
    for name, key in captions.items():
        m = _CAPTION_NAME.match(name)
        if m is None or _language_code(m["lang"]) != "en" or (m["auto"] and not allow_auto):
            continue
        lang = m["lang"].lower()
        track = (2 if lang == "en-orig" else 3 if lang == "en" else 4) if m["auto"] else (0 if lang == "en" else 1)
        ranked.append((track, m["ext"] != "json3", name, key))
    return min(ranked)[3] if ranked else None
