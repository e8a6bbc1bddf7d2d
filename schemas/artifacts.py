"""Artifacts the steps write to object storage: source, metadata, transcript, translation."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, model_validator

from schemas.base import Model


class VideoSource(Model):
    """Where a run's media comes from: a YouTube URL, or a file already uploaded to the object store."""

    kind: Literal["youtube", "file"]
    uri: str = Field(description="YouTube watch URL, or the object-store key of an uploaded media file")
    filename: str | None = Field(default=None, description="original file name of an uploaded file")


class Chapter(Model):
    title: str
    start: float = Field(ge=0)
    end: float = Field(ge=0)


class VideoMetadata(Model):
    video_id: str
    title: str
    channel: str = ""
    channel_id: str = ""
    upload_date: date | None = None
    duration: float = Field(default=0.0, ge=0)
    description: str = ""
    chapters: list[Chapter] = Field(default_factory=list)
    webpage_url: str = ""
    language: str | None = None


class DownloadArtifact(Model):
    """What download stores: metadata plus the keys of the audio and any caption files."""

    metadata: VideoMetadata
    audio_key: str
    audio_format: Literal["m4a", "mp3"]
    audio_bytes: int = Field(ge=0)
    captions: dict[str, str] = Field(default_factory=dict, description="language/kind -> object key")


class Segment(Model):
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    text: str
    speaker: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Segment:
        if self.end < self.start:
            raise ValueError(f"segment ends ({self.end}) before it starts ({self.start})")
        return self


class Transcript(Model):
    video_id: str
    language: str | None = None
    model: str
    duration: float = Field(default=0.0, ge=0)
    segments: list[Segment]

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())


class Paragraph(Model):
    id: str = Field(description="stable id, e.g. p0007")
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    source: str
    translation: str
    speaker: str | None = None


class Section(Model):
    heading: str
    paragraphs: list[Paragraph]


class TranslationProblem(Model):
    """A paragraph the model would not or could not translate; it is marked in the post, never dropped."""

    id: str
    reason: str


class Translation(Model):
    video_id: str
    model: str
    language: Literal["zh-Hans"] = "zh-Hans"
    sections: list[Section]
    problems: list[TranslationProblem] = Field(default_factory=list)

    def paragraphs(self) -> list[Paragraph]:
        return [p for s in self.sections for p in s.paragraphs]
