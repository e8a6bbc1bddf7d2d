"""Which videos were already submitted. The object store holds the durable record (one create-only
marker per video), so nothing is submitted twice even after Redis loses its data; Redis is a cache."""

from __future__ import annotations

import json
import time
from typing import Any

from schemas.run import RunSpec
from workers import keys
from workers.state import KV
from workers.storage import ObjectStore


class SeenVideos:
    def __init__(self, kv: KV, store: ObjectStore) -> None:
        self.kv = kv
        self.store = store

    def claim(self, video_id: str, *, channel_id: str, title: str = "", force: bool = False) -> bool:
        """Mark a video seen without a run (uploads from before a channel was added); True if it was not."""
        if not force and self.kv.sismember(keys.seen_cache_key(), video_id):
            return False
        record = json.dumps({"video_id": video_id, "channel_id": channel_id, "title": title, "at": time.time(),
                             "forced": force}).encode()
        created = self.store.put_bytes(keys.seen_marker_key(video_id), record, if_absent=not force)
        self.kv.sadd(keys.seen_cache_key(), video_id)
        return created or force

    def record(self, video_id: str, run: RunSpec) -> None:
        """The video has a run now: never submit it again (an operator's forced resubmission overwrites)."""
        self.store.put_bytes(keys.seen_marker_key(video_id), run.model_dump_json().encode())
        self.kv.sadd(keys.seen_cache_key(), video_id)

    def seen(self, video_id: str) -> bool:
        return bool(self.kv.sismember(keys.seen_cache_key(), video_id)) or self.store.exists(
            keys.seen_marker_key(video_id))

    def tombstone(self, video_id: str, when: Any = None) -> None:
        """A video deleted upstream: recorded, so an operator sees why its post may need taking down."""
        record = json.dumps({"video_id": video_id, "when": str(when) if when else None, "at": time.time()})
        self.store.put_bytes(keys.tombstone_key(video_id), record.encode(), if_absent=True)

    def rebuild(self) -> int:
        """Refill the Redis cache from the object store (after Redis lost its data); returns the count."""
        ids = [k.removeprefix("seen/").removesuffix(".json") for k in self.store.list("seen/")]
        if ids:
            self.kv.sadd(keys.seen_cache_key(), *ids)
        return len(ids)
