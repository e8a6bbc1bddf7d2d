"""WebSub over real HTTP: the callback app under uvicorn, a fake hub under http.server, state in a real Redis."""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs

import httpx
import pytest
import redis
from fastapi import FastAPI

from tests.harness import serve_asgi
from workers.errors import ConfigError, PermanentError, TransientError
from workers.keys import websub_channel_key, websub_channels_key
from workers.state import KV, MemoryKV
from workers.watch.feed import DeletedEntry, FeedEntry
from workers.watch.websub import (
    Receiver,
    channel_secret,
    create_websub_app,
    secrets_from,
    topic_url,
)
from workers.watch.websub_client import Subscriber

REDIS_URL = "redis://127.0.0.1:6379/12"  # this module's own database
MASTER = "test-master-secret-0123456789"
CH = "UC_x5XG1OV2P6uZZ5FSM9Ttw"
OTHER = "UCBJycsmduvYEL83R_U4JriQ"
VIDEO = "dQw4w9WgXcQ"
LEASE = 1000


def notification(video_id: str = VIDEO, channel_id: str = CH, title: str = "Scaling Postgres",
                 updated: str = "2026-10-01T12:00:05.123456789+00:00") -> bytes:
    """What YouTube's hub pushes for an upload or a title/description change."""
    return f"""<?xml version='1.0' encoding='UTF-8'?>
<feed xmlns:yt="http://www.youtube.com/xml/schemas/2015" xmlns="http://www.w3.org/2005/Atom">
 <link rel="hub" href="https://pubsubhubbub.appspot.com"/>
 <link rel="self" href="https://www.youtube.com/xml/feeds/videos.xml?channel_id={channel_id}"/>
 <title>YouTube video feed</title>
 <updated>{updated}</updated>
 <entry>
  <id>yt:video:{video_id}</id>
  <yt:videoId>{video_id}</yt:videoId>
  <yt:channelId>{channel_id}</yt:channelId>
  <title>{title}</title>
  <link rel="alternate" href="https://www.youtube.com/watch?v={video_id}"/>
  <author><name>Tech Talks</name><uri>https://www.youtube.com/channel/{channel_id}</uri></author>
  <published>2026-10-01T12:00:00+00:00</published>
  <updated>{updated}</updated>
 </entry>
</feed>""".encode()


def tombstone(video_id: str = VIDEO, channel_id: str = CH) -> bytes:
    return f"""<?xml version='1.0' encoding='UTF-8'?>
<feed xmlns:at="http://purl.org/atompub/tombstones/1.0" xmlns="http://www.w3.org/2005/Atom">
  <at:deleted-entry ref="yt:video:{video_id}" when="2026-10-02T08:30:00.000000001+00:00">
    <link href="https://www.youtube.com/watch?v={video_id}"/>
    <at:by><name>Tech Talks</name><uri>https://www.youtube.com/channel/{channel_id}</uri></at:by>
  </at:deleted-entry>
</feed>""".encode()


def sign(body: bytes, channel_id: str = CH, algorithm: str = "sha1", master: str = MASTER) -> str:
    digest = hmac.new(channel_secret(master, channel_id).encode(), body, algorithm).hexdigest()
    return f"{algorithm}={digest}"


def serve(app: FastAPI) -> AbstractContextManager[str]:
    return serve_asgi(app)


