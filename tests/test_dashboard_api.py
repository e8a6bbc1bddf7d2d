"""The dashboard API over real HTTP (uvicorn on a free port, httpx) against the tests' Redis database:
listing and filters, detail, retry / retry-failed / cancel / discard with their refusals, the token rules,
queue health (from the background gatherer's snapshot), the audit log (entries for authenticated actions
only, refusals counted, retention by age), the API's edges (paging bounds, body size, run ids) and the
OpenAPI document."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from schemas.artifacts import VideoSource
from schemas.events import RunRequested, Step, StepFailed
from schemas.run import RunSpec
from tests.conftest import make_audio
from tests.harness import serve_asgi
from workers import keys
from workers.app import create_app
from workers.cli import main
from workers.dashboard.api import create_api
from workers.delivery import Outcome
from workers.errors import PermanentError
from workers.events import send
from workers.settings import load_settings
from workers.submit import resolve_source, submit
from workers.tasks import SPECS

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@contextmanager
def serve(app: Any, **options: Any) -> Iterator[httpx.Client]:
    """The dashboard under a real uvicorn (its queue gatherer every 0.2 s); yields a client for it."""
    api = create_api(app, **{"queue_interval": 0.2, "queue_timeout": 1.0, **options})
    try:
        with serve_asgi(api) as url, httpx.Client(base_url=url, timeout=10) as client:
            yield client
    finally:
        api.state.monitor.stop()  # serve_asgi runs no lifespan events: stop the gatherer here


def fresh_queues(api: httpx.Client, timeout: float = 15) -> dict[str, Any]:
    """/api/queues once the gatherer has finished a round that began after this call (its facts are new)."""
    asked = time.time()
    deadline = time.monotonic() + timeout
    while True:
        got = api.get("/api/queues")
        assert got.status_code == 200, got.text
        body: dict[str, Any] = got.json()
        if body["status"] == "ok" and body["at"] >= asked:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def _app(tmp_path: Path, redis_url: str, token: str | None = TOKEN) -> Any:
    return create_app(load_settings(broker_url=redis_url, data_dir=tmp_path / "data", dashboard_token=token))


@pytest.fixture()
def app(tmp_path: Path, clean_redis: redis.Redis, redis_url: str) -> Any:
    return _app(tmp_path, redis_url)


@pytest.fixture()
def api(app: Any) -> Iterator[httpx.Client]:
    with serve(app) as client:
        yield client


def make_run(app: Any, run_id: str, status: str, *, channel: str | None = None, message: str = "boom",
             created: float | None = None) -> RunSpec:
    """A run put in `status` through RunState's own calls (a failure is at download, after its input event)."""
    state = app.pressroom.state
    spec = RunSpec(run_id=run_id, video_id=f"vid-{run_id}", channel_id=channel,
                   source=VideoSource(kind="youtube", uri=f"https://www.youtube.com/watch?v=vid-{run_id}"))
    state.create(spec)
    state.append_event(RunRequested(run=spec))
    if created is not None:
        state.kv.hset(keys.run_key(run_id), "created", created)
        state.kv.zadd(keys.runs_index_key(), {run_id: created})
    if status in {"running", "failed"}:
        state.step_started(run_id, Step.download, 1, "download@test", 1)
    if status == "failed":
        event = StepFailed(run=spec, step=Step.download, attempt=1, error_type="PermanentError", message=message)
        state.append_event(event)
        state.step_failed(event, traceback="Traceback: …")
    if status == "succeeded":
        for step in Step:
            state.step_started(run_id, step, 1, f"{step}@test", 1)
            state.step_succeeded(run_id, step, {"seconds": 1.5}, reused=False)
    return spec


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["runs"]]


def _queued(client: redis.Redis, step: Step) -> list[dict[str, Any]]:
    return [json.loads(m) for m in client.lrange(keys.QUEUES[step], 0, -1)]


