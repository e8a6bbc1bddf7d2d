"""The thin Celery tasks: load a step's inputs from storage, call its function, store its outputs.

Idempotency, reuse, run state, retries and emission are the runner's (workers/runner.py, workers/delivery.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.artifacts import DownloadArtifact, Translation
from schemas.events import Step
from schemas.post import FrontMatter
from workers import keys, review
from workers.delivery import InEvent, Outcome, StepSpec
from workers.errors import NotAvailableYet, PermanentError, SkipRun, TaskFailed
from workers.fanouts import TRANSCRIBE, TRANSCRIBE_VERSION, TRANSLATE
from workers.publishing import PostFile, targets_for
from workers.retry import POLICIES
from workers.runner import run_part, run_step
from workers.runtime import Runtime
from workers.settings import Settings
from workers.steps import download as download_step
from workers.steps import publish as publish_step
from workers.steps import tag as tag_step
from workers.steps import translate as translate_step
from workers.steps.media import InputLimits
from workers.storage import get_model, put_model
from workers.storage.local import write_atomic

AUDIO_FORMAT = "m4a-aac-mono-16k"  # changes here change the download step's key


def _download(rt: Runtime, event: InEvent, prefix: str, workdir: Path) -> Outcome:
    source = event.run.source
    limits = InputLimits(rt.settings.max_input_bytes, rt.settings.max_input_duration)
    if source.kind == "youtube":
        try:
            out = download_step.download_youtube(source.uri, workdir, limits=limits)
        except NotAvailableYet as exc:
            if event.run.channel_id:  # a watched channel's live or upcoming stream is skipped, not failed
                raise SkipRun(f"{exc} (live and upcoming streams are skipped for watched channels)") from None
            raise
    else:
        name = source.filename or Path(source.uri).name
        local = rt.store.get_file(source.uri, workdir / "input" / name)
        out = download_step.prepare_local(local, workdir, video_id=event.video_id, title=Path(name).stem,
                                          limits=limits)
    audio_key = prefix + "audio.m4a"
    rt.store.put_file(audio_key, out.audio_path, content_type="audio/mp4")
    captions = {}
    for name, path in out.captions.items():
        captions[name] = prefix + f"captions/{name}"
        rt.store.put_file(captions[name], path, content_type="text/vtt")
    artifact = DownloadArtifact(metadata=out.metadata, audio_key=audio_key, audio_format=out.audio_format,
                                audio_bytes=out.audio_path.stat().st_size, captions=captions)
    put_model(rt.store, prefix + "download.json", artifact, if_absent=True)
    return Outcome({"audio": audio_key, "download": prefix + "download.json"},
                   {"audio_seconds": out.metadata.duration})


def _tag(rt: Runtime, event: InEvent, prefix: str, workdir: Path) -> Outcome:
    dl = get_model(rt.store, event.artifacts["download"], DownloadArtifact)
    translation = get_model(rt.store, event.artifacts["translation"], Translation)
    source_url = dl.metadata.webpage_url or event.run.source.filename or event.run.source.uri
    out = tag_step.tag(dl.metadata, translation, rt.llm, event.run.defaults, source_url, rt.glossary(event.run))
    put_model(rt.store, prefix + "front_matter.json", out.front_matter, if_absent=True)
    return Outcome({"front_matter": prefix + "front_matter.json"},
                   {"input_tokens": out.input_tokens, "output_tokens": out.output_tokens})


def _publish(rt: Runtime, event: InEvent, prefix: str, workdir: Path) -> Outcome:
    dl = get_model(rt.store, event.artifacts["download"], DownloadArtifact)
    edited = review.apply(review.load(rt, event.video_id),  # the editor's changes and approval, if any
                          get_model(rt.store, event.artifacts["translation"], Translation),
                          get_model(rt.store, event.artifacts["front_matter"], FrontMatter))
    front = edited.front_matter
    text = publish_step.render_post(publish_step.build_post(front, edited.translation)).encode()
    name = _own_post_name(rt, publish_step.post_filename(front, event.video_id, dl.metadata.title), event.video_id)
    rt.store.put_bytes(keys.post_key(name), text, content_type="text/markdown")
    for out_dir in {d for d in (event.run.out_dir, rt.settings.out_dir) if d}:
        write_atomic(Path(out_dir) / name, text)
    post = PostFile(name=name, text=text.decode(), front_matter=front.model_dump(mode="json"),
                    video_id=event.video_id, run_id=event.run_id, title=front.title)
    published = {t.name: t.publish(post) for t in targets_for(rt.settings, event.run.publish_targets)}
    rt.store.put_bytes(prefix + "published.json", json.dumps(published).encode(), content_type="application/json")
    rt.store.put_bytes(prefix + "post.md", text, content_type="text/markdown")  # the step's last output
    return Outcome({"published": prefix + "published.json", "post": keys.post_key(name)})


def _own_post_name(rt: Runtime, wanted: str, video_id: str) -> str:
    """The first name this video owns or can claim: a re-run replaces its own post, never another's."""
    for name in publish_step.post_name_choices(wanted, video_id):
        owner, me = keys.post_owner_key(name), video_id.encode()
        if rt.store.put_bytes(owner, me, if_absent=True) or rt.store.get_bytes(owner) == me:
            return name
    raise PermanentError(f"post name {wanted!r} and its alternatives belong to other videos: rename the source")


