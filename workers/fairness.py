"""Which of the waiting messages a worker takes first: shortest work first, so a 5-minute video submitted
after a 3-hour talk is not stuck behind the talk's forty translate parts.

Every message of a run is sent at a priority from the source's length (known once it is downloaded, then
carried in each event): ≤ 10 minutes at 0 (first served), then one level later per doubling of length, up
to 9. kombu keeps one Redis list per level (keys.queue_lists) and a worker's BRPOP serves the levels in
order, so ordering costs nothing per message. Within a level, order stays first in, first out. A talk's
work still runs whenever no shorter work waits; a steady stream of short videos could delay a long talk
indefinitely, which for a content team's volume is the right trade (and shows as its queue's age).
"""

from __future__ import annotations

import math

from schemas.events import AnyEvent
from workers import keys

SHORT = 600.0  # seconds: sources up to this long share the first level


def priority(event: AnyEvent) -> int:
    """The kombu priority of every message carrying this event (0 first … 9 last)."""
    duration = event.duration
    if duration is None or duration <= SHORT:
        return 0
    return min(keys.PRIORITY_STEPS[-1], math.ceil(math.log2(duration / SHORT)))
