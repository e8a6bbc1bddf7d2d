"""Shared provider limits across worker processes: 8 translate workers against an LLM limited to L a minute.

The simulator for the LLM answers 429 (with Retry-After) to any request beyond L in the last 60 s, as a
provider does; another simulator, unlimited, transcribes. Pressroom's workers run on Redis db 11: one per
other step and `--translate-workers` (8) translate worker processes, all with PRESSROOM_LLM_RPM=L, so the
translate parts and the tag step draw on one allowance in Redis. `--runs` talks of `--minutes` each are
submitted at once: far more LLM work than L a minute allows, so the limiter, not the work, sets the pace.

From the LLM simulator's own record of every request (when it came, and whether it was let through):
* the most requests it let through in any 60-s span (sliding over each arrival) — must not exceed L;
* the 429s it sent, and how many after the first minute — must be none;
* utilisation: requests let through in the first `--measure` whole minutes, ÷ (L × minutes), while the
  backlog still waited (goal ≥ 0.9).
The last line is `utilisation: X`.

    .venv/bin/python bench/rate_limit.py [--rpm 60] [--runs 80] [--minutes 8] [--translate-workers 8]
        [--measure 3] [--llm-latency 0.5]
"""

from __future__ import annotations

import argparse
import bisect
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

if __package__ in (None, ""):  # run as a script: make `bench` and `workers` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.overhead import ROOT, _interrupt, _tails, clean_env, stop_workers, workers
from workers.providers.simulator import SimulatorConfig, running_simulator
from workers.state import RunState

BROKER_URL = "redis://127.0.0.1:6379/11"
OTHER_STEPS = ["download", "transcribe", "tag", "publish"]


def make_talks(directory: Path, count: int, minutes: float) -> list[Path]:
    """Distinct tones (distinct bytes: nothing is reused), AAC mono 16 kHz so download copies them."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"talk-{i:03d}.m4a"
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
                        "-i", f"sine=frequency={300 + 7 * i}:sample_rate=16000:duration={minutes * 60}",
                        "-ac", "1", "-c:a", "aac", "-b:a", "32k", str(path)], check=True)
        paths.append(path)
    return paths


def most_in_a_minute(times: list[float]) -> int:
    """The most arrivals within any 60-s span that starts at an arrival."""
    return max((bisect.bisect_left(times, t + 60) - i for i, t in enumerate(times)), default=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rpm", type=int, default=60, help="L: the LLM's limit, and PRESSROOM_LLM_RPM")
    parser.add_argument("--runs", type=int, default=80)
    parser.add_argument("--minutes", type=float, default=8.0, help="length of each talk (more: more translate parts)")
    parser.add_argument("--translate-workers", type=int, default=8)
    parser.add_argument("--measure", type=int, default=3, help="whole minutes over which utilisation is measured")
    parser.add_argument("--llm-latency", type=float, default=0.5)
    parser.add_argument("--without-limiter", action="store_true",
                        help="for contrast: no PRESSROOM_LLM_RPM, each worker on its own (and the SDK's retries)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    db = redis.Redis.from_url(BROKER_URL, decode_responses=True)
    db.flushdb()
    llm_config = SimulatorConfig(rpm_limit=args.rpm, latency=args.llm_latency, llm_tokens_per_second=200)
    with tempfile.TemporaryDirectory(prefix="pressroom-bench-rate-") as tmp, \
            running_simulator(SimulatorConfig(transcribe_seconds_per_audio_minute=0.05)) as stt, \
            running_simulator(llm_config) as llm:
        talks = make_talks(Path(tmp) / "media", args.runs, args.minutes)
        env = clean_env(PRESSROOM_BROKER_URL=BROKER_URL, PRESSROOM_DATA_DIR=str(Path(tmp) / "data"),
                        PRESSROOM_TRANSCRIPTION_BASE_URL=stt, PRESSROOM_LLM_BASE_URL=llm,
                        **({} if args.without_limiter else {"PRESSROOM_LLM_RPM": str(args.rpm)}))
        worker = [sys.executable, "-m", "workers.cli", "worker", "--concurrency", "1", "--loglevel", "INFO"]
        cmds = {s: [*worker, "--queues", s, "--name", f"{s}@bench"] for s in OTHER_STEPS}
        cmds |= {f"translate-{i}": [*worker, "--queues", "translate", "--name", f"translate-{i}@bench"]
                 for i in range(args.translate_workers)}
        try:
            with workers(cmds, env, Path(tmp) / "logs"):
                started = time.time()
                out = subprocess.run([sys.executable, "-m", "workers.cli", "submit", *map(str, talks)], env=env,
                                     cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)
                run_ids = out.stdout.split()
                print(f"submitted {len(run_ids)} runs of {args.minutes:g} min; L = {args.rpm} requests/min; "
                      f"{args.translate_workers} translate worker processes; shared limiter "
                      f"{'off' if args.without_limiter else 'on'}", flush=True)
                finished = _wait(RunState(db), run_ids, started, llm, args)
        except KeyboardInterrupt:
            stop_workers()
            return 130
        arrivals = httpx.get(llm.removesuffix("/v1") + "/debug/arrivals", timeout=10).json()["arrivals"]
    db.flushdb()
    return report(arrivals, args, finished, time.time() - started)


def _wait(state: RunState, run_ids: list[str], started: float, llm: str, args: argparse.Namespace) -> str:
    """Until every run ended, or the measured minutes plus one have passed with work still waiting."""
    deadline = started + max(900.0, 60 * (args.measure + 2))
    while time.time() < deadline:
        statuses = [state.run(r).get("status") for r in run_ids]
        ok, failed = statuses.count("succeeded"), statuses.count("failed")
        summary = f"{ok} succeeded, {failed} failed of {len(run_ids)} runs"
        if ok + failed == len(run_ids) or time.time() - started > 60 * (args.measure + 1) + 30:
            return summary  # all ended, or enough measured: the rest would only lengthen the run
        time.sleep(2)
    raise TimeoutError(f"runs did not end in time\n{_tails()}")


def report(arrivals: list[Any], args: argparse.Namespace, finished: str, elapsed: float) -> int:
    if not arrivals:
        print("the LLM simulator received no requests")
        return 1
    t0 = arrivals[0][0]
    through = [t for t, status in arrivals if status == 200]
    refused = [t for t, status in arrivals if status == 429]
    late_429 = sum(t >= t0 + 60 for t in refused)
    per_minute = [sum(t0 + 60 * m <= t < t0 + 60 * (m + 1) for t in through) for m in range(int((through[-1] - t0)
                                                                                             // 60) + 1)]
    measured = per_minute[: args.measure]
    whole = len(measured) if len(per_minute) > args.measure else max(0, len(per_minute) - 1)
    utilisation = sum(measured[:whole]) / (args.rpm * whole) if whole else 0.0
    print(f"{finished} after {elapsed:.0f} s")
    print(f"requests let through per minute (from the first): {per_minute}")
    print(f"most let through in any 60 s: {most_in_a_minute(through)} (limit {args.rpm})")
    print(f"429s: {len(refused)} in all, {late_429} after the first minute")
    print(f"utilisation: {utilisation:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
