"""One long talk through the distributed pipeline at 1, 4 and 8 worker processes per queue, and its tokens.

A speech-like talk (8 s of tone, 1 s of silence, repeated; made once with ffmpeg) goes through the five
steps on Redis db 14 with `--workers` K worker processes per step queue (each prefork, concurrency 1),
against the simulator with realistic speeds: transcription --transcribe-seconds-per-minute per audio
minute, the LLM --llm-latency per request plus --llm-tokens-per-second of output. Each phase has its
own store (a new temp dir, or a new moto S3 prefix with --s3) and a flushed db, so nothing is reused.

The simulator writes translations about as long as what they translate (--translation-ratio 1.0: as many
Chinese tokens as English ones), so translate time, tokens and cost have the real shape.

Per K: wall time from submit to the run's "succeeded", each step's time (plan, parts and wait before
it, from the run state and the workers' task logs), the speedup against K=1 (goal ≥ 3.6× at 4; ≤ 300 s
at 8), and the critical-path bound: each step's serial task plus its parts, at least the longest part and
at least their sum spread over K workers (goal: wall within 1.3× of it).
Then tokens, from the run state of the K=1 run: per audio hour in and out for translate and tag, and
the share of translate's input spent on instructions and context rather than on the paragraphs being
translated (goal ≤ 30%), counted by re-building each translate request the way the step does.

    .venv/bin/python bench/long_episode.py [--minutes 120] [--workers 1,4,8] [--s3]
        [--transcribe-seconds-per-minute 3] [--llm-tokens-per-second 50] [--llm-latency 0.5]
        [--translation-ratio 1.0]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

if __package__ in (None, ""):  # run as a script: make `bench` and `workers` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.overhead import BROKER_URL, STEPS, _interrupt, _tails, clean_env, stop_workers, workers

_TASK_LINE = re.compile(r"Task (pressroom\.[a-z.]+)\[[^\]]+\] succeeded in ([0-9.]+)s")


def make_talk(path: Path, seconds: int) -> Path:
    """Like tests/test_long_form.make_talk: 8 s of tone, 1 s of silence, repeated (cuts go in the silences)."""
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", f"sine=frequency=300:sample_rate=16000:duration={seconds}",
                    "-af", "volume='if(lt(mod(t,9),8),1,0)':eval=frame", "-ac", "1", "-c:a", "aac", "-b:a", "32k",
                    str(path)], check=True)
    return path


def scratch(stack: contextlib.ExitStack, prefix: str) -> Path:
    """A benchmark's set-up: Ctrl-C and SIGTERM unwind it; a temp dir that goes at the end, after the workers
    have stopped and then db 14 is flushed."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    redis.Redis.from_url(BROKER_URL).ping()
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
    stack.callback(redis.Redis.from_url(BROKER_URL).flushdb)
    stack.callback(stop_workers)  # runs first: workers go before their Redis db is flushed
    return tmp


def token_counter() -> tuple[Callable[[str], float], str]:
    try:
        import tiktoken  # type: ignore[import-not-found,unused-ignore]

        enc = tiktoken.get_encoding("o200k_base")
        return (lambda text: float(len(enc.encode(text)))), "tiktoken o200k_base"
    except ImportError:
        return (lambda text: len(text) / 4), "chars/4, as the simulator counts (tiktoken is not installed)"


