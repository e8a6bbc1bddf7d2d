"""The steps that split into parts worked in parallel: transcribe (audio chunks) and translate
(paragraph chunks). Each is plan → parts → join, run by workers/runner.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from schemas.artifacts import DownloadArtifact, Paragraph, Transcript
from workers import keys
from workers.runner import FanOut, InEvent, Outcome
from workers.runtime import Runtime
from workers.steps import translate as tr
from workers.steps.paragraphs import build_paragraphs
from workers.storage import get_model, put_model

_PARAGRAPHS = TypeAdapter(list[Paragraph])


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
    return [{"start": a, "end": b} for a, b in tr.plan_chunks(paragraphs)]


def _translate_part(rt: Runtime, event: InEvent, prefix: str, part: dict[str, Any], workdir: Path
                    ) -> dict[str, float]:
    dl = get_model(rt.store, event.artifacts["download"], DownloadArtifact)
    paragraphs = _paragraphs(rt, prefix)
    ctx = tr.context_for(tr.ChunkContext(title=dl.metadata.title, description=dl.metadata.description),
                         paragraphs, part["start"])
    result = tr.translate_chunk(rt.llm, ctx, paragraphs[part["start"]:part["end"]], rt.glossary(event.run))
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
