"""Every queue name, Redis key and object-store key Pressroom uses, in one place."""

from __future__ import annotations

from schemas.events import Step

PREFIX = "pressroom"

# --- queues: one per step, so each step scales on its own -----------------------------------------
QUEUES: dict[Step, str] = {step: f"{PREFIX}.{step.value}" for step in Step}


def task_name(step: Step) -> str:
    return f"{PREFIX}.{step.value}"


def part_task_name(step: Step) -> str:
    """The task for one part of a fanned-out step; it runs on the step's own queue."""
    return f"{PREFIX}.{step.value}.part"


# kombu keeps a queue's messages of priority p (0 first … 9 last) in the list queue + SEP + p (p = 0: the queue
# itself); Pressroom sends a long talk's work at a later priority than a short video's (workers/fairness.py)
PRIORITY_STEPS = list(range(10))
PRIORITY_SEP = "\x06\x16"  # kombu's default separator


def queue_lists(queue: str) -> list[str]:
    """The Redis lists that hold a queue's waiting messages, first served first."""
    return [queue if p == 0 else f"{queue}{PRIORITY_SEP}{p}" for p in PRIORITY_STEPS]


UNACKED_KEY = "unacked"  # kombu's hash of delivered, unacked messages (delivery tag -> [message, exchange, key])

WATCH_QUEUE = f"{PREFIX}.watch"  # polling channels, WebSub renewals, the reconciler
POLL_TASK = f"{PREFIX}.watch.poll"
RECONCILE_TASK = f"{PREFIX}.reconcile"
RENEW_TASK = f"{PREFIX}.watch.renew"
WAKE_TASK = f"{PREFIX}.embedded.wake"  # a no-op that lets the embedded worker stop at once

# --- Redis keys ------------------------------------------------------------------------------------
def run_key(run_id: str) -> str:
    """Hash: the run's spec, status and per-step fields."""
    return f"{PREFIX}:run:{run_id}"


def run_events_key(run_id: str) -> str:
    """List: the run's events, in the order they were emitted."""
    return f"{PREFIX}:run:{run_id}:events"


def run_logged_key(run_id: str) -> str:
    """Set: which events are in the run's log already (kind:step:generation), so a retried send logs once."""
    return f"{PREFIX}:run:{run_id}:logged"


def runs_index_key() -> str:
    """Sorted set: run ids by creation time."""
    return f"{PREFIX}:runs"


def emit_key(run_id: str, step: Step, input_hash: str, generation: int = 0) -> str:
    """String: set while a step's downstream event is being sent, kept once it was sent. A re-run from a
    step is a new generation, so what earlier generations sent does not stop it."""
    return f"{PREFIX}:emit:{run_id}:{step.value}:{input_hash}" + (f":g{generation}" if generation else "")


def join_key(run_id: str, step: Step, input_hash: str) -> str:
    """Set: indexes of a fanned-out step's parts that are stored; the join runs when it is full."""
    return f"{PREFIX}:join:{run_id}:{step.value}:{input_hash}"


def step_stats_key(step: Step, minute: int) -> str:
    """Hash: how many deliveries of a step succeeded / failed / retried in one minute (expires in 2 h)."""
    return f"{PREFIX}:stats:{step.value}:{minute}"


def metrics_key() -> str:
    """Hash: Pressroom's Prometheus counters and histogram buckets, one field per series (workers/metrics)."""
    return f"{PREFIX}:metrics"


def limiter_key(endpoint: str, what: str) -> str:
    """A provider endpoint's shared limits: "requests" (sorted set of grants with their tokens), "held"
    (sorted set of requests in flight, scored by when their lease lapses) and "pause" (a 429's Retry-After)."""
    return f"{PREFIX}:limit:{endpoint}:{what}"


def capacity_key(queue: str) -> str:
    """Sorted set: "<worker node>|<concurrency>" of each worker consuming the queue, scored by when its
    announcement lapses (workers/capacity.py)."""
    return f"{PREFIX}:capacity:{queue}"


