"""Autoscaling tried here: worker processes per step grown and shrunk by KEDA's rule, against a fixed pool.

A backlog of --runs short talks (distinct 3 s WAVs, so no artifact is reused) is submitted at once with
`pressroom submit` on Redis db 15, against the simulator (each step takes ~0.3-0.7 s). Two phases, each
with a flushed db 15, a new store and new media files:

* autoscaled — no worker runs at first. Every --interval seconds a controller reads each step queue's
  backlog (workers/queue_facts.py: waiting at every priority + unacked, the number KEDA's metrics-api
  trigger reads in infra/k8s) and applies KEDA's rule: desired = min(--max-replicas,
  ceil(backlog / --target)), down to 0. It scales out at once and scales in like the HPA's scale-down
  stabilization window (and KEDA's cooldownPeriod for 1 → 0): to the largest desired count of the last
  --cooldown seconds. Scaling out starts `pressroom worker --queues <step> --concurrency 1 --name
  <step>-<i>@bench`; scaling in sends SIGTERM to the newest workers' main process, as Kubernetes does to a
  terminating pod, so Celery shuts down warm (it stops taking tasks and finishes the one it runs). A
  worker that has not exited within its step's hard time limit + 60 s (the pods' grace period) would get
  SIGKILL, and be reported. Each decision is logged: time since submit, step, backlog, from → to.
* fixed — a pool of the autoscaled phase's peak size per step, started (and ready) before the submit.

Per phase: drain time (submit → the last run's publish ended), runs lost (not succeeded within
--timeout), duplicate posts (post files in the store per video beyond one, from `post-owners/<name>`,
which maps each post name to its video), and, as checks, runs without a post, step deliveries beyond
what was sent (a worker lost under a task), duplicate step events (as bench/chaos.py counts them) and
tasks cut short in the worker logs (WorkerLostError); for the scaled-in workers, how many were running a
task when SIGTERM came and finished it (`Task … succeeded` after `Warm shutdown` in their logs). If a step
still has a backlog once every run is over, the messages behind it are printed. Cost: process-seconds,
each worker process's lifetime summed (autoscaled: spawn → exit, including the scale-in tail after the
drain; fixed: the pool over the drain window, since a fixed pool stays up), and peak processes. The last
lines are `lost: N`, `duplicates: N` and `drain: autoscaled X s, fixed Y s (ratio Z)`.

SIGTERM goes to the worker's main process only: sent to its process group (as bench/overhead.py's
stop_workers and tests/harness.py do), it also reaches the prefork pool child, which billiard makes exit
at once (SIGTERM there raises SystemExit): the running task is cut short (WorkerLostError) instead of
finished. The kubelet, and docker stop through compose's init, signal the main process alone.

    .venv/bin/python bench/scale.py [--runs 40] [--target 2] [--max-replicas 3] [--interval 1] [--cooldown 3]
                                    [--latency 0.3] [--timeout 240] [--keep]

--keep leaves the temp dir (worker logs, stores) in place and prints its path.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis

if __package__ in (None, ""):  # run as a script: make `bench` and `workers` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.overhead import Worker, _interrupt, clean_env, make_media, stop_workers
from schemas.pipeline import FINAL, PIPELINE, RunStatus, Step
from workers import keys
from workers.queue_facts import read_queue_facts
from workers.retry import POLICIES
from workers.state import KV, RunState, hmget_many
from workers.storage.local import LocalStore

BROKER_URL = "redis://127.0.0.1:6379/15"
PRESSROOM = [sys.executable, "-m", "workers.cli"]
STEPS = [step.value for step in PIPELINE]


@dataclass
class Proc:
    """One `pressroom worker` process (a Celery main process and its one pool child)."""

    step: str
    name: str
    worker: Worker
    spawned: float  # monotonic
    ready: float | None = None
    term_sent: float | None = None
    scaled_in: bool = False  # SIGTERMed by the controller (not at the end of the phase)
    exited: float | None = None
    killed: str = ""  # why it got SIGKILL, if it did

    @property
    def pid(self) -> int:
        return int(self.worker.proc.pid)


class Pool:
    """The worker processes of one phase: started, SIGTERMed (main process only), reaped, accounted."""

    def __init__(self, env: dict[str, str], logdir: Path, log: Any) -> None:
        self.env, self.logdir, self.log = env, logdir, log
        self.procs: list[Proc] = []
        self.numbers: collections.Counter[str] = collections.Counter()
        self.peak_alive = 0
        logdir.mkdir(parents=True, exist_ok=True)

    def live(self, step: str) -> list[Proc]:
        """Serving: started and not told to stop (what a Deployment counts as its replicas)."""
        return [p for p in self.procs if p.step == step and p.term_sent is None and p.exited is None]

    def alive(self) -> list[Proc]:
        return [p for p in self.procs if p.exited is None]

    def start(self, step: str) -> Proc:
        self.numbers[step] += 1
        name = f"{step}-{self.numbers[step]}"
        cmd = [*PRESSROOM, "worker", "--queues", step, "--concurrency", "1", "--name", f"{name}@bench",
               "--loglevel", "INFO"]
        proc = Proc(step, name, Worker(name, cmd, self.env, self.logdir / f"{name}.log"), time.monotonic())
        self.procs.append(proc)
        return proc

    def scale(self, step: str, to: int) -> None:
        live = self.live(step)
        for _ in range(to - len(live)):
            self.start(step)
        for proc in sorted(live, key=lambda p: p.spawned)[to:]:  # the newest go first
            proc.scaled_in = True
            self.terminate(proc)

    def terminate(self, proc: Proc) -> None:
        """SIGTERM to the main process only, as the kubelet does: Celery's warm shutdown."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        proc.term_sent = time.monotonic()

    def kill(self, proc: Proc, why: str) -> None:
        proc.killed = why
        proc.worker.signal(signal.SIGKILL)  # the whole group: main process and pool child
        self.log(f"SIGKILL {proc.name}: {why}")

    def reap(self) -> None:
        now = time.monotonic()
        for proc in self.alive():
            if proc.worker.proc.poll() is not None:
                proc.exited = now
                if proc.term_sent is None:
                    self.log(f"{proc.name} exited by itself (code {proc.worker.proc.returncode}):\n"
                             f"{proc.worker.tail()}")
                with contextlib.suppress(ProcessLookupError):  # a pool child left behind, if any
                    os.killpg(proc.pid, signal.SIGKILL)
                continue
            if proc.ready is None and b" ready." in proc.worker.log.read_bytes():
                proc.ready = now
            grace = POLICIES[Step(proc.step)].time_limit + 60  # the k8s Deployments' terminationGracePeriod
            if proc.term_sent is not None and not proc.killed and now - proc.term_sent > grace:
                self.kill(proc, f"still running {grace} s after SIGTERM")
        self.peak_alive = max(self.peak_alive, len(self.alive()))

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            proc.worker.wait_ready(deadline)
        self.reap()

    def stop_all(self, grace: float = 30) -> None:
        """Warm shutdown of whatever still runs; SIGKILL (reported) for what outlasts `grace` seconds."""
        for proc in self.alive():
            if proc.term_sent is None:
                self.terminate(proc)
        deadline = time.monotonic() + grace
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
            self.reap()
        for proc in self.alive():
            self.kill(proc, f"still running {grace:.0f} s after SIGTERM at the end of the phase")
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.worker.proc.wait(10)
        self.reap()

    def finished_after_term(self) -> tuple[int, int]:
        """Of the scaled-in workers: how many finished a task after their warm shutdown began, and how many
        tasks that was (from their logs: `Task … succeeded` after `Warm shutdown`)."""
        workers = tasks = 0
        for proc in self.procs:
            if not proc.scaled_in:
                continue
            text = proc.worker.log.read_text(errors="replace")
            after = text.split("Warm shutdown", 1)[1] if "Warm shutdown" in text else ""
            done = after.count("] succeeded in ")
            workers, tasks = workers + bool(done), tasks + done
        return workers, tasks

    def process_seconds(self, start: float, end: float) -> float:
        """Each process's lifetime within [start, end], summed."""
        return sum(max(0.0, min(p.exited or end, end) - max(p.spawned, start)) for p in self.procs)