@dataclass
class FakeHub:
    """A hub that records the form posts; with verify on it also runs the async verification GET and
    can publish signed notifications with the secret it was given, as YouTube's hub does."""

    url: str = ""
    status: int = 202
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    verify: bool = False
    posts: list[dict[str, str]] = field(default_factory=list)
    verifications: list[tuple[int, str, str]] = field(default_factory=list)  # (status, challenge, answer)
    secrets: dict[str, str] = field(default_factory=dict)  # callback -> hub.secret

    def received(self, form: dict[str, str]) -> None:
        self.posts.append(form)
        if form.get("hub.secret"):
            self.secrets[form["hub.callback"]] = form["hub.secret"]
        if self.verify and self.status in (202, 204):
            threading.Thread(target=self._verify, args=(form,), daemon=True).start()

    def _verify(self, form: dict[str, str]) -> None:
        challenge = uuid.uuid4().hex
        params = {"hub.mode": form["hub.mode"], "hub.topic": form["hub.topic"], "hub.challenge": challenge}
        if form["hub.mode"] == "subscribe":
            params["hub.lease_seconds"] = form["hub.lease_seconds"]
        try:
            answer = httpx.get(form["hub.callback"], params=params, timeout=5)
        except httpx.HTTPError as exc:
            self.verifications.append((0, challenge, str(exc)))
        else:
            self.verifications.append((answer.status_code, challenge, answer.text))

    def publish(self, callback: str, body: bytes) -> httpx.Response:
        signature = hmac.new(self.secrets[callback].encode(), body, hashlib.sha1).hexdigest()
        return httpx.post(callback, content=body, timeout=5,
                          headers={"Content-Type": "application/atom+xml", "X-Hub-Signature": f"sha1={signature}"})


@pytest.fixture()
def hub() -> Iterator[FakeHub]:
    fake = FakeHub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            assert self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded")
            form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
            self.send_response(fake.status)
            for name, value in fake.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(fake.body.encode())))
            self.end_headers()
            self.wfile.write(fake.body.encode())
            fake.received(form)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/subscribe"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture()
def kv() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # pragma: no cover - environment problem, not a skip
        raise RuntimeError(f"Redis is not running at {REDIS_URL}: start redis-server") from exc
    client.flushdb()
    yield client
    client.flushdb()


