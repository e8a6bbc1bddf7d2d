"""Fan-out sized to the workers: each worker announces its queues and concurrency; planners cut a long
talk into full waves for them, translation chunks about equally long."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from schemas.artifacts import Paragraph
from schemas.pipeline import Step
from tests.harness import WorkerProcess, pressroom_env
from workers import keys
from workers.capacity import balanced_parts, live_capacity
from workers.steps.translate import plan_chunks


def test_parts_fill_whole_waves() -> None:
    assert balanced_parts(7200, 300, 8, 60) == 24  # 24 five-minute pieces: three full waves of 8
    assert balanced_parts(7200, 300, 5, 60) == 25  # 24 needed → 25, five waves of 5 (each a little shorter)
    assert balanced_parts(600, 300, 8, 60) == 8  # a short talk spreads over every worker…
    assert balanced_parts(200, 300, 8, 60) == 3  # …but no piece under a minute
    assert balanced_parts(7200, 300, 1, 60) == 24
    assert balanced_parts(18_000, 1000, 4, 300) == 20  # words: 18 chunks → 20, five waves of 4


def _paragraphs(words: list[int]) -> list[Paragraph]:
    return [Paragraph(id=f"p{i:04d}", start=float(i), end=i + 1.0, source=" ".join(["word"] * n), translation="")
            for i, n in enumerate(words)]


def test_translation_chunks_come_out_about_equally_long() -> None:
    paragraphs = _paragraphs([120, 80, 95, 130, 60, 110, 90, 100, 105, 85] * 6)
    total = sum(len(p.source.split()) for p in paragraphs)
    ranges = plan_chunks(paragraphs, parts=8)
    sizes = [sum(len(p.source.split()) for p in paragraphs[a:b]) for a, b in ranges]
    assert len(ranges) == 8 and sum(sizes) == total
    assert max(sizes) <= 1.25 * total / 8 and min(sizes) >= 0.75 * total / 8
    assert [a for a, _ in ranges[1:]] == [b for _, b in ranges[:-1]]  # contiguous, nothing lost


def test_workers_announce_their_capacity_and_withdraw_it(tmp_path: Path, clean_redis: redis.Redis,
                                                          redis_url: str) -> None:
    env = pressroom_env(PRESSROOM_BROKER_URL=redis_url, PRESSROOM_DATA_DIR=str(tmp_path / "data"),
                        OPENAI_BASE_URL="http://127.0.0.1:9/v1")  # never called: no task is sent
    queue = keys.QUEUES[Step.translate]
    assert live_capacity(clean_redis, queue) == 0
    worker = WorkerProcess("translate", env, tmp_path / "w.log", concurrency=3)
    try:
        worker.wait_ready()
        deadline = time.monotonic() + 20
        while live_capacity(clean_redis, queue) != 3:
            assert time.monotonic() < deadline, worker.log.read_text()[-2000:]
            time.sleep(0.2)
        assert live_capacity(clean_redis, keys.QUEUES["tag"]) == 0  # type: ignore[index]
    finally:
        worker.stop()
    assert live_capacity(clean_redis, queue) == 0  # withdrawn on a warm shutdown, not left to lapse
