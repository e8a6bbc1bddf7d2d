"""Fair queues: a short video's time to post alone, and right behind a long talk on the same workers.

The issue's acceptance test: a 5-minute video submitted right after a 3-hour talk, on the same workers,
posts in at most 2× its time alone (workers/fairness.py: every message of a run is sent at a priority
from the source's length, so the short video's work passes the talk's waiting parts).

Two phases per round, each with a flushed Redis db 14, a new store and data dir, and its own set of
`pressroom worker --queues <step> --concurrency 1` processes (--workers per step queue, prefork):

* alone — only the short video (speech-like AAC, made with ffmpeg) is submitted; its time runs from
  submit to its run's publish step ending (status "succeeded"), as the run state records it.
* behind — the long talk (bench/long_episode.py's make_talk) is submitted, then at once a new short
  video (another tone, so other bytes: nothing is reused); the short run is timed the same way. The
  phase stops once the short run has posted; the talk is left unfinished (its workers are killed).
  With --short-after transcribe (or translate) the short video is submitted only once the talk's
  transcribe (translate) parts were sent: submitted at once, the short run reaches each step before the
  talk does and never queues behind its parts, so only a later submission tests the ordering itself.

The simulator runs with realistic speeds, as in bench/long_episode.py: transcription
--transcribe-seconds-per-minute per audio minute, each LLM request --llm-latency plus its output at
--llm-tokens-per-second. While the short run is under way the benchmark samples, every 0.25 s, both
runs' state and each step queue's waiting messages per priority level; each phase then prints the
short run's per-step time and wait, and for the fanned-out steps (transcribe, translate) how long its
parts waited in the queue and what the long talk was doing meanwhile. With --rounds N both phases run
N times (alone, behind, alone, …) and the medians are compared. Last line: `ratio: X`, the short run's
time behind the talk ÷ its time alone (goal ≤ 2).

    .venv/bin/python bench/fairness.py [--workers 2] [--long-minutes 180] [--short-minutes 5] [--rounds 1]
        [--short-after submit|transcribe|translate]
        [--transcribe-seconds-per-minute 3] [--llm-tokens-per-second 50] [--llm-latency 0.5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

if __package__ in (None, ""):  # run as a script: make `bench` and `workers` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.long_episode import make_talk, scratch
from bench.overhead import BROKER_URL, STEPS, _tails, clean_env, workers

FANNED = ("transcribe", "translate")
_PART_LINE = re.compile(r"Task pressroom\.([a-z]+)\.part\[[^\]]+\] succeeded in ([0-9.]+)s: '([a-z-]+)'")
SAMPLE_SECONDS = 0.25


def make_short(path: Path, seconds: int, frequency: int) -> Path:
    """Like make_talk (8 s of tone, 1 s of silence, AAC), at another frequency: other bytes, another video id."""
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", f"sine=frequency={frequency}:sample_rate=16000:duration={seconds}",
                    "-af", "volume='if(lt(mod(t,9),8),1,0)':eval=frame", "-ac", "1", "-c:a", "aac", "-b:a", "32k",
                    str(path)], check=True)
    return path


@dataclass
class Sample:
    at: float
    short: dict[str, str]
    long: dict[str, str]
    queued: dict[str, tuple[int, int]]  # step -> (messages waiting at level 0, at later levels)


@dataclass
class Phase:
    kind: str  # "alone" or "behind"
    rnd: int
    t0: float  # when the short run was submitted
    run: dict[str, str]  # the short run's final state
    samples: list[Sample] = field(default_factory=list)
    note: str = ""  # when the short video was submitted, behind the talk
    parts: dict[str, list[tuple[float, str]]] = field(default_factory=dict)  # step -> (secs, result) from logs

    @property
    def time(self) -> float:
        return float(self.run["publish.ended"]) - self.t0


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path, long_talk: Path, sim_url: str) -> None:
        self.args, self.tmp, self.long_talk, self.sim_url = args, tmp, long_talk, sim_url
        self.db = redis.Redis.from_url(BROKER_URL, decode_responses=True)
        self.phases: list[Phase] = []
        self.shorts = 0

    def short_file(self) -> Path:
        self.shorts += 1
        return make_short(self.tmp / f"short-{self.shorts}.m4a", 60 * self.args.short_minutes, 400 + 37 * self.shorts)

    def phase(self, kind: str, rnd: int) -> Phase:
        from workers.app import create_app
        from workers.settings import load_settings
        from workers.submit import resolve_source, submit

        short = self.short_file()
        self.db.flushdb()
        name = f"{kind}-r{rnd}"
        settings = {"broker_url": BROKER_URL, "transcription_base_url": self.sim_url, "llm_base_url": self.sim_url,
                    "storage_url": str(self.tmp / f"store-{name}"), "data_dir": str(self.tmp / f"data-{name}")}
        scratch = self.tmp / f"scratch-{name}"  # the workers' step workdirs: gone with the bench's temp dir
        scratch.mkdir()
        env = clean_env(TMPDIR=str(scratch), **{f"PRESSROOM_{key.upper()}": v for key, v in settings.items()})
        cmds = {f"{s}-{i}": [sys.executable, "-m", "workers.cli", "worker", "--queues", s, "--concurrency", "1",
                             "--name", f"{s}-{i}@%h", "--loglevel", "INFO"]  # distinct node names per process
                for s in STEPS for i in range(self.args.workers)}
        app = create_app(load_settings(**settings))
        rt = app.pressroom
        try:
            with workers(cmds, env, self.tmp / f"logs-{name}") as started:
                # both uploads first, so the short video is submitted right after the talk
                sources = [resolve_source(str(f), rt) for f in ([self.long_talk] if kind == "behind" else [])
                           + [short]]
                long_id = submit(app, rt, *sources[0]).run_id if kind == "behind" else None
                note = "right after the talk"
                if long_id and self.args.short_after != "submit":
                    note = self.wait_for_parts(rt, long_id, self.args.short_after)
                t0 = time.time()
                short_id = submit(app, rt, *sources[-1]).run_id
                ph = self.wait(kind, rnd, t0, short_id, long_id)
                for w in started:  # the talk's parts would keep a warm shutdown waiting: not needed any more
                    w.signal(signal.SIGKILL)
            ph.note = note if long_id else ""
            for log in (self.tmp / f"logs-{name}").glob("*.log"):
                for step, secs, result in _PART_LINE.findall(log.read_text(errors="replace")):
                    ph.parts.setdefault(step, []).append((float(secs), result))
            self.phases.append(ph)
            self.report(ph)
            return ph
        finally:
            app.close()
            rt.state.kv.close()
            self.db.flushdb()

    def wait_for_parts(self, rt: Any, long_id: str, step: str) -> str:
        """Until the long talk's parts of this step are sent (most of them then wait in the step's queue)."""
        t = time.monotonic()
        deadline = t + 600 + 30 * self.args.long_minutes * self.args.transcribe_seconds_per_minute
        run: dict[str, str] = rt.state.run(long_id)
        while f"{step}.parts" not in run:
            if run.get("status") in {"failed", "skipped"}:
                raise RuntimeError(f"the long run {long_id} {run['status']}: {run.get('error') or run}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the long run {long_id} sent no {step} parts: {run}\n{_tails()}")
            time.sleep(0.1)
            run = rt.state.run(long_id)
        time.sleep(0.5)  # the parts are sent right after their count is recorded
        return f"{time.monotonic() - t:.1f} s after the talk, once its {run[f'{step}.parts']} {step} parts were sent"

    def wait(self, kind: str, rnd: int, t0: float, short_id: str, long_id: str | None) -> Phase:
        from schemas.events import Step
        from workers import keys

        lists = {s: keys.queue_lists(keys.QUEUES[Step(s)]) for s in STEPS}
        samples: list[Sample] = []
        deadline = time.monotonic() + 900 + 60 * self.args.short_minutes * self.args.transcribe_seconds_per_minute
        while True:
            pipe = self.db.pipeline(transaction=False)
            pipe.hgetall(keys.run_key(short_id))
            pipe.hgetall(keys.run_key(long_id) if long_id else "none")
            for s in STEPS:
                for key in lists[s]:
                    pipe.llen(key)
            out = pipe.execute()
            short, long, lens = out[0], out[1], out[2:]
            queued = {s: (lens[10 * i], sum(lens[10 * i + 1:10 * i + 10])) for i, s in enumerate(STEPS)}
            samples.append(Sample(time.time(), short, long, queued))
            status = short.get("status")
            if status == "succeeded":
                return Phase(kind, rnd, t0, short, samples)
            if status in {"failed", "skipped"}:
                raise RuntimeError(f"run {short_id} {status}: {short.get('error') or short}")
            if long.get("status") in {"failed", "skipped"}:
                raise RuntimeError(f"the long run {long_id} {long['status']}: {long.get('error') or long}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {short_id} unfinished: {short}\n{_tails()}")
            time.sleep(SAMPLE_SECONDS)

    # --- reporting ----------------------------------------------------------------------------------
    def report(self, ph: Phase) -> None:
        r = ph.run
        steps = []
        for i, step in enumerate(STEPS):
            wait = float(r[f"{step}.started"]) - (float(r[f"{STEPS[i - 1]}.ended"]) if i else ph.t0)
            steps.append(f"{step} {float(r[f'{step}.ended']) - float(r[f'{step}.started']):.1f} (+{wait:.1f})")
        print(f"{ph.kind:<6} round {ph.rnd}: {ph.time:6.1f} s submit→succeeded; per step s (+wait before): "
              + ", ".join(steps), flush=True)
        if ph.note:
            print(f"    submitted {ph.note}", flush=True)
        for i, step in enumerate(STEPS):
            sent = float(r[f"{STEPS[i - 1]}.ended"]) if i else ph.t0
            if float(r[f"{step}.started"]) - sent > 1 and (at := _first(ph.samples, lambda s, t=sent: s.at >= t)):
                line = f"    {step} task waited: queue then {at.queued[step][0]} at level 0, {at.queued[step][1]} later"
                if ph.kind == "behind":
                    line += "; " + self.long_line(at.long, "long talk then")
                print(line, flush=True)
        for step in FANNED:
            print("    " + self.parts_line(ph, step), flush=True)
        if ph.kind == "behind":
            print("    " + self.long_line(ph.samples[-1].long, "the long talk when the short run posted"), flush=True)
            done = []
            for step in FANNED:  # the short run's only part joins ('succeeded'); the talk's others say 'part-done'
                secs = [t for t, result in ph.parts.get(step, []) if result == "part-done"]
                done.append(f"{step} {len(secs)}" + (f" (mean {statistics.mean(secs):.1f} s, max {max(secs):.1f} s)"
                                                     if secs else ""))
            print("    the talk's parts finished meanwhile (worker logs): " + ", ".join(done), flush=True)

    def parts_line(self, ph: Phase, step: str) -> str:
        """When the short run's parts of a fanned-out step were sent and started (first seen in the samples),
        what waited in the step's queue then, and what the long talk was doing."""
        r = ph.run
        started, ended = float(r[f"{step}.started"]), float(r[f"{step}.ended"])
        sent = _first(ph.samples, lambda s: f"{step}.parts" in s.short)
        n = int(r.get(f"{step}.parts") or 0)
        if sent is None or not n:
            return f"{step}: no parts seen"
        first = [_first(ph.samples, lambda s, i=i: f"{step}.part{i}.deliveries" in s.short) for i in range(n)]
        begun = [s for s in first if s is not None]
        line = (f"{step}: plan ~{sent.at - started:.1f} s, {n} part(s) sent; first part started ~"
                f"{(begun[0].at if begun else ended) - sent.at:.1f} s after, last ~"
                f"{(begun[-1].at if begun else ended) - sent.at:.1f} s after; parts+join {ended - sent.at:.1f} s")
        lvl0, later = sent.queued[step]
        line += f"; waiting in the queue then: {lvl0} at level 0, {later} at later levels"
        if ph.kind == "behind":
            line += "; " + self.long_line(sent.long, "long talk then")
        return line

    @staticmethod
    def long_line(long: dict[str, str], label: str) -> str:
        if not long:
            return f"{label}: not started"
        if "step" not in long:
            return f"{label}: {long.get('status', '?')}"
        step = long["step"]
        parts = f", parts {long.get(f'{step}.parts_done', 0)}/{long[f'{step}.parts']} done" \
            if f"{step}.parts" in long else ""
        return f"{label}: in {step} ({long.get(f'{step}.status', '?')}{parts})"

    def summary(self) -> float:
        alone = [p.time for p in self.phases if p.kind == "alone"]
        behind = [p.time for p in self.phases if p.kind == "behind"]
        ratio = statistics.median(behind) / statistics.median(alone)
        a = self.args
        when = "right after the talk" if a.short_after == "submit" else f"once its {a.short_after} parts were sent"
        print(f"summary ({a.short_minutes} min video, {a.long_minutes} min talk, {a.workers} worker(s) per queue, "
              f"short one submitted {when}, {len(alone)} round(s); "
              f"load average {os.getloadavg()[1]:.1f} (5 min) on {os.cpu_count()} cores):")
        print(f"  alone: median {statistics.median(alone):.1f} s ({', '.join(f'{t:.1f}' for t in alone)})")
        print(f"  behind the talk: median {statistics.median(behind):.1f} s ({', '.join(f'{t:.1f}' for t in behind)})")
        print(f"  behind / alone: {ratio:.2f} (goal ≤ 2: {'met' if ratio <= 2 else 'missed'})")
        print(f"ratio: {ratio:.2f}", flush=True)
        return ratio


