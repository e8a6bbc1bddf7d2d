"""The Celery app: one queue per step, JSON only, late acks with redelivery when a worker dies."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue

from schemas.events import Step
from workers import keys
from workers.runtime import Runtime
from workers.settings import Settings, get_settings


def delivery_conf(visibility_timeout: int, *, embedded: bool = False) -> dict[str, Any]:
    """How messages are delivered: JSON only, late acks, redelivery when a worker dies, no hoarding.
    Shared with bench/raw_chain.py, so the benchmark compares like with like."""
    transport: dict[str, Any] = {
        "visibility_timeout": visibility_timeout,
        # the sweep that puts a dead worker's messages back runs this often (workers/keepalive.py)
        "unacked_restore_interval": min(10.0, max(1.0, visibility_timeout / 6)),
        "unacked_restore_throttle": 1,
    }
    if embedded:
        transport["polling_interval"] = 0.02  # the memory transport polls; the default wastes ~1 s a hop
    return {
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "enable_utc": True,
    }


def direct_queues(names: list[str]) -> list[Any]:
    """One queue per name, each behind its own direct exchange."""
    return [Queue(q, Exchange(q, type="direct"), routing_key=q) for q in names]  # type: ignore[no-untyped-call]


def create_app(settings: Settings) -> Any:
    """Build an app bound to these settings; embedded settings give kombu's in-memory broker."""
    app = Celery("pressroom", broker=settings.broker_url or "memory://", set_as_current=False)
    if not settings.embedded:
        from workers.broker import TRANSPORT

        app.conf.broker_transport = TRANSPORT  # Redis, but a garbage item on a queue cannot kill a worker
    app.conf.update(
        **delivery_conf(settings.visibility_timeout, embedded=settings.embedded),
        task_queues=direct_queues([*keys.QUEUES.values(), keys.WATCH_QUEUE]),
        task_default_queue=keys.QUEUES[Step.download],
        task_routes={
            **{name: {"queue": keys.QUEUES[s]} for s in Step for name in (keys.task_name(s), keys.part_task_name(s))},
            keys.POLL_TASK: {"queue": keys.WATCH_QUEUE},
            keys.RENEW_TASK: {"queue": keys.WATCH_QUEUE},
            keys.RECONCILE_TASK: {"queue": keys.WATCH_QUEUE},
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=True,  # Flower and `celery events` show each task's queue
    )
    if not settings.embedded:  # a list per priority level: a short video's work passes a long talk's
        app.conf.broker_transport_options = {**app.conf.broker_transport_options,
                                             "priority_steps": keys.PRIORITY_STEPS}
    app.pressroom = Runtime(settings)
    from workers.metrics import signals

    signals.connect()
    from workers.keepalive import KeepDeliveriesAlive

    app.steps["consumer"].add(KeepDeliveriesAlive)
    from workers.capacity import AnnounceCapacity

    app.steps["consumer"].add(AnnounceCapacity)
    from workers.tasks import register_tasks
    from workers.watch.tasks import register_watch_tasks

    register_tasks(app)
    register_watch_tasks(app)
    return app


def app_from_env(*, providers: bool = False) -> tuple[Any, Runtime]:
    """The app the commands use, from the environment; with providers, their settings are checked now
    rather than at the first task."""
    from workers.settings import load_settings

    settings = load_settings()
    if providers:
        settings.transcription_endpoint()
        settings.llm_endpoint()
    app = create_app(settings)
    return app, app.pressroom


def __getattr__(name: str) -> Any:
    """`celery -A workers.app` finds `app`, built lazily so importing this module reads no settings."""
    if name in {"app", "celery"}:
        return create_app(get_settings())
    raise AttributeError(name)
