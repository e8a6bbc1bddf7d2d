"""kombu's Redis transport, made to survive what anyone with access to Redis can put on a queue.

kombu decodes each popped queue item inline in the worker's event loop; an item that is not a kombu
message (not JSON, or JSON of the wrong shape) raises there and kills the worker process ("Unrecoverable
error"), and a restarted worker has nothing left to learn from it. Here such an item is logged and dropped
(BRPOP has already taken it off the queue); real messages take kombu's path unchanged. Celery's own checks
(JSON only, known task names) then deal with well-formed messages of the wrong content.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger("pressroom.broker")


class Channel(kombu_redis.Channel):
    def _brpop_read(self, **options: Any) -> bool:
        try:
            return bool(super()._brpop_read(**options))  # type: ignore[no-untyped-call]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            log.error("dropped an item on a queue that is not a message (%s: %s); whoever wrote it to Redis "
                      "did not go through Pressroom", type(exc).__name__, str(exc)[:200])
            return True


class Transport(kombu_redis.Transport):
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"
