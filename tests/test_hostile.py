"""Hostile and broken input at every surface the lead's part of issue 10 covers: a channel's bad glossary,
glossary bombs, oversized and disguised media, forged WebSub leases, unknown storage schemes, secrets in
URLs, garbage on a queue, and the one-line errors a careless user should get instead of tracebacks."""

from __future__ import annotations

import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml

from schemas.artifacts import VideoMetadata
from schemas.glossary import Glossary, GlossaryTerm
from tests.conftest import make_audio
from tests.harness import PRESSROOM, pressroom_env
from tests.test_watch import CHANNEL, FIXTURE, NAME, Feeds, with_new_upload
from workers.errors import PermanentError
from workers.glossary import GlossaryLimits, load_glossary, parse_glossary, transcription_prompt
from workers.steps.media import InputLimits, prepare_local
from workers.watch.websub import Receiver, secrets_from

OTHER = "UC" + "o" * 22


def _pressroom(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PRESSROOM, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _one_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


# --- a channel's bad configuration is that channel's failure ------------------------------------------
@pytest.fixture()
def feeds() -> Feeds:
    server = Feeds()
    yield server  # type: ignore[misc]
    server.server.shutdown()


def test_a_missing_glossary_loses_no_video_and_stops_no_other_channel(tmp_path: Path, clean_redis: redis.Redis,
                                                                     redis_url: str, feeds: Feeds) -> None:
    env = pressroom_env(PRESSROOM_BROKER_URL=redis_url, PRESSROOM_STORAGE_URL=str(tmp_path / "store"),
                        PRESSROOM_CHANNELS_FILE=str(tmp_path / "channels.yaml"),
                        PRESSROOM_FEED_URL_TEMPLATE=feeds.template)
    refused = _pressroom(env, "channels", "add", CHANNEL, "--name", NAME, "--glossary", str(tmp_path / "missing.yaml"))
    _one_line(refused, "missing.yaml: no such glossary file")

    glossary = tmp_path / "names.yaml"
    glossary.write_text("terms: [{term: Lattice}]\n")
    assert _pressroom(env, "channels", "add", CHANNEL, "--name", NAME, "--glossary", str(glossary)).returncode == 0
    assert _pressroom(env, "channels", "add", OTHER, "--name", "Other").returncode == 0
    feeds.set(CHANNEL, FIXTURE)
    feeds.set(OTHER, FIXTURE.replace(CHANNEL, OTHER).replace(CHANNEL[2:], OTHER[2:]).replace("Xy5-", "Zz5-"))
    assert _pressroom(env, "watch", "--once").returncode == 0  # the baseline: no backfill, nothing submitted

    glossary.unlink()  # someone moved the channel's glossary away; then both channels upload
    feeds.set(CHANNEL, with_new_upload(FIXTURE, "NEWvideo001", "A new talk"))
    feeds.set(OTHER, with_new_upload(feeds.bodies[f"/feeds/{OTHER}.xml"], "NEWvideo002", "Another talk"))
    polled = _pressroom(env, "watch", "--once")
    assert polled.stdout.split() == ["NEWvideo002"]  # the other channel carried on
    assert f"channel {CHANNEL}: " in polled.stderr and "no such glossary file" in polled.stderr
    listed = _pressroom(env, "channels", "list").stdout
    assert "failing ×1" in listed and "no such glossary file" in listed and "Other  [ok]" in listed
    assert not (tmp_path / "store" / "seen" / "NEWvideo001.json").exists()  # not recorded as seen: not lost

    glossary.write_text("terms: [{term: Lattice}]\n")  # fixed: the next poll takes the video
    clean_redis.delete(f"pressroom:channel:{CHANNEL}")  # (its backoff would otherwise wait a poll interval)
    assert _pressroom(env, "watch", "--once").stdout.split() == ["NEWvideo001"]
    assert (tmp_path / "store" / "seen" / "NEWvideo001.json").exists()


# --- glossaries ---------------------------------------------------------------------------------------
def test_a_yaml_alias_bomb_is_refused_at_once() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    assert len(bomb) < 600  # 9**9 nodes once expanded; the loader stops at the first alias instead
    with pytest.raises(PermanentError, match=r"aliases \(\*name\) are not allowed"):
        parse_glossary(bomb, "bomb.yaml")


def test_glossary_size_and_term_limits_name_their_settings(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump({"terms": [{"term": f"Term{i:05d}", "misheard": [f"Tarm{i}"]} for i in range(300)]}))
    with pytest.raises(PermanentError, match="PRESSROOM_MAX_GLOSSARY_BYTES"):
        load_glossary(big, None) if big.stat().st_size > 1_000_000 else parse_glossary(
            big.read_bytes(), str(big), GlossaryLimits(max_bytes=1000))
    with pytest.raises(PermanentError, match=r"300 terms is over the limit of 100.*PRESSROOM_MAX_GLOSSARY_TERMS"):
        parse_glossary(big.read_bytes(), str(big), GlossaryLimits(max_terms=100))
    with pytest.raises(PermanentError, match="is a directory"):
        load_glossary(tmp_path)


class _Counted(list[GlossaryTerm]):
    """A glossary's terms that count how many were read."""

    read = 0

    def __iter__(self) -> Iterator[GlossaryTerm]:
        for term in super().__iter__():
            _Counted.read += 1
            yield term


def test_the_transcription_prompt_reads_no_more_terms_than_fit() -> None:
    """The prompt builder stops once whisper's prompt is full, however long the glossary (it was quadratic)."""
    terms = _Counted(GlossaryTerm(term=f"Term{i:06d}") for i in range(100_000))
    prompt = transcription_prompt(Glossary.model_construct(terms=terms), VideoMetadata(video_id="x", title="talk"))
    assert prompt and prompt.startswith("Term000000, Term000001") and len(prompt) <= 801
    assert _Counted.read < 100  # ~72 terms of 10 characters fill 800


# --- media ----------------------------------------------------------------------------------------------
def test_a_playlist_disguised_as_mp3_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "private.ts"  # another local media file the playlist points ffmpeg at
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "sine=duration=3",
                    "-c:a", "aac", str(secret)], check=True)
    playlist = tmp_path / "talk.mp3"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:3.0,\n{secret}\n#EXT-X-ENDLIST\n")
    with pytest.raises(PermanentError, match=r"talk\.mp3 is hls.*not an audio or video file"):
        prepare_local(playlist, tmp_path / "work", video_id="v")
    assert not (tmp_path / "work" / "audio.m4a").exists()


