"""WebSub wired to the watcher: a verified notification of a new upload becomes a run at once; a title
or description update of a known video does not start a second one; deletions are recorded."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from schemas.channels import ChannelConfig
from workers.errors import ConfigError, PressroomError
from workers.runtime import Runtime
from workers.watch.channels_file import load_channels
from workers.watch.feed import DeletedEntry, FeedEntry, classify, is_wait
from workers.watch.poller import Watcher
from workers.watch.websub import create_websub_app, secrets_from
from workers.watch.websub_client import Subscriber

log = logging.getLogger("pressroom.watch")


class _Channels:
    """The channels file, re-read when it changes (channels are added while the endpoint runs)."""

    def __init__(self, path: Path) -> None:
        self.path, self._mtime, self._by_id = path, -1.0, dict[str, ChannelConfig]()

    def get(self, channel_id: str) -> ChannelConfig | None:
        mtime = self.path.stat().st_mtime if self.path.exists() else 0.0
        if mtime != self._mtime:
            self._by_id = {c.id: c for c in load_channels(self.path).channels}
            self._mtime = mtime
        return self._by_id.get(channel_id)


def _master(rt: Runtime) -> str:
    if not rt.settings.websub_secret:
        raise ConfigError("WebSub needs PRESSROOM_WEBSUB_SECRET (any long random string)")
    return rt.settings.websub_secret


def websub_app(app: Any, rt: Runtime) -> FastAPI:
    if rt.settings.channels_file is None:
        raise ConfigError("no channels file: set PRESSROOM_CHANNELS_FILE")
    channels = _Channels(rt.settings.channels_file)
    watcher = Watcher(app, rt)

    def on_entries(channel_id: str, entries: list[FeedEntry]) -> None:
        channel = channels.get(channel_id)
        if channel is None or not channel.enabled:
            log.info("notification for %s, which is not a watched channel: ignored", channel_id)
            return
        for entry in entries:
            reason = classify(entry, channel.filters)
            if reason is None or is_wait(reason):  # a notification has no view count: decide at download
                try:  # a video seen before (an update) is not submitted again
                    watcher.submit_entry(channel, entry)
                except PressroomError as exc:  # the channel's failure, shown in `channels list`; the hub will
                    watcher.record_failure(channel, str(exc))  # redeliver, and the video is not marked seen
                    raise
            else:
                log.info("channel %s: %s skipped (%s)", channel.name, entry.video_id, reason)

    def on_deleted(channel_id: str, deleted: list[DeletedEntry]) -> None:
        for entry in deleted:
            watcher.seen.tombstone(entry.video_id, entry.when)

    return create_websub_app(kv=rt.state.kv, secret_for=secrets_from(_master(rt)), on_entries=on_entries,
                             on_deleted=on_deleted, max_body=rt.settings.max_request_bytes)


def subscriber(rt: Runtime, http: httpx.Client) -> Subscriber:
    if not rt.settings.websub_callback_base:
        raise ConfigError("WebSub needs PRESSROOM_WEBSUB_CALLBACK_BASE, the public URL the hub can reach")
    return Subscriber(rt.state.kv, http, hub_url=rt.settings.websub_hub_url,
                      callback_base=rt.settings.websub_callback_base, lease_seconds=rt.settings.websub_lease_seconds,
                      master_secret=_master(rt))
