"""How fast the dashboard lists runs with 10,000 of them: GET /api/runs and the runs page (GET /) over
real HTTP, 200 times per query.

Uses Redis database 11 of its own (FLUSHDB on that number only, before and after). Prints p50/p95 per query
and, last, `p95: X ms` (the worst query's p95; the goal is under 200 ms).

    .venv/bin/python -m bench.dashboard_list [--redis redis://127.0.0.1:6379/11] [--runs 10000]
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, cast

import httpx
import redis
import uvicorn

from schemas.artifacts import VideoSource
from schemas.events import RunRequested, Step, StepFailed
from schemas.run import RunSpec
from workers.app import create_app
from workers.dashboard.api import create_api
from workers.settings import load_settings
from workers.state import KV, RunState

ERRORS = ["quota exceeded", "private video", "server busy (503)", "bad gateway", "members-only video"]


def populate(url: str, runs: int) -> None:
    """Runs made with RunState's own calls (creation pipelined): a fifth failed, a tenth running."""
    client = redis.Redis.from_url(url, decode_responses=True)
    rng = random.Random(7)
    direct = RunState(cast(KV, client))  # step_started reads a counter back: not pipelinable
    for start in range(0, runs, 1000):
        pipe = client.pipeline(transaction=False)
        state = RunState(cast(KV, pipe))
        for n in range(start, min(runs, start + 1000)):
            spec = RunSpec(run_id=f"run-{n:05d}", video_id=f"vid{n:08d}", channel_id=f"UC{n % 20:02d}",
                           source=VideoSource(kind="youtube", uri=f"https://www.youtube.com/watch?v=vid{n:08d}"))
            state.create(spec)
            state.append_event(RunRequested(run=spec))
            roll = rng.random()
            if roll < 0.3:
                step = rng.choice(list(Step))
                pipe.execute()
                direct.step_started(spec.run_id, step, 1, f"{step}@bench", 1)
                if roll < 0.2:
                    direct.step_failed(StepFailed(run=spec, step=step, attempt=1, error_type="PermanentError",
                                                 message=rng.choice(ERRORS)), traceback="Traceback …")
        pipe.execute()


def timed(client: httpx.Client, params: dict[str, Any], n: int, path: str = "/api/runs") -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        response = client.get(path, params=params)
        out.append((time.perf_counter() - t0) * 1000)
        response.raise_for_status()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    db = redis.Redis.from_url(args.redis)
    db.flushdb()
    try:
        t0 = time.perf_counter()
        populate(args.redis, args.runs)
        print(f"{args.runs} runs created in {time.perf_counter() - t0:.1f} s")
        with tempfile.TemporaryDirectory() as tmp:
            app = create_app(load_settings(broker_url=args.redis, data_dir=Path(tmp)))
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY
            sock.bind(("127.0.0.1", 0))
            server = uvicorn.Server(uvicorn.Config(create_api(app), log_level="warning", lifespan="off",
                                                   access_log=False))
            thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
            thread.start()
            while not server.started:
                time.sleep(0.01)
            worst = 0.0
            try:
                with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=30) as client:
                    queries = {"default page": {}, "status=failed": {"status": "failed"},
                               "search q=quota": {"q": "quota"}, "channel+status": {"channel": "UC07",
                                                                                     "status": "failed"}}
                    for name, params in queries.items():
                        total = client.get("/api/runs", params=params).json()["total"]  # and a warm-up
                        for kind, path in (("API ", "/api/runs"), ("page", "/")):  # the JSON and the HTML list
                            times = timed(client, params, args.requests, path)
                            p50 = statistics.median(times)
                            p95 = statistics.quantiles(times, n=20)[-1]
                            worst = max(worst, p95)
                            print(f"{kind} {name:<16} total {total:>6}  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms")
            finally:
                server.should_exit = True
                thread.join(10)
                sock.close()
        print(f"p95: {worst:.1f} ms")
    finally:
        db.flushdb()


if __name__ == "__main__":
    main()
