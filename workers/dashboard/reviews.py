"""What the review pages and API read: the posts waiting for an editor, and one post as the editor sees it
(each paragraph's Chinese beside its English, with its id, whether it was edited or went stale, and the
run's translation problems). Data access only, no HTTP."""

from __future__ import annotations

from typing import Any

from schemas.artifacts import Translation
from schemas.events import StepSucceeded
from schemas.glossary import Glossary
from schemas.pipeline import RunStatus
from schemas.post import FrontMatter
from workers import keys, review
from workers.errors import PermanentError
from workers.glossary import relevant_terms
from workers.runtime import Runtime
from workers.steps.publish import UNTRANSLATED_MARKER
from workers.storage import get_model


def _artifacts(rt: Runtime, run_id: str) -> dict[str, str]:
    for event in reversed(rt.state.events(run_id)):
        if isinstance(event, StepSucceeded) and "front_matter" in event.artifacts:
            return event.artifacts
    return {}


def post_of(rt: Runtime, run_id: str) -> tuple[str, Translation, FrontMatter, dict[str, str]]:
    """(video id, translation, front matter, artifacts) of a finished run; PermanentError otherwise."""
    run = rt.state.view(run_id)
    if run is None or run.video_id is None:
        raise PermanentError(f"no run {run_id!r}: check the run id (`pressroom review list`)")
    artifacts = _artifacts(rt, run_id)
    if "translation" not in artifacts:
        raise PermanentError(f"run {run_id} has no post yet (it is {run.status}): review it once it has finished")
    return (run.video_id, get_model(rt.store, artifacts["translation"], Translation),
            get_model(rt.store, artifacts["front_matter"], FrontMatter), artifacts)


def review_detail(rt: Runtime, run_id: str) -> dict[str, Any]:
    video_id, translation, front, artifacts = post_of(rt, run_id)
    doc = review.load(rt, video_id)
    run = rt.state.view(run_id)
    glossary = rt.glossary(run.spec) if run and run.spec else Glossary()
    applied = review.apply(doc, translation, front)
    problems = {p.id: p.reason for p in translation.problems}
    sections = [{
        "heading": section.heading,
        "paragraphs": [{
            "id": p.id, "english": p.source, "chinese": p.translation or UNTRANSLATED_MARKER,
            "machine": original.translation, "edited_by": doc.paragraphs[p.id].by if p.id in doc.paragraphs else None,
            "stale": p.id in applied.stale, "problem": problems.get(p.id),
            "terms": [t.term + (f" → {t.zh}" if t.zh else "") for t in relevant_terms(p.source, glossary)],
        } for p, original in zip(section.paragraphs, source.paragraphs, strict=True)],
    } for section, source in zip(applied.translation.sections, translation.sections, strict=True)]
    return {
        "run_id": run_id, "video_id": video_id, "post": artifacts.get("post"),
        "run_status": run.status.value if run else None,
        "front_matter": applied.front_matter.model_dump(mode="json"),
        "edited_fields": {name: edit.by for name, edit in doc.fields.items()},
        "approved": doc.approved, "approved_by": doc.approved_by, "approved_at": doc.approved_at,
        "problems": len(problems), "stale": applied.stale, "sections": sections,
    }


def review_list(rt: Runtime, limit: int = 100) -> list[dict[str, Any]]:
    """The latest finished run of each video, newest first, with its review state."""
    states = {str(k): str(v) for k, v in (rt.state.kv.hgetall(keys.reviews_index_key()) or {}).items()}
    seen: set[str] = set()
    out = []
    for run_id in reversed(rt.state.run_ids_with_status({RunStatus.succeeded})):
        run = rt.state.view(run_id)
        if run is None or run.video_id is None or run.video_id in seen:
            continue
        seen.add(run.video_id)
        out.append({"run_id": run_id, "video_id": run.video_id, "updated": run.updated,
                    "title": run.spec.source.filename if run.spec else None,
                    "review": states.get(run.video_id, "draft")})
        if len(out) >= limit:
            break
    return out
