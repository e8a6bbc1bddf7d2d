"""The periodic tasks on the `watch` queue — the channel poll, WebSub renewals, the reconciler — and
beat's schedule of them (`pressroom beat`)."""

from __future__ import annotations

from typing import Any

from workers import keys


def register_watch_tasks(app: Any) -> None:
    def poll(self: Any) -> dict[str, list[str]]:
        """Poll the channels that are due; a failing channel waits out its own backoff."""
        from workers.watch.channels_file import load_channels
        from workers.watch.poller import Watcher

        path = self.app.pressroom.settings.channels_file
        if path is None:
            return {}
        results = Watcher(self.app, self.app.pressroom).poll(load_channels(path).channels, only_due=True)
        return {r.channel_id: r.submitted for r in results}

    app.task(poll, bind=True, name=keys.POLL_TASK, shared=False, ignore_result=True, acks_late=True,
             expires=300)  # a tick that waited past the next one is dropped, not run twice
    def renew(self: Any) -> dict[str, list[str]]:
        """Renew WebSub leases that are about to lapse (and retry subscriptions never verified)."""
        import time

        from workers.http import client as http_client
        from workers.watch.service import subscriber
        from workers.watch.websub_client import HUB_DEADLINE

        with http_client(HUB_DEADLINE) as http:
            report = subscriber(self.app.pressroom, http).renew_due(time.time())
        return {"renewed": report.renewed, "failed": [str(f) for f in report.failed]}

    app.task(renew, bind=True, name=keys.RENEW_TASK, shared=False, ignore_result=True, expires=3000)
    def reconcile(self: Any) -> dict[str, list[str]]:
        """Re-drive the runs nothing carries on any more (workers/reconcile.py)."""
        from workers.reconcile import reconcile as run_reconciler

        done = run_reconciler(self.app, self.app.pressroom)
        return {"redriven": [stall.run_id for stall, sent in done if sent]}

    app.task(reconcile, bind=True, name=keys.RECONCILE_TASK, shared=False, ignore_result=True, expires=50)
    schedule: dict[str, Any] = {
        "poll-channels": {
            "task": keys.POLL_TASK,
            "schedule": float(min(60, app.pressroom.settings.poll_interval)),
            "options": {"queue": keys.WATCH_QUEUE},
        },
        "reconcile": {"task": keys.RECONCILE_TASK, "schedule": 60.0, "options": {"queue": keys.WATCH_QUEUE}},
    }
    if app.pressroom.settings.websub_callback_base:
        schedule["renew-websub"] = {"task": keys.RENEW_TASK, "schedule": 3600.0,
                                    "options": {"queue": keys.WATCH_QUEUE}}
    app.conf.beat_schedule = schedule
