"""Channel watching for real: feeds served over HTTP, `pressroom watch --once` in a subprocess, runs in
Redis, the durable record of seen videos in the object store."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
import yaml

from tests.harness import PRESSROOM, pressroom_env

# An invented conference channel, in the exact structure of a real YouTube channel feed (see test_feed.py).
FIXTURE = (Path(__file__).parent / "fixtures" / "youtube-feed-channel.xml").read_text(encoding="utf-8")
CHANNEL = "UCq7Rk2_TzVx9mWnB4cLpH3e"
NAME = "Lattice Dev Summit"
NEWEST = "kT3vQ9xLm2E"  # the feed's first entry, a normal upload
BROKEN = "UC" + "x" * 22


class Feeds:
    """A tiny feed server: path → body; anything else 404."""

    def __init__(self) -> None:
        self.bodies: dict[str, str] = {}
        feeds = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = feeds.bodies.get(self.path)
                self.send_response(200 if body else 404)
                self.end_headers()
                self.wfile.write((body or "not found").encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.template = f"http://127.0.0.1:{self.server.server_address[1]}/feeds/{{channel_id}}.xml"

    def set(self, channel_id: str, xml: str) -> None:
        self.bodies[f"/feeds/{channel_id}.xml"] = xml


@pytest.fixture()
def feeds() -> Iterator[Feeds]:
    server = Feeds()
    yield server
    server.server.shutdown()


def with_new_upload(xml: str, video_id: str, title: str) -> str:
    """The feed with one more (newest) normal upload, as YouTube would show it."""
    first = re.search(r" <entry>.*?</entry>\n", xml, re.S)
    assert first
    entry = re.sub(NEWEST, video_id, first.group(0))
    entry = re.sub(r"<title>[^<]*</title>", f"<title>{title}</title>", entry)
    entry = re.sub(r"<published>[^<]*</published>", "<published>2026-11-28T09:00:00+00:00</published>", entry)
    entry = re.sub(r'views="\d+"', 'views="12"', entry)
    return xml.replace(first.group(0), entry + first.group(0), 1)


def _env(tmp_path: Path, redis_url: str, feeds: Feeds) -> dict[str, str]:
    return pressroom_env(PRESSROOM_BROKER_URL=redis_url, PRESSROOM_STORAGE_URL=str(tmp_path / "store"),
                         PRESSROOM_CHANNELS_FILE=str(tmp_path / "channels.yaml"),
                         PRESSROOM_FEED_URL_TEMPLATE=feeds.template,
                         PRESSROOM_TRANSCRIPTION_BASE_URL="http://127.0.0.1:9/v1",
                         PRESSROOM_LLM_BASE_URL="http://127.0.0.1:9/v1")


def _pressroom(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PRESSROOM, *args], env=env, capture_output=True, text=True, timeout=120)


def _watch_once(env: dict[str, str]) -> list[str]:
    result = _pressroom(env, "watch", "--once")
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_new_uploads_become_runs_once(tmp_path: Path, clean_redis: redis.Redis, redis_url: str,
                                      feeds: Feeds) -> None:
    env = _env(tmp_path, redis_url, feeds)
    added = _pressroom(env, "channels", "add", CHANNEL, "--name", NAME, "--backfill", "2", "--speaker", NAME)
    assert added.returncode == 0, added.stderr
    assert yaml.safe_load((tmp_path / "channels.yaml").read_text())["channels"][0]["defaults"]["speaker"] == NAME
    feeds.set(CHANNEL, FIXTURE)

    first = _watch_once(env)
    assert first == ["Rw8_pZc4HnA", NEWEST] or sorted(first) == sorted(["Rw8_pZc4HnA", NEWEST])

    feeds.set(CHANNEL, with_new_upload(FIXTURE, "NEWvideo001", "A brand new talk"))
    assert _watch_once(env) == ["NEWvideo001"]  # exactly the one new upload
    assert _watch_once(env) == []  # nothing new: nothing submitted

    runs = [r.decode() for r in clean_redis.zrange("pressroom:runs", 0, -1)]
    assert len(runs) == 3
    queued = clean_redis.llen("pressroom.download")
    assert queued == 3  # each run's first task waits on the download queue

    # Redis loses everything: the object store still knows what was submitted
    clean_redis.flushdb()
    assert _watch_once(env) == []
    assert clean_redis.llen("pressroom.download") == 0

    listed = _pressroom(env, "channels", "list")
    assert listed.returncode == 0 and CHANNEL in listed.stdout and "ok" in listed.stdout


def test_a_failing_feed_backs_off_alone(tmp_path: Path, clean_redis: redis.Redis, redis_url: str,
                                        feeds: Feeds) -> None:
    env = _env(tmp_path, redis_url, feeds)
    for channel, name in [(BROKEN, "Broken"), (CHANNEL, NAME)]:
        assert _pressroom(env, "channels", "add", channel, "--name", name, "--backfill", "15").returncode == 0
    feeds.set(CHANNEL, FIXTURE)
    result = _pressroom(env, "watch", "--once")
    assert result.returncode == 0
    submitted = result.stdout.split()
    shorts = set(re.findall(r"/shorts/([\w-]{11})", FIXTURE))
    live = {"h6Vt-QaR0yB"}  # the entry with 0 views
    all_ids = re.findall(r"<yt:videoId>([\w-]{11})</yt:videoId>", FIXTURE)
    assert set(submitted) == set(all_ids) - shorts - live and len(submitted) == 15 - len(shorts) - 1
    assert f"channel {BROKEN}" in result.stderr and "404" in result.stderr
    state = {k.decode(): v.decode() for k, v in clean_redis.hgetall(f"pressroom:channel:{BROKEN}").items()}
    assert state["failures"] == "1" and "404" in state["last_error"]
    listed = _pressroom(env, "channels", "list")
    assert "failing ×1" in listed.stdout


def test_an_operator_submit_counts_as_seen(tmp_path: Path, clean_redis: redis.Redis, redis_url: str,
                                           feeds: Feeds) -> None:
    env = _env(tmp_path, redis_url, feeds)
    assert _pressroom(env, "channels", "add", CHANNEL, "--backfill", "15").returncode == 0
    feeds.set(CHANNEL, FIXTURE)
    manual = _pressroom(env, "submit", f"https://www.youtube.com/watch?v={NEWEST}")
    assert manual.returncode == 0, manual.stderr
    assert NEWEST not in _watch_once(env)


def test_watch_without_a_channels_file_says_how_to_fix(tmp_path: Path, redis_url: str) -> None:
    env = pressroom_env(PRESSROOM_BROKER_URL=redis_url, PRESSROOM_STORAGE_URL=str(tmp_path / "store"))
    result = _pressroom(env, "watch", "--once")
    assert result.returncode == 2 and "PRESSROOM_CHANNELS_FILE" in result.stderr


def test_backfill_lists_past_uploads_flat(tmp_path: Path) -> None:
    """yt-dlp's flat listing of the uploads playlist (a fake YoutubeDL stands in for YouTube)."""
    from schemas.channels import ChannelConfig
    from workers.watch.backfill import list_uploads

    asked: list[tuple[str, dict[str, object]]] = []

    class FakeYDL:
        def __init__(self, options: dict[str, object]) -> None:
            self.options = options

        def __enter__(self) -> FakeYDL:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def extract_info(self, url: str, download: bool) -> dict[str, object]:
            asked.append((url, self.options))
            return {"entries": [{"id": f"OLDvideo{i:03d}", "title": f"Old talk {i}",
                                 "url": f"https://www.youtube.com/watch?v=OLDvideo{i:03d}"} for i in range(3)]
                    + [{"id": "SHORTvid001", "url": "https://www.youtube.com/shorts/SHORTvid001"}]}

    channel = ChannelConfig(id=CHANNEL, name=NAME)
    entries = list_uploads(channel, 4, ydl_factory=FakeYDL)
    assert [e.video_id for e in entries] == ["OLDvideo000", "OLDvideo001", "OLDvideo002", "SHORTvid001"]
    assert entries[-1].is_short and not entries[0].is_short
    url, options = asked[0]
    assert url.endswith("list=UU" + CHANNEL[2:]) and options["extract_flat"] == "in_playlist"
    assert options["playlistend"] == 4
