"""What a run was asked to do; it travels with every event so a step needs no other lookup."""

from __future__ import annotations

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
