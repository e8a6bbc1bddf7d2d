"""The dashboard's HTML pages in a real headless Chromium (Playwright, Debian's /usr/bin/chromium): an operator
finds a run that failed for real (401 at translate), reads the error, logs in, fixes the key, clicks Retry and
watches it succeed. Plus the form rules without a browser: CSRF, basic auth, read-only mode.
Screenshots go to test-output/dashboard/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from schemas.pipeline import Step
from tests.conftest import make_audio
from tests.harness import serve_asgi
from workers.app import create_app
from workers.dashboard import audit
from workers.dashboard.api import create_api
from workers.embedded import embedded_worker
from workers.follow import follow_run
from workers.providers.simulator import SimulatorConfig, running_simulator
from workers.settings import load_settings
from workers.submit import resolve_source, submit

TOKEN = "operator-s3cret"
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / "test-output" / "dashboard"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture()
def locked_simulator() -> Iterator[str]:
    """A simulator that wants the key "right": the LLM key "wrong" is a permanent 401 at translate."""
    with running_simulator(SimulatorConfig(api_key="right")) as url:
        yield url


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """The dashboard under a real uvicorn; its queue gatherer stopped afterwards (serve_asgi runs no lifespan)."""
    api = create_api(app, queue_interval=0.5)
    try:
        with serve_asgi(api) as base:
            yield base
    finally:
        api.state.monitor.stop()


def _app(tmp_path: Path, redis_url: str, simulator: str, token: str | None = TOKEN) -> Any:
    return create_app(load_settings(broker_url=redis_url, data_dir=tmp_path / "data", dashboard_token=token,
                                    transcription_base_url=simulator, transcription_api_key="right",
                                    llm_base_url=simulator, llm_api_key="wrong"))


def test_an_operator_retries_a_failed_run_in_the_browser(tmp_path: Path, clean_redis: redis.Redis, redis_url: str,
                                                         locked_simulator: str) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/bootstrap.sh test (it installs Debian's chromium)")
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    app = _app(tmp_path, redis_url, locked_simulator)
    rt = app.pressroom
    source, video_id = resolve_source(str(make_audio(tmp_path / "talk.wav", 20)), rt)
    with embedded_worker(app, 2), serve(app) as base, sync_playwright() as pw:
        run_id = submit(app, rt, source, video_id).run_id
        failed = follow_run(rt.state, run_id, timeout=120)
        assert failed.status == "failed" and failed.of(Step.translate).status == "failed", failed

        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/")
            page.select_option("select[name=status]", "failed")
            page.get_by_role("button", name="Filter", exact=True).click()
            expect(page).to_have_url(re.compile(r"status=failed"))
            page.screenshot(path=str(SHOTS / "runs-failed.png"), full_page=True)
            page.get_by_role("link", name=run_id, exact=True).click()

            expect(page.locator("h1")).to_contain_text(run_id)
            expect(page.locator("#step-translate")).to_contain_text("failed")
            expect(page.locator("#step-translate")).to_contain_text("401")
            expect(page.locator("#run-error")).to_contain_text("401")
            retry_button = page.get_by_role("button", name="Retry from the failed step")
            expect(retry_button).to_be_disabled()  # not logged in yet
            page.screenshot(path=str(SHOTS / "run-failed.png"), full_page=True)

            page.get_by_label("operator token").fill(TOKEN)
            page.get_by_role("button", name="Log in", exact=True).click()
            expect(page.locator(".flash")).to_have_text("logged in")
            auth = next(c for c in page.context.cookies() if c["name"] == "pressroom_auth")
            assert auth["httpOnly"] and auth["sameSite"] == "Strict" and TOKEN not in auth["value"]

            rt.settings.llm_api_key = "right"  # the operator fixes the key …
            rt.__dict__.pop("llm", None)  # … and the worker picks it up
            retry_button.click()
            expect(page.locator(".flash")).to_have_text("re-running from translate")

            deadline = time.monotonic() + 120
            while "succeeded" not in page.locator("h1 .status").inner_text():
                assert time.monotonic() < deadline, f"run never succeeded: {rt.state.run(run_id)}"
                time.sleep(0.5)
                page.reload()
            expect(page.locator("#step-publish")).to_contain_text("succeeded")
            expect(page.locator("#post-preview")).not_to_be_empty()
            page.screenshot(path=str(SHOTS / "run-succeeded.png"), full_page=True)

            page.get_by_role("link", name="Queues", exact=True).click()
            expect(page.locator("h1")).to_have_text("Queues")
            expect(page.locator("header .session")).to_contain_text("logged in (operator)")
            page.screenshot(path=str(SHOTS / "queues.png"), full_page=True)
        finally:
            browser.close()

    run = rt.state.run(run_id)
    assert run["status"] == "succeeded" and run["generation"] == "1"
    entries = [(e["who"], e["what"], e["run_id"], e["outcome"]) for e in audit.entries(rt)]
    assert entries[0] == ("operator", "retry from failed step", run_id, "ok")
    assert entries[1] == ("operator", "login", None, "ok")


def _csrf(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert match, page.text
    return match.group(1)


def test_forms_need_the_token_and_a_csrf_token(tmp_path: Path, clean_redis: redis.Redis, redis_url: str) -> None:
    from tests.test_dashboard_api import make_run

    app = _app(tmp_path, redis_url, "http://127.0.0.1:9")
    make_run(app, "r1", "running")
    state = app.pressroom.state
    with serve(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        csrf = _csrf(client, "/runs/r1")
        anonymous = client.post("/runs/r1/cancel", data={"csrf": csrf})
        assert anonymous.status_code == 303 and state.run("r1")["status"] == "running"

        basic = httpx.BasicAuth("night-shift", TOKEN)
        forged = client.post("/runs/r1/cancel", data={"csrf": "0" * 64}, auth=basic)
        assert forged.status_code == 303 and state.run("r1")["status"] == "running"
        done = client.post("/runs/r1/cancel", data={"csrf": csrf}, auth=basic)
        assert done.status_code == 303 and done.headers["location"] == "/runs/r1"
        assert state.run("r1")["status"] == "cancelled"
        assert "cancelled" in client.get("/runs/r1").text  # the flash

        assert client.post("/login", data={"csrf": csrf, "token": "nope"}).status_code == 303
        assert "pressroom_auth" not in client.cookies
        assert client.get("/runs/nope").status_code == 404
        assert "Unknown status" not in client.get("/", params={"status": "exploded"}).text
        hostile = client.post("/runs/a;b/cancel", data={"csrf": csrf}, auth=basic)
        assert hostile.status_code == 303 and hostile.headers["location"] == "/"
    # the logged-in operator's actions (a forged form included) are entries, named by the basic-auth user;
    # the anonymous cancel and the wrong login are only counted
    outcomes = [(e["who"], e["what"], e["outcome"][:7]) for e in audit.entries(app.pressroom)]
    assert outcomes == [("night-shift", "cancel", "ok"), ("night-shift", "cancel", "refused")]
    assert audit.refused(app.pressroom, 60) == {"not_logged_in": 1, "wrong_token": 1}

    read_only = _app(tmp_path, redis_url, "http://127.0.0.1:9", token=None)
    with serve(read_only) as base, httpx.Client(base_url=base, timeout=10) as client:
        page = client.get("/runs/r1").text
        assert "read-only" in page and 'type="password"' not in page
        assert page.count("disabled") >= 4
        refused = client.post("/runs/r1/retry", data={"csrf": _csrf(client, "/runs/r1")})
        assert refused.status_code == 303 and state.run("r1").get("generation") is None
