"""What an operator does to a run: retry it from its failed step, re-run it from any step, cancel it.

A re-run sends the chosen step's input event again as a new generation; upstream artifacts are not
touched, and every step from the chosen one on runs again (reusing what is stored for the same inputs).
"""

from __future__ import annotations

import json
from typing import Any

from schemas.events import AnyEvent, RunRequested, RunRetried, StepSucceeded
from schemas.pipeline import PIPELINE, RunStatus, Step
from workers import keys
from workers.errors import PermanentError
from workers.events import EVENT, ROUTES, send
from workers.runtime import Runtime


def input_event(events: list[AnyEvent], step: Step) -> RunRequested | StepSucceeded | None:
    """The last event that triggered `step` (its input), or None if the run never got that far."""
    for event in reversed(events):
        if isinstance(event, RunRequested | StepSucceeded) and ROUTES.get(
                (event.kind, getattr(event, "step", None))) == step:
            return event
    return None


def retry(app: Any, rt: Runtime, run_id: str, from_step: Step | None = None, *, by: str = "operator",
          reason: str = "") -> Step:
    """Re-run `run_id` from `from_step` (default: the step that failed); returns the step it restarts at.
    A run still carried on by a message is refused; one nothing carries on (stalled) is taken."""
    run = rt.state.view(run_id)
    if run is None:
        raise PermanentError(f"no run {run_id!r}: check the run id (`pressroom runs`)")
    if run.active and not _stalled(app, rt, run_id):
        raise PermanentError(f"run {run_id} is {run.status}: wait for it to end, or cancel it first")
    step = from_step or run.failed_step or (run.current if run.active else None)
    if step is None:
        raise PermanentError(f"run {run_id} has no failed step: name the step to re-run from (--from STEP)")
    trigger = input_event(rt.state.events(run_id), step)
    if trigger is None:
        raise PermanentError(f"run {run_id} never reached {step}: re-run it from an earlier step")
    generation = run.generation + 1
    rt.state.rerun(run_id, list(PIPELINE[PIPELINE.index(step):]), generation)
    rt.state.append_event(RunRetried(run=trigger.run, artifacts=trigger.artifacts, step=step,
                                     generation=generation, by=by, reason=reason))
    send(app, trigger.model_copy(update={"generation": generation}))
    return step


def _stalled(app: Any, rt: Runtime, run_id: str) -> bool:
    """No message in the broker carries the run on (never true when the broker cannot be inspected)."""
    from workers.reconcile import live_runs

    live = live_runs(app)
    return live is not None and run_id not in live


def retry_all_failed(app: Any, rt: Runtime, run_ids: list[str]) -> list[str]:
    """Retry every failed run among run_ids; returns those retried."""
    return [r for r in run_ids if (run := rt.state.view(r)) and run.status is RunStatus.failed and retry(app, rt, r)]


def cancel(rt: Runtime, run_id: str) -> None:
    """Stop a run: its queued and retrying tasks do nothing when they come up (a running step finishes)."""
    run = rt.state.view(run_id)
    if run is None:
        raise PermanentError(f"no run {run_id!r}: check the run id (`pressroom runs`)")
    if not run.active:
        raise PermanentError(f"run {run_id} is {run.status}: only queued or running runs can be cancelled")
    rt.state.cancel(run_id)


def discard(rt: Runtime, run_id: str) -> None:
    """Forget a finished run: its state, events and manifest go (else `runs --restore` would bring it back);
    its artifacts stay, so a later run of the same video still reuses them."""
    run = rt.state.view(run_id)
    if run is None:
        raise PermanentError(f"no run {run_id!r}: check the run id (`pressroom runs`)")
    if run.active:
        raise PermanentError(f"run {run_id} is {run.status}: cancel it first, then discard it")
    rt.state.kv.delete(keys.run_key(run_id), keys.run_events_key(run_id), keys.run_logged_key(run_id))
    zrem = getattr(rt.state.kv, "zrem", None)  # MemoryKV has none: readers skip index entries without a run
    if zrem is not None:
        zrem(keys.runs_index_key(), run_id)
    rt.store.delete(keys.run_manifest_key(run_id))


def write_manifest(rt: Runtime, run_id: str) -> None:
    """The run's state and event log, stored with its artifacts: Redis can be rebuilt from these."""
    body = json.dumps({"run": rt.state.run(run_id),
                       "events": [e.model_dump(mode="json") for e in rt.state.events(run_id)]}, ensure_ascii=False)
    rt.store.put_bytes(keys.run_manifest_key(run_id), body.encode(), content_type="application/json")


def restore_runs(rt: Runtime) -> int:
    """Put back into Redis every run whose manifest is stored but whose state is gone; returns how many."""
    restored = 0
    for key in rt.store.list("runs/"):
        if not key.endswith("/manifest.json"):
            continue
        manifest = json.loads(rt.store.get_bytes(key))
        run_id = key.split("/")[1]
        if rt.state.run(run_id):
            continue
        rt.state.restore(run_id, manifest["run"], [EVENT.validate_python(e) for e in manifest["events"]])
        restored += 1
    return restored
