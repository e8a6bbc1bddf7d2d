"""An editor in a real browser (Playwright driving Debian's chromium): opens a draft, edits a paragraph's
translation, approves; the site's git repository (a local bare one) then has the post with the edit and
`draft: false`. Also through the pipeline: a signed webhook receives the post, a redelivered publish adds no
commit, a re-run replaces the post in place."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from schemas.pipeline import Step
from tests.conftest import make_audio
from tests.harness import serve_asgi
from tests.pipeline_checks import chinese_paragraphs
from tests.test_publishing import git
from workers import keys
from workers.app import create_app
from workers.dashboard.api import create_api
from workers.embedded import embedded_worker
from workers.follow import follow_run
from workers.operations import retry
from workers.settings import load_settings
from workers.submit import resolve_source, submit

TOKEN = "editor-s3cret-token"
SECRET = "webhook-secret-0123456789"
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / "test-output" / "review"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture()
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site.git"
    git("init", "--quiet", "--bare", str(path))
    return path


class Receiver:
    """A webhook receiver that checks each body's HMAC-SHA256 signature, as a site's endpoint would."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.keys: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                ok = hmac.compare_digest(expected, self.headers.get("X-Pressroom-Signature", ""))
                if ok:
                    receiver.posts.append(json.loads(body))
                    receiver.keys.append(self.headers["Idempotency-Key"])
                self.send_response(200 if ok else 401)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@contextmanager
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.server.shutdown()


def _app(tmp_path: Path, redis_url: str, simulator: str, site: Path, **extra: Any) -> Any:
    return create_app(load_settings(broker_url=redis_url, data_dir=tmp_path / "data", dashboard_token=TOKEN,
                                    transcription_base_url=simulator, llm_base_url=simulator,
                                    publish_git_url=str(site), **extra))


def _site_post(site: Path, name: str) -> tuple[dict[str, Any], str]:
    text = git("--git-dir", str(site), "show", f"main:posts/{name}")
    return yaml.safe_load(text.split("---\n")[1]), text


def test_through_the_pipeline_to_git_and_a_signed_webhook(tmp_path: Path, clean_redis: redis.Redis,
                                                         redis_url: str, simulator: str, site: Path) -> None:
    with receiver() as hook:
        app = _app(tmp_path, redis_url, simulator, site, publish_targets=["git", "webhook"],
                   publish_webhook_url=hook.url, publish_webhook_secret=SECRET)
        rt = app.pressroom
        source, video_id = resolve_source(str(make_audio(tmp_path / "talk.wav", 20)), rt)
        with embedded_worker(app, 2):
            run_id = submit(app, rt, source, video_id).run_id
            assert follow_run(rt.state, run_id, timeout=120, out=io.StringIO()).status == "succeeded"
            name = rt.state.events(run_id)[-1].artifacts["post"].removeprefix("posts/")
            front, text = _site_post(site, name)
            assert front["draft"] is True and git("--git-dir", str(site), "rev-list", "--count", "main") == "1"
            assert [p["name"] for p in hook.posts] == [name] and hook.posts[0]["markdown"].rstrip("\n") == text

            # a redelivery of the publish step's message: no second commit, no second post
            publish = rt.state.events(run_id)[-2]
            again = app.tasks[keys.task_name(Step.publish)].apply(args=[publish.model_dump(mode="json")])
            assert again.result == "duplicate"
            # a re-run of publish with nothing changed: the same file, still one commit; the same webhook key
            retry(app, rt, run_id, Step.publish)
            assert follow_run(rt.state, run_id, timeout=60, out=io.StringIO()).generation == 1
            assert git("--git-dir", str(site), "rev-list", "--count", "main") == "1"
            assert len(set(hook.keys)) == 1
            # a re-run after the translation changed (an editor's approval): the post replaced in place
            rt.settings.publish_targets = ["git"]
            from workers import review

            review.approve(app, rt, run_id, "editor")
            assert follow_run(rt.state, run_id, timeout=60, out=io.StringIO()).generation == 2
    assert git("--git-dir", str(site), "rev-list", "--count", "main") == "2"
    assert git("--git-dir", str(site), "ls-tree", "-r", "--name-only", "main") == f"posts/{name}"
    assert _site_post(site, name)[0]["draft"] is False


def test_an_editor_edits_and_approves_in_the_browser(tmp_path: Path, clean_redis: redis.Redis, redis_url: str,
                                                     simulator: str, site: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/bootstrap.sh test (it installs Debian's chromium)")
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    app = _app(tmp_path, redis_url, simulator, site, publish_targets=["git"])
    rt = app.pressroom
    source, video_id = resolve_source(str(make_audio(tmp_path / "talk.wav", 30)), rt)
    api = create_api(app, queue_interval=0.5)
    with embedded_worker(app, 2), serve_asgi(api) as base, sync_playwright() as pw:
        run_id = submit(app, rt, source, video_id).run_id
        assert follow_run(rt.state, run_id, timeout=120, out=io.StringIO()).status == "succeeded"
        name = rt.state.events(run_id)[-1].artifacts["post"].removeprefix("posts/")
        assert _site_post(site, name)[0]["draft"] is True  # the draft is on the site, for review

        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/review")
            expect(page.locator("h1")).to_have_text("Posts to review")
            page.get_by_role("link", name=run_id, exact=True).click()
            expect(page.locator("#review-state")).to_have_text("draft")
            expect(page.locator("#approve")).to_be_disabled()  # not logged in yet
            page.screenshot(path=str(SHOTS / "draft.png"), full_page=True)

            page.get_by_label("operator token").fill(TOKEN)
            page.get_by_role("button", name="Log in", exact=True).click()
            expect(page.locator(".flash")).to_have_text("logged in")

            first = page.locator(".para").first
            pid = first.get_attribute("id")
            first.locator("textarea").fill("编辑在浏览器里改好的第一段译文。")
            first.get_by_role("button", name="Save").click()
            expect(page.locator(".flash")).to_have_text(f"paragraph {pid} saved")
            expect(page.locator(f"#{pid} textarea")).to_have_value("编辑在浏览器里改好的第一段译文。")
            expect(page.locator(f"#{pid} .note")).to_contain_text("edited by operator")

            page.locator("#approve").click()
            expect(page.locator(".flash")).to_have_text("approved: publishing with draft: false")
            expect(page.locator("#review-state")).to_contain_text("approved by operator")
            expect(page.locator(f"#{pid} textarea")).to_have_value("编辑在浏览器里改好的第一段译文。")
            page.screenshot(path=str(SHOTS / "approved.png"), full_page=True)
        finally:
            browser.close()
        assert follow_run(rt.state, run_id, timeout=60, out=io.StringIO()).generation == 1
    api.state.monitor.stop()

    front, text = _site_post(site, name)
    assert front["draft"] is False
    assert chinese_paragraphs(text + "\n")[0] == "编辑在浏览器里改好的第一段译文。"
    log = git("--git-dir", str(site), "log", "--format=%s", "main").splitlines()
    assert len(log) == 2  # the draft, then the approved post in its place
