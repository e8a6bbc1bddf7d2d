"""Retry policy per step, as data. Transient errors back off with jitter up to a cap; then the run fails."""

from __future__ import annotations

import random
from dataclasses import dataclass

from schemas.events import Step


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    backoff: float  # seconds before the first retry; doubles each attempt
    backoff_max: float
    time_limit: int  # hard limit in seconds; the soft limit is a little earlier
    max_deliveries: int = 5  # a message that keeps killing its worker (OOM, segfault) is failed after this

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Full jitter (AWS style), but never sooner than the server's Retry-After."""
        cap = min(self.backoff_max, self.backoff * 2 ** max(attempt - 1, 0))
        wait = random.uniform(cap / 2, cap)
        return max(wait, retry_after or 0.0)

    @property
    def soft_time_limit(self) -> int:
        return max(self.time_limit - 30, int(self.time_limit * 0.9))


POLICIES: dict[Step, RetryPolicy] = {
    Step.download: RetryPolicy(max_retries=5, backoff=10, backoff_max=300, time_limit=3600),
    Step.transcribe: RetryPolicy(max_retries=8, backoff=5, backoff_max=300, time_limit=3600),
    Step.translate: RetryPolicy(max_retries=8, backoff=5, backoff_max=300, time_limit=3600),
    Step.tag: RetryPolicy(max_retries=8, backoff=5, backoff_max=300, time_limit=1200),
    Step.publish: RetryPolicy(max_retries=5, backoff=2, backoff_max=60, time_limit=300),
}

# Redis, the broker or the object store down: the delivery waits for it (about 35 minutes in all) without
# using up the step's own retries, then the run fails with the fault's message.
INFRA_POLICY = RetryPolicy(max_retries=40, backoff=2, backoff_max=60, time_limit=0)