@dataclass
class Handed:
    """What the callback handed on (in production: enqueued a Celery task)."""

    entries: list[tuple[str, list[FeedEntry]]] = field(default_factory=list)
    deleted: list[tuple[str, list[DeletedEntry]]] = field(default_factory=list)
    fail_next: int = 0

    def on_entries(self, channel_id: str, entries: list[FeedEntry]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("broker down")
        self.entries.append((channel_id, entries))

    def on_deleted(self, channel_id: str, deleted: list[DeletedEntry]) -> None:
        self.deleted.append((channel_id, deleted))


@pytest.fixture()
def handed() -> Handed:
    return Handed()


@pytest.fixture()
def callback(kv: redis.Redis, handed: Handed) -> Iterator[str]:
    app = create_websub_app(kv=cast(KV, kv), secret_for=secrets_from(MASTER), on_entries=handed.on_entries,
                            on_deleted=handed.on_deleted, max_body=64 * 1024)
    with serve(app) as base:
        yield base


@pytest.fixture()
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


@pytest.fixture()
def subscriber(kv: redis.Redis, hub: FakeHub, callback: str, http: httpx.Client) -> Subscriber:
    return Subscriber(cast(KV, kv), http, hub_url=hub.url, callback_base=callback + "/", lease_seconds=LEASE,
                      master_secret=MASTER, retry_seconds=600)


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def verify_params(mode: str = "subscribe", channel_id: str = CH, challenge: str = "c-123") -> dict[str, str]:
    return {"hub.mode": mode, "hub.topic": topic_url(channel_id), "hub.challenge": challenge,
            "hub.lease_seconds": str(LEASE)}


def post(callback: str, body: bytes, signature: str | bytes | None, channel_id: str = CH) -> httpx.Response:
    headers = {b"Content-Type": b"application/atom+xml"}
    if signature is not None:
        headers[b"X-Hub-Signature"] = signature.encode() if isinstance(signature, str) else signature
    return httpx.post(f"{callback}/websub/{channel_id}", content=body, headers=headers, timeout=5)


# --- verification -------------------------------------------------------------------------------------
def test_verification_echoes_the_challenge_and_records_the_lease(subscriber: Subscriber, callback: str,
                                                                 kv: redis.Redis) -> None:
    subscriber.subscribe(CH)
    before = time.time()
    answer = httpx.get(f"{callback}/websub/{CH}", params=verify_params(challenge="xyz-42"))
    assert answer.status_code == 200
    assert answer.text == "xyz-42"
    assert answer.headers["content-type"].startswith("text/plain")
    record = kv.hgetall(websub_channel_key(CH))
    assert record["state"] == "verified"
    assert record["lease_seconds"] == str(LEASE)
    assert before + LEASE <= float(record["expires"]) <= time.time() + LEASE


def test_verification_refuses_what_we_did_not_ask_for(subscriber: Subscriber, callback: str,
                                                      kv: redis.Redis) -> None:
    subscriber.subscribe(CH)
    url = f"{callback}/websub/{CH}"
    wrong_topic = {**verify_params(), "hub.topic": topic_url(OTHER)}
    for params in (wrong_topic, verify_params(mode="frobnicate"), {**verify_params(), "hub.topic": ""}):
        answer = httpx.get(url, params=params)
        assert answer.status_code == 404, params
        assert "c-123" not in answer.text
    # a channel nobody subscribed to
    assert httpx.get(f"{callback}/websub/{OTHER}", params=verify_params(channel_id=OTHER)).status_code == 404
    # an unsubscribe someone else asked the hub for would end our subscription: refused
    assert httpx.get(url, params=verify_params(mode="unsubscribe")).status_code == 404
    assert httpx.get(f"{callback}/websub/not-a-channel", params=verify_params()).status_code == 404
    assert kv.hget(websub_channel_key(CH), "state") == "requested"


def test_unsubscribe_is_confirmed_once_we_asked(subscriber: Subscriber, callback: str, hub: FakeHub,
                                                kv: redis.Redis) -> None:
    subscriber.subscribe(CH)
    subscriber.unsubscribe(CH)
    form = hub.posts[-1]
    assert form["hub.mode"] == "unsubscribe" and "hub.secret" not in form
    answer = httpx.get(f"{callback}/websub/{CH}", params=verify_params(mode="unsubscribe", challenge="bye"))
    assert (answer.status_code, answer.text) == (200, "bye")
    assert kv.hget(websub_channel_key(CH), "state") == "unsubscribed"
    assert subscriber.channels() == []
    # and a late subscribe verification is no longer confirmed
    assert httpx.get(f"{callback}/websub/{CH}", params=verify_params()).status_code == 404


def test_denied_is_recorded(subscriber: Subscriber, callback: str, kv: redis.Redis) -> None:
    subscriber.subscribe(CH)
    params = {"hub.mode": "denied", "hub.topic": topic_url(CH), "hub.reason": "callback\nunreachable"}
    assert httpx.get(f"{callback}/websub/{CH}", params=params).status_code == 200
    record = kv.hgetall(websub_channel_key(CH))
    assert record["state"] == "denied"
    assert record["last_error"] == "hub denied: callback unreachable"
    assert subscriber.due_for_renewal(time.time() + 601) == [CH]  # asked again after retry_seconds


# --- notifications ------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_signed_notification_hands_the_entries_on(callback: str, handed: Handed, algorithm: str) -> None:
    body = notification()
    answer = post(callback, body, sign(body, algorithm=algorithm))
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"entries": 1, "deleted": 0}
    assert len(handed.entries) == 1
    channel_id, entries = handed.entries[0]
    assert channel_id == CH
    assert [(e.video_id, e.channel_id, e.title) for e in entries] == [(VIDEO, CH, "Scaling Postgres")]
    assert handed.deleted == []


def test_bad_or_missing_signature_is_rejected_with_nothing_handed_on(subscriber: Subscriber, callback: str,
                                                                     handed: Handed, kv: redis.Redis) -> None:
    subscriber.subscribe(CH)
    body = notification()
    good = sign(body)
    bad = [
        None,  # missing
        "",
        sign(body, master="another-master-secret"),  # signed with someone else's secret
        sign(body, channel_id=OTHER),  # another channel's secret
        sign(notification(title="something else")),  # a signature of another body
        good.removeprefix("sha1="),  # no algorithm
        good.replace("sha1=", "md5="),  # an algorithm we do not take
        good[:-2] + ("00" if not good.endswith("00") else "11"),
        "sha1=é".encode("latin-1") * 40,  # not even ASCII
    ]
    for signature in bad:
        answer = post(callback, body, signature)
        assert answer.status_code == 403, signature
        assert "signature" in answer.text.lower()
    assert handed.entries == [] and handed.deleted == []
    assert kv.hget(websub_channel_key(CH), "rejected") == str(len(bad))
    # the rejections did not use up the dedupe: the genuine delivery still goes through
    assert post(callback, body, good).status_code == 202
    assert len(handed.entries) == 1


