"""Benchmark (not a test): how long after a whole worker is SIGKILLed its step runs on another worker, with
the default settings (PRESSROOM_VISIBILITY_TIMEOUT and the keepalive of workers/keepalive.py). Goal ≤ 2 min.

Two translate workers (A and B), one worker for each other step, on Redis db 14 and a local store; the
simulator answers each LLM call after 60 s, so the translation is still running when its worker dies.
Each trial submits a talk, waits until translate runs on one worker, SIGKILLs that worker's whole process
group (main process and pool child), and times until the run shows translate started again on the
other. Then it restarts the killed worker for the next trial.

    .venv/bin/python bench/worker_loss.py [--trials 3]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.overhead import BROKER_URL, Worker, clean_env, make_media, stop_workers, workers
from workers.app import create_app
from workers.providers.simulator import SimulatorConfig, running_simulator
from workers.settings import load_settings
from workers.submit import resolve_source, submit

PRESSROOM = [sys.executable, "-m", "workers.cli"]


def worker_cmd(queue: str, name: str) -> list[str]:
    return [*PRESSROOM, "worker", "--queues", queue, "--concurrency", "1", "--name", f"{name}@bench"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    db = redis.Redis.from_url(BROKER_URL, decode_responses=True)
    db.flushdb()
    timeout = load_settings().visibility_timeout
    print(f"visibility timeout {timeout} s (the default), keepalive every {timeout / 6:.0f} s")
    waits: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp, running_simulator(SimulatorConfig(latency=60.0)) as sim:
            env = clean_env(PRESSROOM_BROKER_URL=BROKER_URL, PRESSROOM_STORAGE_URL=f"{tmp}/store",
                            PRESSROOM_TRANSCRIPTION_BASE_URL=sim, PRESSROOM_LLM_BASE_URL=sim)
            cmds = {s: worker_cmd(s, s) for s in ("download", "transcribe", "tag", "publish")}
            cmds |= {"translate-a": worker_cmd("translate", "translate-a"),
                     "translate-b": worker_cmd("translate", "translate-b")}
            with workers(cmds, env, Path(tmp) / "logs") as started:
                by_name = {w.name: w for w in started}
                app = create_app(load_settings(broker_url=BROKER_URL, storage_url=f"{tmp}/store"))
                rt = app.pressroom
                for trial, media in enumerate(make_media(Path(tmp), args.trials, 0)):
                    source, video_id = resolve_source(str(media), rt)
                    run_id = submit(app, rt, source, video_id).run_id
                    while rt.state.run(run_id).get("translate.status") != "running":
                        time.sleep(0.05)
                    time.sleep(1.0)  # into the LLM call
                    holder = rt.state.run(run_id)["translate.worker"].split("@")[0]
                    victim = by_name[holder]
                    killed_at = time.monotonic()
                    victim.signal(signal.SIGKILL)
                    victim.proc.wait()
                    while rt.state.run(run_id).get("translate.worker", "").split("@")[0] == holder:
                        time.sleep(0.05)
                    wait = time.monotonic() - killed_at
                    taker = rt.state.run(run_id)["translate.worker"]
                    waits.append(wait)
                    print(f"trial {trial + 1}: killed {holder}; translate started on {taker} {wait:.1f} s later")
                    by_name[holder] = Worker(holder, cmds[holder], env, Path(tmp) / "logs" / f"{holder}-{trial}.log")
                    by_name[holder].wait_ready(time.monotonic() + 120)
    finally:
        stop_workers()
        db.flushdb()
    print(f"SIGKILL of a whole worker → its step on another worker: median {statistics.median(waits):.1f} s, "
          f"max {max(waits):.1f} s over {len(waits)} trials (goal ≤ 120 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
