"""The entry points of every step's and part's task: a delivery is checked (already done? cancelled? a
stale generation?), recorded, then its step runs — whole, or as parts that the last of them joins. What
each delivery does around the step (retries, faults, emission) is workers/delivery.py's."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from schemas.events import RunRequested, StepSucceeded
from schemas.pipeline import RunStatus
from workers import delivery, keys
from workers.delivery import Delivery, FanOut, Outcome, StepSpec, input_hash
from workers.errors import TaskFailed
from workers.events import EVENT
from workers.fairness import priority
from workers.runtime import Runtime

log = logging.getLogger("pressroom")


def _delivery(task: Any, spec: StepSpec, payload: dict[str, Any], faults: int, waits: int) -> Delivery:
    """The delivery a message asks for; a malformed one is dropped (acked, its task FAILURE): it must not kill
    the worker, nor come back."""
    try:
        event = EVENT.validate_python(payload)
    except ValidationError as exc:
        log.error("dropping malformed %s message: %s", spec.step, str(exc).splitlines()[0])
        raise TaskFailed(f"malformed {spec.step} message dropped: {str(exc).splitlines()[0]}") from None
    if not isinstance(event, RunRequested | StepSucceeded):
        log.error("dropping %s message carrying a %s event for run %s", spec.step, event.kind, event.run_id)
        raise TaskFailed(f"{spec.step} message carrying a {event.kind} event for run {event.run_id} dropped")
    rt: Runtime = task.app.pressroom
    return Delivery(task, spec, event, input_hash(spec.fingerprint(event, rt.settings)), faults, waits)


def _result(d: Delivery, result: str) -> str:
    if d.failure is not None:
        f = d.failure
        raise TaskFailed(f"{f.step} of run {f.run_id} failed ({f.error_type}): {f.message}")
    return result


def run_step(task: Any, spec: StepSpec, payload: dict[str, Any], faults: int = 0, waits: int = 0) -> str:
    """Execute one delivery of a step's task and say how it ended. A failed step raises TaskFailed once its
    failure is recorded; otherwise only Celery's Retry comes out (and, when even a retry cannot be sent,
    the broker's error: the message then stays unacked and comes back)."""
    d = _delivery(task, spec, payload, faults, waits)
    return _result(d, d.protected(lambda: _step_body(d)))


def _step_body(d: Delivery) -> str:
    if done := d.already_done():
        return done
    if ended := d.ended():
        return ended
    rt, event, spec = d.rt, d.event, d.spec
    deliveries = rt.state.step_started(event.run_id, d.step, d.tries,
                                       str(d.task.request.hostname or "local"), os.getpid())
    if deliveries - d.tries >= d.policy.max_deliveries:
        return d.fail("WorkerLost", f"its worker died {deliveries - d.tries} times during this step "
                      "(out of memory or killed?); retry it once the cause is fixed")
    if spec.reusable and rt.store.exists(d.prefix + list(spec.outputs.values())[-1]):
        artifacts = {name: d.prefix + filename for name, filename in spec.outputs.items()}
        return d.finish(Outcome(artifacts), reused=True)
    if spec.fanout is None:
        assert spec.handler is not None
        handler = spec.handler
        return d.finish(d.guarded(lambda wd: handler(rt, event, d.prefix, wd)))
    return _fan_out(d, spec.fanout)


def _fan_out(d: Delivery, fanout: FanOut) -> str:
    rt, event = d.rt, d.event
    plan_key = d.prefix + "plan.json"
    if rt.store.exists(plan_key):
        plan = json.loads(rt.store.get_bytes(plan_key))
    else:
        parts = d.guarded(lambda wd: fanout.plan(rt, event, d.prefix, wd))
        plan = [{**part, "index": i} for i, part in enumerate(parts)]
        if not rt.store.put_bytes(plan_key, json.dumps(plan).encode(), if_absent=True):
            plan = json.loads(rt.store.get_bytes(plan_key))  # a concurrent delivery planned first
    if not plan:
        return d.finish(d.guarded(lambda wd: fanout.join(rt, event, d.prefix, [], wd)))
    rt.state.parts_opened(event.run_id, d.step, len(plan))
    payload = event.model_dump(mode="json")
    for index in range(len(plan)):
        d.task.app.send_task(keys.part_task_name(d.step), args=[payload, index], queue=keys.QUEUES[d.step],
                             priority=priority(event))
    return "fanned-out"


def run_part(task: Any, spec: StepSpec, payload: dict[str, Any], index: int, faults: int = 0,
             waits: int = 0) -> str:
    """One part of a fanned-out step; the part that completes the set joins them and emits."""
    d = _delivery(task, spec, payload, faults, waits)
    fanout = spec.fanout
    assert fanout is not None, "only a fanned-out step has part tasks"
    return _result(d, d.protected(lambda: _part_body(d, fanout, index)))


def _part_body(d: Delivery, fanout: FanOut, index: int) -> str:
    if d.emitted():
        return "duplicate"
    rt, event = d.rt, d.event
    if ended := d.ended(also=frozenset({RunStatus.failed, RunStatus.skipped})):
        return ended
    deliveries = rt.state.part_started(event.run_id, d.step, index, d.tries,
                                       str(d.task.request.hostname or "local"), os.getpid())
    if deliveries - d.tries >= d.policy.max_deliveries:
        return d.fail("WorkerLost", f"its worker died {deliveries - d.tries} times during part "
                      f"{index} of this step (out of memory or killed?); retry it once the cause is fixed")
    plan: list[dict[str, Any]] = json.loads(rt.store.get_bytes(d.prefix + "plan.json"))
    if not rt.store.exists(keys.part_key(d.prefix, index)):
        usage = d.guarded(lambda wd: fanout.part(rt, event, d.prefix, plan[index], wd))
        rt.state.add_usage(event.run_id, d.step, usage)
    done = rt.state.part_done(event.run_id, d.step, d.digest, index)
    if done < len(plan):
        return "part-done"
    if not rt.state.claim_emit(d.emit_key, delivery.EMIT_LEASE):
        if rt.state.emit_status(d.emit_key) == "sent":
            return "duplicate"
        # another delivery is joining, or died joining: look again once its lease could have lapsed
        raise d.retry(countdown=delivery.EMIT_LEASE)
    try:
        with _lease_kept(rt, d.emit_key):
            outcome = d.guarded(lambda wd: fanout.join(rt, event, d.prefix, plan, wd))
    except BaseException:
        with contextlib.suppress(Exception):
            rt.state.release_emit(d.emit_key)
        raise
    return d.finish(outcome, claimed=True)


@contextlib.contextmanager
def _lease_kept(rt: Runtime, key: str) -> Iterator[None]:
    """Renew an emit lease while a long join works under it, so it lapses only if this process dies."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(delivery.EMIT_LEASE / 3):
            try:
                if not rt.state.renew_emit(key, delivery.EMIT_LEASE):
                    return
            except Exception as exc:  # Redis down for a moment: try again at the next beat
                log.warning("could not renew the join lease %s: %s", key, exc)

    keeper = threading.Thread(target=renew, name="join-lease", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()
