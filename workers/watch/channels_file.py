"""The channels file: which YouTube channels are watched, kept in YAML so people can read and edit it.

Layout (every key but `id` and `name` may be left out; the values shown are the defaults unless noted)::

    channels:
      - id: UCLA_DiR1FfKNvjuUpBHmylQ   # UC + 22 characters; the feed's form without UC is accepted
        name: NASA
        enabled: true
        captions: human                 # off | human | auto
        publish_targets: [git]          # optional; default: PRESSROOM_PUBLISH_TARGETS
        backfill: 0                     # past uploads to process when the channel is added
        glossary: glossaries/nasa.yaml  # optional
        defaults:                       # front matter the model does not decide (example values)
          area: space
          category: talks
          project: [artemis]
        filters:
          skip_shorts: true
          skip_live: true
          skip_upcoming: true
          skip_premieres: false
          min_duration: 300             # seconds (example; default: no limit)
          max_duration: 10800
          title_include: []             # regexes, case-insensitive; if any, a title must match one
          title_exclude: ['\\btrailer\\b', 'teaser']

Writes replace the file atomically (a temporary file in the same directory, then a rename), and
`add_channel`/`remove_channel` hold a lock so two of them at once do not lose an update. Saving
leaves out values equal to the defaults, and comments are not kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from schemas.channels import ChannelConfig, ChannelsFile, normalise_channel_id
from workers.errors import PermanentError

EXAMPLE = "see the layout in workers/watch/channels_file.py"


def load_channels(path: Path) -> ChannelsFile:
    """The watched channels; a missing or empty file is no channels (a fresh install), not an error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ChannelsFile()
    except (OSError, UnicodeDecodeError) as exc:
        raise PermanentError(f"{path}: cannot read the channels file ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise PermanentError(f"{path}: not valid YAML{at} ({problem})") from None
    if data is None:
        return ChannelsFile()
    if not isinstance(data, dict):
        raise PermanentError(
            f"{path}: expected a mapping with `channels:` at the top, got {type(data).__name__}; {EXAMPLE}"
        )
    try:
        return ChannelsFile.model_validate(data)
    except ValidationError as exc:
        raise PermanentError(f"{path}: {_describe(exc, data)}; {EXAMPLE}") from None


def save_channels(path: Path, channels: ChannelsFile | list[ChannelConfig]) -> None:
    """Write atomically: readers (the watcher) see the old file or the new one, never half of one."""
    if isinstance(channels, list):
        try:
            channels = ChannelsFile(channels=channels)
        except ValidationError as exc:
            raise PermanentError(f"{path}: not saved: {_describe(exc, None)}") from None
    data = channels.model_dump(mode="json", exclude_defaults=True)
    data.setdefault("channels", [])
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def add_channel(path: Path, config: ChannelConfig, *, replace: bool = False) -> ChannelsFile:
    """Add a channel (or, with replace=True, overwrite it where it stands); returns the new file."""
    with _locked(path):
        current = load_channels(path)
        existing = current.get(config.id)
        if existing is not None and not replace:
            raise PermanentError(
                f"{path}: channel {config.id} ({existing.name}) is already watched; remove it first or replace it"
            )
        if existing is not None:
            channels = [config if c.id == config.id else c for c in current.channels]
        else:
            channels = [*current.channels, config]
        updated = ChannelsFile(channels=channels)
        save_channels(path, updated)
        return updated


def remove_channel(path: Path, channel_id: str) -> ChannelsFile:
    """Stop watching a channel (either id form); returns the new file."""
    try:
        wanted = normalise_channel_id(channel_id)
    except ValueError as exc:
        raise PermanentError(str(exc)) from None
    with _locked(path):
        current = load_channels(path)
        if current.get(wanted) is None:
            listed = ", ".join(f"{c.id} ({c.name})" for c in current.channels) or "none"
            raise PermanentError(f"{path}: channel {wanted} is not watched; watched: {listed}")
        updated = ChannelsFile(channels=[c for c in current.channels if c.id != wanted])
        save_channels(path, updated)
        return updated


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on a sidecar file (the channels file itself is replaced, so it cannot hold one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _describe(exc: ValidationError, data: dict[str, Any] | None) -> str:
    """The first problem in one line: which channel (by name and id, as written) and which field."""
    errors = exc.errors()
    first = errors[0]
    loc = list(first["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == "channels" and isinstance(loc[1], int):
        where = _channel_label(data, loc[1])
        loc = loc[2:]
    field = ".".join(str(part) for part in loc)
    message = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ", ".join(part for part in (where, field) if part) + f": {message}{more}"


def _channel_label(data: dict[str, Any] | None, index: int) -> str:
    raw = (data or {}).get("channels")
    entry = raw[index] if isinstance(raw, list) and index < len(raw) else None
    if isinstance(entry, dict):
        name, cid = entry.get("name"), entry.get("id")
        label = " ".join(str(v) for v in (repr(name) if name else None, f"({cid})" if cid else None) if v)
        if label:
            return f"channel {label}"
    return f"channel #{index + 1}"
