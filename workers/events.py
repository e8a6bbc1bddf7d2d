"""Event emission and the routing table: the only place that knows the order of the steps."""

from __future__ import annotations

import itertools
from typing import Any

from pydantic import TypeAdapter

from schemas.events import AnyEvent, Event
from schemas.pipeline import PIPELINE, Step
from workers import keys
from workers.fairness import priority
from workers.state import RunState

EVENT: TypeAdapter[AnyEvent] = TypeAdapter(Event)

# (event kind, step that emitted it) → the step it triggers: the pipeline's order, as routes
ROUTES: dict[tuple[str, Step | None], Step] = {
    ("run.requested", None): PIPELINE[0],
    **{("step.succeeded", done): following for done, following in itertools.pairwise(PIPELINE)},
}


def next_step(event: AnyEvent) -> Step | None:
    return ROUTES.get((event.kind, getattr(event, "step", None)))


def emit(app: Any, state: RunState, event: AnyEvent) -> Step | None:
    """Record the event in the run's log and send the task it triggers, if any."""
    state.append_event(event)
    return send(app, event)


def send(app: Any, event: AnyEvent) -> Step | None:
    """Send the task an event triggers, without logging the event (a re-run sends an old one again)."""
    step = next_step(event)
    if step is not None:
        app.send_task(keys.task_name(step), args=[event.model_dump(mode="json")], queue=keys.QUEUES[step],
                      priority=priority(event))
    return step
