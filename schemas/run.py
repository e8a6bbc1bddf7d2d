"""What a run was asked to do; it travels with every event so a step needs no other lookup."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.artifacts import VideoSource
from schemas.base import Model
from schemas.pipeline import ACTIVE, PIPELINE, RunStatus, Step, StepStatus
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
    publish_targets: list[str] | None = Field(
        default=None, description="the channel's publish targets; None: PRESSROOM_PUBLISH_TARGETS")


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _int(value: str | None) -> int:
    try:
        return int(float(value)) if value else 0
    except ValueError:
        return 0


class StepState(Model):
    """One step of a run as its run state records it."""

    step: Step
    status: StepStatus = StepStatus.pending
    attempts: int = Field(default=0, description="most deliveries any one of its messages took")
    deliveries: int = Field(default=0, description="every delivery of its task and parts")
    redeliveries: int = Field(default=0, description="deliveries after a worker died under the message")
    started: float | None = None
    ended: float | None = None
    duration: float | None = None
    worker: str | None = None
    pid: int | None = None
    error: str | None = None
    traceback: str | None = None
    next_retry: float | None = None
    parts: int | None = None
    parts_done: int | None = None
    reused: bool = False
    usage: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def from_fields(cls, step: Step, fields: dict[str, str]) -> StepState:
        def get(name: str) -> str | None:
            return fields.get(f"{step}.{name}") or None

        usage_prefix = f"{step}.usage."
        return cls(
            step=step, status=StepStatus(get("status") or "pending"), attempts=_int(get("attempts")),
            deliveries=_int(get("deliveries")), redeliveries=_int(get("redeliveries")),
            started=_float(get("started")), ended=_float(get("ended")), duration=_float(get("duration")),
            worker=get("worker"), pid=_int(get("pid")) or None, error=get("error"), traceback=get("traceback"),
            next_retry=_float(get("next_retry")), parts=_int(get("parts")) if get("parts") else None,
            parts_done=_int(get("parts_done")) if get("parts") else None, reused=get("reused") == "1",
            usage={k.removeprefix(usage_prefix): float(v) for k, v in fields.items() if k.startswith(usage_prefix)},
        )


class RunView(Model):
    """A run as its state records it: the one reading of a run's fields, for the CLI, the dashboard, the
    runner and the reconciler alike."""

    id: str
    status: RunStatus
    video_id: str | None = None
    spec: RunSpec | None = None
    created: float | None = None
    updated: float | None = None
    step: Step | None = Field(default=None, description="the step that last started")
    error: str | None = None
    skipped: str | None = Field(default=None, description="why the run was skipped")
    stalled: str | None = Field(default=None, description="why the reconciler found nothing carrying it on")
    generation: int = 0
    steps: list[StepState] = Field(default_factory=list, description="every step, in pipeline order")

    @classmethod
    def from_fields(cls, run_id: str, fields: dict[str, str]) -> RunView:
        spec = fields.get("spec")
        step = fields.get("step")
        return cls(
            id=run_id, status=RunStatus(fields.get("status") or "queued"), video_id=fields.get("video_id"),
            spec=RunSpec.model_validate_json(spec) if spec else None, created=_float(fields.get("created")),
            updated=_float(fields.get("updated")), step=Step(step) if step else None,
            error=fields.get("error") or None, skipped=fields.get("skipped") or None,
            stalled=fields.get("stalled") or None, generation=_int(fields.get("generation")),
            steps=[StepState.from_fields(s, fields) for s in PIPELINE],
        )

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def problem(self) -> str | None:
        """What an operator should read first: the error, why it was skipped, or why it stalled."""
        return self.error or self.skipped or self.stalled

    def of(self, step: Step) -> StepState:
        return self.steps[PIPELINE.index(step)]

    @property
    def current(self) -> Step | None:
        """The first step not yet done (None when every step succeeded)."""
        return next((s.step for s in self.steps if s.status not in (StepStatus.succeeded, StepStatus.skipped)), None)

    @property
    def failed_step(self) -> Step | None:
        return next((s.step for s in self.steps if s.status in (StepStatus.failed, StepStatus.skipped)), None)
