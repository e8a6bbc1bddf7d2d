"""Polling channel feeds: new uploads become runs, once each; a failing feed backs off on its own."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from schemas.artifacts import VideoSource
from schemas.channels import ChannelConfig
from workers import keys
from workers.errors import PressroomError
from workers.glossary import load_glossary
from workers.http import client as http_client
from workers.runtime import Runtime
from workers.steps.download import watch_url
from workers.submit import submit
from workers.watch.feed import MAX_FEED_BYTES, FeedEntry, parse_feed, select
from workers.watch.seen import SeenVideos

log = logging.getLogger("pressroom.watch")
SUBMIT_LOCK_SECONDS = 120  # lapses if the submitter dies mid-way
Fetch = Callable[[str], bytes]


FEED_DEADLINE = 20.0  # seconds for a whole feed request: a feed is ~25 kB


def http_fetch(url: str) -> bytes:
    """GET a feed within FEED_DEADLINE seconds and MAX_FEED_BYTES; any failure is one line saying what."""
    try:
        with http_client(FEED_DEADLINE, follow_redirects=True, headers={"User-Agent": "pressroom"}) as http, \
                http.stream("GET", url) as response:
            if response.status_code != 200:
                raise PressroomError(f"{url} answered {response.status_code}: check the channel id")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_FEED_BYTES:
                    raise PressroomError(f"{url}: over {MAX_FEED_BYTES} bytes, too big for a YouTube feed")
            return bytes(body)
    except httpx.HTTPError as exc:
        raise PressroomError(f"cannot fetch {url}: {type(exc).__name__}: {exc}") from None


@dataclass
class PollResult:
    channel_id: str
    submitted: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None
    retry_at: float | None = None


class Watcher:
    """Turns channels' feeds into runs. The same code serves the beat task, `pressroom watch` and WebSub."""

    def __init__(self, app: Any, rt: Runtime, *, fetch: Fetch = http_fetch,
                 clock: Callable[[], float] = time.time) -> None:
        self.app, self.rt, self.fetch, self.clock = app, rt, fetch, clock
        self.kv = rt.state.kv
        self.seen = SeenVideos(self.kv, rt.store)
        if not self.kv.scard(keys.seen_cache_key()):  # Redis lost its data (or is new): refill the cache
            self.seen.rebuild()

    # --- one channel --------------------------------------------------------------------------------
    def poll_channel(self, channel: ChannelConfig) -> PollResult:
        result = PollResult(channel.id)
        if channel.glossary:  # a bad glossary is this channel's failure, found before any of its videos
            load_glossary(Path(channel.glossary), self.rt.settings)
        url = channel.feed_url(self.rt.settings.feed_url_template)
        try:
            feed = parse_feed(self.fetch(url))
        except PressroomError as exc:
            return self._failed(channel, result, str(exc))
        take, skipped = select(feed, channel.filters)
        result.skipped = [(e.video_id, reason) for e, reason in skipped]
        baseline_key = f"channels/{channel.id}/baseline.json"
        if not self.rt.store.exists(baseline_key):
            # first poll of a new channel: only its newest `backfill` uploads; the rest predate it
            newest = sorted(take, key=lambda e: e.published, reverse=True)[: channel.backfill]
            for entry in take:
                if entry not in newest:
                    self.seen.claim(entry.video_id, channel_id=channel.id, title=entry.title)
                    result.skipped.append((entry.video_id, "published before the channel was added"))
            take = [e for e in take if e in newest]
            self.rt.store.put_bytes(baseline_key, json.dumps({"at": self.clock()}).encode(), if_absent=True)
        for entry in take:
            if self.submit_entry(channel, entry):
                result.submitted.append(entry.video_id)
        self.kv.hset(keys.channel_state_key(channel.id), mapping={
            "failures": 0, "last_ok": self.clock(), "last_error": "",
            "next_poll": self.clock() + self.rt.settings.poll_interval,
        })
        return result

    def record_failure(self, channel: ChannelConfig, error: str) -> PollResult:
        """A failure of this channel (its feed, its glossary, a submission): shown, and backed off from."""
        return self._failed(channel, PollResult(channel.id), " ".join(error.split()))

    def _failed(self, channel: ChannelConfig, result: PollResult, error: str) -> PollResult:
        state = keys.channel_state_key(channel.id)
        failures = int(self.kv.hincrby(state, "failures", 1))
        wait = min(self.rt.settings.poll_backoff_max, self.rt.settings.poll_interval * 2 ** (failures - 1))
        result.error, result.retry_at = error, self.clock() + wait
        self.kv.hset(state, mapping={"last_error": error, "next_poll": result.retry_at})
        log.warning("channel %s (%s): %s; failure %d, next try in %ds", channel.name, channel.id, error, failures,
                    wait)
        return result

    def submit_entry(self, channel: ChannelConfig, entry: FeedEntry, *, force: bool = False) -> str | None:
        """Submit a video unless it was seen before; returns the run id. The video is recorded as seen only
        once its run exists (submit does it), so a submission that fails leaves it to the next poll; a
        short lock keeps a poll and a WebSub notification of the same upload from both submitting it."""
        lock = keys.submit_lock_key(entry.video_id)
        if not self.kv.set(lock, "1", ex=SUBMIT_LOCK_SECONDS, nx=True):
            return None  # being submitted right now by another poll or notification
        try:
            if not force and self.seen.seen(entry.video_id):
                return None
            spec = submit(
                self.app, self.rt, VideoSource(kind="youtube", uri=watch_url(entry.video_id)), entry.video_id,
                defaults=channel.defaults, glossary=Path(channel.glossary) if channel.glossary else None,
                captions=channel.captions, channel_id=channel.id, publish_targets=channel.publish_targets,
                min_duration=channel.filters.min_duration, max_duration=channel.filters.max_duration,
            )
        finally:
            self.kv.delete(lock)
        log.info("channel %s: submitted %s (%s) as run %s", channel.name, entry.video_id, entry.title, spec.run_id)
        return spec.run_id

    # --- every channel ------------------------------------------------------------------------------
    def due(self, channel: ChannelConfig) -> bool:
        next_poll = self.kv.hget(keys.channel_state_key(channel.id), "next_poll")
        return next_poll is None or float(next_poll) <= self.clock()

    def poll(self, channels: list[ChannelConfig], *, only_due: bool = False) -> list[PollResult]:
        """One channel's failure — its feed, its glossary, a submission — never stops the others; it is
        recorded on that channel (`channels list`), which backs off on its own."""
        results = []
        for channel in channels:
            if not channel.enabled or (only_due and not self.due(channel)):
                continue
            try:
                results.append(self.poll_channel(channel))
            except Exception as exc:
                if not isinstance(exc, PressroomError):
                    log.exception("channel %s (%s): poll failed", channel.name, channel.id)
                message = str(exc) if isinstance(exc, PressroomError) else f"{type(exc).__name__}: {exc}"
                results.append(self.record_failure(channel, message))
        return results
