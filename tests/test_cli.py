"""The command line as a new user meets it: the command list, and one clear line (never a traceback) when
Redis, the object store or a provider is not there, or when the reader of the output goes away."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from schemas.artifacts import VideoSource
from schemas.run import RunSpec
from tests.harness import PRESSROOM, pressroom_env
from workers.cli import build_parser
from workers.state import RunState

# every command a user or operator meets first, with the arguments it needs
COMMANDS = {
    "run": ["run", "{wav}"],
    "submit": ["submit", "{wav}"],
    "status": ["status", "some-run"],
    "runs": ["runs"],
    "retry": ["retry", "some-run"],
    "watch --once": ["watch", "--once"],
    "channels list": ["channels", "list"],
    "dashboard": ["dashboard", "--port", "{port}"],
}
# what reads the object store; the others need only Redis and work while the store is down
STORE_COMMANDS = {"run": ["run", "{wav}"], "submit": ["submit", "{wav}"], "runs --restore": ["runs", "--restore"],
                  "watch --once": ["watch", "--once"], "dashboard": ["dashboard", "--port", "{port}"]}


def _closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def setup(tmp_path: Path, simulator: str) -> dict[str, str]:
    wav = tmp_path / "talk.wav"
    wav.write_bytes(b"RIFF")  # never read: every command here stops before the pipeline
    channels = tmp_path / "channels.yaml"
    channels.write_text("channels:\n- {id: UCq7Rk2_TzVx9mWnB4cLpH3e, name: Lattice}\n")
    return {"wav": str(wav), "port": str(_closed_port()), "channels": str(channels), "simulator": simulator,
            "data": str(tmp_path / "data")}


def _run_all(commands: dict[str, list[str]], setup: dict[str, str], env: dict[str, str]
             ) -> dict[str, subprocess.CompletedProcess[str]]:
    def one(args: list[str]) -> subprocess.CompletedProcess[str]:
        argv = [a.format(**setup) for a in args]
        return subprocess.run([*PRESSROOM, *argv], env=env, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    with ThreadPoolExecutor(4) as pool:
        return dict(zip(commands, pool.map(one, commands.values()), strict=True))


def _env(setup: dict[str, str], **settings: str) -> dict[str, str]:
    return pressroom_env(PRESSROOM_DATA_DIR=setup["data"], PRESSROOM_CHANNELS_FILE=setup["channels"],
                         PRESSROOM_TRANSCRIPTION_BASE_URL=setup["simulator"], PRESSROOM_LLM_BASE_URL=setup["simulator"],
                         **settings)


def _assert_one_line(name: str, result: subprocess.CompletedProcess[str], *needles: str) -> None:
    err = result.stderr
    assert result.returncode != 0, f"{name}: exit 0 (stdout {result.stdout!r})"
    assert "Traceback" not in err and len(err.splitlines()) <= 2, f"{name}:\n{err}"
    for needle in needles:
        assert needle in err, f"{name}: {needle!r} not in {err!r}"


def test_pressroom_alone_lists_every_command_on_a_line() -> None:
    result = subprocess.run(PRESSROOM, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert len(commands) >= 15
    for name in commands:
        [line] = [ln for ln in lines if ln.startswith(f"  {name} ")]
        assert len(line.split(maxsplit=1)) == 2 and len(line) <= 100, line  # the name, then what it does
    assert max(len(ln) for ln in lines) <= 100


def test_every_command_against_an_unreachable_redis(setup: dict[str, str]) -> None:
    url = f"redis://:hunter2@127.0.0.1:{_closed_port()}/0"
    results = _run_all(COMMANDS, setup, _env(setup, PRESSROOM_BROKER_URL=url))
    for name, result in results.items():
        _assert_one_line(name, result, f"redis://:***@127.0.0.1:{url.rsplit(':', 1)[1]}", "start redis-server")
        assert "hunter2" not in result.stderr


def test_every_command_against_an_unreachable_object_store(setup: dict[str, str], clean_redis: redis.Redis,
                                                           redis_url: str) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    env = _env(setup, PRESSROOM_BROKER_URL=redis_url, PRESSROOM_STORAGE_URL="s3://posts/pressroom",
               PRESSROOM_S3_ENDPOINT_URL=endpoint, PRESSROOM_S3_ACCESS_KEY_ID="k", PRESSROOM_S3_SECRET_ACCESS_KEY="s")
    for name, result in _run_all(STORE_COMMANDS, setup, env).items():
        _assert_one_line(name, result, "cannot reach the object store s3://posts/pressroom", endpoint)
    # the rest read only Redis, so they work while the store is down
    rest = {k: v for k, v in COMMANDS.items() if k not in STORE_COMMANDS}
    for name, result in _run_all(rest, setup, env).items():
        assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 1, f"{name}: {result.stderr}"
        assert result.returncode in (0, 2), name  # 2: no run "some-run", said in one line


def test_a_missing_bucket_and_missing_credentials_are_one_line(setup: dict[str, str], redis_url: str,
                                                               s3_endpoint: str) -> None:
    env = _env(setup, PRESSROOM_BROKER_URL=redis_url, PRESSROOM_STORAGE_URL="s3://no-such-bucket/p",
               PRESSROOM_S3_ENDPOINT_URL=s3_endpoint, PRESSROOM_S3_ACCESS_KEY_ID="k",
               PRESSROOM_S3_SECRET_ACCESS_KEY="s")
    for name, result in _run_all(STORE_COMMANDS, setup, env).items():
        _assert_one_line(name, result, "no-such-bucket", s3_endpoint)
    anonymous = {k: v for k, v in env.items() if not k.startswith("PRESSROOM_S3_ACCESS")}
    anonymous.update(AWS_SHARED_CREDENTIALS_FILE="/nonexistent", AWS_CONFIG_FILE="/nonexistent")
    result = _run_all({"submit": STORE_COMMANDS["submit"]}, setup, anonymous)["submit"]
    _assert_one_line("submit", result, "no credentials", "PRESSROOM_S3_ACCESS_KEY_ID")


def test_run_names_a_provider_that_is_not_running(setup: dict[str, str]) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}/v1"
    env = _env(setup) | {"PRESSROOM_LLM_BASE_URL": dead}
    result = _run_all({"run": COMMANDS["run"]}, setup, env)["run"]
    _assert_one_line("run", result, f"cannot reach the LLM server at {dead}", "PRESSROOM_LLM_BASE_URL")


@pytest.fixture()
def many_runs(clean_redis: redis.Redis, redis_url: str) -> Iterator[str]:
    state = RunState(redis.Redis.from_url(redis_url, decode_responses=True))
    for i in range(300):
        state.create(RunSpec(run_id=f"run-{i:04d}", video_id=f"video-{i}",
                             source=VideoSource(kind="file", uri=f"uploads/x/{i}.wav")))
    yield redis_url


def test_output_cut_short_by_head_ends_quietly(many_runs: str, tmp_path: Path) -> None:
    env = pressroom_env(PRESSROOM_BROKER_URL=many_runs, PRESSROOM_DATA_DIR=str(tmp_path))
    for args in (["runs", "--limit", "300"], ["--help"], []):
        proc = subprocess.Popen([*PRESSROOM, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before the first line, as with `| head -0`
        err = proc.stderr.read().decode()
        assert proc.wait(60) in (0, 141), (args, err)
        assert err == "", (args, err)