def test_list_filters_search_and_paging(app: Any, api: httpx.Client) -> None:
    now = time.time()
    make_run(app, "r1", "failed", channel="UC1", message="quota exceeded", created=now - 500)
    make_run(app, "r2", "succeeded", channel="UC1", created=now - 400)
    make_run(app, "r3", "running", channel="UC2", created=now - 300)
    make_run(app, "r4", "failed", channel="UC2", message="private video", created=now - 200)
    make_run(app, "r5", "queued", created=now - 100)

    page = api.get("/api/runs").json()
    assert page["total"] == 5 and [r["id"] for r in page["runs"]] == ["r5", "r4", "r3", "r2", "r1"]
    r4 = page["runs"][1]
    assert r4 == {**r4, "status": "failed", "video_id": "vid-r4", "channel_id": "UC2", "step": "download",
                  "error": "download failed: private video", "generation": 0}
    assert _ids(api.get("/api/runs", params={"status": "failed"})) == ["r4", "r1"]
    assert _ids(api.get("/api/runs", params={"channel": "UC1"})) == ["r2", "r1"]
    assert _ids(api.get("/api/runs", params={"channel": "UC2", "status": "failed"})) == ["r4"]
    assert _ids(api.get("/api/runs", params={"step": "publish"})) == ["r2"]
    assert _ids(api.get("/api/runs", params={"q": "QUOTA"})) == ["r1"]  # in the error, any case
    assert _ids(api.get("/api/runs", params={"q": "vid-r3"})) == ["r3"]  # in the video id
    assert _ids(api.get("/api/runs", params={"since": now - 350, "until": now - 150})) == ["r4", "r3"]
    paged = api.get("/api/runs", params={"offset": 1, "limit": 2}).json()
    assert paged["total"] == 5 and [r["id"] for r in paged["runs"]] == ["r4", "r3"]
    paged = api.get("/api/runs", params={"status": "failed", "offset": 1, "limit": 1}).json()
    assert paged["total"] == 2 and [r["id"] for r in paged["runs"]] == ["r1"]
    bad = api.get("/api/runs", params={"status": "exploded"})
    assert bad.status_code == 422 and bad.json()["error"].startswith("status:")


def test_detail_and_unknown_run(app: Any, api: httpx.Client) -> None:
    make_run(app, "r1", "failed", message="private video")
    detail = api.get("/api/runs/r1").json()
    download = detail["steps"][0]
    assert download["step"] == "download" and download["status"] == "failed" and download["attempts"] == 1
    assert download["worker"] == "download@test" and download["traceback"] == "Traceback: …"
    assert download["error"] == "PermanentError: private video" and download["ended"] >= download["started"]
    assert [s["status"] for s in detail["steps"][1:]] == ["pending"] * 4
    assert [e["kind"] for e in detail["events"]] == ["run.requested", "step.failed"]
    assert detail["generation"] == 0 and detail["post_preview"] is None

    make_run(app, "r2", "succeeded")
    done = api.get("/api/runs/r2").json()
    assert done["steps"][4]["usage"] == {"seconds": 1.5} and done["steps"][4]["duration"] is not None

    missing = api.get("/api/runs/nope")
    assert missing.status_code == 404 and missing.json() == {"error": "no run 'nope': check the run id"}


