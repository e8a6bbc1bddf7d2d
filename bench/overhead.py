"""Pressroom's orchestration overhead, measured against a plain Celery chain doing the same work.

Three measurements on the same Redis (db 14, flushed between phases), with worker processes started the
same way (one per step queue, prefork, concurrency 1 by default):

* pressroom — N pipelines through the five real steps in distributed mode: `pressroom worker` per queue,
  storage in a local directory (or moto S3 with --s3), the simulator at zero latency for transcription
  and the LLM. Timed from the first submit (resolve_source + submit) to the last run's publish end.
* raw — a plain five-task Celery `chain` (bench/raw_chain.py) whose tasks call the same step functions
  and providers (prepare_local, OpenAITranscriber.transcribe, translate, tag, render_post/build_post)
  and pass each output as JSON to the next, with Pressroom's broker settings (JSON, late acks, prefetch
  1). Since both sides do the same ffmpeg, HTTP and pydantic work, the ratio pressroom ÷ raw isolates
  what Pressroom adds: run state, idempotency hashing, artifact storage and the event log.
* raw no-op — the same chain with empty tasks: the broker's ceiling on this machine, for reference.

Phases alternate (pressroom, raw, pressroom, raw, ...) because the machine is noisy; the summary gives
the best and median of each. The last line is `ratio: X` (best pressroom ÷ best raw pipelines/s).

    .venv/bin/python bench/overhead.py [--pipelines 20] [--rounds 2] [--workers-per-queue 1] [--s3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
BROKER_URL = "redis://127.0.0.1:6379/14"
STEPS = ["download", "transcribe", "translate", "tag", "publish"]
_WORKERS: list[Worker] = []  # every worker process started, for cleanup on any exit


class Worker:
    """One worker process in its own session, so its pool children are stopped with it."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        _WORKERS.append(self)

    def wait_ready(self, deadline: float) -> None:
        while b" ready." not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {self.name} did not start:\n{self.tail()}")
            time.sleep(0.1)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-1500:]

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)


def stop_workers() -> None:
    """SIGTERM every worker's process group, then SIGKILL whatever is left after 15 s."""
    live = [w for w in _WORKERS if w.proc.poll() is None]
    for w in live:
        w.signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for w in live:
        try:
            w.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.signal(signal.SIGKILL)
            w.proc.wait()
    for w in _WORKERS:  # pool children of a worker that already exited
        w.signal(signal.SIGKILL)
    _WORKERS.clear()


@contextlib.contextmanager
def workers(cmds: dict[str, list[str]], env: dict[str, str], logdir: Path) -> Iterator[list[Worker]]:
    logdir.mkdir(parents=True, exist_ok=True)
    started = [Worker(name, cmd, env, logdir / f"{name}.log") for name, cmd in cmds.items()]
    try:
        deadline = time.monotonic() + 120
        for w in started:
            w.wait_ready(deadline)
        yield started
    finally:
        stop_workers()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRESSROOM_", "OPENAI_", "BENCH_"))}
    return env | {"PYTHONPATH": str(ROOT)} | extra


