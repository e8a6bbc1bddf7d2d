"""Subscribing to YouTube's WebSub hub, and renewing before the lease runs out.

Every subscription is recorded in Redis (websub.websub_channel_key) before the hub is asked, because
with hub.verify=async the hub's verification GET can arrive before the POST has even returned.
Subscriptions to YouTube's hub are flaky, so a request that was accepted but never verified, or that
failed, is simply due again after retry_seconds: renew_due() run periodically heals both.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlparse

import httpx

from workers.errors import ConfigError, PermanentError, PressroomError, TransientError
from workers.keys import websub_channel_key, websub_channels_key
from workers.state import KV
from workers.watch.websub import (
    YOUTUBE_HUB,
    check_channel_id,
    read_hash,
    renewal_margin,
    secrets_from,
    topic_url,
)

log = logging.getLogger("pressroom.watch.websub")

_TRANSIENT_STATUS = {408, 425, 429}


HUB_DEADLINE = 30.0  # seconds for a whole request to the hub


@dataclass
class RenewalReport:
    """What renew_due did: one channel's failure never stops the others."""

    renewed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class Subscriber:
    """Asks the hub to (un)subscribe our callback to channels' topics and keeps the leases alive."""

    def __init__(self, kv: KV, http: httpx.Client, *, hub_url: str = YOUTUBE_HUB, callback_base: str,
                 lease_seconds: int = 432000, secret_for: Callable[[str], str] | None = None,
                 master_secret: str | None = None, retry_seconds: float = 3600.0) -> None:
        for name, url in (("hub URL", hub_url), ("callback base", callback_base)):
            if urlparse(url).scheme not in {"http", "https"} or not urlparse(url).netloc:
                raise ConfigError(f"WebSub {name} {url!r} is not an http(s) URL")
        if secret_for is None:
            if master_secret is None:
                raise ConfigError("WebSub needs secret_for or a master secret: set PRESSROOM_WEBSUB_SECRET")
            secret_for = secrets_from(master_secret)
        if lease_seconds <= 0:
            raise ConfigError(f"WebSub lease_seconds must be positive, not {lease_seconds}")
        self.kv, self.http, self.hub_url = kv, http, hub_url
        self.callback_base = callback_base.rstrip("/")
        self.lease_seconds, self.secret_for, self.retry_seconds = lease_seconds, secret_for, retry_seconds

    def callback_url(self, channel_id: str) -> str:
        return f"{self.callback_base}/websub/{channel_id}"

    # --- asking the hub ---------------------------------------------------------------------------
    def subscribe(self, channel_id: str, *, now: float | None = None) -> None:
        """Ask for (or renew) a subscription; accepted means the hub will verify it later."""
        check_channel_id(channel_id)
        now = time.time() if now is None else now
        self.kv.hset(websub_channels_key(), channel_id, "1")
        self.kv.hset(websub_channel_key(channel_id), mapping={
            "state": "requested", "requested_lease": self.lease_seconds, "attempted": now,
        })
        self._ask("subscribe", channel_id, now)

    def unsubscribe(self, channel_id: str, *, now: float | None = None) -> None:
        """Give a channel up. Notifications for it are ignored from now on, even if the hub fails here:
        the lease then lapses on its own."""
        check_channel_id(channel_id)
        now = time.time() if now is None else now
        self.kv.hset(websub_channels_key(), channel_id, "0")
        self.kv.hset(websub_channel_key(channel_id), mapping={"state": "unsubscribe_requested", "attempted": now})
        self._ask("unsubscribe", channel_id, now)

    def _ask(self, mode: str, channel_id: str, now: float) -> None:
        form = {"hub.mode": mode, "hub.topic": topic_url(channel_id), "hub.callback": self.callback_url(channel_id),
                "hub.verify": "async"}
        if mode == "subscribe":
            form["hub.lease_seconds"] = str(self.lease_seconds)
            form["hub.secret"] = self.secret_for(channel_id)
        error: PressroomError
        try:
            response = self.http.post(self.hub_url, data=form)
        except httpx.TransportError as exc:
            error = TransientError(f"WebSub hub {self.hub_url} unreachable ({type(exc).__name__}: {exc}) "
                                   f"asking to {mode} {channel_id}; retry later")
        else:
            if response.status_code in (202, 204):
                self.kv.hset(websub_channel_key(channel_id), mapping={"last_error": ""})
                log.info("WebSub: hub accepted %s for %s", mode, channel_id)
                return
            error = _hub_error(response, mode, channel_id)
        self.kv.hset(websub_channel_key(channel_id), mapping={"last_error": str(error), "last_error_at": now})
        raise error

    # --- keeping leases alive ---------------------------------------------------------------------
    def status(self, channel_id: str) -> dict[str, str]:
        return read_hash(self.kv, websub_channel_key(channel_id))

    def channels(self) -> list[str]:
        """The channels we want notifications for."""
        return sorted(c for c, flag in read_hash(self.kv, websub_channels_key()).items() if flag == "1")

    def due_for_renewal(self, now: float) -> list[str]:
        """Wanted channels whose lease is nearly over, or that were never verified (the hub lost or
        denied the request, or it failed), and that were not already asked for within retry_seconds."""
        return [c for c in self.channels() if self._due(self.status(c), now)]

    def _due(self, record: dict[str, str], now: float) -> bool:
        expires = _float(record.get("expires"))
        window = None
        if expires is not None:
            lease = _float(record.get("lease_seconds")) or float(self.lease_seconds)
            window = expires - renewal_margin(lease)
            if now < window:
                return False
        attempted = _float(record.get("attempted"))
        if attempted is None or (window is not None and attempted < window):
            return True  # never asked, or last asked for the lease now ending
        return now - attempted >= self.retry_seconds

    def renew_due(self, now: float) -> RenewalReport:
        """Re-subscribe every channel that is due; run it periodically (e.g. hourly from beat)."""
        report = RenewalReport()
        for channel_id in self.due_for_renewal(now):
            try:
                self.subscribe(channel_id, now=now)
            except PressroomError as exc:
                log.warning("WebSub: renewing %s failed: %s", channel_id, exc)
                report.failed[channel_id] = str(exc)
            else:
                report.renewed.append(channel_id)
        return report


def _hub_error(response: httpx.Response, mode: str, channel_id: str) -> PressroomError:
    """One line naming the status and the hub's own words (YouTube's hub says which field it dislikes)."""
    said = " ".join(response.text.split())[:160] or response.reason_phrase
    message = f"WebSub hub answered {response.status_code} to {mode} {channel_id}: {said}"
    if response.status_code in _TRANSIENT_STATUS or response.status_code >= 500:
        return TransientError(f"{message}; retry later", retry_after=_retry_after(response))
    return PermanentError(f"{message}; check the hub URL, callback URL and topic")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: the caller's own backoff is good enough


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
