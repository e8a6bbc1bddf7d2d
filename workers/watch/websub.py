"""WebSub (PubSubHubbub) callback for YouTube channels: the hub verifies it, then pushes new uploads to it.

A push arrives seconds after an upload where a feed poll takes minutes, but YouTube's hub has been
flaky for new subscriptions since 2026-09: polling stays the fallback, so this is an accelerator,
never the only way a video gets in. Subscribing and renewing (the hub client) is in websub_client.py.

Choices, written down so nobody has to rediscover them:
- A notification with a missing or wrong X-Hub-Signature is answered 403 and nothing is handed on.
  The spec asks for a 2xx there, but a 403 shows up in the hub's delivery diagnostics, where a
  mis-keyed subscription (e.g. after the master secret changed) is then visible; YouTube's hub only
  retries and gives up, and polling catches the video anyway.
- A verification is confirmed only for what we asked for: subscribe while we want the channel,
  unsubscribe once we gave it up. Anyone can ask the hub to unsubscribe our callback; echoing that
  challenge would silently end our subscription.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from workers.errors import ConfigError, PermanentError, PressroomError
from workers.keys import websub_channel_key, websub_channels_key, websub_notified_key
from workers.state import KV
from workers.watch.feed import DeletedEntry, FeedEntry, parse_feed

log = logging.getLogger("pressroom.watch.websub")

YOUTUBE_HUB = "https://pubsubhubbub.appspot.com/subscribe"
TOPIC_TEMPLATE = "https://www.youtube.com/xml/feeds/videos.xml?channel_id={channel_id}"
CHANNEL_ID = re.compile(r"UC[0-9A-Za-z_-]{22}")
MAX_BODY = 1024 * 1024
MIN_LEASE = 60  # seconds: shorter leases from a hub (or a forger) would mean renewing non-stop
DEDUPE_SECONDS = 7 * 86400
_DIGESTS: dict[str, Callable[[], Any]] = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}

OnEntries = Callable[[str, list[FeedEntry]], None]
OnDeleted = Callable[[str, list[DeletedEntry]], None]


# --- shared helpers ----------------------------------------------------------------------------------
def topic_url(channel_id: str) -> str:
    """The topic YouTube's hub knows a channel by (not the polling feed URL: /xml/feeds/, not /feeds/)."""
    return TOPIC_TEMPLATE.format(channel_id=channel_id)


def check_channel_id(channel_id: str) -> str:
    """Channel ids go into URLs and Redis keys: only YouTube's UC + 22 characters are accepted."""
    if not CHANNEL_ID.fullmatch(channel_id):
        raise PermanentError(f"{channel_id!r} is not a YouTube channel id: expected UC followed by 22 characters")
    return channel_id


def channel_secret(master: str, channel_id: str) -> str:
    """One hub.secret per channel, derived so only the master secret needs storing; a leaked channel
    secret then lets nobody forge another channel's notifications."""
    if not master:
        raise ConfigError("no WebSub master secret: set PRESSROOM_WEBSUB_SECRET (a long random string)")
    return hmac.new(master.encode(), channel_id.encode(), hashlib.sha256).hexdigest()


def secrets_from(master: str) -> Callable[[str], str]:
    """secret_for built from the master secret, checked now rather than at the first notification."""
    channel_secret(master, "")
    return partial(channel_secret, master)


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """X-Hub-Signature is `sha1=<hex>` (YouTube's hub) or `sha256=<hex>`; compared in constant time."""
    algorithm, sep, given = (header or "").strip().partition("=")
    digest = _DIGESTS.get(algorithm.lower())
    if not sep or digest is None or not given:
        return False
    expected = hmac.new(secret.encode(), body, digest).hexdigest()
    return hmac.compare_digest(expected.encode(), given.strip().lower().encode())


