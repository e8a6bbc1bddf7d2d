"""Following a run until it ends, printing each step as it starts and finishes."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from schemas.pipeline import FINAL, StepStatus, progress
from schemas.run import RunView, StepState
from workers.state import RunState


def describe_step(step: StepState) -> str:
    parts = [f"{step.step.value:<10} {'waiting' if step.status is StepStatus.pending else step.status}"]
    if step.status is StepStatus.succeeded:
        if step.reused:
            parts.append("(reused stored artifact)")
        elif step.duration is not None:
            parts.append(f"in {step.duration:.1f}s")
    elif step.status is StepStatus.running and step.parts:
        parts.append(f"{step.parts_done or 0}/{step.parts} parts")
    elif step.status is StepStatus.retrying:
        at = step.next_retry or 0
        retry = f", next try at {time.strftime('%H:%M:%S', time.localtime(at))}" if at > time.time() else ""
        parts.append(f"attempt {step.attempts or '?'}{retry}: {step.error or ''}")
    elif step.status is StepStatus.failed:
        parts.append(step.error or "")
    return " ".join(parts)


def follow_run(state: RunState, run_id: str, *, out: TextIO = sys.stderr, interval: float = 0.1,
               timeout: float | None = None, clock: Callable[[], float] = time.monotonic) -> RunView:
    """Block until the run is over (succeeded, failed, skipped or cancelled); return it as it ended."""
    shown: dict[str, str] = {}
    deadline = None if timeout is None else clock() + timeout
    while True:
        run = state.view(run_id)
        if run is not None:
            for step in run.steps:
                line = describe_step(step)
                if step.status is not StepStatus.pending and shown.get(step.step) != line:
                    shown[step.step] = line
                    print(f"[{progress(step.step)}] {line}", file=out, flush=True)
            if run.status in FINAL:
                return run
        if deadline is not None and clock() > deadline:
            raise TimeoutError(f"run {run_id} still {run.status if run else 'missing'} after {timeout}s")
        time.sleep(interval)