def test_media_over_the_limits_is_refused_before_it_is_read(tmp_path: Path) -> None:
    sparse = tmp_path / "huge.wav"
    with open(sparse, "wb") as f:
        f.truncate(30 * 1024**3)  # 30 GB of nothing, allocated in no time
    with pytest.raises(PermanentError, match=r"huge\.wav is 32\.21 GB.*PRESSROOM_MAX_INPUT_BYTES"):
        prepare_local(sparse, tmp_path / "work", video_id="v")
    long = make_audio(tmp_path / "long.wav", 30)
    with pytest.raises(PermanentError, match=r"over the limit of 0\.0 h.*PRESSROOM_MAX_INPUT_DURATION"):
        prepare_local(long, tmp_path / "work", video_id="v", limits=InputLimits(max_duration=10))
    env = pressroom_env(PRESSROOM_DATA_DIR=str(tmp_path / "data"), PRESSROOM_LLM_BASE_URL="http://127.0.0.1:9/v1",
                        PRESSROOM_TRANSCRIPTION_BASE_URL="http://127.0.0.1:9/v1", PRESSROOM_MAX_INPUT_BYTES="1024")
    env["PRESSROOM_BROKER_URL"] = "redis://127.0.0.1:6379/13"
    _one_line(_pressroom(env, "submit", str(sparse)), "huge.wav is 32.21 GB", "PRESSROOM_MAX_INPUT_BYTES")
    assert not any((tmp_path / "data").rglob("*.tmp")) and not any((tmp_path / "data").rglob("huge.wav"))


# --- WebSub -----------------------------------------------------------------------------------------------
def test_a_forged_verification_cannot_switch_lease_renewal_off(clean_redis: redis.Redis) -> None:
    from workers.watch.websub import topic_url, websub_channel_key, websub_channels_key

    kv = redis.Redis.from_url("redis://127.0.0.1:6379/13", decode_responses=True)
    kv.hset(websub_channels_key(), CHANNEL, "1")
    kv.hset(websub_channel_key(CHANNEL), mapping={"state": "requested", "requested_lease": 432000})
    receiver = Receiver(kv, secret_for=secrets_from("m"), on_entries=lambda *a: None, on_deleted=lambda *a: None,
                        clock=lambda: 1000.0)
    for forged in ("1e23", "100000000000000000000000", "nan", "-5"):
        answer = receiver.verify(CHANNEL, {"hub.mode": "subscribe", "hub.topic": topic_url(CHANNEL),
                                           "hub.challenge": "c", "hub.lease_seconds": forged})
        assert answer.status_code == 200
        lease = int(kv.hget(websub_channel_key(CHANNEL), "lease_seconds") or 0)
        assert 60 <= lease <= 432000, (forged, lease)  # never more than was asked: renewal stays on


# --- settings, secrets, paths ---------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "value", "needle"), [
    ("PRESSROOM_STORAGE_URL", "gs://bucket/prefix", "storage scheme 'gs' is not supported"),
    ("PRESSROOM_STORAGE_URL", "ftp://host/dir", "storage scheme 'ftp' is not supported"),
    ("PRESSROOM_BROKER_URL", "http://:hunter2@host:6379/0", "is not a Redis URL"),
    ("PRESSROOM_FRONT_MATTER__PROJECT", "not json", "PRESSROOM_FRONT_MATTER__"),
    ("PRESSROOM_S3_ENDPOINT_URL", "http://", "is not an http(s) URL"),
])
def test_malformed_settings_stop_pressroom_at_start(tmp_path: Path, name: str, value: str, needle: str) -> None:
    result = _pressroom(pressroom_env(PRESSROOM_DATA_DIR=str(tmp_path), **{name: value}), "runs")
    _one_line(result, needle, name.split("__")[0])
    assert "hunter2" not in result.stderr
    assert not (Path.cwd() / "gs:").exists()