class Controller:
    """KEDA's rule per step queue: desired = min(max, ceil(backlog / target)); out at once, in after cooldown."""

    def __init__(self, args: argparse.Namespace, pool: Pool, broker: Any, t0: float, log: Any) -> None:
        self.args, self.pool, self.broker, self.t0, self.log = args, pool, broker, t0, log
        self.history: dict[str, collections.deque[tuple[float, int]]] = {s: collections.deque() for s in STEPS}
        self.peak = dict.fromkeys(STEPS, 0)
        self.decisions = 0
        self.peak_backlog = dict.fromkeys(STEPS, 0)
        self.facts: dict[str, Any] = {}
        self.runs_over = False  # set once every run is over: any backlog left is then reported
        self.reported: dict[str, Any] = {}

    def tick(self) -> None:
        queues = {s: keys.QUEUES[Step(s)] for s in STEPS}
        facts = read_queue_facts(self.broker, queues.values(), time.time())
        now = time.monotonic()
        for step in STEPS:
            backlog = facts[queues[step]].backlog
            if self.runs_over and backlog and self.reported.get(step) != facts[queues[step]]:
                self.reported[step] = facts[queues[step]]
                self.log(f"{step} backlog {backlog} after every run is over: {facts[queues[step]]}; held: "
                         f"{held_messages(self.broker, queues[step])}")
            self.peak_backlog[step] = max(self.peak_backlog[step], backlog)
            desired = min(self.args.max_replicas, math.ceil(backlog / self.args.target))
            history = self.history[step]
            history.append((now, desired))
            while history and history[0][0] < now - self.args.cooldown:
                history.popleft()
            current = len(self.pool.live(step))
            # up at once; down only to the largest desired count of the last --cooldown seconds
            to = desired if desired > current else min(current, max(d for _, d in history))
            if to != current:
                self.decisions += 1
                self.log(f"{step:<10} backlog {backlog:3d}  {current} → {to}")
                self.pool.scale(step, to)
            self.peak[step] = max(self.peak[step], to)

    def settled(self) -> bool:
        return all(not self.pool.live(s) for s in STEPS) and not self.pool.alive()


