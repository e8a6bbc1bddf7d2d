"""Spending caps: a paid call that would pass a cap is not made and the run stops "over budget" with the
figures; raising the cap and `pressroom retry` finishes it; the daily cap holds across runs. With real
worker processes on Redis and the simulator over HTTP (whose chat log shows which calls were made)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import make_audio
from tests.harness import PRESSROOM, pressroom_env, workers
from tests.pipeline_checks import STEPS
from workers.budget import Budget, Caps, Charge, OverBudget
from workers.providers.simulator import SimulatorConfig, running_simulator
from workers.state import RunState

PRICEY = {"PRESSROOM_LLM_USD_PER_MILLION_INPUT": "1000", "PRESSROOM_LLM_USD_PER_MILLION_OUTPUT": "1000",
          "PRESSROOM_TRANSCRIPTION_USD_PER_MINUTE": "0.01"}


def test_reservations_hold_every_cap_atomically(clean_redis: redis.Redis, redis_url: str) -> None:
    budget = Budget(redis.Redis.from_url(redis_url, decode_responses=True), Caps(per_run=1.0, per_day=1.5))
    a, b = Charge("run-a", "translate"), Charge("run-b", "translate", channel_id="UC1")
    held = budget.reserve(a, 0.6, "a call")
    with pytest.raises(OverBudget, match=r"this run has spent \$0\.6000 of its \$1\.0000 cap "
                                         r"\(PRESSROOM_BUDGET_USD_PER_RUN\).*pressroom retry run-a"):
        budget.reserve(a, 0.5, "the next llm request")
    budget.settle(held, -0.2)  # it cost 0.4
    budget.reserve(a, 0.5, "a call")  # 0.9 of 1.0
    budget.reserve(b, 0.5, "a call")  # the day: 1.4 of 1.5
    with pytest.raises(OverBudget, match=r"all runs today.*PRESSROOM_BUDGET_USD_PER_DAY"):
        budget.reserve(b, 0.2, "a call")
    assert sum(budget.spent(b).values()) == pytest.approx(0.5 + 0.5 + 1.4)  # run b, channel UC1 today, the day


def _env(redis_url: str, tmp_path: Path, sim: str, **extra: str) -> dict[str, str]:
    return pressroom_env(PRESSROOM_BROKER_URL=redis_url, PRESSROOM_DATA_DIR=str(tmp_path / "data"),
                         PRESSROOM_TRANSCRIPTION_BASE_URL=sim, PRESSROOM_LLM_BASE_URL=sim, **PRICEY, **extra)


def _submit(env: dict[str, str], source: Path) -> str:
    out = subprocess.run([*PRESSROOM, "submit", str(source)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _ended(state: RunState, run_id: str, timeout: float = 90) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while (run := state.run(run_id)).get("status") not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, run
        time.sleep(0.1)
    return run


def _chats(sim: str) -> list[dict[str, Any]]:
    return list(httpx.get(sim.removesuffix("/v1") + "/debug/chat-log", timeout=10).json())


def test_a_run_over_its_cap_stops_before_the_call_and_resumes_when_raised(
        tmp_path: Path, clean_redis: redis.Redis, redis_url: str) -> None:
    state = RunState(redis.Redis.from_url(redis_url, decode_responses=True))
    with running_simulator(SimulatorConfig()) as sim:
        tight = _env(redis_url, tmp_path, sim, PRESSROOM_BUDGET_USD_PER_RUN="0.05")
        with workers(STEPS, tight, tmp_path / "logs"):
            run_id = _submit(tight, make_audio(tmp_path / "talk.wav", 40))
            run = _ended(state, run_id)
        assert run["status"] == "failed" and run["translate.error"].startswith("OverBudget: over budget"), run
        assert run["error"].startswith("translate failed: over budget: this run has spent $0.00")  # transcription
        assert "PRESSROOM_BUDGET_USD_PER_RUN" in run["error"]
        assert f"pressroom retry {run_id}" in run["error"]
        assert _chats(sim) == []  # the translate call that would have passed the cap was never sent

        roomy = _env(redis_url, tmp_path, sim, PRESSROOM_BUDGET_USD_PER_RUN="100")
        with workers(STEPS, roomy, tmp_path / "logs2"):
            retried = subprocess.run([*PRESSROOM, "retry", run_id], env=roomy, capture_output=True, text=True,
                                     timeout=60)
            assert retried.returncode == 0, retried.stderr
            run = _ended(state, run_id)
        assert run["status"] == "succeeded", run
        assert float(run.get("translate.usage.cost_usd", 0)) > 0.05  # what it then spent, more than the old cap


def test_the_daily_cap_holds_across_runs(tmp_path: Path, clean_redis: redis.Redis, redis_url: str) -> None:
    state = RunState(redis.Redis.from_url(redis_url, decode_responses=True))
    cap = 3.0
    with running_simulator(SimulatorConfig()) as sim:
        env = _env(redis_url, tmp_path, sim, PRESSROOM_BUDGET_USD_PER_DAY=str(cap))
        with workers(STEPS, env, tmp_path / "logs"):
            runs = [_ended(state, _submit(env, make_audio(tmp_path / f"talk-{i}.wav", 40, 300 + 50 * i)))
                    for i in range(4)]
    statuses = [r["status"] for r in runs]
    assert "succeeded" in statuses and "failed" in statuses, statuses
    assert statuses == sorted(statuses, key=lambda s: s != "succeeded")  # once over, every later run stops
    assert all("all runs today" in r["error"] for r in runs if r["status"] == "failed")
    spent = [sum(float(v) for k, v in r.items() if k.endswith(".usage.cost_usd")) for r in runs]
    day = Budget(redis.Redis.from_url(redis_url, decode_responses=True), Caps(per_day=cap)).spent(Charge("x", "tag"))
    today = next(v for k, v in day.items() if ":day:" in k)
    assert today == pytest.approx(sum(spent)) and 0 < today <= cap  # reserved before each call, then corrected
