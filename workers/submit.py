"""Turning what a user typed (a YouTube URL or a media file) into a run, and submitting it."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from schemas.artifacts import VideoSource
from schemas.events import RunRequested
from schemas.post import FrontMatterDefaults
from schemas.run import RunSpec
from workers import keys
from workers.errors import PermanentError
from workers.events import emit
from workers.runtime import Runtime
from workers.steps.download import youtube_video_id
from workers.steps.media import InputLimits
from workers.watch.seen import SeenVideos


def new_run_id() -> str:
    """Sortable by time, unique without coordination."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _short_name(name: str, limit: int = 100) -> str:
    """A file name fit for an object key (the original stays in the run spec): long ones keep their start
    and extension, since file systems refuse names over 255 bytes."""
    if len(name.encode()) <= limit:
        return name
    suffix = Path(name).suffix[:16]
    return name.encode()[: limit - len(suffix.encode())].decode(errors="ignore") + suffix


def resolve_source(arg: str, rt: Runtime) -> tuple[VideoSource, str]:
    """A YouTube URL as is; a local file is uploaded once (by content hash) so any worker can read it."""
    video_id = youtube_video_id(arg)
    if video_id:
        return VideoSource(kind="youtube", uri=f"https://www.youtube.com/watch?v={video_id}"), video_id
    path = Path(arg).expanduser()
    if path.is_file():
        InputLimits(rt.settings.max_input_bytes, rt.settings.max_input_duration).check_bytes(
            path.stat().st_size, str(path))  # before reading a byte of it
        digest = _sha256(path)
        key = keys.upload_key(digest[:32], _short_name(path.name))
        if not rt.store.exists(key):
            rt.store.put_file(key, path)
        return VideoSource(kind="file", uri=key, filename=path.name), f"file-{digest[:12]}"
    if urlparse(arg).scheme in {"http", "https"}:
        raise PermanentError(f"{arg}: not a YouTube video URL; give a youtube.com/watch?v=… or youtu.be/… link")
    if path.exists():
        raise PermanentError(f"{arg}: is not a regular file; give an audio or video file")
    raise PermanentError(f"{arg}: no such file, and not a YouTube URL; check the path or the link")


def store_glossary(path: Path, rt: Runtime) -> str:
    """Check a glossary file and store it by content, so every worker reads the same one."""
    from workers.glossary import load_glossary

    load_glossary(path, rt.settings)  # a bad glossary fails here, at submit, with a message naming the file
    data = path.read_bytes()
    key = keys.glossary_key(hashlib.sha256(data).hexdigest()[:16])
    rt.store.put_bytes(key, data, if_absent=True)
    return key


def submit(app: Any, rt: Runtime, source: VideoSource, video_id: str, *,
           defaults: FrontMatterDefaults | None = None, out_dir: str | None = None,
           glossary: Path | None = None, **options: Any) -> RunSpec:
    """Start a run. options are RunSpec fields (captions, channel_id, min_duration, max_duration)."""
    glossary = glossary or rt.settings.glossary_file
    spec = RunSpec(run_id=new_run_id(), video_id=video_id, source=source,
                   defaults=defaults or rt.settings.front_matter, out_dir=out_dir,
                   glossary_key=store_glossary(glossary, rt) if glossary else None,
                   **{"captions": rt.settings.captions, **options})
    rt.state.create(spec)
    emit(app, rt.state, RunRequested(run=spec))
    if source.kind == "youtube":  # seen once its run exists: the watcher must not submit it again
        SeenVideos(rt.state.kv, rt.store).record(video_id, spec)
    return spec
