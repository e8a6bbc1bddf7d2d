"""Real worker processes for the distributed tests: `pressroom worker` subprocesses on Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PRESSROOM = [sys.executable, "-m", "workers.cli"]


def pressroom_env(**settings: str) -> dict[str, str]:
    """The environment minus any PRESSROOM_/OPENAI_ settings of the caller, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRESSROOM_", "OPENAI_"))}
    env.update(settings)
    return env


class WorkerProcess:
    def __init__(self, queue: str, env: dict[str, str], log: Path, concurrency: int = 1) -> None:
        self.queue, self.log = queue, log
        with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [*PRESSROOM, "worker", "--queues", queue, "--concurrency", str(concurrency), "--loglevel", "INFO"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b" ready." in self.log.read_bytes():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.queue} exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"worker {self.queue} not ready: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def workers(queues: list[str], env: dict[str, str], logdir: Path) -> Iterator[dict[str, WorkerProcess]]:
    """One worker process per queue (each with one pool child), all ready before the body runs."""
    logdir.mkdir(parents=True, exist_ok=True)
    procs = {q: WorkerProcess(q, env, logdir / f"worker-{q}.log") for q in queues}
    try:
        for proc in procs.values():
            proc.wait_ready()
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


@contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """An ASGI app under a real uvicorn on 127.0.0.1, on a port the OS picked; yields its base URL."""
    import socket
    import threading

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
