"""Shared fixtures: the real Redis (a database of the tests' own), an S3 server (moto), media files."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

REDIS_TEST_URL = os.environ.get("PRESSROOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The tests' own Redis database; emptied before and after (FLUSHDB on that number only)."""
    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # pragma: no cover - environment problem, not a skip
        raise RuntimeError(f"Redis is not running at {REDIS_TEST_URL}: start redis-server") from exc
    client.flushdb()
    yield REDIS_TEST_URL
    client.flushdb()


@pytest.fixture()
def clean_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server over HTTP on localhost: boto3 talks to it exactly as to MinIO."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def s3_url(s3_endpoint: str) -> str:
    """A fresh bucket per test, so tests never see each other's objects."""
    from workers.storage.s3 import S3Store

    url = f"s3://test-{uuid.uuid4().hex[:12]}/pressroom"
    store = S3Store.from_url(url, endpoint_url=s3_endpoint, access_key_id="test", secret_access_key="test")
    store.ensure_bucket()
    return url


def make_audio(path: Path, seconds: float, freq: int = 440) -> Path:
    """A real media file made by ffmpeg (speechless: the simulator supplies the words)."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", f"sine=frequency={freq}:duration={seconds}", "-ac", "1", "-ar", "16000", str(path)],
        check=True,
    )
    return path


@pytest.fixture()
def wav(tmp_path: Path) -> Path:
    return make_audio(tmp_path / "talk.wav", 30)


@pytest.fixture(scope="session")
def simulator() -> Iterator[str]:
    """The project's OpenAI-compatible simulator over real HTTP, at zero latency."""
    from workers.providers.simulator import SimulatorConfig, running_simulator

    with running_simulator(SimulatorConfig()) as base_url:
        yield base_url