def renewal_margin(lease_seconds: float) -> float:
    """Renew once less than 20% of the lease, or a day, whichever is smaller, is left."""
    return min(0.2 * lease_seconds, 86400.0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_hash(kv: KV, name: str) -> dict[str, str]:
    """A hash as str -> str, whether or not the Redis client decodes responses."""
    return {_text(k): _text(v) for k, v in (kv.hgetall(name) or {}).items()}


def wanted(kv: KV, channel_id: str) -> str | None:
    """"1" while subscribed (or subscribing), "0" once unsubscribed, None for a channel never seen."""
    value = kv.hget(websub_channels_key(), channel_id)
    return None if value is None else _text(value)


def _one_line(message: str, limit: int = 200) -> str:
    flat = " ".join(message.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --- receiving ---------------------------------------------------------------------------------------
class Receiver:
    """The callback's logic, apart from HTTP: what to answer the hub and what to hand on."""

    def __init__(self, kv: KV, *, secret_for: Callable[[str], str], on_entries: OnEntries, on_deleted: OnDeleted,
                 dedupe_seconds: int = DEDUPE_SECONDS, default_lease: int = 432000,
                 clock: Callable[[], float] = time.time) -> None:
        self.kv, self.secret_for, self.on_entries, self.on_deleted = kv, secret_for, on_entries, on_deleted
        self.dedupe_seconds, self.default_lease, self.clock = dedupe_seconds, default_lease, clock

    def verify(self, channel_id: str, params: Mapping[str, str]) -> Response:
        """The hub's GET: echo the challenge for what we asked for; refuse (404) anything else."""
        if not CHANNEL_ID.fullmatch(channel_id):
            return _refuse(404, "not a YouTube channel id")
        mode, topic = params.get("hub.mode", ""), params.get("hub.topic", "")
        if topic != topic_url(channel_id):
            return _refuse(404, f"hub.topic is not {topic_url(channel_id)}")
        want = wanted(self.kv, channel_id)
        now, key = self.clock(), websub_channel_key(channel_id)
        if mode == "denied":
            if want is None:
                return _refuse(404, "no subscription to this channel was asked for")
            reason = _one_line(params.get("hub.reason", "") or "no reason given")
            self.kv.hset(key, mapping={"state": "denied", "expires": "", "last_error": f"hub denied: {reason}",
                                       "last_error_at": now})
            log.warning("WebSub: hub denied the subscription to %s: %s", channel_id, reason)
            return PlainTextResponse("")
        if mode not in {"subscribe", "unsubscribe"}:
            return _refuse(404, f"unknown hub.mode {mode!r}")
        challenge = params.get("hub.challenge", "")
        if not challenge:
            return _refuse(400, "hub.challenge is missing")
        if mode == "subscribe":
            if want != "1":
                return _refuse(404, "no subscription to this channel is wanted")
            asked = _int(self.kv.hget(key, "requested_lease")) or self.default_lease
            lease = _int(params.get("hub.lease_seconds")) or _int(self.kv.hget(key, "lease_seconds")) or asked
            lease = min(max(lease, MIN_LEASE), asked)  # a hub grants at most what was asked; a forged GET no more
            self.kv.hset(key, mapping={"state": "verified", "lease_seconds": lease, "expires": now + lease,
                                       "verified_at": now, "last_error": ""})
            log.info("WebSub: subscription to %s verified for %ds", channel_id, lease)
        else:
            if want != "0":
                return _refuse(404, "this channel is still wanted; not unsubscribing")
            self.kv.hset(key, mapping={"state": "unsubscribed", "expires": "", "verified_at": now})
            log.info("WebSub: unsubscription from %s verified", channel_id)
        return PlainTextResponse(challenge)

    def notify(self, channel_id: str, body: bytes, signature: str | None) -> Response:
        """The hub's POST: check the signature, parse, hand each new body on once, answer."""
        if not CHANNEL_ID.fullmatch(channel_id):
            return _refuse(404, "not a YouTube channel id")
        want = wanted(self.kv, channel_id)
        if not signature_ok(self.secret_for(channel_id), body, signature):
            problem = "wrong" if signature else "missing"
            log.warning("WebSub: %s X-Hub-Signature on a notification for %s; ignored", problem, channel_id)
            if want is not None:  # counted only for our channels, so strangers cannot create keys
                self.kv.hincrby(websub_channel_key(channel_id), "rejected", 1)
                self.kv.hset(websub_channel_key(channel_id), mapping={"last_rejected": self.clock()})
            return _refuse(403, f"{problem} X-Hub-Signature: sign the body with this channel's hub.secret")
        try:
            feed = parse_feed(body, where="notification")
        except PressroomError as exc:
            return _refuse(400, _one_line(str(exc)))
        if want == "0":
            log.info("WebSub: notification for unsubscribed channel %s ignored", channel_id)
            return JSONResponse({"ignored": "unsubscribed"}, status_code=202)
        claim = websub_notified_key(channel_id, hashlib.sha256(body).hexdigest())
        if not self.kv.set(claim, self.clock(), ex=self.dedupe_seconds, nx=True):
            return JSONResponse({"duplicate": True}, status_code=200)
        entries = [e for e in feed.entries if e.channel_id == channel_id]
        if len(entries) < len(feed.entries):  # the secret is this channel's: others' uploads are not vouched for
            log.warning("WebSub: %d entries of other channels in a notification for %s dropped",
                        len(feed.entries) - len(entries), channel_id)
        deleted = list(feed.deleted)
        try:
            if entries:
                self.on_entries(channel_id, entries)
            if deleted:
                self.on_deleted(channel_id, deleted)
        except Exception:
            self.kv.delete(claim)  # let the hub's redelivery try again
            log.exception("WebSub: handing on a notification for %s failed", channel_id)
            return _refuse(503, "could not queue the notification; the hub will redeliver it")
        self.kv.hincrby(websub_channel_key(channel_id), "notifications", 1)
        self.kv.hset(websub_channel_key(channel_id), mapping={"last_notified": self.clock()})
        return JSONResponse({"entries": len(entries), "deleted": len(deleted)}, status_code=202)


def _refuse(status: int, message: str) -> Response:
    return PlainTextResponse(message, status_code=status)


def _int(value: Any) -> int:
    try:
        number = float(_text(value)) if value not in (None, "") else 0.0
    except ValueError:
        return 0
    return int(min(max(number, 0.0), 10.0**12)) if number == number else 0  # NaN and 1e400 are no numbers


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The raw body, or None once it is over the limit (without reading the rest)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def create_websub_router(*, kv: KV, secret_for: Callable[[str], str], on_entries: OnEntries,
                         on_deleted: OnDeleted, max_body: int = MAX_BODY, dedupe_seconds: int = DEDUPE_SECONDS,
                         default_lease: int = 432000, clock: Callable[[], float] = time.time) -> APIRouter:
    """GET and POST /websub/{channel_id}. on_entries/on_deleted must be quick (enqueue a task): the
    hub gives up on slow callbacks. Redis and the callbacks run in the thread pool, not the event loop."""
    receiver = Receiver(kv, secret_for=secret_for, on_entries=on_entries, on_deleted=on_deleted,
                        dedupe_seconds=dedupe_seconds, default_lease=default_lease, clock=clock)
    router = APIRouter()

    @router.get("/websub/{channel_id}")
    def verify(channel_id: str, request: Request) -> Response:
        return receiver.verify(channel_id, request.query_params)

    @router.post("/websub/{channel_id}")
    async def notify(channel_id: str, request: Request) -> Response:
        if not CHANNEL_ID.fullmatch(channel_id):
            return _refuse(404, "not a YouTube channel id")
        body = await _read_body(request, max_body)
        if body is None:
            return _refuse(413, f"notification over {max_body} bytes")
        return await run_in_threadpool(receiver.notify, channel_id, body, request.headers.get("x-hub-signature"))

    return router


def create_websub_app(*, kv: KV, secret_for: Callable[[str], str], on_entries: OnEntries, on_deleted: OnDeleted,
                      **options: Any) -> FastAPI:
    """The callback as an app of its own (serve it with uvicorn behind the public callback_base),
    plus GET /health for probes."""
    app = FastAPI(title="Pressroom WebSub", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(create_websub_router(kv=kv, secret_for=secret_for, on_entries=on_entries,
                                            on_deleted=on_deleted, **options))

    @app.get("/health")
    def health() -> Response:
        """Healthy only while Redis answers: without it no verification or notification can be handled."""
        try:
            kv.hget(websub_channels_key(), "-")
        except Exception as exc:
            return JSONResponse({"ok": False, "error": _one_line(f"{type(exc).__name__}: {exc}")}, status_code=503)
        return JSONResponse({"ok": True})

    return app
