"""Following a run until it ends, printing each step as it starts and finishes."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from schemas.events import Step
from workers.state import RunState

TERMINAL = {"succeeded", "failed", "skipped", "cancelled"}


def describe_step(run: dict[str, str], step: Step) -> str:
    status = run.get(f"{step}.status", "waiting")
    parts = [f"{step.value:<10} {status}"]
    if status == "succeeded":
        if run.get(f"{step}.reused") == "1":
            parts.append("(reused stored artifact)")
        elif run.get(f"{step}.duration"):
            parts.append(f"in {float(run[f'{step}.duration']):.1f}s")
    elif status == "running" and run.get(f"{step}.parts"):
        parts.append(f"{run.get(f'{step}.parts_done', 0)}/{run[f'{step}.parts']} parts")
    elif status == "retrying":
        at = float(run.get(f"{step}.next_retry") or 0)
        retry = f", next try at {time.strftime('%H:%M:%S', time.localtime(at))}" if at > time.time() else ""
        parts.append(f"attempt {run.get(f'{step}.attempts', '?')}{retry}: {run.get(f'{step}.error', '')}")
    elif status == "failed":
        parts.append(run.get(f"{step}.error", ""))
    return " ".join(parts)


def follow_run(state: RunState, run_id: str, *, out: TextIO = sys.stderr, interval: float = 0.1,
               timeout: float | None = None, clock: Callable[[], float] = time.monotonic) -> dict[str, str]:
    """Block until the run succeeds or fails; return its final state."""
    shown: dict[Step, str] = {}
    deadline = None if timeout is None else clock() + timeout
    while True:
        run = state.run(run_id)
        for step in Step:
            line = describe_step(run, step)
            if f"{step}.status" in run and shown.get(step) != line:
                shown[step] = line
                print(f"[{list(Step).index(step) + 1}/5] {line}", file=out, flush=True)
        if run.get("status") in TERMINAL:
            return run
        if deadline is not None and clock() > deadline:
            raise TimeoutError(f"run {run_id} still {run.get('status')} after {timeout}s")
        time.sleep(interval)
