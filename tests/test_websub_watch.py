"""WebSub wired to the pipeline: a signed notification of a new upload starts one run at once; the same
notification twice, a title update or a bad signature starts none; a deletion is recorded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from schemas.channels import ChannelConfig
from tests.test_websub import notification, serve, sign, tombstone
from workers import keys
from workers.app import create_app
from workers.settings import load_settings
from workers.watch.channels_file import add_channel
from workers.watch.service import websub_app

CH = "UCLA_DiR1FfKNvjuUpBHmylQ"
MASTER = "test-master-secret-0123456789"


@pytest.fixture()
def pipeline(tmp_path: Path, clean_redis: redis.Redis, redis_url: str) -> Iterator[tuple[str, Any]]:
    settings = load_settings(broker_url=redis_url, storage_url=str(tmp_path / "store"),
                             channels_file=tmp_path / "channels.yaml", websub_secret=MASTER)
    add_channel(tmp_path / "channels.yaml", ChannelConfig(id=CH, name="NASA"))
    app = create_app(settings)
    with serve(websub_app(app, app.pressroom)) as url:
        yield url, app


def _post(url: str, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/atom+xml"} | ({"X-Hub-Signature": signature} if signature else {})
    return httpx.post(f"{url}/websub/{CH}", content=body, headers=headers, timeout=10)


def _runs(client: redis.Redis) -> list[str]:
    return [r.decode() for r in client.zrange(keys.runs_index_key(), 0, -1)]


def test_a_notification_starts_one_run(pipeline: tuple[str, Any], clean_redis: redis.Redis) -> None:
    url, app = pipeline
    body = notification(video_id="NEWupload01", channel_id=CH, title="Artemis update")
    assert _post(url, body, sign(body, CH, master=MASTER)).status_code == 202
    [run] = _runs(clean_redis)
    assert app.pressroom.state.run(run)["video_id"] == "NEWupload01"
    assert clean_redis.llen(keys.QUEUES[next(iter(keys.QUEUES))]) == 1  # its download task is queued

    assert _post(url, body, sign(body, CH, master=MASTER)).status_code == 200  # delivered twice
    update = notification(video_id="NEWupload01", channel_id=CH, title="Artemis update (corrected)",
                          updated="2026-10-01T13:00:00+00:00")
    assert _post(url, update, sign(update, CH, master=MASTER)).status_code == 202  # a title change
    assert len(_runs(clean_redis)) == 1


def test_bad_or_missing_signatures_submit_nothing(pipeline: tuple[str, Any], clean_redis: redis.Redis) -> None:
    url, _ = pipeline
    body = notification(video_id="FORGEDvid01", channel_id=CH)
    assert _post(url, body, None).status_code == 403
    assert _post(url, body, sign(body, CH, master="not-the-secret")).status_code == 403
    assert _runs(clean_redis) == []


def test_a_deletion_is_recorded(pipeline: tuple[str, Any]) -> None:
    url, app = pipeline
    body = tombstone(video_id="GONEvideo01", channel_id=CH)
    assert _post(url, body, sign(body, CH, master=MASTER)).status_code == 202
    assert app.pressroom.store.exists(keys.tombstone_key("GONEvideo01"))


def test_a_channel_whose_glossary_is_gone_loses_no_notified_video(tmp_path: Path, clean_redis: redis.Redis,
                                                                   redis_url: str) -> None:
    """The channel's glossary went missing: the notification is refused (503, so the hub redelivers), the
    video is not marked seen, the channel shows the failure; once fixed, the redelivery starts its run."""
    glossary = tmp_path / "names.yaml"
    settings = load_settings(broker_url=redis_url, storage_url=str(tmp_path / "store"),
                             channels_file=tmp_path / "channels.yaml", websub_secret=MASTER)
    add_channel(tmp_path / "channels.yaml", ChannelConfig(id=CH, name="NASA", glossary=str(glossary)))
    app = create_app(settings)
    body = notification(video_id="NEWupload02", channel_id=CH, title="Artemis update")
    with serve(websub_app(app, app.pressroom)) as url:
        assert _post(url, body, sign(body, CH, master=MASTER)).status_code == 503
        assert _runs(clean_redis) == [] and not app.pressroom.store.exists(keys.seen_marker_key("NEWupload02"))
        state = {k.decode(): v.decode() for k, v in clean_redis.hgetall(keys.channel_state_key(CH)).items()}
        assert "no such glossary file" in state["last_error"]

        glossary.write_text("terms: [{term: Artemis}]\n")
        assert _post(url, body, sign(body, CH, master=MASTER)).status_code == 202  # the hub's redelivery
    [run] = _runs(clean_redis)
    assert app.pressroom.state.run(run)["video_id"] == "NEWupload02"
    assert app.pressroom.store.exists(keys.seen_marker_key("NEWupload02"))