def test_rejections_from_strangers_create_no_keys(callback: str, kv: redis.Redis) -> None:
    assert post(callback, notification(channel_id=OTHER), "sha1=00", channel_id=OTHER).status_code == 403
    assert kv.dbsize() == 0


def test_the_same_notification_twice_is_handed_on_once(callback: str, handed: Handed) -> None:
    body = notification()
    first, second = post(callback, body, sign(body)), post(callback, body, sign(body))
    assert first.status_code == 202
    assert second.status_code == 200 and second.json() == {"duplicate": True}
    assert len(handed.entries) == 1


def test_concurrent_redeliveries_are_handed_on_once(callback: str, handed: Handed) -> None:
    body = notification()
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(post(callback, body, sign(body)).status_code))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [200] * 7 + [202]
    assert len(handed.entries) == 1


def test_a_title_update_is_handed_on_again_for_the_caller_to_judge(callback: str, handed: Handed) -> None:
    """Same video, new <updated>: a different body, so on_entries sees it; the submit side dedupes by video id."""
    first = notification()
    update = notification(title="Scaling Postgres (updated)", updated="2026-10-01T15:00:00.5+00:00")
    assert post(callback, first, sign(first)).status_code == 202
    assert post(callback, update, sign(update)).status_code == 202
    assert [[(e.video_id, e.title) for e in entries] for _, entries in handed.entries] == [
        [(VIDEO, "Scaling Postgres")], [(VIDEO, "Scaling Postgres (updated)")]]
    assert handed.entries[1][1][0].updated is not None
    assert handed.entries[1][1][0].updated > handed.entries[0][1][0].updated  # type: ignore[operator]


def test_a_tombstone_calls_on_deleted(callback: str, handed: Handed) -> None:
    body = tombstone()
    answer = post(callback, body, sign(body))
    assert answer.status_code == 202 and answer.json() == {"entries": 0, "deleted": 1}
    assert handed.entries == []
    assert [(c, [d.video_id for d in deleted]) for c, deleted in handed.deleted] == [(CH, [VIDEO])]
    assert handed.deleted[0][1][0].when is not None


def test_entries_of_another_channel_are_dropped(callback: str, handed: Handed) -> None:
    body = notification(channel_id=OTHER)
    assert post(callback, body, sign(body, channel_id=CH)).status_code == 202
    assert handed.entries == []


@pytest.mark.parametrize("body", [b"<feed", b"not xml at all", b"<html><body>hi</body></html>",
                                  b'<!DOCTYPE x [<!ENTITY a "b">]><feed xmlns="http://www.w3.org/2005/Atom"/>'])
def test_bad_xml_is_400_and_nothing_is_handed_on(callback: str, handed: Handed, body: bytes) -> None:
    answer = post(callback, body, sign(body))
    assert answer.status_code == 400
    assert "\n" not in answer.text.strip() and answer.text
    assert handed.entries == [] and handed.deleted == []


def test_too_large_a_body_is_413(callback: str, handed: Handed) -> None:
    body = notification().replace(b"<title>YouTube video feed</title>", b"<title>" + b"x" * 70_000 + b"</title>")
    answer = post(callback, body, sign(body))
    assert answer.status_code == 413
    # without a Content-Length (chunked), the limit holds while reading
    chunked = httpx.post(f"{callback}/websub/{CH}", content=iter([body[:40_000], body[40_000:]]),
                         headers={"X-Hub-Signature": sign(body)}, timeout=5)
    assert chunked.status_code == 413
    assert handed.entries == []


