"""The dashboard under load, as a real `pressroom dashboard` process: a burst of anonymous requests must not
wedge it (queue facts come from one background gatherer, never from a request), an operator's retry still
answers at once, SIGTERM ends it; with the broker unreachable, queue health says "unknown" quickly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis

from tests.harness import PRESSROOM, pressroom_env
from tests.test_dashboard_api import AUTH, TOKEN, make_run
from workers.app import create_app
from workers.settings import load_settings

BURST = 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def dashboard(tmp_path: Path, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`pressroom dashboard` on a free port, answering; stopped (SIGKILL if it must) at the end."""
    port = _free_port()
    log = tmp_path / f"dashboard-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*PRESSROOM, "dashboard", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                env=pressroom_env(PRESSROOM_DASHBOARD_TOKEN=TOKEN,
                                                  PRESSROOM_DATA_DIR=str(tmp_path / "data"), **env),
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"dashboard exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"dashboard did not answer: {log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{url}/api/runs", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _sigterm_ends(proc: subprocess.Popen[bytes], within: float = 10) -> float:
    """Send SIGTERM; the seconds it took the process to end (fails if it did not within `within`)."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(within)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`pressroom dashboard` still running {within} s after SIGTERM")
    return time.monotonic() - started


def test_a_burst_of_anonymous_requests_does_not_wedge_the_dashboard(tmp_path: Path, clean_redis: redis.Redis,
                                                                     redis_url: str) -> None:
    app = create_app(load_settings(broker_url=redis_url, data_dir=tmp_path / "data"))
    make_run(app, "f1", "failed")
    with dashboard(tmp_path, PRESSROOM_BROKER_URL=redis_url) as (proc, url), httpx.Client(
            base_url=url, timeout=30, limits=httpx.Limits(max_connections=BURST, max_keepalive_connections=0)) as anon:
        def hit(i: int) -> int | str:
            path = ["/api/queues", "/api/queues", "/queues", "/api/runs", "/api/runs/f1", "/", "/api/audit"][i % 7]
            try:
                if i % 10 == 9:  # an anonymous action: refused, and only counted
                    return anon.post("/api/runs/f1/retry").status_code
                return anon.get(path).status_code
            except httpx.HTTPError as exc:
                return type(exc).__name__

        started = time.monotonic()
        with ThreadPoolExecutor(BURST) as pool:  # one connection per request, all at once
            answers = Counter(pool.map(hit, range(BURST)))
        took = time.monotonic() - started
        assert set(answers) <= {200, 401}, answers  # every request answered: no timeouts, no 500s
        assert answers[200] > BURST // 2 and took < 15, (answers, took)

        queues = httpx.get(f"{url}/api/queues", timeout=5).json()
        assert len(queues["queues"]) == 6 and queues["status"] in {"ok", "unknown"}

        before = time.monotonic()
        done = httpx.post(f"{url}/api/runs/f1/retry", headers=AUTH, timeout=10)
        assert done.status_code == 200, done.text
        assert done.json() == {"id": "f1", "from_step": "download", "generation": 1}
        assert time.monotonic() - before < 5
        assert app.pressroom.state.run("f1")["status"] == "queued"

        audit = httpx.get(f"{url}/api/audit", headers=AUTH, timeout=5).json()
        assert [(e["who"], e["what"], e["outcome"]) for e in audit["entries"]] == [
            ("operator", "retry from failed step", "ok")]  # the burst's refusals were counted, not logged
        assert audit["refused_last_hour"].get("missing_token") == answers[401]

        _sigterm_ends(proc)


def test_queue_health_is_unknown_while_the_broker_is_unreachable(tmp_path: Path, clean_redis: redis.Redis,
                                                                  redis_url: str) -> None:
    """The broker at a closed port, run state on the real Redis: everything answers fast, queues say
    "unknown", and SIGTERM still ends the process (the gatherer is mid-attempt most of the time)."""
    app = create_app(load_settings(broker_url=redis_url, data_dir=tmp_path / "data"))
    make_run(app, "f1", "failed")
    closed = f"redis://127.0.0.1:{_free_port()}/0"
    with dashboard(tmp_path, PRESSROOM_BROKER_URL=closed, PRESSROOM_REDIS_URL=redis_url) as (proc, url), \
            httpx.Client(base_url=url, timeout=5) as client:
        deadline = time.monotonic() + 15
        while (queues := client.get("/api/queues").json())["error"] is None or queues["checked_at"] is None:
            assert time.monotonic() < deadline, queues  # the first attempt has ended, and failed
            time.sleep(0.1)
        for _ in range(5):
            started = time.monotonic()
            got = client.get("/api/queues")
            assert time.monotonic() - started < 1 and got.status_code == 200
            queues = got.json()
            assert queues["status"] == "unknown" and queues["at"] is None and queues["age"] is None, queues
            assert "broker" in queues["error"] and "\n" not in queues["error"]
            assert all(q["depth"] is None and q["workers"] is None for q in queues["queues"])
            assert len(queues["queues"]) == 6
        assert "unknown" in client.get("/queues").text
        assert client.get("/api/runs").json()["total"] == 1  # run state is read as ever
        _sigterm_ends(proc)


def test_open_connections_do_not_hold_sigterm_back(tmp_path: Path, clean_redis: redis.Redis,
                                                   redis_url: str) -> None:
    """Neither idle keep-alive connections nor a request whose body never finishes arriving (a client that
    stalls mid-upload) keep the process alive after SIGTERM."""
    with dashboard(tmp_path, PRESSROOM_BROKER_URL=redis_url) as (proc, url):
        port = int(url.rsplit(":", 1)[1])
        clients = [httpx.Client(base_url=url, timeout=5) for _ in range(20)]
        stalled = socket.create_connection(("127.0.0.1", port))
        try:
            assert {c.get("/api/queues").status_code for c in clients} == {200}
            stalled.sendall(b"POST /api/runs/f1/retry HTTP/1.1\r\nHost: dashboard\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")  # … and nothing more
            time.sleep(0.5)
            _sigterm_ends(proc)
        finally:
            stalled.close()
            for c in clients:
                c.close()