def test_actions_need_the_token(app: Any, api: httpx.Client, tmp_path: Path, redis_url: str) -> None:
    make_run(app, "r1", "failed")
    missing = api.post("/api/runs/r1/retry")
    assert missing.status_code == 401 and "Bearer" in missing.json()["error"]
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = api.post("/api/runs/r1/retry", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and "wrong token" in wrong.json()["error"]
    assert api.delete("/api/runs/r1", headers={"Authorization": "Basic " + TOKEN}).status_code == 401
    assert app.pressroom.state.run("r1")["status"] == "failed"  # nothing was done

    with serve(_app(tmp_path, redis_url, token=None)) as read_only:
        refused = read_only.post("/api/runs/r1/cancel", headers=AUTH)
        assert refused.status_code == 403 and refused.json()["error"].startswith("read-only: set PRESSROOM_DASHBOARD")
        assert read_only.get("/api/runs/r1").status_code == 200  # reads stay open

    # refused before authentication: counted per reason, not written to the log
    log = api.get("/api/audit", headers=AUTH).json()
    assert log["entries"] == []
    assert log["refused_last_hour"] == {"missing_token": 2, "wrong_token": 1, "read_only": 1}


def test_retry_refusals(app: Any, api: httpx.Client) -> None:
    spec = make_run(app, "r1", "running")
    send(app, RunRequested(run=spec))  # a message carries it on: it is not stalled
    busy = api.post("/api/runs/r1/retry", headers=AUTH)
    assert busy.status_code == 409 and busy.json() == {
        "error": "run r1 is running: wait for it to end, or cancel it first"}
    assert api.post("/api/runs/nope/retry", headers=AUTH).status_code == 404
    make_run(app, "r2", "failed")
    bad = api.post("/api/runs/r2/retry", params={"from_step": "dance"}, headers=AUTH)
    assert bad.status_code == 422 and bad.json()["error"].startswith("from_step:")
    unreached = api.post("/api/runs/r2/retry", params={"from_step": "tag"}, headers=AUTH)
    assert unreached.status_code == 409 and "never reached tag" in unreached.json()["error"]


def test_a_stalled_run_is_retried_without_a_cancel(app: Any, api: httpx.Client, clean_redis: redis.Redis) -> None:
    """Running, but no message anywhere (a worker lost it with Redis's data): retry takes it at once."""
    make_run(app, "r1", "running")
    retried = api.post("/api/runs/r1/retry", headers=AUTH)
    assert retried.status_code == 200, retried.text
    assert retried.json() == {"id": "r1", "from_step": "download", "generation": 1}
    assert [m["headers"]["task"] for m in _queued(clean_redis, Step.download)] == ["pressroom.download"]
    assert app.pressroom.state.events("r1")[-1].kind == "run.retried"


def test_a_retry_queues_the_failed_step_again(app: Any, api: httpx.Client, tmp_path: Path,
                                              clean_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run failed by the real runner is retried through the API: new generation, input event re-queued."""
    rt = app.pressroom
    source, video_id = resolve_source(str(make_audio(tmp_path / "t.wav", 3)), rt)
    run_id = submit(app, rt, source, video_id).run_id
    clean_redis.delete(keys.QUEUES[Step.download])  # the submit's message: a worker would have taken it
    spec = SPECS[Step.download]

    def broken(*args: Any) -> Outcome:
        raise PermanentError("private video: cannot download it")

    monkeypatch.setitem(SPECS, Step.download, spec.__class__(spec.step, spec.outputs, spec.fingerprint, broken,
                                                             False))
    task = app.tasks[keys.task_name(Step.download)]
    requested = rt.state.events(run_id)[0].model_dump(mode="json")
    assert task.apply(args=[requested]).state == "FAILURE"
    assert api.get(f"/api/runs/{run_id}").json()["status"] == "failed"
    before = {q["queue"]: q for q in fresh_queues(api)["queues"]}[keys.QUEUES[Step.download]]
    assert before["depth"] == 0 and before["oldest_age"] is None
    assert before["last_hour"] == {"succeeded": 0, "failed": 1, "retried": 0, "failure_rate": 1.0}

    done = api.post(f"/api/runs/{run_id}/retry", headers=AUTH)
    assert done.status_code == 200 and done.json() == {"id": run_id, "from_step": "download", "generation": 1}
    run = rt.state.run(run_id)
    assert run["status"] == "queued" and run["generation"] == "1" and run["download.status"] == "queued"
    [message] = _queued(clean_redis, Step.download)
    assert message["headers"]["task"] == keys.task_name(Step.download)
    queues = {q["queue"]: q for q in fresh_queues(api)["queues"]}
    download = queues[keys.QUEUES[Step.download]]
    assert download["depth"] == 1 and download["workers"] == [] and 0 <= download["oldest_age"] < 60
    assert queues[keys.WATCH_QUEUE]["depth"] == 0 and queues[keys.WATCH_QUEUE]["oldest_age"] is None
    assert set(queues) == {*keys.QUEUES.values(), keys.WATCH_QUEUE}
    assert api.get("/api/audit", headers=AUTH).json()["entries"][0]["outcome"] == "ok"


def test_retry_failed_under_a_filter(app: Any, api: httpx.Client, clean_redis: redis.Redis) -> None:
    make_run(app, "r1", "failed", channel="UC1")
    make_run(app, "r2", "failed", channel="UC2")
    make_run(app, "r3", "succeeded", channel="UC1")
    make_run(app, "r4", "failed", channel="UC1")
    done = api.post("/api/runs/retry-failed", params={"channel": "UC1"}, headers=AUTH)
    assert done.status_code == 200 and sorted(done.json()["retried"]) == ["r1", "r4"]
    state = app.pressroom.state
    assert [state.run(r)["status"] for r in ("r1", "r2", "r3", "r4")] == ["queued", "failed", "succeeded", "queued"]
    assert len(_queued(clean_redis, Step.download)) == 2


def test_cancel_and_discard(app: Any, api: httpx.Client, tmp_path: Path) -> None:
    make_run(app, "r1", "running")
    assert api.post("/api/runs/r1/cancel", headers=AUTH).json() == {"id": "r1", "status": "cancelled"}
    again = api.post("/api/runs/r1/cancel", headers=AUTH)
    assert again.status_code == 409 and "only queued or running" in again.json()["error"]
    assert api.post("/api/runs/nope/cancel", headers=AUTH).status_code == 404

    make_run(app, "r2", "running")
    busy = api.delete("/api/runs/r2", headers=AUTH)
    assert busy.status_code == 409 and "cancel it first" in busy.json()["error"]
    rt = app.pressroom
    rt.store.put_bytes("videos/vid-r1/download/x/source.json", b"{}")
    rt.store.put_bytes(keys.run_manifest_key("r1"), b"{}")
    assert api.delete("/api/runs/r1", headers=AUTH).json() == {"id": "r1", "discarded": True}
    assert api.get("/api/runs/r1").status_code == 404 and rt.state.events("r1") == []
    assert _ids(api.get("/api/runs")) == ["r2"]
    assert rt.store.exists("videos/vid-r1/download/x/source.json")  # artifacts stay
    assert not rt.store.exists(keys.run_manifest_key("r1"))  # `runs --restore` must not bring it back
    log = api.get("/api/audit", headers=AUTH).json()["entries"]
    assert [(e["what"], e["run_id"], e["outcome"][:7]) for e in log] == [
        ("discard", "r1", "ok"), ("discard", "r2", "refused"), ("cancel", "nope", "refused"),
        ("cancel", "r1", "refused"), ("cancel", "r1", "ok")]


def test_openapi_lists_the_endpoints(api: httpx.Client) -> None:
    paths = api.get("/api/openapi.json").json()["paths"]
    assert {p: sorted(ops) for p, ops in paths.items()} == {
        "/api/runs": ["get"], "/api/runs/{run_id}": ["delete", "get"], "/api/runs/retry-failed": ["post"],
        "/api/runs/{run_id}/retry": ["post"], "/api/runs/{run_id}/cancel": ["post"], "/api/queues": ["get"],
        "/api/audit": ["get"], "/api/reviews": ["get"], "/api/runs/{run_id}/review": ["get"],
        "/api/runs/{run_id}/review/paragraphs/{paragraph_id}": ["post"],
        "/api/runs/{run_id}/review/fields/{name}": ["post"], "/api/runs/{run_id}/approve": ["post"],
        "/metrics": ["get"]}


def test_dashboard_command_refuses_unsafe_setups(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("PRESSROOM_BROKER_URL", raising=False)
    monkeypatch.delenv("PRESSROOM_DASHBOARD_TOKEN", raising=False)
    assert main(["dashboard"]) == 2
    assert "set PRESSROOM_BROKER_URL" in capsys.readouterr().err
    monkeypatch.setenv("PRESSROOM_BROKER_URL", redis_url)
    assert main(["dashboard", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "without PRESSROOM_DASHBOARD_TOKEN" in err


def test_memory_kv_filters_like_redis(app: Any, tmp_path: Path) -> None:
    """The in-process KV (embedded mode) takes the plain-call path; it must select what the Lua script does."""
    from workers.dashboard.queries import RunFilter, list_runs

    embedded = create_app(load_settings(data_dir=tmp_path / "embedded"))
    now = time.time()
    for target in (app, embedded):
        make_run(target, "r1", "failed", channel="UC1", message="Quota exceeded", created=now - 30)
        make_run(target, "r2", "running", channel="UC10", created=now - 20)
        make_run(target, "r3", "failed", channel="UC10", created=now - 10)
    for f in (RunFilter(), RunFilter(status="failed"), RunFilter(channel="UC1"), RunFilter(q="quota"),
              RunFilter(step=Step.download, channel="UC10"), RunFilter(since=now - 25, status="failed")):
        got = [[r["id"] for r in list_runs(t.pressroom, f)["runs"]] for t in (app, embedded)]
        assert got[0] == got[1] and got[0], f


def test_the_cli_goes_through_the_api_when_told_where_it_is(app: Any, api: httpx.Client,
                                                            redis_url: str) -> None:
    """With PRESSROOM_DASHBOARD_URL set, runs/retry/cancel are API calls: the same auth and audit log."""
    import subprocess

    from tests.harness import PRESSROOM, pressroom_env

    make_run(app, "f1", "failed", message="quota exceeded")
    send(app, RunRequested(run=make_run(app, "q1", "running")))  # carried on by a message: not stalled
    env = pressroom_env(PRESSROOM_BROKER_URL=redis_url, PRESSROOM_DASHBOARD_URL=str(api.base_url),
                        PRESSROOM_DASHBOARD_TOKEN=TOKEN)

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*PRESSROOM, *args], env=env | extra, capture_output=True, text=True, timeout=60)

    listed = cli("runs", "--status", "failed")
    assert listed.returncode == 0 and listed.stdout.split()[:2] == ["f1", "failed"] and "quota" in listed.stdout
    wrong = cli("retry", "f1", PRESSROOM_DASHBOARD_TOKEN="not-it")
    assert wrong.returncode == 2 and wrong.stderr.startswith("pressroom: dashboard answered 403")
    busy = cli("retry", "q1")
    assert busy.returncode == 2 and "409" in busy.stderr and "cancel it first" in busy.stderr
    done = cli("retry", "f1")
    assert done.returncode == 0 and done.stdout.strip() == "run f1: re-running from download"
    assert cli("cancel", "q1").returncode == 0
    log = api.get("/api/audit", headers=AUTH).json()["entries"]
    assert [(e["what"], e["run_id"], e["outcome"][:7]) for e in log][:3] == [
        ("cancel", "q1", "ok"), ("retry from failed step", "f1", "ok"), ("retry from failed step", "q1", "refused")]


def test_the_audit_log_needs_the_token_and_names_no_token(app: Any, api: httpx.Client, clean_redis: redis.Redis,
                                                          tmp_path: Path, redis_url: str) -> None:
    """Entries only for authenticated callers, named by a label; anyone else's refusals are only counted
    (a flood of them adds nothing to the log); reading it needs the token."""
    import hashlib

    make_run(app, "r1", "running")
    missing = api.get("/api/audit")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert api.get("/api/audit", headers={"Authorization": "Bearer nope"}).status_code == 403
    for _ in range(50):
        assert api.post("/api/runs/r1/cancel").status_code == 401
    assert api.post("/api/runs/r1/cancel", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert clean_redis.zcard(keys.audit_entries_key()) == 0  # nothing logged …
    assert api.post("/api/runs/r1/cancel", headers=AUTH).status_code == 200
    assert api.post("/api/runs/r1/cancel", headers=AUTH).status_code == 409  # refused after auth: logged

    log = api.get("/api/audit", headers=AUTH).json()
    assert [(e["who"], e["what"], e["run_id"], e["outcome"][:7]) for e in log["entries"]] == [
        ("operator", "cancel", "r1", "refused"), ("operator", "cancel", "r1", "ok")]
    assert log["refused_last_hour"] == {"missing_token": 51, "wrong_token": 2}  # … only counted
    assert log["refused_last_day"] == log["refused_last_hour"] and log["retention_days"] == 90
    stored = json.dumps([m for m in clean_redis.zrange(keys.audit_entries_key(), 0, -1)], default=str)
    assert TOKEN not in stored and hashlib.sha256(TOKEN.encode()).hexdigest()[:8] not in stored
    minute_keys = clean_redis.keys(keys.audit_refused_key(0).rsplit(":", 1)[0] + ":*")
    assert 1 <= len(minute_keys) <= 2 and all(0 < clean_redis.ttl(k) <= 90 * 86400 + 60 for k in minute_keys)
    assert set(clean_redis.hkeys(minute_keys[0])) <= {b"missing_token", b"wrong_token"}  # fixed fields


def test_audit_entries_older_than_the_retention_are_dropped(tmp_path: Path, clean_redis: redis.Redis,
                                                            redis_url: str) -> None:
    from workers.dashboard import audit

    app = create_app(load_settings(broker_url=redis_url, data_dir=tmp_path / "data", dashboard_token=TOKEN,
                                   audit_retention_days=1))
    rt = app.pressroom
    now = time.time()
    old = json.dumps({"who": "operator", "what": "cancel", "run_id": "old", "outcome": "ok", "at": now - 2 * 86400})
    clean_redis.zadd(keys.audit_entries_key(), {old: now - 2 * 86400})  # written two days ago
    audit.record(rt, who="operator", what="cancel", run_id="r0", outcome="ok", at=now - 3600)
    assert clean_redis.zcard(keys.audit_entries_key()) == 1  # dropped by that write, not merely hidden
    make_run(app, "r1", "running")
    with serve(app) as api:
        assert api.post("/api/runs/r1/cancel", headers=AUTH).status_code == 200
        entries = api.get("/api/audit", headers=AUTH).json()["entries"]
    assert [(e["run_id"], e["who"]) for e in entries] == [("r1", "operator"), ("r0", "operator")]
    assert clean_redis.zcard(keys.audit_entries_key()) == 2

    # the old list-shaped log moves over once: the token-hash names become "operator", anonymous refusals go
    clean_redis.rpush(keys.audit_log_key(), *[json.dumps(e) for e in (
        {"who": "token:0123456789ab", "what": "discard", "run_id": "r9", "outcome": "ok", "at": now - 60},
        {"who": "anonymous", "what": "POST /api/runs/r9/retry", "run_id": "r9", "outcome": "refused: …",
         "at": now - 50},
        {"who": "reconciler", "what": "re-drive from download", "run_id": "r8", "outcome": "ok", "at": now - 40})])
    assert audit.migrate_legacy(rt) == 2 and audit.migrate_legacy(rt) == 0
    assert not clean_redis.exists(keys.audit_log_key())
    assert [(e["who"], e["run_id"]) for e in audit.entries(rt)] == [
        ("operator", "r1"), ("reconciler", "r8"), ("operator", "r9"), ("operator", "r0")]


def test_paging_and_bodies_out_of_bounds_are_clear_refusals(app: Any, api: httpx.Client) -> None:
    make_run(app, "r1", "failed")

    def refused(response: httpx.Response, status: int, starts: str) -> None:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert error.startswith(starts) and "\n" not in error and len(error) < 300, error

    refused(api.get("/api/runs", params={"offset": 10**30}), 422, "offset: ")
    refused(api.get("/api/runs", params={"offset": -1}), 422, "offset: ")
    refused(api.get("/api/runs", params={"offset": "1e3"}), 422, "offset: ")
    refused(api.get("/api/runs", params={"limit": 10**6}), 422, "limit: ")
    refused(api.get("/api/runs", params={"limit": 0}), 422, "limit: ")
    refused(api.get("/api/runs", params={"status": "failed", "offset": 10**30}), 422, "offset: ")
    refused(api.get("/api/runs", params={"since": 10**30}), 422, "since: ")
    refused(api.get("/api/runs", params={"q": "x" * 5000}), 422, "q: ")
    refused(api.get("/api/audit", params={"limit": 10**30}, headers=AUTH), 422, "limit: ")
    assert api.get("/api/runs", params={"offset": 10**9}).json()["runs"] == []  # the bound itself is fine
    page = api.get("/", params={"offset": 10**30})  # the HTML list caps it rather than failing
    assert page.status_code == 200 and "No runs match" in page.text
    assert "offset: use a whole number" in api.get("/", params={"offset": "many"}).text

    big = b"x" * 1_000_001  # PRESSROOM_MAX_REQUEST_BYTES is 1 MB
    refused(api.post("/api/runs/r1/retry", content=big, headers=AUTH), 413, "request body over 1000000 bytes")
    refused(api.post("/api/runs/r1/retry", content=iter([big[:600_000], big[600_000:]]), headers=AUTH), 413,
            "request body over 1000000 bytes")  # chunked: no Content-Length to go by
    refused(api.post("/runs/r1/cancel", content=big, headers={"content-type": "application/x-www-form-urlencoded"}),
            413, "request body over")
    assert app.pressroom.state.run("r1")["status"] == "failed"  # nothing was done
    refused(api.get("/api/nothing-here"), 404, "no endpoint GET /api/nothing-here")


def test_run_ids_are_one_path_segment_and_of_the_run_id_form(app: Any, api: httpx.Client) -> None:
    """`pressroom retry 'x/../../runs/retry-failed?'` must not become retry-all-failed: the client sends the id
    percent-encoded as one segment, and the API refuses what is not a run id with 422."""
    from workers.dashboard.client import DashboardClient

    make_run(app, "f1", "failed")
    make_run(app, "f2", "failed")
    client = DashboardClient(str(api.base_url), TOKEN)
    for hostile in ("x/../../runs/retry-failed?", "../runs/retry-failed", "..", ".", "f1?x=1", "f1 ", "é", "a" * 101):
        with pytest.raises(PermanentError) as refused:
            client.retry(hostile)
        assert "dashboard answered 422: run_id: " in str(refused.value) and "is not a run id" in str(refused.value)
        with pytest.raises(PermanentError, match="answered 422"):
            client.cancel(hostile)
    state = app.pressroom.state
    assert [state.run(r)["status"] for r in ("f1", "f2")] == ["failed", "failed"]  # nothing was retried
    assert api.get("/api/runs/%2E%2E").status_code == 422
    assert api.delete("/api/runs/a%3Bb", headers=AUTH).json() == {
        "error": "run_id: 'a;b' is not a run id (a run id is 1-100 letters, digits, '_', '.' or '-')"}

    ok = "20260131T120000-a1b2c3"  # the form new_run_id makes
    make_run(app, ok, "failed")
    assert client.retry(ok) == {"id": ok, "from_step": "download", "generation": 1}
    log = api.get("/api/audit", headers=AUTH).json()["entries"]
    assert [(e["what"], e["run_id"]) for e in log] == [("retry from failed step", ok)]  # hostile ones: none


@contextmanager
def _blackhole() -> Iterator[int]:
    """A port that accepts connections and never answers: a broker too slow to be of use."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


@pytest.mark.parametrize("broker", ["closed", "silent"])
def test_queue_health_is_unknown_when_the_broker_cannot_be_asked(broker: str, tmp_path: Path,
                                                                 clean_redis: redis.Redis, redis_url: str) -> None:
    """The broker refuses connections, or takes them and never answers; run state is the real Redis.
    Every request still answers at once; queue facts say "unknown"; each gather ends within its timeout."""
    with _blackhole() as port:
        if broker == "closed":
            import socket

            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        app = create_app(load_settings(broker_url=f"redis://127.0.0.1:{port}/0", redis_url=redis_url,
                                       data_dir=tmp_path / "data", dashboard_token=TOKEN))
        make_run(app, "f1", "failed")
        with serve(app, queue_timeout=0.5) as api:
            deadline = time.monotonic() + 10
            while (body := api.get("/api/queues").json())["checked_at"] is None:
                assert time.monotonic() < deadline, body
                time.sleep(0.05)
            for _ in range(10):
                started = time.monotonic()
                body = api.get("/api/queues").json()
                assert time.monotonic() - started < 0.5
            assert body["status"] == "unknown" and body["at"] is None and body["age"] is None, body
            assert body["error"].startswith("broker unreachable") and "\n" not in body["error"]
            assert ("Timeout" in body["error"]) == (broker == "silent"), body["error"]
            assert "127.0.0.1" not in body["error"]  # anyone reads this: no addresses
            assert all(q["depth"] is None and q["workers"] is None for q in body["queues"])
            assert body["queues"][0]["last_hour"]["failed"] == 0  # run state's tallies are still had
            page = api.get("/queues")
            assert page.status_code == 200 and 'id="queues-unknown"' in page.text
            assert api.get("/api/runs").json()["total"] == 1
            started = time.monotonic()
            assert api.post("/api/runs/f1/cancel", headers=AUTH).status_code == 409  # failed: not cancellable
            assert time.monotonic() - started < 1
            first = body["checked_at"]
            time.sleep(1.5)
            assert api.get("/api/queues").json()["checked_at"] > first  # rounds keep ending, bounded


def test_queue_health_names_the_workers_online(app: Any, tmp_path: Path, redis_url: str) -> None:
    """A real worker answers the gatherer's control broadcast: it is listed under the queue it consumes."""
    from tests.harness import pressroom_env, workers

    env = pressroom_env(PRESSROOM_BROKER_URL=redis_url, PRESSROOM_DATA_DIR=str(tmp_path / "data"))
    with workers(["download"], env, tmp_path / "logs"), serve(app) as api:
        deadline = time.monotonic() + 20
        while not (body := fresh_queues(api))["workers_online"]:
            assert time.monotonic() < deadline, body
        queues = {q["queue"]: q for q in body["queues"]}
        assert [w.split("@")[0] for w in queues[keys.QUEUES[Step.download]]["workers"]] == ["download"]
        assert queues[keys.QUEUES[Step.publish]]["workers"] == []
        assert body["workers_online"] == queues[keys.QUEUES[Step.download]]["workers"]
