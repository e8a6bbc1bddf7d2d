"""Run state: every run's steps, attempts, errors and event log, recorded from the task lifecycle.

Redis in the distributed mode; in embedded mode a small in-process stand-in with the same calls,
so nothing above this module knows which mode it is in.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from pydantic import TypeAdapter

from schemas.events import AnyEvent, Event, RunRetried, StepFailed
from schemas.pipeline import LAST_STEP, RunStatus, Step, StepStatus
from schemas.run import RunSpec, RunView
from workers import keys

_EVENT = TypeAdapter(Event)


class KV(Protocol):
    """The few Redis commands run state needs; redis.Redis satisfies it."""

    def hset(self, name: str, key: str | None = None, value: Any = None, mapping: Any = None) -> Any: ...
    def hgetall(self, name: str) -> Any: ...
    def hget(self, name: str, key: str) -> Any: ...
    def hincrby(self, name: str, key: str, amount: int = 1) -> Any: ...
    def hdel(self, name: str, *keys: str) -> Any: ...
    def rpush(self, name: str, *values: Any) -> Any: ...
    def lrange(self, name: str, start: int, end: int) -> Any: ...
    def set(self, name: str, value: Any, ex: Any = None, nx: bool = False, xx: bool = False) -> Any: ...
    def get(self, name: str) -> Any: ...
    def zadd(self, name: str, mapping: Any) -> Any: ...
    def zrange(self, name: str, start: int, end: int) -> Any: ...
    def hincrbyfloat(self, name: str, key: str, amount: float = 1.0) -> Any: ...
    def sadd(self, name: str, *values: Any) -> Any: ...
    def scard(self, name: str) -> Any: ...
    def sismember(self, name: str, value: Any) -> Any: ...
    def delete(self, *names: str) -> Any: ...
    def expire(self, name: str, time: int) -> Any: ...


class MemoryKV:
    """In-process KV for embedded mode (one process; nothing to share)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hashes: dict[str, dict[str, str]] = defaultdict(dict)
        self._lists: dict[str, list[str]] = defaultdict(list)
        self._strings: dict[str, tuple[str, float | None]] = {}
        self._zsets: dict[str, dict[str, float]] = defaultdict(dict)
        self._sets: dict[str, set[str]] = defaultdict(set)

    def hset(self, name: str, key: str | None = None, value: Any = None, mapping: Any = None) -> int:
        with self._lock:
            if key is not None:
                self._hashes[name][key] = str(value)
            for k, v in (mapping or {}).items():
                self._hashes[name][k] = str(v)
        return 1

    def hgetall(self, name: str) -> dict[str, str]:
        with self._lock:
            return dict(self._hashes.get(name, {}))

    def hget(self, name: str, key: str) -> str | None:
        with self._lock:
            return self._hashes.get(name, {}).get(key)

    def hdel(self, name: str, *keys: str) -> int:
        with self._lock:
            fields = self._hashes.get(name, {})
            return sum(fields.pop(k, None) is not None for k in keys)

    def hincrby(self, name: str, key: str, amount: int = 1) -> int:
        with self._lock:
            value = int(self._hashes[name].get(key, 0)) + amount
            self._hashes[name][key] = str(value)
            return value

    def hincrbyfloat(self, name: str, key: str, amount: float = 1.0) -> float:
        with self._lock:
            value = float(self._hashes[name].get(key, 0)) + amount
            self._hashes[name][key] = repr(value)
            return value

    def sadd(self, name: str, *values: Any) -> int:
        with self._lock:
            before = len(self._sets[name])
            self._sets[name].update(str(v) for v in values)
            return len(self._sets[name]) - before

    def sismember(self, name: str, value: Any) -> bool:
        with self._lock:
            return str(value) in self._sets.get(name, ())

    def scard(self, name: str) -> int:
        with self._lock:
            return len(self._sets.get(name, ()))

    def expire(self, name: str, time: int) -> bool:
        return True  # embedded state lives as long as its process

    def delete(self, *names: str) -> int:
        with self._lock:
            return sum(
                bool(store.pop(n, None)) for n in names
                for store in (self._hashes, self._lists, self._strings, self._zsets, self._sets)
            )

    def rpush(self, name: str, *values: Any) -> int:
        with self._lock:
            self._lists[name].extend(str(v) for v in values)
            return len(self._lists[name])

    def lrange(self, name: str, start: int, end: int) -> list[str]:
        with self._lock:
            items = self._lists.get(name, [])
            return items[start:] if end == -1 else items[start : end + 1]

    def set(self, name: str, value: Any, ex: Any = None, nx: bool = False, xx: bool = False) -> bool | None:
        with self._lock:
            current = self._strings.get(name)
            if current and current[1] is not None and current[1] < time.monotonic():
                current = None
            if (nx and current is not None) or (xx and current is None):
                return None
            self._strings[name] = (str(value), time.monotonic() + ex if ex else None)
            return True

    def get(self, name: str) -> str | None:
        with self._lock:
            current = self._strings.get(name)
            if current is None or (current[1] is not None and current[1] < time.monotonic()):
                return None
            return current[0]

    def append_once(self, list_key: str, set_key: str, member: str, value: str) -> bool:
        """RPUSH value unless member is already in the set (what _APPEND_ONCE does on Redis)."""
        with self._lock:
            if member in self._sets[set_key]:
                return False
            self._sets[set_key].add(member)
            self._lists[list_key].append(value)
            return True

    def zrange(self, name: str, start: int, end: int) -> list[str]:
        with self._lock:
            ordered = sorted(self._zsets.get(name, {}).items(), key=lambda kv: kv[1])
            items = [k for k, _ in ordered]
            return items[start:] if end == -1 else items[start : end + 1]

    def zadd(self, name: str, mapping: Any) -> int:
        with self._lock:
            self._zsets[name].update(mapping)
            return len(mapping)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


