"""Editorial review: what an editor changed in a post and whether they approved it, stored per video in
the object store, and applied by the publish step (so the edits survive a re-run: a paragraph is matched by
its id, and flagged when the English under it changed). Approving re-runs the publish step, which then
writes `draft: false` and sends the post to the site's targets."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from schemas.artifacts import Translation
from schemas.pipeline import Step
from schemas.post import FrontMatter
from schemas.review import EDITABLE_FIELDS, FieldEdit, ParagraphEdit, Review
from workers import keys
from workers.errors import PermanentError
from workers.runtime import Runtime
from workers.storage import get_model, put_model

MAX_FIELD = 2000  # characters of a title or summary; tags: 20 of up to 60 characters


@dataclass
class Applied:
    translation: Translation
    front_matter: FrontMatter
    stale: list[str] = field(default_factory=list)  # paragraph ids whose English changed since their edit


def load(rt: Runtime, video_id: str) -> Review:
    try:
        return get_model(rt.store, keys.review_key(video_id), Review)
    except KeyError:
        return Review(video_id=video_id)


def save(rt: Runtime, review: Review) -> None:
    put_model(rt.store, keys.review_key(review.video_id), review)
    rt.state.kv.hset(keys.reviews_index_key(), review.video_id, "approved" if review.approved else "edited")


def apply(review: Review, translation: Translation, front_matter: FrontMatter) -> Applied:
    """The post as the editor left it: their translations by paragraph id, their title, summary and tags,
    and `draft: false` once approved."""
    stale = []
    sections = []
    for section in translation.sections:
        paragraphs = []
        for p in section.paragraphs:
            edit = review.paragraphs.get(p.id)
            if edit is not None:
                if " ".join(edit.source.split()) != " ".join(p.source.split()):
                    stale.append(p.id)
                p = p.model_copy(update={"translation": edit.translation})
            paragraphs.append(p)
        sections.append(section.model_copy(update={"paragraphs": paragraphs}))
    updates: dict[str, Any] = {name: edit.value for name, edit in review.fields.items()}
    updates["draft"] = front_matter.draft and not review.approved
    return Applied(translation.model_copy(update={"sections": sections}),
                   front_matter.model_copy(update=updates), stale)


def edit_paragraph(rt: Runtime, translation: Translation, paragraph_id: str, text: str, who: str) -> Review:
    paragraph = next((p for p in translation.paragraphs() if p.id == paragraph_id), None)
    if paragraph is None:
        raise PermanentError(f"no paragraph {paragraph_id!r} in this post: use an id the review page shows")
    text = " ".join(text.split())
    if not text:
        raise PermanentError("an empty translation: write the paragraph's Chinese")
    review = load(rt, translation.video_id)
    review.paragraphs[paragraph_id] = ParagraphEdit(translation=text, source=paragraph.source, by=who,
                                                   at=time.time())
    save(rt, review)
    return review


def edit_field(rt: Runtime, video_id: str, name: str, value: str, who: str) -> Review:
    """title or summary as text; tags as a comma-separated list."""
    if name not in EDITABLE_FIELDS:
        raise PermanentError(f"{name!r} cannot be edited here: edit one of {', '.join(EDITABLE_FIELDS)}")
    text = " ".join(value.split())
    if not text or len(text) > MAX_FIELD:
        raise PermanentError(f"{name}: give 1 to {MAX_FIELD} characters")
    new: str | list[str] = text
    if name == "tags":
        from workers.steps.tag import slugify_tag

        tags = sorted({slugify_tag(t) for t in text.split(",") if slugify_tag(t)})
        if not tags or len(tags) > 20 or any(len(t) > 60 for t in tags):
            raise PermanentError("tags: give 1 to 20 comma-separated tags of up to 60 characters")
        new = tags
    review = load(rt, video_id)
    review.fields[name] = FieldEdit(value=new, by=who, at=time.time())
    save(rt, review)
    return review


def approve(app: Any, rt: Runtime, run_id: str, who: str) -> Step:
    """Approve the run's post: `draft: false`, published to the site's targets by a re-run of publish."""
    from workers.operations import retry

    run = rt.state.view(run_id)
    if run is None or run.video_id is None:
        raise PermanentError(f"no run {run_id!r}: check the run id (`pressroom review list`)")
    if run.status != "succeeded":
        raise PermanentError(f"run {run_id} is {run.status}: only a finished post can be approved")
    review = load(rt, run.video_id)
    review.approved, review.approved_by, review.approved_at = True, who, time.time()
    save(rt, review)
    return retry(app, rt, run_id, Step.publish, by=who, reason="approved")
