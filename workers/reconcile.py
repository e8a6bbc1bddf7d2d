"""The reconciler: the safety net for whatever slips past the runner's own care. It finds runs that are
not over, have made no progress for PRESSROOM_STALL_AFTER seconds, and have no message left in the broker
to carry them on — none waiting in a queue, none held by a worker (running, prefetched or counting down to
a retry) — and re-drives each by sending its current step's input event again. Steps are idempotent, so a
re-driven step reuses what is stored and emits its event once. Every action is logged in the run's events
(run.retried by the reconciler) and in the audit log.

Runs every minute on beat (the `watch` queue) and as `pressroom reconcile [--dry-run]`.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from schemas.events import RunRequested, RunRetried
from schemas.pipeline import ACTIVE, PIPELINE, Step
from workers import keys
from workers.events import send
from workers.metrics.families import RUNS_REDRIVEN
from workers.runtime import Runtime

log = logging.getLogger("pressroom.reconcile")


@dataclass(frozen=True)
class Stall:
    run_id: str
    step: Step
    idle: float
    reason: str


def _broker(app: Any) -> Any | None:
    """A Redis client on the broker, or None when the broker is not Redis (embedded mode)."""
    url = app.conf.broker_url or ""
    if not url.startswith(("redis://", "rediss://")):
        return None
    import redis

    return redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=5)


def _messages(client: Any) -> Iterator[dict[str, Any]]:
    """Every step message in the broker: waiting in a queue, or delivered and not yet acked."""
    for queue in keys.QUEUES.values():
        for name in keys.queue_lists(queue):
            for raw in client.lrange(name, 0, -1):
                yield json.loads(raw)
    for raw in client.hvals(keys.UNACKED_KEY):
        yield json.loads(raw)[0]


def _run_of(message: dict[str, Any]) -> str | None:
    """The run a step message is for (its first argument is the event, which carries the run)."""
    try:
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0]["run"]["run_id"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None  # not a step message (a poll tick, say)


def live_runs(app: Any) -> set[str] | None:
    """Runs with a message in the broker; None when the broker cannot be inspected (embedded mode)."""
    client = _broker(app)
    if client is None:
        return None
    return {run for run in map(_run_of, _messages(client)) if run}


def find_stalls(app: Any, rt: Runtime, *, now: float | None = None) -> list[Stall]:
    """Active runs idle for longer than the setting, with no message behind them."""
    live = live_runs(app)
    if live is None:
        return []
    now = time.time() if now is None else now
    after = rt.settings.stall_after
    stalls = []
    for run_id in rt.state.run_ids_with_status(ACTIVE):
        run = rt.state.view(run_id)
        if run is None or not run.active or run_id in live:
            continue
        idle = now - (run.updated or run.created or now)
        if idle < after:
            continue
        step = run.current or PIPELINE[0]
        stalls.append(Stall(run_id, step, idle, f"nothing carried it on: {step} made no progress for {idle:.0f} s "
                                                 "and no message was waiting or held"))
    return stalls


def redrive(app: Any, rt: Runtime, stall: Stall) -> bool:
    """Send the stalled step's input again (same generation: it is the same work); False if the run's
    history holds no input for it."""
    from workers.dashboard import audit
    from workers.operations import input_event

    run = rt.state.view(stall.run_id)
    if run is None:
        return False
    trigger = input_event(rt.state.events(stall.run_id), stall.step)
    if trigger is None and stall.step is PIPELINE[0] and run.spec is not None:
        trigger = RunRequested(run=run.spec)  # submitted, but Redis failed before its first event was logged
    if trigger is None:
        return False
    event = trigger.model_copy(update={"generation": run.generation})
    rt.state.mark_stalled(stall.run_id, stall.reason)
    rt.state.append_event(RunRetried(run=trigger.run, artifacts=trigger.artifacts, step=stall.step,
                                     generation=run.generation, by="reconciler", reason=stall.reason))
    send(app, event)
    rt.metrics.inc(RUNS_REDRIVEN, {})
    audit.record(rt, who="reconciler", what=f"re-drive from {stall.step}", run_id=stall.run_id, outcome="ok")
    log.warning("run %s re-driven from %s: %s", stall.run_id, stall.step, stall.reason)
    return True


def reconcile(app: Any, rt: Runtime, *, dry_run: bool = False, now: float | None = None) -> list[tuple[Stall, bool]]:
    """Find the stalled runs and (unless dry_run) re-drive them; returns each with whether it was."""
    return [(stall, False if dry_run else redrive(app, rt, stall)) for stall in find_stalls(app, rt, now=now)]