CHUNK = 2000  # commands per pipeline round trip: bounded memory, few round trips


def is_redis(kv: Any) -> bool:
    return hasattr(kv, "pipeline") and hasattr(kv, "zrevrangebyscore")


def hmget_many(kv: Any, names: Sequence[str], fields: Sequence[str]) -> list[list[str | None]]:
    """HMGET of many hashes: pipelined on Redis, one call per field otherwise."""
    if not is_redis(kv):
        return [[kv.hget(name, f) for f in fields] for name in names]
    out: list[list[str | None]] = []
    for start in range(0, len(names), CHUNK):
        pipe = kv.pipeline(transaction=False)
        for name in names[start : start + CHUNK]:
            pipe.hmget(name, list(fields))
        out.extend([[None if v is None else _text(v) for v in row] for row in pipe.execute()])
    return out


_APPEND_ONCE = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


class RunState:
    """Reads and writes run state through a KV (Redis, or MemoryKV when embedded)."""

    def __init__(self, kv: KV) -> None:
        self.kv = kv
        self._append_once: Any = None

    # --- lifecycle ---------------------------------------------------------------------------------
    def create(self, spec: RunSpec) -> None:
        now = time.time()
        self.kv.hset(keys.run_key(spec.run_id), mapping={
            "spec": spec.model_dump_json(), "status": RunStatus.queued, "video_id": spec.video_id,
            "created": now, "updated": now,
        })
        self.kv.zadd(keys.runs_index_key(), {spec.run_id: now})

    def step_started(self, run_id: str, step: Step, tries: int, worker: str, pid: int) -> int:
        """Record a delivery of the step's task (its `tries`th send); return how many times it has been
        delivered. More than tried means a worker died under it and the message came back."""
        deliveries = self._delivered(run_id, step, f"{step}.task.deliveries", tries, worker, pid)
        self.kv.hset(keys.run_key(run_id), mapping={
            "status": RunStatus.running, "step": step.value, f"{step}.status": StepStatus.running,
            f"{step}.started": time.time(),
        })
        return deliveries

    def part_started(self, run_id: str, step: Step, index: int, tries: int, worker: str, pid: int) -> int:
        """The same for one part of a fanned-out step."""
        return self._delivered(run_id, step, f"{step}.part{index}.deliveries", tries, worker, pid)

    def _delivered(self, run_id: str, step: Step, counter: str, tries: int, worker: str, pid: int) -> int:
        """Count a delivery of one message (the step's task or a part): `deliveries` counts all of the
        step's, `redeliveries` those beyond what was sent, `attempts` the most any one message took."""
        name = keys.run_key(run_id)
        deliveries = int(self.kv.hincrby(name, counter, 1))
        self.kv.hincrby(name, f"{step}.deliveries", 1)
        if deliveries > tries:
            self.kv.hincrby(name, f"{step}.redeliveries", 1)
        if deliveries > int(self.kv.hget(name, f"{step}.attempts") or 0):
            self.kv.hset(name, f"{step}.attempts", deliveries)
        self.kv.hset(name, mapping={f"{step}.worker": worker, f"{step}.pid": pid, "updated": time.time(),
                                    "stalled": ""})
        return deliveries

    def step_retrying(self, run_id: str, step: Step, attempt: int, error: BaseException, delay: float) -> None:
        self.kv.hset(keys.run_key(run_id), mapping={
            "status": RunStatus.retrying, f"{step}.status": StepStatus.retrying, f"{step}.attempts": attempt,
            f"{step}.error": _describe(error), f"{step}.next_retry": time.time() + delay,
            "updated": time.time(),
        })

    def step_succeeded(self, run_id: str, step: Step, usage: dict[str, float], reused: bool) -> None:
        started = float(self.kv.hget(keys.run_key(run_id), f"{step}.started") or 0)
        self.add_usage(run_id, step, usage)
        fields: dict[str, Any] = {
            f"{step}.status": StepStatus.succeeded, f"{step}.ended": time.time(), f"{step}.reused": int(reused),
            "updated": time.time(), "stalled": "",
        }
        if started:
            fields[f"{step}.duration"] = round(time.time() - started, 3)
        if step is LAST_STEP:
            fields["status"] = RunStatus.succeeded
        self.kv.hset(keys.run_key(run_id), mapping=fields)

    def step_failed(self, event: StepFailed, traceback: str = "") -> None:
        self.kv.hset(keys.run_key(event.run_id), mapping={
            "status": RunStatus.failed, f"{event.step}.status": StepStatus.failed, f"{event.step}.ended": time.time(),
            f"{event.step}.error": f"{event.error_type}: {event.message}",
            f"{event.step}.traceback": traceback, "error": f"{event.step} failed: {event.message}",
            "updated": time.time(),
        })

    def run_skipped(self, run_id: str, step: Step, reason: str) -> None:
        self.kv.hset(keys.run_key(run_id), mapping={
            "status": RunStatus.skipped, f"{step}.status": StepStatus.skipped, f"{step}.ended": time.time(),
            "skipped": reason,
            "updated": time.time(),
        })

    def rerun(self, run_id: str, steps: list[Step], generation: int) -> None:
        """Reset the steps about to run again, and the run, for a new generation."""
        fields: dict[str, Any] = {"status": RunStatus.queued, "error": "", "skipped": "", "stalled": "",
                                  "generation": generation,
                                  "updated": time.time()}
        name = keys.run_key(run_id)
        for step in steps:
            fields.update({f"{step}.status": StepStatus.queued, f"{step}.error": "", f"{step}.traceback": "",
                           f"{step}.next_retry": "", f"{step}.deliveries": 0, f"{step}.redeliveries": 0,
                           f"{step}.attempts": 0, f"{step}.task.deliveries": 0})
        counters = [f for f in map(_text, self.kv.hgetall(name)) if f.endswith(".deliveries") and ".part" in f
                    and f.split(".", 1)[0] in {s.value for s in steps}]
        if counters:
            self.kv.hdel(name, *counters)
        self.kv.hset(name, mapping=fields)

    def restore(self, run_id: str, fields: dict[str, str], events: list[AnyEvent]) -> None:
        """Rebuild a run from its manifest (after Redis lost its data)."""
        self.kv.hset(keys.run_key(run_id), mapping=fields)
        self.kv.zadd(keys.runs_index_key(), {run_id: float(fields.get("created") or time.time())})
        for event in events:
            self.append_event(event)

    def cancel(self, run_id: str) -> None:
        self.kv.hset(keys.run_key(run_id), mapping={"status": RunStatus.cancelled, "updated": time.time()})

    def mark_stalled(self, run_id: str, reason: str) -> None:
        """The reconciler found nothing carrying the run on; cleared as soon as a step makes progress."""
        self.kv.hset(keys.run_key(run_id), mapping={"stalled": reason})

    def count(self, step: Step, outcome: str, now: float | None = None) -> None:
        """Per-minute tallies of step outcomes: the dashboard's throughput and failure rate."""
        key = keys.step_stats_key(step, int((now or time.time()) // 60))
        self.kv.hincrby(key, outcome, 1)
        self.kv.expire(key, 7200)

    def tallies(self, step: Step, minutes: int = 60, now: float | None = None) -> dict[str, int]:
        last = int((now or time.time()) // 60)
        total: dict[str, int] = {"succeeded": 0, "failed": 0, "retried": 0}
        for minute in range(last - minutes + 1, last + 1):
            for outcome, n in self.kv.hgetall(keys.step_stats_key(step, minute)).items():
                total[_text(outcome)] = total.get(_text(outcome), 0) + int(n)
        return total

    def add_usage(self, run_id: str, step: Step, usage: dict[str, float]) -> None:
        for name, amount in usage.items():
            if amount:
                self.kv.hincrbyfloat(keys.run_key(run_id), f"{step}.usage.{name}", amount)

    # --- fan-out ------------------------------------------------------------------------------------
    def parts_opened(self, run_id: str, step: Step, total: int) -> None:
        self.kv.hset(keys.run_key(run_id), mapping={f"{step}.parts": total, f"{step}.parts_done": 0})

    def part_done(self, run_id: str, step: Step, input_hash: str, index: int) -> int:
        """Mark a part stored; return how many distinct parts are. SADD then SCARD: the last part to
        finish always sees the full count, so the join is never missed."""
        key = keys.join_key(run_id, step, input_hash)
        self.kv.sadd(key, index)
        done = int(self.kv.scard(key))
        self.kv.hset(keys.run_key(run_id), f"{step}.parts_done", done)
        return done

    # --- events ------------------------------------------------------------------------------------
    def append_event(self, event: AnyEvent) -> bool:
        """Log the event once: a send retried after a fault does not log it twice. False if it was."""
        token = f"{event.kind}:{getattr(event, 'step', None) or ''}:{event.generation}"
        if isinstance(event, RunRetried):  # an action, which may be taken again in the same generation
            token += f":{event.at.timestamp()}"
        args = (keys.run_events_key(event.run_id), keys.run_logged_key(event.run_id), token, event.model_dump_json())
        if isinstance(self.kv, MemoryKV):
            return self.kv.append_once(*args)
        if self._append_once is None:
            self._append_once = self.kv.register_script(_APPEND_ONCE)  # type: ignore[attr-defined]
        return bool(self._append_once(keys=args[:2], args=args[2:]))

    def events(self, run_id: str) -> list[AnyEvent]:
        return [_EVENT.validate_json(_text(raw)) for raw in self.kv.lrange(keys.run_events_key(run_id), 0, -1)]

    def run(self, run_id: str) -> dict[str, str]:
        """The run's raw fields (tests and low-level tools; everything else reads view())."""
        return {_text(k): _text(v) for k, v in self.kv.hgetall(keys.run_key(run_id)).items()}

    def run_ids_with_status(self, statuses: Iterable[str]) -> list[str]:
        """Every run (oldest first) whose status is one of these: one pipelined read of all statuses."""
        wanted = {str(s) for s in statuses}
        ids = [_text(i) for i in self.kv.zrange(keys.runs_index_key(), 0, -1)]
        rows = hmget_many(self.kv, [keys.run_key(i) for i in ids], ["status"])
        return [i for i, (status,) in zip(ids, rows, strict=True) if status in wanted]

    def statuses(self) -> list[tuple[str, float | None]]:
        """Every run's status and last update (one pipelined read), for the metrics."""
        ids = [_text(i) for i in self.kv.zrange(keys.runs_index_key(), 0, -1)]
        rows = hmget_many(self.kv, [keys.run_key(i) for i in ids], ["status", "updated"])
        return [(status, float(updated) if updated else None) for status, updated in rows if status]

    def view(self, run_id: str) -> RunView | None:
        """The run, read and typed: the one reader of run state. None if there is no such run."""
        fields = self.run(run_id)
        return RunView.from_fields(run_id, fields) if fields.get("status") else None

    # --- once-only emission ------------------------------------------------------------------------
    def emit_status(self, key: str) -> str | None:
        value = self.kv.get(key)
        return _text(value) if value is not None else None

    def claim_emit(self, key: str, lease: int) -> bool:
        """Take the right to send a downstream event; the lease lapses if the sender dies."""
        return bool(self.kv.set(key, "sending", ex=lease, nx=True))

    def renew_emit(self, key: str, lease: int) -> bool:
        """Keep a held lease while its holder works (a long join); False if it was lost or sent."""
        if self.emit_status(key) != "sending":
            return False
        return bool(self.kv.set(key, "sending", ex=lease, xx=True))

    def mark_emitted(self, key: str) -> None:
        self.kv.set(key, "sent")

    def release_emit(self, key: str) -> None:
        """Give the lease back after a failed join, so a retry can take it at once."""
        if self.emit_status(key) == "sending":
            self.kv.delete(key)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