def test_a_failed_hand_on_is_503_and_the_redelivery_goes_through(callback: str, handed: Handed) -> None:
    handed.fail_next = 1
    body = notification()
    assert post(callback, body, sign(body)).status_code == 503
    assert handed.entries == []
    assert post(callback, body, sign(body)).status_code == 202
    assert len(handed.entries) == 1


def test_notifications_after_unsubscribing_are_ignored(subscriber: Subscriber, callback: str,
                                                       handed: Handed) -> None:
    subscriber.subscribe(CH)
    subscriber.unsubscribe(CH)
    body = notification()
    answer = post(callback, body, sign(body))
    assert answer.status_code == 202 and answer.json() == {"ignored": "unsubscribed"}
    assert handed.entries == []


def test_health(callback: str) -> None:
    answer = httpx.get(f"{callback}/health")
    assert answer.status_code == 200 and answer.json() == {"ok": True}


# --- subscribing and renewing ---------------------------------------------------------------------------
def test_subscribe_posts_the_form_the_hub_expects(subscriber: Subscriber, hub: FakeHub, callback: str,
                                                  kv: redis.Redis) -> None:
    subscriber.subscribe(CH)
    assert hub.posts == [{
        "hub.mode": "subscribe",
        "hub.topic": f"https://www.youtube.com/xml/feeds/videos.xml?channel_id={CH}",
        "hub.callback": f"{callback}/websub/{CH}",
        "hub.lease_seconds": str(LEASE),
        "hub.secret": channel_secret(MASTER, CH),
        "hub.verify": "async",
    }]
    record = kv.hgetall(websub_channel_key(CH))
    assert record["state"] == "requested" and record["last_error"] == ""
    assert subscriber.channels() == [CH]


def test_the_hub_verifies_then_pushes_end_to_end(subscriber: Subscriber, hub: FakeHub, callback: str,
                                                 handed: Handed, kv: redis.Redis) -> None:
    hub.verify = True
    subscriber.subscribe(CH)
    wait_for(lambda: hub.verifications)
    status, challenge, answer = hub.verifications[0]
    assert (status, answer) == (200, challenge)
    assert kv.hget(websub_channel_key(CH), "state") == "verified"
    assert hub.publish(f"{callback}/websub/{CH}", notification()).status_code == 202
    assert [e.video_id for _, entries in handed.entries for e in entries] == [VIDEO]


def test_renewal_only_when_due(subscriber: Subscriber, hub: FakeHub, kv: redis.Redis) -> None:
    hub.verify = True
    subscriber.subscribe(CH)
    wait_for(lambda: kv.hget(websub_channel_key(CH), "state") == "verified")
    expires = float(kv.hget(websub_channel_key(CH), "expires") or 0)
    margin = 0.2 * LEASE  # under a day, so 20% of the lease
    assert subscriber.due_for_renewal(time.time()) == []
    assert subscriber.renew_due(expires - margin - 5).renewed == []
    assert len(hub.posts) == 1
    due_at = expires - margin + 5
    assert subscriber.due_for_renewal(due_at) == [CH]
    report = subscriber.renew_due(due_at)
    assert (report.renewed, report.failed) == ([CH], {})
    assert [p["hub.mode"] for p in hub.posts] == ["subscribe", "subscribe"]
    # just asked: not asked again at once, even before the hub verifies the renewal
    assert subscriber.due_for_renewal(due_at + 60) == []
    wait_for(lambda: len(hub.verifications) == 2)
    assert hub.verifications[1][0] == 200


def test_an_unverified_request_is_asked_again_after_retry_seconds(subscriber: Subscriber, hub: FakeHub) -> None:
    """YouTube's hub accepts and then sometimes never verifies: renew_due heals that."""
    t0 = time.time()
    subscriber.subscribe(CH, now=t0)
    assert subscriber.due_for_renewal(t0 + 599) == []
    assert subscriber.due_for_renewal(t0 + 601) == [CH]
    subscriber.subscribe(OTHER, now=t0)
    subscriber.unsubscribe(OTHER, now=t0)
    assert subscriber.renew_due(t0 + 601).renewed == [CH]  # the unsubscribed channel is left alone


