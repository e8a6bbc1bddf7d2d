"""Tokens, cached share and estimated cost per audio hour of the LLM steps, per provider profile.

A 1-hour talk's transcript (the simulator's sample sentences at 150 words a minute, with a 20-term
glossary and a 400-character description) goes through the translate and tag steps as the workers run
them (translate chunk by chunk, with each chunk's talk context; tag on the whole talk), against the
simulator speaking each profile's dialect, with the profile's structured-output mode, model and prices.
The gate every request passes counts input, cached and output tokens and the estimated cost (the
simulator reports cached tokens the way each provider does, for prefixes it has seen). Transcription is
not an LLM cost and is left out: at $0.006 a minute it adds $0.36 an hour whatever the LLM.

    .venv/bin/python bench/llm_costs.py [--minutes 60] [--profiles openai,deepseek,...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `workers` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas.artifacts import Segment, Transcript, VideoMetadata
from schemas.glossary import Glossary, GlossaryTerm
from schemas.post import FrontMatterDefaults
from workers.metrics.families import PROVIDER_COST, PROVIDER_TOKENS
from workers.metrics.store import MetricsStore
from workers.providers import simulator_fake as fake
from workers.providers.gate import Prices, ProviderGate
from workers.providers.limiter import Limits
from workers.providers.openai_llm import OpenAILLM
from workers.providers.profiles import PROFILES
from workers.providers.simulator import SimulatorConfig, running_simulator
from workers.state import MemoryKV
from workers.steps.tag import tag
from workers.steps.translate import translate

WORDS_PER_MINUTE = 150


def talk(minutes: float) -> tuple[Transcript, VideoMetadata, Glossary]:
    sentences = [s.removeprefix(fake.MARK) for s in fake.load_sentences(None)]
    segments, words, t, i = [], 0, 0.0, 0
    while words < WORDS_PER_MINUTE * minutes:
        text = sentences[i % len(sentences)]
        length = len(text.split()) / WORDS_PER_MINUTE * 60
        segments.append(Segment(start=t, end=t + length, text=text))
        words, t, i = words + len(text.split()), t + length, i + 1
    meta = VideoMetadata(video_id="bench", title="How we scaled our inference fleet", duration=t,
                         description=("A talk about GPUs, schedulers and the people who keep them busy. " * 8)[:400])
    terms = [GlossaryTerm(term=f"Term{n}", zh=f"术语{n}") for n in range(20)]
    return Transcript(video_id="bench", language="en", model="whisper-1", duration=t, segments=segments), meta, \
        Glossary(terms=terms)


def measure(profile_name: str, minutes: float) -> dict[str, float]:
    profile = PROFILES[profile_name]
    transcript, meta, glossary = talk(minutes)
    metrics = MetricsStore(MemoryKV())
    with running_simulator(SimulatorConfig(dialect=profile_name)) as url:
        gate = ProviderGate("llm", url, profile.model, limiter=None, limits=Limits(), metrics=metrics,
                            prices=Prices(profile.usd_per_million_input, profile.usd_per_million_output,
                                          usd_per_million_cached_input=profile.usd_per_million_cached_input))
        llm = OpenAILLM(url, "k", profile.model, 60, gate=gate, profile=profile)
        started = time.monotonic()
        translation = translate(transcript, meta, llm, glossary).translation
        tag(meta, translation, llm, FrontMatterDefaults(), "https://example.com/talk", glossary)
        elapsed = time.monotonic() - started
    series = metrics.read()
    tokens = {d: sum(v for (name, labels, _), v in series.items() if name == PROVIDER_TOKENS.name and labels[-1] == d)
              for d in ("input", "cached", "output")}
    cost = sum(v for (name, _, _), v in series.items() if name == PROVIDER_COST.name)
    hours = transcript.duration / 3600
    return {"input": tokens["input"] / hours, "cached": tokens["cached"] / hours, "output": tokens["output"] / hours,
            "cost": cost / hours, "seconds": elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--profiles", default=",".join(PROFILES))
    args = parser.parse_args(argv)
    print(f"per audio hour of a {args.minutes:g}-minute talk (translate + tag):")
    print(f"{'profile':<11} {'mode':<12} {'input':>8} {'cached':>8} {'share':>6} {'output':>8} {'USD':>8}")
    for name in args.profiles.split(","):
        r = measure(name, args.minutes)
        share = r["cached"] / r["input"] if r["input"] else 0.0
        print(f"{name:<11} {PROFILES[name].structured:<12} {r['input']:>8.0f} {r['cached']:>8.0f} {share:>6.1%} "
              f"{r['output']:>8.0f} {r['cost']:>8.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