@dataclass
class Phase:
    k: int
    wall: float
    upload: float
    run: dict[str, str]
    tasks: dict[str, list[float]] = field(default_factory=dict)  # task name → run times from the worker logs


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path, audio: Path, sim_url: str, s3: str | None) -> None:
        self.args, self.tmp, self.audio, self.sim_url, self.s3 = args, tmp, audio, sim_url, s3
        self.db = redis.Redis.from_url(BROKER_URL)
        self.phases: list[Phase] = []
        self.tokens: dict[str, float] = {}
        self.token_lines = ""

    def settings(self, k: int) -> dict[str, str]:
        settings = {"broker_url": BROKER_URL, "transcription_base_url": self.sim_url, "llm_base_url": self.sim_url,
                    "data_dir": str(self.tmp / f"data-k{k}")}
        if not self.s3:
            return settings | {"storage_url": str(self.tmp / f"store-k{k}")}
        from workers.storage.s3 import S3Store

        settings |= {"storage_url": f"s3://bench-{uuid.uuid4().hex[:10]}/k{k}", "s3_endpoint_url": self.s3,
                     "s3_access_key_id": "test", "s3_secret_access_key": "test"}
        S3Store.from_url(settings["storage_url"], endpoint_url=self.s3, access_key_id="test",
                         secret_access_key="test").ensure_bucket()
        return settings

    def phase(self, k: int) -> None:
        from workers.app import create_app
        from workers.settings import load_settings
        from workers.submit import resolve_source, submit

        self.db.flushdb()
        settings = self.settings(k)
        scratch = self.tmp / f"scratch-k{k}"  # the workers' step workdirs: gone with the bench's temp dir
        scratch.mkdir()
        env = clean_env(TMPDIR=str(scratch), **{f"PRESSROOM_{key.upper()}": v for key, v in settings.items()})
        cmds = {f"{s}-{i}": [sys.executable, "-m", "workers.cli", "worker", "--queues", s, "--concurrency", "1",
                             "--name", f"{s}-{i}@%h", "--loglevel", "INFO"]  # K per queue: distinct node names
                for s in STEPS for i in range(k)}
        logdir = self.tmp / f"logs-k{k}"
        app = create_app(load_settings(**settings))
        rt = app.pressroom
        try:
            with workers(cmds, env, logdir):
                t = time.time()
                source, video_id = resolve_source(str(self.audio), rt)  # the upload to the phase's new store
                t0 = time.time()
                run_id = submit(app, rt, source, video_id).run_id
                run = self.wait(rt, run_id)
                if not self.tokens:  # printed after the phases, before the summary
                    with contextlib.redirect_stdout(io.StringIO()) as out:
                        self.tokens = self.count_tokens(rt, run_id, run)
                    self.token_lines = out.getvalue()
            tasks: dict[str, list[float]] = defaultdict(list)
            for log in logdir.glob("*.log"):
                for name, secs in _TASK_LINE.findall(log.read_text(errors="replace")):
                    tasks[name].append(float(secs))
            self.phases.append(ph := Phase(k, float(run["publish.ended"]) - t0, t0 - t, run, dict(tasks)))
            self.report(ph)
        finally:
            app.close()
            rt.state.kv.close()
            self.db.flushdb()

    def wait(self, rt: Any, run_id: str) -> dict[str, str]:
        deadline = time.monotonic() + 600 + 30 * self.args.minutes * max(1.0, self.args.transcribe_seconds_per_minute)
        run: dict[str, str] = rt.state.run(run_id)
        while run.get("status") != "succeeded":
            if run.get("status") in {"failed", "skipped"}:
                raise RuntimeError(f"run {run_id} {run['status']}: {run.get('error') or run}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} unfinished: {run}\n{_tails()}")
            time.sleep(0.25)
            run = rt.state.run(run_id)
        return run

    @staticmethod
    def critical_path(ph: Phase) -> float:
        """The least wall time these tasks allow on K workers a queue: every step's serial task (a fanned-out
        step's plan) plus its parts — at least the longest one (the last also joins), and at least their sum
        spread over the K workers — one step after the other."""
        bound = 0.0
        for s in STEPS:
            parts = ph.tasks.get(f"pressroom.{s}.part", [])
            bound += sum(ph.tasks.get(f"pressroom.{s}", [])) + max([*parts, sum(parts) / ph.k])
        return bound

    def report(self, ph: Phase) -> None:
        base = next((p for p in self.phases if p.k == 1), self.phases[0])
        bound = self.critical_path(ph)
        print(f"K={ph.k}: wall {ph.wall:7.1f} s from submit to succeeded (upload before it {ph.upload:.1f} s); "
              f"speedup vs K={base.k}: {base.wall / ph.wall:.2f}x; critical-path bound {bound:.1f} s "
              f"(wall ÷ bound {ph.wall / bound:.2f}); load average after "
              f"{os.getloadavg()[1]:.1f} (5 min) on {os.cpu_count()} cores", flush=True)
        for i, step in enumerate(STEPS):
            r = ph.run
            wait = float(r[f"{step}.started"]) - float(r[f"{STEPS[i - 1]}.ended"] if i else r["created"])
            line = f"  K={ph.k} {step:<10} {float(r[f'{step}.duration']):7.1f} s (+{wait:.1f} s wait before)"
            plan, parts = ph.tasks.get(f"pressroom.{step}", []), ph.tasks.get(f"pressroom.{step}.part", [])
            if parts:
                line += (f": plan task {sum(plan):.1f} s serial, {len(parts)} parts (mean {statistics.mean(parts):.1f}"
                         f" s, max {max(parts):.1f} s, sum {sum(parts):.1f} s; the last one joins)")
            print(line, flush=True)

    def count_tokens(self, rt: Any, run_id: str, run: dict[str, str]) -> dict[str, float]:
        """Usage from the run state, and translate's input re-built request by request (SYSTEM + _request)."""
        from pydantic import TypeAdapter

        from schemas.artifacts import DownloadArtifact, Paragraph
        from schemas.run import RunSpec
        from workers.steps import translate as tr
        from workers.storage import get_model

        tok, how = token_counter()
        artifacts = rt.state.events(run_id)[-1].artifacts
        prefix = artifacts["translation"].rsplit("/", 1)[0] + "/"
        paragraphs = TypeAdapter(list[Paragraph]).validate_json(rt.store.get_bytes(prefix + "paragraphs.json"))
        plan = json.loads(rt.store.get_bytes(prefix + "plan.json"))
        meta = get_model(rt.store, artifacts["download"], DownloadArtifact).metadata
        glossary = rt.glossary(RunSpec.model_validate_json(run["spec"]))
        parts: dict[str, float] = defaultdict(float)
        for description in (meta.description, "x" * 1000):
            key = "" if description is meta.description else "yt."
            base = tr.ChunkContext(title=meta.title, description=description)
            for p in plan:
                batch = paragraphs[p["start"]:p["end"]]
                ctx = tr.context_for(base, paragraphs, p["start"])
                request = tr._request(ctx, glossary, batch, "")
                parts[key + "total"] += tok(tr.SYSTEM) + tok(request)
                parts[key + "own"] += sum(tok(b.source) for b in batch)
                if not key:
                    parts["system"] += tok(tr.SYSTEM)
                    parts["previous"] += tok(json.dumps(ctx.previous, ensure_ascii=False))
                    parts["title+description"] += tok(json.dumps([ctx.title, ctx.description[:1000]]))
        parts["structure"] = parts["total"] - parts["own"] - parts["system"] - parts["previous"] \
            - parts["title+description"]
        schema = tok(json.dumps(tr.TranslationBatch.model_json_schema()))
        hours = float(run.get("download.usage.audio_seconds") or 60 * self.args.minutes) / 3600
        u = {f"{s}.{n}": float(run.get(f"{s}.usage.{n}", 0)) for s in ("translate", "tag")
             for n in ("input_tokens", "output_tokens", "llm_requests")}
        audio = float(run.get("transcribe.usage.audio_seconds", 0))
        print(f"tokens of the K=1 run ({hours * 60:.1f} audio min; run state usage as the simulator counts it):",
              flush=True)
        print(f"  transcribe: {audio:.0f} audio s = {audio / hours:.0f} audio s per audio hour, "
              f"{run.get('transcribe.parts')} requests")
        for s in ("translate", "tag"):
            print(f"  {s:<9}: in {u[f'{s}.input_tokens']:8.0f} = {u[f'{s}.input_tokens'] / hours:8.0f}/audio h;  "
                  f"out {u[f'{s}.output_tokens']:7.0f} = {u[f'{s}.output_tokens'] / hours:7.0f}/audio h"
                  + (f";  {u['translate.llm_requests']:.0f} requests" if s == "translate" else ""))
        share = 1 - parts["own"] / parts["total"]
        print(f"  translate input re-built from {len(plan)} requests ({how}): {parts['total']:.0f} tokens "
              f"(run state: {u['translate.input_tokens']:.0f}); the paragraphs' own text {parts['own']:.0f}; "
              f"instructions+context {parts['total'] - parts['own']:.0f} = {100 * share:.1f}%")
        print("    of which " + ", ".join(f"{n} {parts[n]:.0f}" for n in
                                          ("system", "previous", "title+description", "structure"))
              + " (structure = JSON keys, ids, quotes)")
        english = sum(tok(p.source) for p in paragraphs)
        tag_share = 1 - english / u["tag.input_tokens"] if u["tag.input_tokens"] else 0.0
        both = 1 - (parts["own"] + english) / (u["translate.input_tokens"] + u["tag.input_tokens"])
        yt_share = 1 - parts["yt.own"] / parts["yt.total"]
        print(f"    with a 1000-char description (a typical YouTube talk; this file has "
              f"{len(meta.description)} chars): {100 * yt_share:.1f}%")
        print(f"    not counted: the response_format JSON schema, ~{schema:.0f} tokens a request if the API bills it")
        print(f"  tag input: the English text once is {english:.0f}; instructions, metadata and map notes "
              f"{u['tag.input_tokens'] - english:.0f} = {100 * tag_share:.1f}%; translate+tag {100 * both:.1f}%")
        return {"hours": hours, "in": (u["translate.input_tokens"] + u["tag.input_tokens"]) / hours,
                "out": (u["translate.output_tokens"] + u["tag.output_tokens"]) / hours, "share": share,
                "translate_out": u["translate.output_tokens"] / hours,
                "yt_share": yt_share}

    def summary(self) -> None:
        print(self.token_lines, end="")
        base = next((p for p in self.phases if p.k == 1), self.phases[0])
        print(f"summary ({self.args.minutes} min talk; store {'moto S3' if self.s3 else 'local dir'}):")
        print("  wall: " + ", ".join(f"K={p.k} {p.wall:.1f} s" for p in self.phases))
        speedups = {p.k: base.wall / p.wall for p in self.phases}
        goal = f"  (goal ≥ 3.6x at K=4: {'met' if speedups[4] >= 3.6 else 'missed'})" if 4 in speedups else ""
        print(f"  speedup vs K={base.k}: " + ", ".join(f"K={k} {s:.2f}x" for k, s in speedups.items()) + goal)
        print("  wall ÷ critical-path bound: " + ", ".join(f"K={p.k} {p.wall / self.critical_path(p):.2f}"
                                                         for p in self.phases) + " (goal ≤ 1.3)")
        if (eight := next((p for p in self.phases if p.k == 8), None)) is not None:
            print(f"  K=8 wall {eight.wall:.1f} s (goal ≤ 300 s: {'met' if eight.wall <= 300 else 'missed'})")
        t = self.tokens
        print(f"  tokens per audio hour (translate + tag): in {t['in']:.0f}, out {t['out']:.0f}; translate out "
              f"{t['translate_out']:.0f} (goal ≥ 10,000: {'met' if t['translate_out'] >= 10_000 else 'missed'})")
        print(f"  instruction+context share of translate input: {100 * t['share']:.1f}% "
              f"(goal ≤ 30%: {'met' if t['share'] <= 0.3 else 'missed'}; {100 * t['yt_share']:.1f}% with a "
              "1000-char description)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=120, help="length of the talk")
    parser.add_argument("--workers", default="1,4,8", help="worker processes per step queue, one phase each")
    parser.add_argument("--translation-ratio", type=float, default=1.0,
                        help="the simulator's Chinese tokens per English token (1.0: real length)")
    parser.add_argument("--transcribe-seconds-per-minute", type=float, default=3.0)
    parser.add_argument("--llm-tokens-per-second", type=float, default=50.0, help="LLM output speed")
    parser.add_argument("--llm-latency", type=float, default=0.5, help="seconds added to every request")
    parser.add_argument("--s3", action="store_true", help="store artifacts in moto S3, not a temp dir")
    args = parser.parse_args(argv)
    ks = [int(k) for k in args.workers.split(",") if k.strip()]
    from workers.providers.simulator import SimulatorConfig, running_simulator

    config = SimulatorConfig(latency=args.llm_latency, llm_tokens_per_second=args.llm_tokens_per_second,
                             transcribe_seconds_per_audio_minute=args.transcribe_seconds_per_minute,
                             translation_ratio=args.translation_ratio)
    with contextlib.ExitStack() as stack:
        try:
            tmp = scratch(stack, "pressroom-long-")
            t = time.monotonic()
            audio = make_talk(tmp / f"talk-{args.minutes}min.m4a", 60 * args.minutes)
            print(f"talk: {args.minutes} min, {audio.stat().st_size / 1e6:.1f} MB, made in "
                  f"{time.monotonic() - t:.1f} s; workers per queue {ks}; simulator: transcription "
                  f"{args.transcribe_seconds_per_minute:g} s/audio min, LLM {args.llm_latency:g} s + "
                  f"{args.llm_tokens_per_second:g} tokens/s; {BROKER_URL}", flush=True)
            sim_url = stack.enter_context(running_simulator(config))
            s3 = None
            if args.s3:
                from moto.server import ThreadedMotoServer

                logging.getLogger("werkzeug").setLevel(logging.WARNING)
                server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
                server.start()
                stack.callback(server.stop)
                host, port = server.get_host_and_port()
                s3 = f"http://{host}:{port}"
            bench = Bench(args, tmp, audio, sim_url, s3)
            for k in ks:
                bench.phase(k)
        except KeyboardInterrupt:
            print("interrupted; cleaning up", file=sys.stderr)
            return 130
        bench.summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())
