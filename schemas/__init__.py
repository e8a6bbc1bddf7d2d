"""Pydantic models: the contract between Pressroom's steps, stored as JSON. No I/O here."""

from schemas.artifacts import (
    Chapter,
    DownloadArtifact,
    Paragraph,
    Section,
    Segment,
    Transcript,
    Translation,
    VideoMetadata,
    VideoSource,
)
from schemas.base import Model
from schemas.events import AnyEvent, Event, RunRequested, RunSkipped, Step, StepFailed, StepSucceeded
from schemas.post import FrontMatter, FrontMatterDefaults, Post, PostParagraph, PostSection, TagSuggestion
from schemas.run import RunSpec

__all__ = [
    "AnyEvent",
    "Chapter",
    "DownloadArtifact",
    "Event",
    "FrontMatter",
    "FrontMatterDefaults",
    "Model",
    "Paragraph",
    "Post",
    "PostParagraph",
    "PostSection",
    "RunRequested",
    "RunSkipped",
    "RunSpec",
    "Section",
    "Segment",
    "Step",
    "StepFailed",
    "StepSucceeded",
    "TagSuggestion",
    "Transcript",
    "Translation",
    "VideoMetadata",
    "VideoSource",
]