def _first(samples: list[Sample], cond: Any) -> Sample | None:
    return next((s for s in samples if cond(s)), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="worker processes per step queue (concurrency 1)")
    parser.add_argument("--long-minutes", type=int, default=180, help="length of the long talk")
    parser.add_argument("--short-minutes", type=int, default=5, help="length of the short video")
    parser.add_argument("--rounds", type=int, default=1, help="alone/behind alternations; medians are compared")
    parser.add_argument("--short-after", choices=["submit", *FANNED], default="transcribe",
                        help="submit the short video right after the talk's transcribe (or translate) parts are "
                        "waiting in their queue (a few seconds after the talk: the case that tests the order), or "
                        "right after the talk's submit (it then reaches each step before the talk does)")
    parser.add_argument("--transcribe-seconds-per-minute", type=float, default=3.0)
    parser.add_argument("--llm-tokens-per-second", type=float, default=50.0, help="LLM output speed")
    parser.add_argument("--llm-latency", type=float, default=0.5, help="seconds added to every request")
    args = parser.parse_args(argv)
    from workers.providers.simulator import SimulatorConfig, running_simulator

    config = SimulatorConfig(latency=args.llm_latency, llm_tokens_per_second=args.llm_tokens_per_second,
                             transcribe_seconds_per_audio_minute=args.transcribe_seconds_per_minute)
    with contextlib.ExitStack() as stack:
        try:
            tmp = scratch(stack, "pressroom-fairness-")
            t = time.monotonic()
            long_talk = make_talk(tmp / f"talk-{args.long_minutes}min.m4a", 60 * args.long_minutes)
            print(f"long talk: {args.long_minutes} min, {long_talk.stat().st_size / 1e6:.1f} MB, made in "
                  f"{time.monotonic() - t:.1f} s; short video {args.short_minutes} min; {args.workers} worker "
                  f"process(es) per step queue, concurrency 1; simulator: transcription "
                  f"{args.transcribe_seconds_per_minute:g} s/audio min, LLM {args.llm_latency:g} s + "
                  f"{args.llm_tokens_per_second:g} tokens/s; {BROKER_URL}", flush=True)
            sim_url = stack.enter_context(running_simulator(config))
            bench = Bench(args, tmp, long_talk, sim_url)
            for rnd in range(1, args.rounds + 1):
                bench.phase("alone", rnd)
                bench.phase("behind", rnd)
        except KeyboardInterrupt:
            print("interrupted; cleaning up", file=sys.stderr)
            return 130
        bench.summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())
