"""Queue health for the dashboard: depth, age of the oldest waiting message, workers, last hour's work.

No request ever talks to the broker for these. One background thread (QueueMonitor) gathers them every
`interval` seconds and requests read its latest snapshot: a burst of requests costs the broker nothing,
and a slow or dead broker costs a request nothing. Each gather is bounded: its own Redis clients and its own
broker connection with `timeout` on every connect and read, a control broadcast that never retries, replies
awaited for at most `timeout`. (Asking workers from each request, through Celery's shared connection and
producer pools, deadlocked those pools under ~25 concurrent requests and then every endpoint hung.)

When facts cannot be had — the broker is unreachable, or the gatherer has not finished a round in a while —
the snapshot says so: status "unknown", the facts it could not get null, and the age of the last good ones.

What the broker holds per queue (waiting at every priority, held by workers, scheduled retries, the oldest
waiting message's age) is read as workers/queue_facts.py says; the same snapshot feeds /metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from kombu.connection import Connection
from kombu.pidbox import Mailbox

from schemas.events import Step
from schemas.pipeline import ACTIVE
from workers import keys
from workers.queue_facts import QueueFacts, read_queue_facts
from workers.runtime import Runtime
from workers.state import RunState

log = logging.getLogger("pressroom.dashboard")
STEP_OF = {q: s.value for s, q in keys.QUEUES.items()}
ALL_QUEUES = [*keys.QUEUES.values(), keys.WATCH_QUEUE]


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def _where(url: str | None) -> str:
    """host:port of a Redis URL, for the log (never its password)."""
    parsed = urlparse(url or "")
    return f"{parsed.hostname}:{parsed.port or 6379}"


class QueueMonitor:
    """The one thread that gathers queue facts; start() once, snapshot() from any request, stop() at the end."""

    def __init__(self, app: Any, rt: Runtime, *, interval: float = 5.0, timeout: float = 2.0,
                 hooks: list[Callable[[], None]] | None = None) -> None:
        self.app, self.rt, self.interval, self.timeout = app, rt, interval, timeout
        self.hooks = hooks or []  # also run each round (the audit's refusal counts are flushed so)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._facts: dict[str, Any] | None = None  # the latest round's facts, good or not
        self._good_at: float | None = None  # when the broker facts were last had
        self._checked_at: float | None = None  # when the latest round ended
        self._broker: Any = None
        self._state: Any = None

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the gatherer (again, after a stop); a no-op while it runs."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="pressroom-queue-monitor", daemon=True)
            self._thread.start()

    def stop(self, wait: float = 1.0) -> None:
        """Stop the gatherer: it ends after its current round. This waits for that at most `wait` seconds:
        it is a daemon thread, so a process that exits does not wait for a round the broker holds up."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(wait)
        for hook in self.hooks:
            self._run_hook(hook)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.gather()
            for hook in self.hooks:
                self._run_hook(hook)
            self._stop.wait(self.interval)
        for client in (self._broker, self._state):
            if client is not None:
                client.close()

    @staticmethod
    def _run_hook(hook: Callable[[], None]) -> None:
        try:
            hook()
        except Exception as exc:  # a hook's trouble must not end the gatherer
            log.warning("queue monitor hook failed: %s", _one_line(exc))

    # --- one round ----------------------------------------------------------------------------------
    def _redis(self, url: str) -> Any:
        import redis

        return redis.Redis.from_url(url, decode_responses=True, socket_timeout=self.timeout,
                                    socket_connect_timeout=self.timeout, retry_on_timeout=False)

    def gather(self) -> dict[str, Any]:
        """One round: depths and oldest ages (broker Redis), workers (a control broadcast), the last hour's
        tallies (run state). Each part that fails is None, with its error; nothing here waits unbounded."""
        now = time.time()
        errors: list[str] = []  # what readers see (anyone: no addresses, no detail) …
        details: list[str] = []  # … and what the log says
        depths: dict[str, QueueFacts] | None = None
        broker = _where(self.rt.settings.broker_url)
        try:
            depths = self._depths(now)
        except Exception as exc:
            errors.append(f"broker unreachable ({type(exc).__name__})")
            details.append(f"broker at {broker}: {_one_line(exc)}")
        online: dict[str, list[str]] | None = None
        if depths is not None:  # no broker, no workers to ask: skip a second wait on the same dead host
            try:
                online = self._workers()
            except Exception as exc:
                errors.append(f"the control broadcast to the workers failed ({type(exc).__name__})")
                details.append(f"control broadcast via {broker}: {_one_line(exc)}")
        tallies: dict[str, dict[str, int]] | None = None
        runs: tuple[dict[str, int], int] | None = None
        try:
            tallies = self._tallies(now)
            runs = self._runs(now)
        except Exception as exc:
            errors.append(f"run state unreachable ({type(exc).__name__})")
            details.append(f"run state at {_where(self.rt.settings.state_url)}: {_one_line(exc)}")
        facts = {"at": now, "depths": depths, "online": online, "tallies": tallies, "runs": runs,
                 "error": "; ".join(errors) + ": see the dashboard's log" if errors else None}
        with self._lock:
            before, self._facts = self._facts, facts
            self._checked_at = time.time()
            if depths is not None and online is not None:
                self._good_at = now
        if facts["error"] != (before or {}).get("error"):  # said once per change, not every round
            if facts["error"]:
                log.warning("queue facts unknown: %s", "; ".join(details))
            elif before is not None:
                log.warning("queue facts known again")
        return facts

    def _depths(self, now: float) -> dict[str, QueueFacts]:
        if self._broker is None:
            self._broker = self._redis(self.rt.settings.broker_url or "")
        return read_queue_facts(self._broker, ALL_QUEUES, now)

    def _workers(self) -> dict[str, list[str]]:
        """Worker node names consuming each queue (a worker that answers is online; all who answered are
        under "*"), from one active_queues broadcast on a connection of this thread's own."""
        conf = self.app.conf
        # Celery's own mailbox publishes through the app's producer pool, which the app's senders share (a
        # request per broadcast deadlocked it); this one has no pool: it publishes on the connection below.
        mailbox = Mailbox(  # type: ignore[no-untyped-call]
            conf.control_exchange, type="fanout", accept=conf.accept_content, serializer=conf.task_serializer,
            queue_ttl=conf.control_queue_ttl, reply_queue_ttl=conf.control_queue_ttl,
            queue_expires=conf.control_queue_expires, reply_queue_expires=conf.control_queue_expires)
        options = {**conf.broker_transport_options, "max_retries": 0, "socket_timeout": self.timeout,
                   "socket_connect_timeout": self.timeout}
        conn = _OneShotConnection(  # type: ignore[no-untyped-call]
            self.rt.settings.broker_url, transport=conf.broker_transport, connect_timeout=self.timeout,
            transport_options=options)
        try:
            replies = mailbox(conn)._broadcast("active_queues", {}, reply=True, timeout=self.timeout) or []
        finally:
            conn.release()  # type: ignore[no-untyped-call]
        out: dict[str, list[str]] = {}
        for reply in replies:
            for worker, queues in (reply or {}).items():
                out.setdefault("*", []).append(worker)
                for queue in queues or []:
                    out.setdefault(queue.get("name", ""), []).append(worker)
        return out

    def _tallies(self, now: float) -> dict[str, dict[str, int]]:
        """Per step: deliveries that succeeded / failed / were retried in the last hour (the runner's tallies,
        one pipelined read of the 60 minute hashes of every step)."""
        url = self.rt.settings.state_url
        if url is None:
            return {step.value: self.rt.state.tallies(step, 60, now) for step in Step}
        if self._state is None:
            self._state = self._redis(url)
        last = int(now // 60)
        minutes = range(last - 59, last + 1)
        pipe = self._state.pipeline(transaction=False)
        for step in Step:
            for minute in minutes:
                pipe.hgetall(keys.step_stats_key(step, minute))
        rows = iter(pipe.execute())
        out: dict[str, dict[str, int]] = {}
        for step in Step:
            total = {"succeeded": 0, "failed": 0, "retried": 0}
            for _ in minutes:
                for outcome, n in next(rows).items():
                    total[outcome] = total.get(outcome, 0) + int(n)
            out[step.value] = total
        return out

    def _runs(self, now: float) -> tuple[dict[str, int], int]:
        """Runs by status, and how many active ones made no progress for PRESSROOM_STALL_AFTER: one
        pipelined read of every run's status and last update."""
        state = self.rt.state if self._state is None else RunState(self._state)
        counts: dict[str, int] = {}
        stalled = 0
        for status, updated in state.statuses():
            counts[status] = counts.get(status, 0) + 1
            if status in ACTIVE and updated is not None and now - updated > self.rt.settings.stall_after:
                stalled += 1
        return counts, stalled

    # --- what requests read -------------------------------------------------------------------------
    @property
    def stale_after(self) -> float:
        """A snapshot older than this means the gatherer is stuck (the broker holds it): facts unknown."""
        return self.interval + self.timeout * 10 + 1  # a round's own calls take a few timeouts at most

    def snapshot(self) -> dict[str, Any]:
        """{status, error, at, age, checked_at, interval, workers_online, queues: [...]}: one entry per step
        queue and the watch queue. status "unknown" when the broker facts could not be had: depth, oldest
        age and workers are then null; `at` / `age` say when the last good ones were gathered (null if never).
        Never waits: it starts the gatherer if it is not running (a server without lifespan events)."""
        if not self.running and not self._stop.is_set():
            self.start()
        now = time.time()
        with self._lock:
            facts, good_at, checked_at = self._facts, self._good_at, self._checked_at
        error = facts["error"] if facts else "not gathered yet: the first round is under way"
        depths = facts["depths"] if facts else None
        online = facts["online"] if facts else None
        tallies = facts["tallies"] if facts else None
        runs = facts["runs"] if facts else None
        if facts is not None and now - facts["at"] > self.stale_after:
            error = f"no round has ended for {now - facts['at']:.0f} s: the broker is slow or unreachable"
            depths = online = tallies = runs = None
        known = depths is not None and online is not None
        queues = []
        for queue in ALL_QUEUES:
            step = STEP_OF.get(queue)
            held = depths[queue] if depths is not None else None
            ended = tallies.get(step or "") if tallies is not None and step else None
            finished = ended["succeeded"] + ended["failed"] if ended else 0
            queues.append({
                "queue": queue, "step": step, "depth": held.waiting if held else None,
                "unacked": held.unacked if held else None, "scheduled": held.scheduled if held else None,
                "backlog": held.backlog if held else None, "oldest_age": held.oldest_age if held else None,
                "workers": sorted(online.get(queue, [])) if online is not None else None,
                "last_hour": {**ended, "failure_rate": round(ended["failed"] / finished, 4) if finished else None}
                if ended is not None else None,
            })
        return {
            "status": "ok" if known else "unknown", "error": error,
            "at": good_at,
            "age": round(now - good_at, 3) if good_at is not None else None,
            "checked_at": checked_at, "interval": self.interval,
            "workers_online": sorted(online.get("*", [])) if online is not None else None,
            "queues": queues,
            "runs": runs[0] if runs is not None else None,
            "stalled": runs[1] if runs is not None else None,
        }


class _OneShotConnection(Connection):
    """A broker connection whose operations never retry (kombu's publish otherwise reconnects forever while
    the broker is away): the gatherer tries again on its next round instead."""

    def ensure(self, obj: Any, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
        return fun