def _fp(*artifacts: str, settings: tuple[str, ...] = (), version: str = "", run: tuple[str, ...] = ()) -> Any:
    """Fingerprint = the input artifacts' keys (which carry their own hashes) + what changes the output:
    settings, prompt version, and run options such as the glossary (stored by content hash)."""

    def fingerprint(event: InEvent, s: Settings) -> dict[str, Any]:
        return {
            "inputs": {a: event.artifacts.get(a) for a in artifacts},
            "settings": {name: getattr(s, name) for name in settings},
            "run": {name: getattr(event.run, name) for name in run},
            "version": version,
        }

    return fingerprint


def _download_fp(event: InEvent, settings: Settings) -> dict[str, Any]:
    return {"source": event.run.source.uri, "audio": AUDIO_FORMAT}


def _tag_fp(event: InEvent, settings: Settings) -> dict[str, Any]:
    base: dict[str, Any] = _fp("translation", "download", settings=("llm_model_name",), run=("glossary_key",),
                               version=tag_step.PROMPT_VERSION)(event, settings)
    return {**base, "defaults": event.run.defaults.model_dump()}


def _publish_fp(event: InEvent, settings: Settings) -> dict[str, Any]:
    return {"inputs": event.artifacts, "out_dir": event.run.out_dir, "settings_out_dir": str(settings.out_dir)}


SPECS: dict[Step, StepSpec] = {
    Step.download: StepSpec(Step.download, {"audio": "audio.m4a", "download": "download.json"},
                            _download_fp, _download),
    Step.transcribe: StepSpec(Step.transcribe, {"transcript": "transcript.json"},
                              _fp("audio", "download", settings=("transcription_model", "transcription_chunk_seconds"),
                                  run=("glossary_key", "captions", "min_duration", "max_duration"),
                                  version=TRANSCRIBE_VERSION),
                              fanout=TRANSCRIBE),
    Step.translate: StepSpec(Step.translate, {"translation": "translation.json"},
                             _fp("transcript", "download", settings=("llm_model_name",), run=("glossary_key",),
                                 version=translate_step.PROMPT_VERSION), fanout=TRANSLATE),
    Step.tag: StepSpec(Step.tag, {"front_matter": "front_matter.json"}, _tag_fp, _tag),
    Step.publish: StepSpec(Step.publish, {"published": "published.json", "post": "post.md"}, _publish_fp, _publish,
                           reusable=False),
}


def register_tasks(app: Any) -> None:
    """Per step, a task (and one for its parts) on the step's own queue, with its time limits; acks late."""
    for step in SPECS:
        policy = POLICIES[step]
        # max_retries=None: Celery sets no cap of its own; the step's policy and INFRA_POLICY do
        # throws: a failed step ends in FAILURE, logged as expected (one line, no traceback)
        options = dict(bind=True, time_limit=policy.time_limit, soft_time_limit=policy.soft_time_limit,
                       acks_late=True, reject_on_worker_lost=True, ignore_result=True, shared=False,
                       max_retries=None, throws=(TaskFailed,))

        def task(self: Any, payload: dict[str, Any], faults: int = 0, waits: int = 0, _step: Step = step) -> str:
            return run_step(self, SPECS[_step], payload, faults, waits)

        def part(self: Any, payload: dict[str, Any], index: int, faults: int = 0, waits: int = 0,
                 _step: Step = step) -> str:
            return run_part(self, SPECS[_step], payload, index, faults, waits)

        task.__name__ = task.__qualname__ = f"{step.value}_task"
        part.__name__ = part.__qualname__ = f"{step.value}_part_task"
        app.task(task, name=keys.task_name(step), **options)
        if SPECS[step].fanout is not None:
            app.task(part, name=keys.part_task_name(step), **options)
