"""What a run was asked to do; it travels with every event so a step needs no other lookup."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.artifacts import VideoSource
from schemas.base import Model
from schemas.post import FrontMatterDefaults


class RunSpec(Model):
    run_id: str
    video_id: str
    source: VideoSource
    defaults: FrontMatterDefaults = Field(default_factory=FrontMatterDefaults)
    out_dir: str | None = Field(default=None, description="a directory the post is also written to")
    glossary_key: str | None = Field(default=None, description="object key of the channel's glossary (YAML)")
    channel_id: str | None = Field(default=None, description="the watched channel that produced this run")
    min_duration: float | None = Field(default=None, description="skip the video if shorter (seconds)")
    max_duration: float | None = Field(default=None, description="skip the video if longer (seconds)")
    captions: Literal["off", "human", "auto"] = Field(
        default="human", description="use the video's captions instead of transcription: human ones, or auto too"
    )
