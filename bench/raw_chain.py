"""A plain Celery five-task chain doing Pressroom's step work, the baseline for bench/overhead.py.

Each task calls the same step functions and providers Pressroom's tasks call, and hands its output to
the next task as JSON through Celery's `chain` (the message carries it; no result backend). What is left
out is exactly Pressroom's orchestration: run state, idempotency hashing, artifact storage, event log.
The broker settings are Pressroom's (workers/app.py): JSON, late acks, reject on worker lost, prefetch 1,
the same visibility timeout and the same per-step time limits.

Workers: `celery -A bench.raw_chain worker -Q raw.<step> -c 1` with BENCH_SIM_URL set (the simulator).
"""

from __future__ import annotations

import json
import os
import time
from functools import cache
from pathlib import Path
from typing import Any

import redis
from celery import Celery, chain
from celery.canvas import Signature

from schemas.artifacts import Transcript, Translation, VideoMetadata
from schemas.events import Step
from schemas.post import FrontMatter
from workers.app import delivery_conf, direct_queues
from workers.retry import POLICIES
from workers.steps import publish as publish_step
from workers.steps import tag as tag_step
from workers.steps import translate as translate_step
from workers.steps.download import prepare_local

BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")
STEPS = [s.value for s in Step]
QUEUES = {s: f"raw.{s}" for s in STEPS}
DONE_KEY = "raw:done"  # list: one JSON entry per finished pipeline (end time + per-step times)
NOOP_DONE_KEY = "raw:noop:done"

app = Celery("raw", broker=BROKER_URL, set_as_current=False)
app.conf.update(
    **delivery_conf(7200),  # the same delivery settings as Pressroom's default
    task_queues=direct_queues(list(QUEUES.values())),
    task_default_queue=QUEUES["download"],
    task_routes={f"raw.{s}": {"queue": q} for s, q in QUEUES.items()}
    | {f"raw.noop.{s}": {"queue": q} for s, q in QUEUES.items()},
)


@cache
def _providers() -> tuple[Any, Any, Any]:
    """The transcriber, LLM and front-matter defaults, built as Pressroom's Runtime builds them."""
    from workers.providers.openai_llm import OpenAILLM
    from workers.providers.openai_transcription import OpenAITranscriber
    from workers.settings import load_settings

    url = os.environ["BENCH_SIM_URL"]
    s = load_settings(transcription_base_url=url, llm_base_url=url)
    t_url, t_key = s.transcription_endpoint()
    l_url, l_key = s.llm_endpoint()
    return (OpenAITranscriber(t_url, t_key, s.transcription_model, s.transcription_timeout),
            OpenAILLM(l_url, l_key, s.llm_model, s.llm_timeout), s.front_matter)


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(BROKER_URL)


def _task(step: str) -> Any:
    limit = POLICIES[Step(step)]
    return app.task(name=f"raw.{step}", acks_late=True, reject_on_worker_lost=True, ignore_result=True,
                    time_limit=limit.time_limit, soft_time_limit=limit.soft_time_limit)


def _timed(data: dict[str, Any], step: str, started: float) -> dict[str, Any]:
    data.setdefault("timing", {})[step] = [started, time.time()]
    return data


@_task("download")
def download(src: str, video_id: str, work_dir: str) -> dict[str, Any]:
    started = time.time()
    out = prepare_local(Path(src), Path(work_dir) / video_id, video_id=video_id, title=Path(src).stem)
    data = {"video_id": video_id, "src": src, "work_dir": work_dir, "audio": str(out.audio_path),
            "metadata": out.metadata.model_dump(mode="json")}
    return _timed(data, "download", started)


@_task("transcribe")
def transcribe(data: dict[str, Any]) -> dict[str, Any]:
    started = time.time()
    transcriber = _providers()[0]
    metadata = VideoMetadata.model_validate(data["metadata"])
    result = transcriber.transcribe(Path(data.pop("audio")), language=metadata.language)
    transcript = Transcript(video_id=data["video_id"], language=result.language, model=transcriber.model,
                            duration=result.duration, segments=result.segments)
    data["transcript"] = transcript.model_dump(mode="json")
    return _timed(data, "transcribe", started)


@_task("translate")
def translate(data: dict[str, Any]) -> dict[str, Any]:
    started = time.time()
    transcript = Transcript.model_validate(data.pop("transcript"))
    metadata = VideoMetadata.model_validate(data["metadata"])
    out = translate_step.translate(transcript, metadata, _providers()[1])
    data["translation"] = out.translation.model_dump(mode="json")
    return _timed(data, "translate", started)


@_task("tag")
def tag(data: dict[str, Any]) -> dict[str, Any]:
    started = time.time()
    _, llm, defaults = _providers()
    metadata = VideoMetadata.model_validate(data["metadata"])
    translation = Translation.model_validate(data["translation"])
    out = tag_step.tag(metadata, translation, llm, defaults, metadata.webpage_url or data["src"])
    data["front_matter"] = out.front_matter.model_dump(mode="json")
    return _timed(data, "tag", started)


@_task("publish")
def publish(data: dict[str, Any]) -> None:
    started = time.time()
    front = FrontMatter.model_validate(data["front_matter"])
    translation = Translation.model_validate(data["translation"])
    metadata = VideoMetadata.model_validate(data["metadata"])
    text = publish_step.render_post(publish_step.build_post(front, translation))
    name = publish_step.post_filename(front, data["video_id"], metadata.title)
    out = Path(data["work_dir"]) / "posts" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    timing = _timed(data, "publish", started)["timing"]
    _redis().rpush(DONE_KEY, json.dumps({"end": time.time(), "timing": timing}))


def _noop(step: str, last: bool) -> Any:
    def noop(data: dict[str, Any]) -> dict[str, Any] | None:
        if last:
            _redis().rpush(NOOP_DONE_KEY, json.dumps({"end": time.time()}))
            return None
        return data

    noop.__name__ = noop.__qualname__ = f"noop_{step}"
    return app.task(noop, name=f"raw.noop.{step}", acks_late=True, reject_on_worker_lost=True,
                    ignore_result=True)


NOOPS = [_noop(s, s == STEPS[-1]) for s in STEPS]


def work_chain(src: str, video_id: str, work_dir: str) -> Signature:
    return chain(download.s(src, video_id, work_dir), transcribe.s(), translate.s(), tag.s(), publish.s())


def noop_chain(i: int) -> Signature:
    return chain(NOOPS[0].s({"i": i}), *(t.s() for t in NOOPS[1:]))
