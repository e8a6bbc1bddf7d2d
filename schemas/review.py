"""An editor's review of a video's post: paragraph translations and front-matter fields they changed, and
whether they approved it. Kept per video, so a later re-run of the same talk keeps the edits."""

from __future__ import annotations

from pydantic import Field

from schemas.base import Model

EDITABLE_FIELDS = ("title", "summary", "tags")


class ParagraphEdit(Model):
    translation: str = Field(min_length=1, max_length=20_000)
    source: str = Field(description="the English the editor translated: a re-run that changes it is flagged")
    by: str
    at: float


class FieldEdit(Model):
    value: str | list[str]
    by: str
    at: float


class Review(Model):
    video_id: str
    paragraphs: dict[str, ParagraphEdit] = Field(default_factory=dict, description="by paragraph id")
    fields: dict[str, FieldEdit] = Field(default_factory=dict, description="title, summary or tags")
    approved: bool = False
    approved_by: str | None = None
    approved_at: float | None = None