def test_secrets_in_urls_are_never_printed(tmp_path: Path, clean_redis: redis.Redis, simulator: str) -> None:
    url = "redis://:hunter2@127.0.0.1:6379/13"
    env = pressroom_env(PRESSROOM_BROKER_URL=url, PRESSROOM_STORAGE_URL=str(tmp_path / "store"),
                        PRESSROOM_TRANSCRIPTION_BASE_URL=simulator, PRESSROOM_LLM_BASE_URL=simulator)
    for args in (["status", "nope"], ["runs", "--limit", "0"], ["retry", "nope"]):
        result = _pressroom(env, *args)
        assert "hunter2" not in result.stdout + result.stderr, (args, result.stderr)


def test_careless_input_is_one_line_not_a_traceback(tmp_path: Path, simulator: str) -> None:
    env = pressroom_env(PRESSROOM_DATA_DIR=str(tmp_path / "data"), PRESSROOM_TRANSCRIPTION_BASE_URL=simulator,
                        PRESSROOM_LLM_BASE_URL=simulator)
    talk = make_audio(tmp_path / "talk.wav", 5)
    _one_line(_pressroom(env | {"PRESSROOM_DATA_DIR": "/proc/pressroom"}, "run", str(talk)), "cannot use /proc/")
    _one_line(_pressroom(env, "runs", "--limit", "-5"), "-5 is below 1")
    _one_line(_pressroom(env, "backfill", "x", "--count", "-3"), "-3 is below 1")
    _one_line(_pressroom(env, "channels", "add", "@handle"), "channels add: id:", "not a YouTube channel id")
    _one_line(_pressroom(env, "run", str(talk), "--glossary", str(tmp_path)), "is a directory")
    long = make_audio(tmp_path / (("a" * 240) + ".wav"), 5)  # a 244-character file name
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # --out below a file: unwritable even for root
    result = _pressroom(env, "run", str(long), "--out", str(blocker / "posts"))
    last = result.stderr.strip().splitlines()[-1]  # after the run's progress lines
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert last.startswith("pressroom: cannot write the post to") and "choose a writable --out" in last, last
    assert _pressroom(env, "run", str(long), "--out", str(tmp_path / "out")).returncode == 0  # the long name


def test_posts_are_ordinary_readable_files(tmp_path: Path, simulator: str) -> None:
    env = pressroom_env(PRESSROOM_DATA_DIR=str(tmp_path / "data"), PRESSROOM_TRANSCRIPTION_BASE_URL=simulator,
                        PRESSROOM_LLM_BASE_URL=simulator)
    result = _pressroom(env, "run", str(make_audio(tmp_path / "t.wav", 8)), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    mode = stat.S_IMODE(Path(result.stdout.strip().splitlines()[-1]).stat().st_mode)
    assert mode & 0o044 == 0o044, oct(mode)  # group and others may read it (a site generator, a web server)
    [stored] = (tmp_path / "data" / "store" / "posts").iterdir()
    assert stat.S_IMODE(stored.stat().st_mode) & 0o044 == 0o044


# --- queues ---------------------------------------------------------------------------------------------
def test_garbage_on_a_queue_is_dropped_and_the_worker_lives(tmp_path: Path, clean_redis: redis.Redis,
                                                            redis_url: str) -> None:
    from tests.harness import WorkerProcess

    for junk in ("not json at all", '"a string"', "[1, 2]", '{"no": "keys"}'):
        clean_redis.lpush("pressroom.download", junk)
    env = pressroom_env(PRESSROOM_BROKER_URL=redis_url, PRESSROOM_STORAGE_URL=str(tmp_path / "store"))
    worker = WorkerProcess("download", env, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        deadline = time.monotonic() + 30
        while clean_redis.llen("pressroom.download") and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        assert clean_redis.llen("pressroom.download") == 0
        assert worker.proc.poll() is None, worker.log.read_text()[-2000:]  # still alive
        log = worker.log.read_text()
        assert log.count("dropped an item on a queue that is not a message") == 4 and "Unrecoverable" not in log
    finally:
        worker.stop()


# --- feeds and the hub: whole-request deadlines -----------------------------------------------------------
def test_a_feed_that_trickles_is_cut_off_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import threading

    from workers.errors import PressroomError
    from workers.watch import poller

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def trickle() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        try:
            for _ in range(60):  # a byte a second: every read succeeds, the answer never ends
                conn.sendall(b"<")
                time.sleep(1)
        except OSError:
            pass
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    monkeypatch.setattr(poller, "FEED_DEADLINE", 3.0)
    started = time.monotonic()
    with pytest.raises(PressroomError, match=r"cannot fetch .*no complete answer within 3 s"):
        poller.http_fetch(f"http://127.0.0.1:{listener.getsockname()[1]}/feeds/x.xml")
    assert 3 <= time.monotonic() - started < 8  # the deadline, not 60 s of trickle
    listener.close()
