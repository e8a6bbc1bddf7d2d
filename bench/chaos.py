"""Benchmark (not a test): runs in the distributed mode while everything they depend on fails, at random
moments. Goal: `lost: 0` — no run stuck or failed because of a fault — and one post per run.

What runs: a Redis server of its own (AOF, appendfsync everysec) that the script crashes and restarts;
moto's S3 server behind a TCP proxy the script cuts; two worker processes per step queue, a `watch` worker
(the reconciler, every minute on beat) and `pressroom beat`; the simulator answering after --latency
seconds. It submits --runs talks over the first minute and, meanwhile, injects in random order and at
random moments: Redis crashed and restarted after 5 s and after 30 s; S3 unreachable for 30 s and for
120 s; SIGKILL of a pool child, and of the one holding a join (emit) lease if it can catch one; SIGKILL of
a whole worker; SIGTERM of a worker. Killed and stopped workers are restarted, as an orchestrator would.

It prints the fault timeline, runs succeeded / failed / stuck, posts per run, duplicate step events,
provider requests made more than once, and how long after the last fault the last run finished; the last
line is `lost: N`. Bounded: it gives up waiting after --budget seconds (at most 15 minutes in all).

    .venv/bin/python bench/chaos.py [--runs 50] [--seed N] [--latency 0.5] [--budget 780]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.overhead import Worker, clean_env, make_media, stop_workers  # noqa: E402
from schemas.pipeline import FINAL, PIPELINE, RunStatus  # noqa: E402
from tests.harness import TcpProxy  # noqa: E402
from workers import keys  # noqa: E402
from workers.providers.simulator import SimulatorConfig, running_simulator  # noqa: E402

PRESSROOM = [sys.executable, "-m", "workers.cli"]
BUCKET = "chaos"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server of the benchmark's own, persisting with AOF (everysec), that can crash and return."""

    def __init__(self, directory: Path) -> None:
        self.port, self.dir = free_port(), directory
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        for _ in range(200):
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def crash(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # no shutdown save: what an OOM kill or a power cut does
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.crash()


class Chaos:
    def __init__(self, args: argparse.Namespace, tmp: Path, simulator: str) -> None:
        self.args, self.tmp, self.rng = args, tmp, random.Random(args.seed)
        self.redis = RedisServer(tmp / "redis")
        from moto.server import ThreadedMotoServer

        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        moto_port = self.moto.get_host_and_port()[1]
        self.s3_direct = f"http://127.0.0.1:{moto_port}"
        self.proxy = TcpProxy(moto_port)
        self.env = clean_env(
            PRESSROOM_BROKER_URL=self.redis.url, PRESSROOM_STORAGE_URL=f"s3://{BUCKET}/pressroom",
            PRESSROOM_S3_ENDPOINT_URL=self.proxy.url, PRESSROOM_S3_ACCESS_KEY_ID="chaos",
            PRESSROOM_S3_SECRET_ACCESS_KEY="chaos", PRESSROOM_TRANSCRIPTION_BASE_URL=simulator,
            PRESSROOM_LLM_BASE_URL=simulator, PRESSROOM_STALL_AFTER="30", PRESSROOM_DATA_DIR=str(tmp / "data"))
        self.simulator = simulator
        self.workers: dict[str, Worker] = {}
        self.timeline: list[str] = []
        self.t0 = time.monotonic()
        self.last_fault_end = 0.0
        self.state = redis.Redis.from_url(self.redis.url, decode_responses=True)

    # --- the system --------------------------------------------------------------------------------
    def log(self, text: str) -> None:
        line = f"{time.monotonic() - self.t0:6.1f}s  {text}"
        self.timeline.append(line)
        print(line, flush=True)

    def start_worker(self, name: str) -> Worker:
        queue = name.rsplit("-", 1)[0]
        cmd = ([*PRESSROOM, "beat", "--loglevel", "WARNING"] if name == "beat" else
               [*PRESSROOM, "worker", "--queues", queue, "--concurrency", "1", "--name", f"{name}@chaos",
                "--loglevel", "INFO"])
        worker = Worker(name, cmd, self.env, self.tmp / "logs" / f"{name}-{int(time.monotonic() * 1000)}.log")
        self.workers[name] = worker
        return worker

    def start_all(self) -> None:
        (self.tmp / "logs").mkdir()
        import boto3

        boto3.client("s3", endpoint_url=self.s3_direct, aws_access_key_id="chaos", aws_secret_access_key="chaos",
                     region_name="us-east-1").create_bucket(Bucket=BUCKET)
        names = [f"{step}-{i}" for step in PIPELINE for i in (1, 2)] + ["watch-1"]
        started = [self.start_worker(n) for n in names]
        deadline = time.monotonic() + 180
        for worker in started:
            worker.wait_ready(deadline)
        self.start_worker("beat")
        self.t0 = time.monotonic()

    def pool_children(self, worker: Worker) -> list[int]:
        path = Path(f"/proc/{worker.proc.pid}/task/{worker.proc.pid}/children")
        with contextlib.suppress(OSError):
            return [int(p) for p in path.read_text().split()]
        return []

    def restart(self, name: str, after: float = 2.0) -> None:
        def later() -> None:
            time.sleep(after)
            self.start_worker(name)
        threading.Thread(target=later, daemon=True).start()

    # --- faults ------------------------------------------------------------------------------------
    def redis_restart(self, gap: float) -> None:
        self.log(f"Redis crashed (SIGKILL); back in {gap:.0f} s")
        self.redis.crash()
        time.sleep(gap)
        self.redis.start()
        self.log("Redis back (AOF reloaded)")

    def s3_outage(self, gap: float) -> None:
        self.log(f"S3 unreachable for {gap:.0f} s")
        self.proxy.cut()
        time.sleep(gap)
        self.proxy.restore()
        self.log("S3 back")

    def kill_pool_child(self) -> None:
        name = self.rng.choice([n for n in self.workers if n not in ("beat", "watch-1")])
        children = self.pool_children(self.workers[name])
        if children:
            os.kill(children[0], signal.SIGKILL)
        self.log(f"SIGKILL pool child {children[:1]} of {name}")

    def kill_joiner(self) -> None:
        """A pool child that holds a join/emit lease right now, if one can be caught within 60 s."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                for key in self.state.scan_iter(match=f"{keys.PREFIX}:emit:*", count=1000):
                    if self.state.get(key) != "sending":
                        continue
                    _, _, run_id, step, *_ = key.split(":")
                    pid = self.state.hget(keys.run_key(run_id), f"{step}.pid")
                    if pid:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)
                            self.log(f"SIGKILL pool child {pid} holding the {step} lease of run {run_id}")
                            return
            time.sleep(0.01)
        self.log("no join lease caught in 60 s: SIGKILL a random pool child instead")
        self.kill_pool_child()

    def kill_worker(self) -> None:
        name = self.rng.choice([n for n in self.workers if n not in ("beat", "watch-1")])
        self.workers[name].signal(signal.SIGKILL)
        self.workers[name].proc.wait()
        self.log(f"SIGKILL whole worker {name} (restarted in 5 s)")
        self.restart(name, 5.0)

    def term_worker(self) -> None:
        name = self.rng.choice([n for n in self.workers if n not in ("beat", "watch-1")])
        worker = self.workers[name]
        # to the main process only, as the kubelet and compose's tini send it: Celery's warm shutdown (sent to
        # the process group, it would also end the pool child at once, cutting its task short)
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.proc.pid, signal.SIGTERM)
        self.log(f"SIGTERM worker {name} (warm shutdown; restarted when it has stopped)")

        def when_stopped() -> None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.proc.wait(600)
            self.start_worker(name)
        threading.Thread(target=when_stopped, daemon=True).start()

    def inject(self) -> None:
        faults: list[tuple[str, Any]] = [
            ("redis 5 s", lambda: self.redis_restart(5)), ("redis 30 s", lambda: self.redis_restart(30)),
            ("s3 30 s", lambda: self.s3_outage(30)), ("s3 120 s", lambda: self.s3_outage(120)),
            ("pool child", self.kill_pool_child), ("joiner", self.kill_joiner),
            ("whole worker", self.kill_worker), ("sigterm", self.term_worker),
        ]
        self.rng.shuffle(faults)
        at = sorted(self.rng.uniform(5, 150) for _ in faults)
        for (_, fault), when in zip(faults, at, strict=True):
            time.sleep(max(0.0, when - (time.monotonic() - self.t0)))
            fault()
        self.last_fault_end = time.monotonic()

    # --- the runs ----------------------------------------------------------------------------------
    def submit_all(self, media: list[Path]) -> list[str]:
        """Submit like a user at the terminal would: spread over a minute, trying again when a fault bites."""
        run_ids: list[str] = []
        gap = 60.0 / max(1, len(media))
        for path in media:
            while True:
                out = subprocess.run([*PRESSROOM, "submit", str(path)], env=self.env, capture_output=True,
                                     text=True, timeout=120)
                if out.returncode == 0:
                    run_ids.append(out.stdout.strip())
                    break
                time.sleep(2)
            time.sleep(gap)
        return run_ids

    def statuses(self, run_ids: list[str]) -> dict[str, str]:
        with contextlib.suppress(redis.RedisError):
            return {r: self.state.hget(keys.run_key(r), "status") or "?" for r in run_ids}
        return {}

    def report(self, run_ids: list[str], finished_at: float | None) -> int:
        runs = {r: self.state.hgetall(keys.run_key(r)) for r in run_ids}
        by_status = collections.Counter(run.get("status", "?") for run in runs.values())
        stuck = [r for r, run in runs.items() if run.get("status") not in {s.value for s in FINAL}]
        failed = [r for r, run in runs.items() if run.get("status") == RunStatus.failed]
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.s3_direct, aws_access_key_id="chaos",
                          aws_secret_access_key="chaos", region_name="us-east-1")
        posts = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix="pressroom/posts/") for o in page.get("Contents", [])]
        duplicates = 0
        for run_id in run_ids:
            events = [json.loads(e) for e in self.state.lrange(keys.run_events_key(run_id), 0, -1)]
            seen = collections.Counter((e["kind"], e.get("step"), e.get("generation", 0)) for e in events
                                       if e["kind"] != "run.retried")
            duplicates += sum(n - 1 for n in seen.values())
        redriven = sum(1 for r in run_ids for e in self.state.lrange(keys.run_events_key(r), 0, -1)
                       if '"run.retried"' in e)
        requests = httpx.get(f"{self.simulator.removesuffix('/v1')}/debug/requests", timeout=10).json()
        print("\nfaults:\n  " + "\n  ".join(self.timeline))
        print(f"\nruns: {len(run_ids)}  " + "  ".join(f"{k}: {v}" for k, v in sorted(by_status.items())))
        print(f"stuck (not over): {len(stuck)} {stuck[:5]}")
        for run_id in failed[:5]:
            print(f"failed {run_id}: {runs[run_id].get('error')}")
        print(f"posts: {len(posts)} for {len(run_ids)} runs ({len(set(posts))} distinct)")
        print(f"duplicate step events: {duplicates}; runs re-driven by the reconciler: {redriven}")
        print(f"provider requests: {requests['requests']}, made more than once: {requests['repeated']}")
        if finished_at is not None:
            print(f"last run finished {finished_at - self.last_fault_end:.1f} s after the last fault ended")
        lost = len(stuck) + len(failed)
        print(f"lost: {lost}")
        return lost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 10_000)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds the simulator takes per request")
    parser.add_argument("--budget", type=float, default=780, help="seconds to wait for the runs, at most")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    print(f"chaos: {args.runs} runs, seed {args.seed}", flush=True)
    budget_end = time.monotonic() + min(args.budget, 840)
    with tempfile.TemporaryDirectory(prefix="pressroom-chaos-") as tmp, \
            running_simulator(SimulatorConfig(latency=args.latency)) as simulator:
        (Path(tmp) / "redis").mkdir()
        chaos = Chaos(args, Path(tmp), simulator)
        try:
            chaos.start_all()
            media = make_media(Path(tmp) / "media", args.runs, 0)
            faults = threading.Thread(target=chaos.inject, daemon=True)
            faults.start()
            run_ids = chaos.submit_all(media)
            finished_at = None
            while time.monotonic() < budget_end:
                statuses = chaos.statuses(run_ids)
                if faults.is_alive() is False and statuses and all(s in {x.value for x in FINAL}
                                                                   for s in statuses.values()):
                    finished_at = time.monotonic()
                    break
                time.sleep(1)
            return 1 if chaos.report(run_ids, finished_at) else 0
        finally:
            stop_workers()
            chaos.proxy.cut()
            chaos.moto.stop()
            chaos.redis.stop()


if __name__ == "__main__":
    sys.exit(main())
