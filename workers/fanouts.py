"""The steps that split into parts worked in parallel: transcribe (audio chunks) and translate
(paragraph chunks). Each is plan → parts → join, run by workers/runner.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from schemas.artifacts import DownloadArtifact, Paragraph, Transcript
from schemas.pipeline import Step
from workers import keys
from workers.capacity import balanced_parts
from workers.delivery import FanOut, InEvent, Outcome
from workers.errors import SkipRun
from workers.glossary import correct, transcription_prompt
from workers.providers.transcription import MAX_UPLOAD_BYTES, TranscriptionResult
from workers.runtime import Runtime
from workers.steps import chunking
from workers.steps import translate as tr
from workers.steps.captions import captions_transcript, pick_captions
from workers.steps.media import probe
from workers.steps.paragraphs import build_paragraphs
from workers.storage import get_model, put_model

MIN_PART_SECONDS = 60.0  # shorter transcription parts than this are not worth a request of their own

_PARAGRAPHS = TypeAdapter(list[Paragraph])


def check_duration(event: InEvent, duration: float) -> None:
    """A channel's duration limits can only be checked once the video's metadata is known."""
    run = event.run
    if run.min_duration is not None and duration < run.min_duration:
        raise SkipRun(f"{duration / 60:.1f} min is shorter than the channel's minimum {run.min_duration / 60:.1f} min")
    if run.max_duration is not None and duration > run.max_duration:
        raise SkipRun(f"{duration / 60:.1f} min is longer than the channel's maximum {run.max_duration / 60:.1f} min")


# --- transcribe -----------------------------------------------------------------------------------
TRANSCRIBE_VERSION = "transcribe-v3"


def _transcribe_plan(rt: Runtime, event: InEvent, prefix: str, workdir: Path) -> list[dict[str, Any]]:
    """Captions, when the run allows them, need no parts; otherwise spans of the audio under the API's
    limits, cut at silences, one part each (a short talk is one part on the whole file). Only the cut
    points are found here; each part encodes its own span, so that work runs in parallel too."""
    dl = get_model(rt.store, event.artifacts["download"], DownloadArtifact)
    check_duration(event, dl.metadata.duration)  # before any paid work
    if event.run.captions != "off" and pick_captions(dl.captions, allow_auto=event.run.captions == "auto"):
        return []
    limit = chunking.max_chunk_seconds(chunking.CHUNK_BITRATE_BPS, model=rt.settings.transcription_model,
                                       cap_seconds=rt.settings.transcription_chunk_seconds)
    duration = dl.metadata.duration
    # as many parts as the transcribe workers can take in full waves (workers/capacity.py), each ≤ the limit
    parts = balanced_parts(duration, limit, rt.capacity(Step.transcribe), MIN_PART_SECONDS) if duration else 1
    if 0 < duration <= limit and parts == 1 and dl.audio_bytes < chunking.SIZE_MARGIN * MAX_UPLOAD_BYTES:
        return [{"start": 0.0, "end": duration, "whole": True}]
    audio = rt.store.get_file(dl.audio_key, workdir / "audio.m4a")
    duration = duration or probe(audio).duration
    share = duration / max(1, parts)
    longest = min(limit, share * 1.1) if parts > 1 else limit  # room to cut in a silence near each share
    chunks = chunking.plan_chunks(duration, chunking.detect_silences(audio), max_seconds=longest,
                                  target_seconds=min(share, longest) if parts > 1 else None)
    return [{"start": c.start, "end": c.end, "whole": len(chunks) == 1} for c in chunks]


def _transcribe_part(rt: Runtime, event: InEvent, prefix: str, part: dict[str, Any], workdir: Path
                     ) -> dict[str, float]:
    dl = get_model(rt.store, event.artifacts["download"], DownloadArtifact)
    audio = rt.store.get_file(dl.audio_key, workdir / "audio.m4a")
    if not part["whole"]:
        chunk = chunking.Chunk(index=part["index"], start=part["start"], end=part["end"])
        audio = chunking.cut_chunk(audio, chunk, workdir / f"chunk-{part['index']:04d}.m4a")
    prompt = transcription_prompt(rt.glossary(event.run), dl.metadata)
    result = rt.transcriber.transcribe(audio, prompt=prompt, language=dl.metadata.language)
    put_model(rt.store, keys.part_key(prefix, part["index"]), result, if_absent=True)
    return {"audio_seconds": result.audio_seconds}


def _transcribe_join(rt: Runtime, event: InEvent, prefix: str, plan: list[dict[str, Any]], workdir: Path
                     ) -> Outcome:
    dl = get_model(rt.store, event.artifacts["download"], DownloadArtifact)
    glossary = rt.glossary(event.run)
    if plan:
        results = [get_model(rt.store, keys.part_key(prefix, p["index"]), TranscriptionResult) for p in plan]
        segments = chunking.merge_transcripts([
            (chunking.Chunk(index=p["index"], start=p["start"], end=p["end"]), r.segments)
            for p, r in zip(plan, results, strict=True)
        ])
        language = next((r.language for r in results if r.language), dl.metadata.language)
        model = rt.settings.transcription_model
    else:
        key = pick_captions(dl.captions, allow_auto=event.run.captions == "auto")
        assert key is not None
        captions = captions_transcript(rt.store.get_file(key, workdir / Path(key).name), event.video_id)
        segments, language, model = captions.segments, captions.language, captions.model
    fixed = [s.model_copy(update={"text": correct(s.text, glossary)}) for s in segments]
    transcript = Transcript(video_id=event.video_id, language=language, model=model,
                            duration=dl.metadata.duration, segments=fixed)
    put_model(rt.store, prefix + "transcript.json", transcript, if_absent=True)
    return Outcome({"transcript": prefix + "transcript.json"}, {"segments": len(fixed)})


TRANSCRIBE = FanOut(plan=_transcribe_plan, part=_transcribe_part, join=_transcribe_join)


# --- translate ------------------------------------------------------------------------------------
def _paragraphs(rt: Runtime, prefix: str) -> list[Paragraph]:
    return _PARAGRAPHS.validate_json(rt.store.get_bytes(prefix + "paragraphs.json"))


def _translate_plan(rt: Runtime, event: InEvent, prefix: str, workdir: Path) -> list[dict[str, Any]]:
    transcript = get_model(rt.store, event.artifacts["transcript"], Transcript)
    paragraphs = build_paragraphs(transcript.segments)
    if not paragraphs:
        from workers.errors import PermanentError

        raise PermanentError(f"the transcript of {event.video_id} has no words: is the audio silent?")
    rt.store.put_bytes(prefix + "paragraphs.json", _PARAGRAPHS.dump_json(paragraphs), if_absent=True)
    words = sum(len(p.source.split()) for p in paragraphs)
    parts = balanced_parts(words, tr.CHUNK_WORDS, rt.capacity(Step.translate), tr.MIN_CHUNK_WORDS)
    return [{"start": a, "end": b} for a, b in tr.plan_chunks(paragraphs, parts=parts)]


def _translate_part(rt: Runtime, event: InEvent, prefix: str, part: dict[str, Any], workdir: Path
                    ) -> dict[str, float]:
    dl = get_model(rt.store, event.artifacts["download"], DownloadArtifact)
    paragraphs = _paragraphs(rt, prefix)
    glossary = rt.glossary(event.run)
    ctx = tr.context_for(tr.talk_context(dl.metadata.title, dl.metadata.description, paragraphs, glossary),
                         paragraphs, part["start"])
    result = tr.translate_chunk(rt.llm, ctx, paragraphs[part["start"]:part["end"]], glossary)
    put_model(rt.store, keys.part_key(prefix, part["index"]), result, if_absent=True)
    return {"input_tokens": result.input_tokens, "output_tokens": result.output_tokens,
            "llm_requests": result.requests}


def _translate_join(rt: Runtime, event: InEvent, prefix: str, plan: list[dict[str, Any]], workdir: Path
                    ) -> Outcome:
    dl = get_model(rt.store, event.artifacts["download"], DownloadArtifact)
    parts = [get_model(rt.store, keys.part_key(prefix, i), tr.ChunkResult) for i in range(len(plan))]
    headings, hin, hout = tr.chapter_headings(rt.llm, dl.metadata.title, dl.metadata.chapters)
    translation = tr.assemble(event.video_id, rt.llm.model, _paragraphs(rt, prefix), parts,
                              dl.metadata.chapters, headings)
    put_model(rt.store, prefix + "translation.json", translation, if_absent=True)
    return Outcome({"translation": prefix + "translation.json"},
                   {"input_tokens": hin, "output_tokens": hout, "problems": len(translation.problems)})


TRANSLATE = FanOut(plan=_translate_plan, part=_translate_part, join=_translate_join)