def spend_key(what: str) -> str:
    """String (a float of USD): what a run ("run:<id>"), a channel on a day ("channel:<id>:<date>") or all runs
    on a day ("day:<date>") spent on providers, for the budget caps (workers/budget.py)."""
    return f"{PREFIX}:spend:{what}"


def llm_mode_key(endpoint: str) -> str:
    """String: the structured-output mode an "auto" LLM endpoint (and model) turned out to accept."""
    return f"{PREFIX}:llm-mode:{endpoint}"


def submit_lock_key(video_id: str) -> str:
    """String, short-lived: a watcher is submitting this video now."""
    return f"{PREFIX}:submitting:{video_id}"


def reviews_index_key() -> str:
    """Hash: video id → "edited" or "approved", what the review list shows (the reviews are in the store)."""
    return f"{PREFIX}:reviews"


def seen_cache_key() -> str:
    """Set: video ids already submitted (a cache of the seen/ markers in the object store)."""
    return f"{PREFIX}:seen"


def channel_state_key(channel_id: str) -> str:
    """Hash: a channel's polling state: failures, next poll time, last error, last success."""
    return f"{PREFIX}:channel:{channel_id}"


def websub_channel_key(channel_id: str) -> str:
    """Hash: one channel's subscription: state, lease_seconds, expires, attempted, last_error, counters."""
    return f"{PREFIX}:websub:channel:{channel_id}"


def websub_channels_key() -> str:
    """Hash: channel id -> "1" while we want its notifications, "0" once we unsubscribed."""
    return f"{PREFIX}:websub:channels"


def websub_notified_key(channel_id: str, body_sha256: str) -> str:
    """String with a TTL: this exact notification body was handed on already (the hub redelivers)."""
    return f"{PREFIX}:websub:notified:{channel_id}:{body_sha256}"


def audit_log_key() -> str:
    """List: the dashboard's audit log, one JSON entry per action (who, what, run id, when), oldest first."""
    return f"{PREFIX}:audit"


def audit_entries_key() -> str:
    """Sorted set: the dashboard's audit log, one JSON entry per authenticated action (who, what, run id,
    outcome, at), scored by time; entries older than PRESSROOM_AUDIT_RETENTION_DAYS are dropped on write."""
    return f"{PREFIX}:audit:entries"


def audit_refused_key(minute: int) -> str:
    """Hash: requests refused before authentication (no token, wrong token, read-only) in one minute, by
    reason; a fixed set of fields, expiring with the audit log's retention."""
    return f"{PREFIX}:audit:refused:{minute}"


# --- object-store keys ----------------------------------------------------------------------------
def step_prefix(video_id: str, step: Step, input_hash: str) -> str:
    return f"videos/{video_id}/{step.value}/{input_hash}/"


def part_key(step_prefix: str, index: int) -> str:
    return f"{step_prefix}parts/{index:04d}.json"


def upload_key(digest: str, filename: str) -> str:
    return f"uploads/{digest}/{filename}"


def glossary_key(digest: str) -> str:
    return f"glossaries/{digest}.yaml"


def seen_marker_key(video_id: str) -> str:
    """The durable record that a video was submitted: it survives Redis losing its data."""
    return f"seen/{video_id}.json"


def tombstone_key(video_id: str) -> str:
    return f"deleted/{video_id}.json"


def post_key(name: str) -> str:
    return f"posts/{name}"


def review_key(video_id: str) -> str:
    """An editor's edits and approval of a video's post (kept across re-runs of the video)."""
    return f"reviews/{video_id}.json"


def post_owner_key(name: str) -> str:
    """Which video a post name belongs to (create-only), so two videos never write the same post."""
    return f"post-owners/{name}"


def run_manifest_key(run_id: str) -> str:
    return f"runs/{run_id}/manifest.json"