def test_hub_errors_are_transient_or_permanent(subscriber: Subscriber, hub: FakeHub, kv: redis.Redis) -> None:
    hub.status, hub.body = 503, "<html>\n<body>Service\nUnavailable</body></html>"
    with pytest.raises(TransientError) as transient:
        subscriber.subscribe(CH)
    assert "503" in str(transient.value) and "\n" not in str(transient.value)
    assert kv.hget(websub_channel_key(CH), "last_error") == str(transient.value)

    hub.status, hub.body, hub.headers = 429, "slow down", {"Retry-After": "30"}
    with pytest.raises(TransientError) as limited:
        subscriber.subscribe(CH)
    assert limited.value.retry_after == 30

    hub.status, hub.body, hub.headers = 400, "Invalid value for hub.callback", {}
    with pytest.raises(PermanentError) as permanent:
        subscriber.subscribe(CH)
    assert "400" in str(permanent.value) and "Invalid value for hub.callback" in str(permanent.value)

    hub.status = 200  # not 202/204: the hub did not say it accepted
    with pytest.raises(PermanentError):
        subscriber.subscribe(CH)

    hub.status = 500
    report = subscriber.renew_due(time.time() + 601)
    assert report.renewed == [] and "500" in report.failed[CH]


def test_an_unreachable_hub_is_transient(kv: redis.Redis, http: httpx.Client) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    subscriber = Subscriber(cast(KV, kv), http, hub_url=f"http://127.0.0.1:{port}/subscribe",
                            callback_base="https://example.org", master_secret=MASTER)
    with pytest.raises(TransientError, match="unreachable"):
        subscriber.subscribe(CH)
    assert subscriber.due_for_renewal(time.time() + 3601) == [CH]


def test_bad_input_is_refused_before_the_hub_is_asked(subscriber: Subscriber, hub: FakeHub,
                                                      kv: redis.Redis, http: httpx.Client) -> None:
    with pytest.raises(PermanentError, match="not a YouTube channel id"):
        subscriber.subscribe("UUx5XG1OV2P6uZZ5FSM9Ttw&hub.mode=x")
    assert hub.posts == []
    with pytest.raises(ConfigError, match="PRESSROOM_WEBSUB_SECRET"):
        Subscriber(cast(KV, kv), http, hub_url=hub.url, callback_base="https://example.org", master_secret="")
    with pytest.raises(ConfigError):
        Subscriber(cast(KV, kv), http, hub_url="pubsubhubbub.appspot.com", callback_base="https://example.org",
                   master_secret=MASTER)


def test_channel_secrets_are_derived_per_channel() -> None:
    expected = hmac.new(MASTER.encode(), CH.encode(), hashlib.sha256).hexdigest()
    assert channel_secret(MASTER, CH) == expected
    assert channel_secret(MASTER, OTHER) != expected
    assert channel_secret("another", CH) != expected
    assert len(expected) == 64  # hub.secret must stay under 200 bytes
    with pytest.raises(ConfigError):
        secrets_from("")


def test_embedded_mode_memory_kv_behaves_the_same() -> None:
    """Embedded Pressroom has no Redis: the receiver runs on MemoryKV with the same results."""
    memory, handed = MemoryKV(), Handed()
    receiver = Receiver(memory, secret_for=secrets_from(MASTER), on_entries=handed.on_entries,
                        on_deleted=handed.on_deleted)
    memory.hset(websub_channels_key(), CH, "1")
    assert receiver.verify(CH, verify_params(challenge="m")).body == b"m"
    assert memory.hget(websub_channel_key(CH), "state") == "verified"
    body = notification()
    assert receiver.notify(CH, body, None).status_code == 403
    assert [receiver.notify(CH, body, sign(body)).status_code for _ in range(2)] == [202, 200]
    assert len(handed.entries) == 1
