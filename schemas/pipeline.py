"""The pipeline, defined once: its steps in order, and the statuses a run and a step can have. Routes,
progress ("3/5"), the CLI's choices, the queues and the rule for when a run is over all derive from here."""

from __future__ import annotations

from enum import StrEnum


class Step(StrEnum):
    download = "download"
    transcribe = "transcribe"
    translate = "translate"  # type: ignore[assignment]  # shadows str.translate; the name is the step
    tag = "tag"
    publish = "publish"


PIPELINE: tuple[Step, ...] = tuple(Step)  # the order the steps run in
LAST_STEP = PIPELINE[-1]  # the run is over when it has succeeded


def next_step(step: Step) -> Step | None:
    """The step that runs after `step`, or None after the last."""
    index = PIPELINE.index(step) + 1
    return PIPELINE[index] if index < len(PIPELINE) else None


def progress(step: Step) -> str:
    """"3/5": where a step is in the pipeline."""
    return f"{PIPELINE.index(step) + 1}/{len(PIPELINE)}"


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    retrying = "retrying"
    succeeded = "succeeded"
    failed = "failed"
    skipped = "skipped"
    cancelled = "cancelled"


ACTIVE = frozenset({RunStatus.queued, RunStatus.running, RunStatus.retrying})  # something should carry it on
FINAL = frozenset(RunStatus) - ACTIVE  # nothing more happens unless an operator re-runs it


class StepStatus(StrEnum):
    pending = "pending"  # not reached yet
    queued = "queued"  # reset by a re-run, waiting for its input again
    running = "running"
    retrying = "retrying"
    succeeded = "succeeded"
    failed = "failed"
    skipped = "skipped"
