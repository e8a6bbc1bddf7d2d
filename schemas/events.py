"""Events: emitted after a step's artifact is stored; the routing table maps each to the next task."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import Field

from schemas.base import Model
from schemas.pipeline import Step
from schemas.run import RunSpec

__all__ = ["AnyEvent", "Event", "RunRequested", "RunRetried", "RunSkipped", "Step", "StepFailed", "StepSucceeded"]


def _now() -> datetime:
    return datetime.now(UTC)


class _EventBase(Model):
    run: RunSpec
    artifacts: dict[str, str] = Field(
        default_factory=dict, description="every artifact key of the run so far, by name"
    )
    at: datetime = Field(default_factory=_now)
    generation: int = Field(default=0, ge=0, description="bumped when an operator re-runs the run from a step")
    duration: float | None = Field(default=None, ge=0, description="the source's length in seconds once it is "
                                   "downloaded: the run's later messages are ordered by it (workers/fairness.py)")

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def video_id(self) -> str:
        return self.run.video_id


class RunRequested(_EventBase):
    kind: Literal["run.requested"] = "run.requested"


class StepSucceeded(_EventBase):
    kind: Literal["step.succeeded"] = "step.succeeded"
    step: Step
    attempt: int = Field(ge=1)
    reused: bool = Field(default=False, description="the artifact was already stored for these inputs")


class StepFailed(_EventBase):
    kind: Literal["step.failed"] = "step.failed"
    step: Step
    attempt: int = Field(ge=1)
    error_type: str
    message: str


class RunSkipped(_EventBase):
    """The video is outside its channel's filters (found out once its metadata is known)."""

    kind: Literal["run.skipped"] = "run.skipped"
    step: Step
    reason: str


class RunRetried(_EventBase):
    """The run was sent on again from `step`, as a new generation: by an operator, or by the reconciler
    when nothing was left to carry it on. The step's input is sent again; it is not logged a second time."""

    kind: Literal["run.retried"] = "run.retried"
    step: Step
    by: str = Field(default="operator", description="operator, or reconciler")
    reason: str = ""


AnyEvent = RunRequested | StepSucceeded | StepFailed | RunSkipped | RunRetried
Event = Annotated[AnyEvent, Field(discriminator="kind")]