def make_media(directory: Path, count: int, first: int) -> list[Path]:
    """Distinct 3 s sine WAVs (distinct bytes → distinct video ids → no artifact reuse between runs)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"talk-{i:04d}.wav" for i in range(first, first + count)]
    for i, path in enumerate(paths, first):
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
                        "-i", f"sine=frequency={200 + 3 * i}:duration=3", "-ac", "1", "-ar", "16000", str(path)],
                       check=True)
    return paths


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path, sim_url: str, s3: str | None) -> None:
        self.args, self.tmp, self.sim_url, self.s3_endpoint = args, tmp, sim_url, s3
        self.db = redis.Redis.from_url(BROKER_URL)
        self.results: dict[str, list[float]] = {"pressroom": [], "raw": [], "raw-noop": []}

    def timeout(self, pipelines: int) -> float:
        return 120 + 10 * pipelines

    def worker_count(self) -> list[tuple[str, int]]:  # (queue, index) of every worker process
        return [(s, k) for s in STEPS for k in range(self.args.workers_per_queue)]

    def report(self, kind: str, rnd: int, n: int, elapsed: float) -> None:
        self.results[kind].append(rate := n / elapsed)
        print(f"{kind:<9} round {rnd}: {n} pipelines in {elapsed:6.2f} s = {rate:7.2f} pipelines/s "
              f"({5 * rate:7.1f} tasks/s)", flush=True)

    def step_line(self, kind: str, timings: list[dict[str, tuple[float, float]]]) -> None:
        """Mean run time of each step and mean wait before it (since the previous step ended), in ms."""
        parts = []
        for i, step in enumerate(STEPS):
            run = statistics.mean(t[step][1] - t[step][0] for t in timings)
            wait = statistics.mean(t[step][0] - t[STEPS[i - 1]][1] for t in timings) if i else 0.0
            parts.append(f"{step} {1000 * run:.0f}" + (f" (+{1000 * wait:.0f} wait)" if i else ""))
        print(f"  {kind} per-step ms: " + ", ".join(parts), flush=True)

    # --- pressroom --------------------------------------------------------------------------------
    def pressroom(self, rnd: int, media: list[Path]) -> None:
        from workers.app import create_app
        from workers.settings import load_settings
        from workers.submit import resolve_source, submit

        self.db.flushdb()
        settings: dict[str, str] = {"broker_url": BROKER_URL, "transcription_base_url": self.sim_url,
                                    "llm_base_url": self.sim_url}
        if self.s3_endpoint:
            from workers.storage.s3 import S3Store

            settings |= {"storage_url": f"s3://bench-{uuid.uuid4().hex[:10]}/r{rnd}",
                         "s3_endpoint_url": self.s3_endpoint, "s3_access_key_id": "test",
                         "s3_secret_access_key": "test"}
            S3Store.from_url(settings["storage_url"], endpoint_url=self.s3_endpoint, access_key_id="test",
                             secret_access_key="test").ensure_bucket()
        else:
            settings["storage_url"] = str(self.tmp / f"store-r{rnd}")
        env = clean_env(**{f"PRESSROOM_{k.upper()}": v for k, v in settings.items()})
        cmds = {f"pressroom-{s}-{k}": [sys.executable, "-m", "workers.cli", "worker", "--queues", s,
                                       "--concurrency", str(self.args.concurrency), "--loglevel", "INFO",
                                       "--name", f"{s}-{k}@%h"]
                for s, k in self.worker_count()}
        app = create_app(load_settings(**settings))
        rt = app.pressroom
        try:
            with workers(cmds, env, self.tmp / f"logs-pressroom-r{rnd}"):
                warmup, files = media[: self.args.warmup], media[self.args.warmup :]
                for batch in (warmup, files):  # warm-up runs first, untimed: first-call costs in each child
                    t0 = time.time()
                    run_ids = []
                    for f in batch:
                        source, video_id = resolve_source(str(f), rt)
                        run_ids.append(submit(app, rt, source, video_id).run_id)
                    runs = self.wait_pressroom(rt, run_ids, time.monotonic() + self.timeout(len(batch)))
            elapsed = max(float(r["publish.ended"]) for r in runs) - t0
            self.report("pressroom", rnd, len(files), elapsed)
            self.step_line("pressroom", [{s: (float(r[f"{s}.started"]), float(r[f"{s}.ended"])) for s in STEPS}
                                         for r in runs])
        finally:
            app.close()
            rt.state.kv.close()
            self.db.flushdb()

    def wait_pressroom(self, rt: Any, run_ids: list[str], deadline: float) -> list[dict[str, str]]:
        """Poll the runs in submission order (they finish roughly in that order), one at a time."""
        pending, done = list(run_ids), []
        while pending:
            run = rt.state.run(pending[0])
            if run.get("status") == "succeeded":
                done.append(run)
                pending.pop(0)
                continue
            if run.get("status") == "failed":
                raise RuntimeError(f"run {pending[0]} failed: {run.get('error')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} runs unfinished; first: {run}\n{_tails()}")
            time.sleep(0.02)
        return done

    # --- raw --------------------------------------------------------------------------------------
    def raw(self, rnd: int, media: list[Path]) -> None:
        from bench import raw_chain

        self.db.flushdb()
        env = clean_env(BENCH_BROKER_URL=BROKER_URL, BENCH_SIM_URL=self.sim_url)
        cmds = {f"raw-{s}-{k}": [sys.executable, "-m", "celery", "-A", "bench.raw_chain", "worker",
                                 "-Q", raw_chain.QUEUES[s], "-n", f"raw-{s}-{k}@%h", "-P", "prefork",
                                 "-c", str(self.args.concurrency), "--loglevel", "INFO"]
                for s, k in self.worker_count()}
        work = self.tmp / f"raw-r{rnd}"
        try:
            with workers(cmds, env, self.tmp / f"logs-raw-r{rnd}"):
                warmup, files = media[: self.args.warmup], media[self.args.warmup :]
                for batch in (warmup, files):
                    self.db.delete(raw_chain.DONE_KEY)
                    t0 = time.time()
                    for f in batch:
                        raw_chain.work_chain(str(f), f.stem, str(work)).apply_async()
                    entries = self.wait_list(raw_chain.DONE_KEY, len(batch), self.timeout(len(batch)))
                self.report("raw", rnd, len(files), max(e["end"] for e in entries) - t0)
                self.step_line("raw", [e["timing"] for e in entries])
                n = self.args.noop_pipelines
                t0 = time.time()
                for i in range(n):
                    raw_chain.noop_chain(i).apply_async()
                entries = self.wait_list(raw_chain.NOOP_DONE_KEY, n, self.timeout(0))
                self.report("raw-noop", rnd, n, max(e["end"] for e in entries) - t0)
        finally:
            raw_chain.app.close()
            self.db.flushdb()

    def wait_list(self, key: str, n: int, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while self.db.llen(key) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.db.llen(key)}/{n} pipelines finished\n{_tails()}")
            time.sleep(0.02)
        return [json.loads(raw) for raw in self.db.lrange(key, 0, -1)]


def _tails() -> str:
    return "\n".join(f"--- {w.name}:\n{w.tail()}" for w in _WORKERS)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C


def summary(results: dict[str, list[float]]) -> None:
    print("summary (pipelines/s; best and median over rounds):")
    for kind, rates in results.items():
        tasks = f"   = {5 * max(rates):.1f} tasks/s best" if kind == "raw-noop" else ""
        print(f"  {kind:<9} best {max(rates):7.2f}  median {statistics.median(rates):7.2f}{tasks}")
    ratio = max(results["pressroom"]) / max(results["raw"])
    median = statistics.median(results["pressroom"]) / statistics.median(results["raw"])
    print(f"  pressroom / raw: best {ratio:.2f}, median {median:.2f}  (goal ≥ 0.5)")
    print(f"ratio: {ratio:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", type=int, default=20, help="pipelines per pressroom/raw round")
    parser.add_argument("--rounds", type=int, default=2, help="pressroom/raw alternations")
    parser.add_argument("--workers-per-queue", type=int, default=1, help="worker processes per step queue")
    parser.add_argument("--concurrency", type=int, default=1, help="prefork pool size of each worker")
    parser.add_argument("--noop-pipelines", type=int, default=200, help="pipelines per no-op round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed pipelines per phase, run first")
    parser.add_argument("--s3", action="store_true", help="pressroom stores artifacts in moto S3, not a dir")
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    from workers.providers.simulator import SimulatorConfig, running_simulator

    redis.Redis.from_url(BROKER_URL).ping()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pressroom-bench-")))
        stack.callback(redis.Redis.from_url(BROKER_URL).flushdb)
        stack.callback(stop_workers)  # runs first: workers go before their Redis db is flushed
        per_round = args.warmup + args.pipelines
        media = [make_media(tmp / f"media-r{r}", per_round, r * per_round) for r in range(args.rounds)]
        sim_url = stack.enter_context(running_simulator(SimulatorConfig()))
        s3 = None
        if args.s3:
            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per S3 request
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            stack.callback(server.stop)
            host, port = server.get_host_and_port()
            s3 = f"http://{host}:{port}"
        print(f"{args.pipelines} pipelines x {args.rounds} rounds; {args.workers_per_queue} worker(s) per queue, "
              f"concurrency {args.concurrency}; store {'moto S3' if s3 else 'local dir'}; {BROKER_URL}", flush=True)
        bench = Bench(args, tmp, sim_url, s3)
        try:
            for rnd in range(1, args.rounds + 1):
                bench.pressroom(rnd, media[rnd - 1])
                bench.raw(rnd, media[rnd - 1])
        except KeyboardInterrupt:
            print("interrupted; cleaning up", file=sys.stderr)
            return 130
        summary(bench.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