def held_messages(broker: Any, queue: str) -> list[str]:
    """The queue's messages in kombu's unacked hash: task, run, delivery tag, seconds since delivered."""
    out = []
    scores = dict(broker.zrange(keys.UNACKED_KEY + "_index", 0, -1, withscores=True))
    for tag, raw in broker.hgetall(keys.UNACKED_KEY).items():
        with contextlib.suppress(ValueError, TypeError, KeyError, IndexError):
            message, _exchange, routing_key = json.loads(raw)
            if routing_key != queue:
                continue
            headers = message.get("headers") or {}
            at = scores.get(tag)
            age = f"{time.time() - at:.0f} s ago" if at else "not in unacked_index"
            out.append(f"{headers.get('task')} {headers.get('id')} (tag {tag.decode()}, delivered {age}, "
                       f"redelivered {message.get('properties', {}).get('delivery_info', {}).get('redelivered')})")
    return out


@dataclass
class Result:
    phase: str
    runs: int
    drain: float | None = None  # submit → the last publish ended, when every run succeeded
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    lost: int = 0
    duplicates: int = 0  # post files per video beyond one
    no_post: int = 0  # succeeded runs whose video has no post
    redeliveries: int = 0
    duplicate_events: int = 0
    worker_lost: int = 0
    process_seconds: float = 0.0
    peak_processes: int = 0
    peak_per_step: dict[str, int] = field(default_factory=dict)
    starts: int = 0
    sigterms: int = 0  # scale-in SIGTERMs (the controller's)
    finishing: tuple[int, int] = (0, 0)  # of those: workers that finished tasks after SIGTERM, tasks
    sigkills: list[str] = field(default_factory=list)
    start_latency: list[float] = field(default_factory=list)
    extra: str = ""


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path, sim_url: str) -> None:
        self.args, self.tmp, self.sim_url = args, tmp, sim_url
        self.broker = redis.Redis.from_url(BROKER_URL)  # raw bytes, as read_queue_facts expects
        self.state = RunState(cast(KV, redis.Redis.from_url(BROKER_URL, decode_responses=True)))
        self.t0 = time.monotonic()
        self.pool: Pool | None = None

    def log(self, text: str) -> None:
        print(f"  {time.monotonic() - self.t0:+7.1f}s  {text}", flush=True)

    def env(self, phase: str) -> dict[str, str]:
        scratch = self.tmp / f"scratch-{phase}"  # the workers' step work directories
        scratch.mkdir()
        return clean_env(TMPDIR=str(scratch), PRESSROOM_BROKER_URL=BROKER_URL,
                         PRESSROOM_STORAGE_URL=str(self.tmp / f"store-{phase}"),
                         PRESSROOM_DATA_DIR=str(self.tmp / f"data-{phase}"),
                         PRESSROOM_TRANSCRIPTION_BASE_URL=self.sim_url, PRESSROOM_LLM_BASE_URL=self.sim_url)

    def phase(self, name: str, media: list[Path], fixed: dict[str, int] | None) -> tuple[Result, dict[str, int]]:
        """One phase: autoscaled when `fixed` is None, else a fixed pool of that many workers per step."""
        self.broker.flushdb()
        env = self.env(name)
        self.t0 = time.monotonic()
        pool = self.pool = Pool(env, self.tmp / f"logs-{name}", self.log)
        result = Result(name, len(media))
        controller = None
        if fixed is not None:
            for step, n in fixed.items():
                pool.scale(step, n)
            pool.wait_ready()
            self.log(f"fixed pool ready: {sum(fixed.values())} workers "
                     f"({', '.join(f'{s} {n}' for s, n in fixed.items())})")
        submit_at, t0 = time.monotonic(), time.time()
        self.t0 = submit_at
        submitter = subprocess.Popen([*PRESSROOM, "submit", *map(str, media)], env=env, cwd=self.tmp,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if fixed is None:
            controller = Controller(self.args, pool, self.broker, submit_at, self.log)
        run_ids: list[str] = []
        done_at: float | None = None
        deadline = submit_at + self.args.timeout
        next_tick = next_poll = submit_at
        while True:
            now = time.monotonic()
            pool.reap()
            if controller and now >= next_tick:
                controller.tick()
                next_tick += self.args.interval
            if not run_ids and submitter.poll() is not None:
                out, err = submitter.communicate()
                if submitter.returncode != 0:
                    raise RuntimeError(f"pressroom submit failed ({submitter.returncode}): {err.strip()}")
                run_ids = out.split()
                self.log(f"submitted {len(run_ids)} runs")
            if run_ids and done_at is None and now >= next_poll:
                next_poll = now + 0.25
                statuses = [row[0] for row in hmget_many(self.state.kv, [keys.run_key(r) for r in run_ids],
                                                         ["status"])]
                if all(s in {x.value for x in FINAL} for s in statuses):
                    done_at = now
                    if controller is not None:
                        controller.runs_over = True
                    self.log(f"all runs over: {collections.Counter(statuses)}")
            if done_at is not None and (controller is None or controller.settled()):
                break
            if now > deadline:
                self.log(f"timeout: {self.args.timeout:.0f} s after submit, stopping the phase")
                break
            if done_at is not None and now > done_at + self.args.cooldown + 90:
                self.log("workers not back to zero 90 s after the cooldown: stopping them")
                break
            time.sleep(0.05)
        end = time.monotonic()
        drain_end = done_at if done_at is not None else end
        pool.stop_all()
        self.collect(result, run_ids, t0, env)
        if controller is not None:
            result.process_seconds = pool.process_seconds(submit_at, end)
            result.peak_per_step = dict(controller.peak)
            result.extra = (f"{controller.decisions} scaling decisions; peak backlog "
                            + ", ".join(f"{s} {n}" for s, n in controller.peak_backlog.items()))
        else:
            result.process_seconds = pool.process_seconds(submit_at, drain_end)
            result.peak_per_step = dict(fixed or {})
        result.peak_processes = pool.peak_alive
        result.starts = len(pool.procs)
        result.sigterms = sum(1 for p in pool.procs if p.scaled_in)
        result.finishing = pool.finished_after_term()
        result.sigkills = [f"{p.name}: {p.killed}" for p in pool.procs if p.killed]
        result.start_latency = [p.ready - p.spawned for p in pool.procs if p.ready is not None]
        result.worker_lost = sum(p.worker.log.read_text(errors="replace").count("WorkerLostError")
                                 for p in pool.procs)
        self.pool = None
        return result, result.peak_per_step

    def collect(self, result: Result, run_ids: list[str], t0: float, env: dict[str, str]) -> None:
        runs = {r: self.state.run(r) for r in run_ids}
        result.statuses = collections.Counter(run.get("status", "?") for run in runs.values())
        result.lost = result.runs - sum(1 for run in runs.values() if run.get("status") == RunStatus.succeeded)
        if result.lost == 0 and runs:
            result.drain = max(float(run["publish.ended"]) for run in runs.values()) - t0
        result.redeliveries = sum(int(run.get(f"{s}.redeliveries") or 0) for run in runs.values() for s in STEPS)
        for run_id in run_ids:  # each step's events once per generation (bench/chaos.py's check)
            events = [json.loads(e) for e in self.state.kv.lrange(keys.run_events_key(run_id), 0, -1)]
            seen = collections.Counter((e["kind"], e.get("step"), e.get("generation", 0)) for e in events
                                       if e["kind"] != "run.retried")
            result.duplicate_events += sum(n - 1 for n in seen.values())
        store = LocalStore(env["PRESSROOM_STORAGE_URL"])
        posts = [key.removeprefix("posts/") for key in store.list("posts/")]
        owner_of = {}
        for name in posts:
            try:
                owner_of[name] = store.get_bytes(keys.post_owner_key(name)).decode()
            except KeyError:
                owner_of[name] = f"(no owner: {name})"
        per_video = collections.Counter(owner_of.values())
        result.duplicates = sum(n - 1 for n in per_video.values())
        succeeded_videos = {run["video_id"] for run in runs.values() if run.get("status") == RunStatus.succeeded}
        result.no_post = len(succeeded_videos - set(per_video))
        if result.duplicates:
            print("  videos with more than one post: "
                  + ", ".join(f"{v} ×{n}" for v, n in per_video.items() if n > 1), flush=True)

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.stop_all(grace=15)


def report(r: Result) -> None:
    drain = f"{r.drain:6.1f} s" if r.drain is not None else "   n/a  "
    latency = (f", start→ready mean {sum(r.start_latency) / len(r.start_latency):.1f} s "
               f"max {max(r.start_latency):.1f} s" if r.start_latency else "")
    print(f"{r.phase}: {r.runs - r.lost}/{r.runs} succeeded, drain {drain}, lost {r.lost}, duplicate posts "
          f"{r.duplicates}, runs without a post {r.no_post}, redeliveries {r.redeliveries}, duplicate step events "
          f"{r.duplicate_events}, WorkerLostError {r.worker_lost}", flush=True)
    print(f"  {r.process_seconds:.1f} process-seconds, peak {r.peak_processes} processes "
          f"(per step {', '.join(f'{s} {n}' for s, n in r.peak_per_step.items())}), {r.starts} started, "
          f"{len(r.sigkills)} SIGKILLed{latency}", flush=True)
    if r.sigterms:
        print(f"  scale-in: {r.sigterms} SIGTERMs; {r.finishing[0]} of those workers were running a task and "
              f"finished it after SIGTERM ({r.finishing[1]} tasks)", flush=True)
    if r.statuses and set(r.statuses) != {RunStatus.succeeded}:
        print(f"  statuses: {dict(r.statuses)}", flush=True)
    for line in r.sigkills:
        print(f"  SIGKILL: {line}", flush=True)
    if r.extra:
        print(f"  {r.extra}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40, help="runs in the backlog, submitted at once")
    parser.add_argument("--target", type=float, default=2, help="backlog per worker process (KEDA's targetValue)")
    parser.add_argument("--max-replicas", type=int, default=3, help="most worker processes per step")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between backlog reads")
    parser.add_argument("--cooldown", type=float, default=3.0, help="seconds below before scaling in")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds the simulator adds to each request")
    parser.add_argument("--timeout", type=float, default=240, help="seconds after submit before runs count as lost")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (worker logs, stores) and print it")
    args = parser.parse_args(argv)
    if args.target <= 0 or args.max_replicas < 1 or args.interval <= 0 or args.cooldown < 0:
        parser.error("--target and --interval must be > 0, --max-replicas ≥ 1, --cooldown ≥ 0")
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from workers.providers.simulator import SimulatorConfig, running_simulator

    broker = redis.Redis.from_url(BROKER_URL)
    broker.ping()
    # 3 s of audio: transcription 0.3 s + latency; each LLM answer (~30 tokens) 0.3 s + latency
    config = SimulatorConfig(latency=args.latency, transcribe_seconds_per_audio_minute=6, llm_tokens_per_second=100)
    print(f"scale: {args.runs} runs, target {args.target:g} per worker, max {args.max_replicas} per step, "
          f"every {args.interval:g} s, cooldown {args.cooldown:g} s; Redis db 15", flush=True)
    results: list[Result] = []
    bench: Bench | None = None
    try:
        with contextlib.ExitStack() as stack:
            if args.keep:
                tmp = Path(tempfile.mkdtemp(prefix="pressroom-scale-"))
                print(f"keeping {tmp}", flush=True)
            else:
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pressroom-scale-")))
            sim = stack.enter_context(running_simulator(config))
            bench = Bench(args, tmp, sim)
            print("autoscaled (scaling decisions: time since submit, step, backlog, from → to):", flush=True)
            auto, peak = bench.phase("autoscaled", make_media(tmp / "media-autoscaled", args.runs, 0), None)
            report(auto)
            results.append(auto)
            print("fixed:", flush=True)
            fixed, _ = bench.phase("fixed", make_media(tmp / "media-fixed", args.runs, args.runs), peak)
            report(fixed)
            results.append(fixed)
    except KeyboardInterrupt:
        print("interrupted: stopping the workers", file=sys.stderr, flush=True)
        return 130
    finally:
        if bench is not None:
            bench.stop()
        stop_workers()  # anything left, pool children included
        broker.flushdb()
    print("summary:")
    print(f"  process-seconds: autoscaled {auto.process_seconds:.1f} (peak {auto.peak_processes} processes), "
          f"fixed {fixed.process_seconds:.1f} (peak {fixed.peak_processes}); "
          f"autoscaled / fixed {auto.process_seconds / fixed.process_seconds:.2f}")
    print(f"  killed rather than stopped: {len(auto.sigkills) + len(fixed.sigkills)}; tasks cut short "
          f"(WorkerLostError): {auto.worker_lost + fixed.worker_lost}; redeliveries: "
          f"{auto.redeliveries + fixed.redeliveries}")
    print(f"lost: {auto.lost + fixed.lost}")
    print(f"duplicates: {auto.duplicates + fixed.duplicates}")
    a, f = auto.drain, fixed.drain
    ratio = f"{a / f:.2f}" if a and f else "n/a"
    print(f"drain: autoscaled {a or float('nan'):.1f} s, fixed {f or float('nan'):.1f} s (ratio {ratio})")
    return 1 if auto.lost + fixed.lost + auto.duplicates + fixed.duplicates else 0


if __name__ == "__main__":
    sys.exit(main())
