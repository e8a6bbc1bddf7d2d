"""Publish targets against the real things: a bare git repository (git's CLI), a webhook receiver over HTTP
that checks the signature, a directory; and their settings."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from schemas.channels import ChannelConfig
from workers.errors import ConfigError, PermanentError, TransientError
from workers.publishing import DirectoryTarget, GitTarget, PostFile, WebhookTarget, targets_for
from workers.settings import load_settings

NASA = "UCLA_DiR1FfKNvjuUpBHmylQ"
TEXT = "---\ndraft: false\ntitle: 缓存\n---\n\n### 缓存\n\n正文。\n"


def post(**changes: Any) -> PostFile:
    base = PostFile(name="2026-03-14-caching.md", text=TEXT, front_matter={"draft": False, "title": "缓存"},
                    video_id="vid00000001", run_id="run-1", title="缓存 (Caching)")
    return dataclasses.replace(base, **changes)


def draft(**changes: Any) -> PostFile:
    return post(front_matter={"draft": True, "title": "缓存"}, **changes)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("PRESSROOM_", "OPENAI_")):
            monkeypatch.delenv(name)


# --- git -------------------------------------------------------------------------------------------------
def git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", "-c", "user.name=Someone", "-c", "user.email=someone@example.org", *args],
                            cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


@pytest.fixture()
def remote(tmp_path: Path) -> Path:
    """An empty bare repository: the site's."""
    path = tmp_path / "site.git"
    git("init", "--quiet", "--bare", str(path))
    return path


def show(remote: Path, rev: str) -> str:
    return git("--git-dir", str(remote), "show", rev)


def count(remote: Path, branch: str) -> int:
    return int(git("--git-dir", str(remote), "rev-list", "--count", f"refs/heads/{branch}"))


def branches(remote: Path) -> set[str]:
    return set(git("--git-dir", str(remote), "for-each-ref", "--format=%(refname:short)", "refs/heads").split())


def push_from_elsewhere(remote: Path, work: Path, name: str, text: str, branch: str = "main") -> None:
    """Someone else (another machine, a person) commits to the site and pushes."""
    if not work.exists():
        git("clone", "--quiet", str(remote), str(work))
    git("fetch", "--quiet", "origin", cwd=work)
    if git("ls-remote", "--heads", "origin", branch, cwd=work):
        git("checkout", "--quiet", "-B", branch, f"origin/{branch}", cwd=work)
    else:  # the site's first commit
        git("checkout", "--quiet", "--orphan", branch, cwd=work)
    (work / name).parent.mkdir(parents=True, exist_ok=True)
    (work / name).write_text(text)
    git("add", name, cwd=work)
    git("commit", "--quiet", "-m", f"someone: {name}", cwd=work)
    git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", cwd=work)


def test_git_publish_redelivery_and_rerun(remote: Path, tmp_path: Path) -> None:
    target = GitTarget(str(remote), tmp_path / "cache")
    where = target.publish(post())  # into an empty bare repository
    assert where.startswith("main@")
    assert show(remote, "main:posts/2026-03-14-caching.md") == TEXT.rstrip("\n")
    assert git("--git-dir", str(remote), "cat-file", "blob", "main:posts/2026-03-14-caching.md") + "\n" == TEXT
    assert count(remote, "main") == 1
    log = git("--git-dir", str(remote), "log", "--format=%an <%ae>|%s", "main")
    assert log == "Pressroom <pressroom@localhost>|pressroom: 缓存 (Caching) (vid00000001)"

    assert target.publish(post()) == where  # a redelivery: nothing new
    assert GitTarget(str(remote), tmp_path / "other-cache").publish(post()) == where  # another machine: same
    assert count(remote, "main") == 1

    rerun = post(text=TEXT.replace("正文。", "新的正文。"), run_id="run-2")
    where2 = target.publish(rerun)
    assert where2 != where and count(remote, "main") == 2
    assert show(remote, "main:posts/2026-03-14-caching.md") == rerun.text.rstrip("\n")
    assert git("--git-dir", str(remote), "ls-tree", "-r", "--name-only", "main") == "posts/2026-03-14-caching.md"
    changes = git("--git-dir", str(remote), "log", "--format=%s", "--name-status", "main").splitlines()
    assert [c for c in changes if c] == [
        "pressroom: 缓存 (Caching) (vid00000001)", "M\tposts/2026-03-14-caching.md",
        "pressroom: 缓存 (Caching) (vid00000001)", "A\tposts/2026-03-14-caching.md",
    ]
    assert "Pressroom-Run: run-2" in git("--git-dir", str(remote), "log", "-1", "--format=%B", "main")
    assert target.publish(rerun) == where2 and count(remote, "main") == 2


def test_git_keeps_the_sites_other_files_and_commits(remote: Path, tmp_path: Path) -> None:
    push_from_elsewhere(remote, tmp_path / "person", "index.md", "home\n")
    target = GitTarget(str(remote), tmp_path / "cache", path="src/posts/")
    target.publish(post())
    push_from_elsewhere(remote, tmp_path / "person", "about.md", "about\n")  # between two publishes
    target.publish(post(name="2026-03-15-queues.md", video_id="vid00000002"))
    files = set(git("--git-dir", str(remote), "ls-tree", "-r", "--name-only", "main").split())
    assert files == {"index.md", "about.md", "src/posts/2026-03-14-caching.md", "src/posts/2026-03-15-queues.md"}
    assert count(remote, "main") == 4


def test_git_branch_per_post(remote: Path, tmp_path: Path) -> None:
    target = GitTarget(str(remote), tmp_path / "cache", branch_per_post=True, branch="site")
    tip = target.publish(draft())
    review = "pressroom/2026-03-14-caching"
    assert tip == f"{review}@{git('--git-dir', str(remote), 'rev-parse', review)[:12]}"
    assert branches(remote) == {"pressroom/2026-03-14-caching"}  # an empty repository: the draft's own branch
    assert show(remote, "pressroom/2026-03-14-caching:posts/2026-03-14-caching.md") == TEXT.rstrip("\n")
    assert target.publish(draft()).startswith("pressroom/2026-03-14-caching@")
    assert count(remote, "pressroom/2026-03-14-caching") == 1

    target.publish(post(name="2026-03-15-queues.md"))  # not a draft: the site's branch
    assert branches(remote) == {"pressroom/2026-03-14-caching", "site"}
    assert git("--git-dir", str(remote), "ls-tree", "-r", "--name-only", "site") == "posts/2026-03-15-queues.md"

    target.publish(draft(name="2026-03-16-locks.md"))  # a review branch starts from the site's branch
    files = git("--git-dir", str(remote), "ls-tree", "-r", "--name-only", "pressroom/2026-03-16-locks").split()
    assert files == ["posts/2026-03-15-queues.md", "posts/2026-03-16-locks.md"]
    assert count(remote, "pressroom/2026-03-16-locks") == 2
    assert GitTarget(str(remote), tmp_path / "cache", branch="site").publish(draft(name="2026-03-16-locks.md"))
    assert count(remote, "site") == 2  # without branch_per_post a draft goes to the branch


class Interfering(GitTarget):
    """Someone pushes to the site after this target fetched and before it pushes (`times` times)."""

    def __init__(self, *args: Any, work: Path, times: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.work, self.times, self.pushes = work, times, 0

    def _commit(self, base: str | None, file_path: str, blob: str, post: PostFile) -> str:
        commit = super()._commit(base, file_path, blob, post)
        if self.pushes < self.times:
            self.pushes += 1
            push_from_elsewhere(Path(self.url), self.work, f"other-{self.pushes}.md", f"other {time.time_ns()}\n")
        return commit


def test_git_push_rejected_because_the_remote_moved_is_retried(remote: Path, tmp_path: Path) -> None:
    push_from_elsewhere(remote, tmp_path / "person", "index.md", "home\n")
    target = Interfering(str(remote), tmp_path / "cache", work=tmp_path / "person", times=2)
    where = target.publish(post())
    assert target.pushes == 2  # rejected twice, then pushed on the new tip
    files = set(git("--git-dir", str(remote), "ls-tree", "-r", "--name-only", "main").split())
    assert files == {"index.md", "other-1.md", "other-2.md", "posts/2026-03-14-caching.md"}
    assert count(remote, "main") == 4 and where == f"main@{git('--git-dir', str(remote), 'rev-parse', 'main')[:12]}"

    stubborn = Interfering(str(remote), tmp_path / "cache", work=tmp_path / "person", times=99, attempts=2)
    with pytest.raises(TransientError, match=r"git target: pushing 2026-03-15-q\.md to .*site\.git branch main "
                       r"was rejected 2 times"):
        stubborn.publish(post(name="2026-03-15-q.md"))


def test_git_publishes_in_one_clone_do_not_interleave(remote: Path, tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def publish(i: int) -> None:
        try:
            GitTarget(str(remote), tmp_path / "cache").publish(post(name=f"2026-03-1{i}-p.md", video_id=f"v{i}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors and count(remote, "main") == 4
    assert len(git("--git-dir", str(remote), "ls-tree", "-r", "--name-only", "main").split()) == 4


def test_git_errors_are_one_line_and_never_show_credentials(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match=r"^git target: cannot fetch from .*nowhere\.git .*"
                       r"PRESSROOM_PUBLISH_GIT_URL"):
        GitTarget(str(tmp_path / "nowhere.git"), tmp_path / "cache").publish(post())
    url = "https://pressroom:s3cret-token@127.0.0.1:9/site.git"  # nothing listens on port 9
    with pytest.raises(TransientError) as info:
        GitTarget(url, tmp_path / "cache", timeout=20).publish(post())
    message = str(info.value)
    assert "s3cret" not in message and "pressroom:***@127.0.0.1:9" in message and "\n" not in message
    with pytest.raises(PermanentError, match="not a post file name"):
        GitTarget(url, tmp_path / "cache").publish(post(name="../escape.md"))
    with pytest.raises(PermanentError, match="PRESSROOM_PUBLISH_GIT_PATH"):
        GitTarget(url, tmp_path / "cache", path="../up")


def test_git_push_refused_by_the_remote_is_permanent(remote: Path, tmp_path: Path) -> None:
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'main is protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(PermanentError, match=r"cannot push to .*site\.git .*main is protected.*PRESSROOM_PUBLISH_GIT"):
        GitTarget(str(remote), tmp_path / "cache").publish(post())


def test_git_command_over_its_timeout_is_killed_and_transient(tmp_path: Path) -> None:
    import socket

    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        url = f"http://user:pw@127.0.0.1:{silent.getsockname()[1]}/site.git"
        started = time.monotonic()
        with pytest.raises(TransientError, match=r"git fetch with http://user:\*\*\*@127.0.0.1:\d+/site.git took "
                           r"over 1 s.*PRESSROOM_PUBLISH_TIMEOUT"):
            GitTarget(url, tmp_path / "cache", timeout=1).publish(post())
        assert time.monotonic() - started < 10
    finally:
        silent.close()


def test_git_working_clone_is_remade_when_broken(remote: Path, tmp_path: Path) -> None:
    target = GitTarget(str(remote), tmp_path / "cache")
    target.publish(post())
    (target.repo / "config").write_text("not a git config")
    assert target.publish(post(name="2026-03-15-queues.md")).startswith("main@")
    (target.repo / "HEAD").unlink()  # half made
    assert target.publish(post(name="2026-03-16-locks.md")).startswith("main@")
    assert count(remote, "main") == 3


# --- webhook ---------------------------------------------------------------------------------------------
SECRET = "receiver-secret"


class Receiver:
    """A webhook receiver: verifies X-Pressroom-Signature with its secret (401 if wrong), records what came,
    and answers from a script of statuses (then 200)."""

    def __init__(self, secret: str = SECRET) -> None:
        self.secret = secret
        self.script: list[tuple[int, dict[str, str], bytes]] = []
        self.received: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                signed = hmac.compare_digest(self.headers.get("X-Pressroom-Signature", ""), expected)
                receiver.received.append({"body": body, "key": self.headers.get("Idempotency-Key"),
                                          "type": self.headers.get("Content-Type"), "signed": signed})
                headers: dict[str, str] = {}
                if not signed:
                    status, answer = 401, b'{"error": "bad signature"}'
                elif receiver.script:
                    status, headers, answer = receiver.script.pop(0)
                else:
                    status, answer = 200, b'{"ok": true}'
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/pressroom"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_webhook_sends_a_signed_post_with_a_stable_key(receiver: Receiver) -> None:
    target = WebhookTarget(receiver.url, SECRET, timeout=10)
    assert target.publish(post()) == receiver.url
    [got] = receiver.received
    assert got["signed"] and got["type"] == "application/json"
    assert json.loads(got["body"]) == {"name": "2026-03-14-caching.md", "markdown": TEXT,
                                       "front_matter": {"draft": False, "title": "缓存"},
                                       "video_id": "vid00000001", "run_id": "run-1", "draft": False}
    assert got["key"] == "vid00000001:" + hashlib.sha256(TEXT.encode()).hexdigest()[:32]

    target.publish(post(run_id="run-1"))  # the same post again: the same key
    target.publish(post(text=TEXT + "more\n"))  # a re-run that changed the text: a new one
    keys = [r["key"] for r in receiver.received]
    assert keys[0] == keys[1] != keys[2] and all(r["signed"] for r in receiver.received)

    receiver.script.append((201, {}, b'{"url": "https://site.example/posts/caching/"}'))
    assert target.publish(post()) == "https://site.example/posts/caching/"


def test_webhook_5xx_is_transient_and_the_callers_retry_succeeds(receiver: Receiver) -> None:
    receiver.script += [(503, {}, b"busy"), (503, {}, b"busy")]
    target = WebhookTarget(receiver.url, SECRET, timeout=10)  # one quick retry of its own
    with pytest.raises(TransientError, match=rf"^webhook target: {receiver.url} answered 503 busy; will retry$"):
        target.publish(post())
    assert target.publish(post()).startswith("http://127.0.0.1")  # the publish step's retry
    assert len(receiver.received) == 3 and len({r["key"] for r in receiver.received}) == 1

    receiver.script += [(429, {"Retry-After": "120"}, b"slow down")]
    with pytest.raises(TransientError) as info:
        target.publish(post())
    assert info.value.retry_after == 120 and len(receiver.received) == 4  # too long to wait here: the caller's


def test_webhook_refusals_are_permanent(receiver: Receiver) -> None:
    receiver.script.append((401, {}, b'{"error": "token expired\\nlog in again"}'))
    with pytest.raises(PermanentError, match=r"refused the post \(401 token expired log in again\): check "
                       r"PRESSROOM_PUBLISH_WEBHOOK_SECRET"):
        WebhookTarget(receiver.url, SECRET, timeout=10).publish(post())
    receiver.script.append((422, {}, b"x" * 5000))
    with pytest.raises(PermanentError) as info:
        WebhookTarget(receiver.url, SECRET, timeout=10).publish(post())
    assert len(str(info.value)) < 400 and "\n" not in str(info.value)
    assert len(receiver.received) == 2  # a refusal is not retried


def test_webhook_receiver_really_checks_the_signature(receiver: Receiver) -> None:
    with pytest.raises(PermanentError, match="bad signature"):
        WebhookTarget(receiver.url, "not-the-secret", timeout=10).publish(post())
    assert receiver.received[-1]["signed"] is False


def test_webhook_network_failure_is_transient() -> None:
    with pytest.raises(TransientError, match=r"no answer from http://127\.0\.0\.1:9/hook"):
        WebhookTarget("http://127.0.0.1:9/hook", SECRET, timeout=5, retries=0).publish(post())
    with pytest.raises(PermanentError, match="PRESSROOM_PUBLISH_WEBHOOK_URL"):
        WebhookTarget("ftp://example.org/hook", SECRET)
    with pytest.raises(PermanentError, match="PRESSROOM_PUBLISH_WEBHOOK_SECRET"):
        WebhookTarget("http://example.org/hook", "")


# --- directory -------------------------------------------------------------------------------------------
def test_directory_target_is_idempotent(tmp_path: Path) -> None:
    target = DirectoryTarget(tmp_path / "site" / "posts")
    where = target.publish(post())
    path = tmp_path / "site" / "posts" / "2026-03-14-caching.md"
    assert where == str(path) and path.read_bytes() == TEXT.encode()
    os.utime(path, (1_000_000, 1_000_000))
    assert target.publish(post()) == where and path.stat().st_mtime == 1_000_000  # untouched
    target.publish(post(text="new\n"))
    assert path.read_text() == "new\n" and sorted(p.name for p in path.parent.iterdir()) == [path.name]
    with pytest.raises(PermanentError, match="not a post file name"):
        target.publish(post(name="../x.md"))


# --- settings and choosing targets -----------------------------------------------------------------------
def test_a_listed_target_without_its_setting_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRESSROOM_PUBLISH_TARGETS", "git")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "PRESSROOM_PUBLISH_GIT_URL is not set" in message and "\n" not in message
    assert not message.startswith("bad setting — PRESSROOM_:")
    monkeypatch.setenv("PRESSROOM_PUBLISH_TARGETS", "webhook")
    monkeypatch.setenv("PRESSROOM_PUBLISH_WEBHOOK_URL", "https://site.example/hook")
    with pytest.raises(ConfigError, match="PRESSROOM_PUBLISH_WEBHOOK_SECRET is not set"):
        load_settings()
    monkeypatch.setenv("PRESSROOM_PUBLISH_WEBHOOK_URL", "ftp://site.example/hook")
    with pytest.raises(ConfigError, match=r"PRESSROOM_PUBLISH_WEBHOOK_URL: 'ftp://site\.example/hook' is not an "
                       r"http"):
        load_settings(publish_webhook_secret="s")
    monkeypatch.setenv("PRESSROOM_PUBLISH_TARGETS", "git,ftp")
    with pytest.raises(ConfigError, match="PRESSROOM_PUBLISH_TARGETS: unknown publish target 'ftp'"):
        load_settings()


@pytest.mark.parametrize("value", ['["git","webhook"]', "git,webhook", " git , webhook,git "])
def test_publish_targets_from_json_or_commas(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PRESSROOM_PUBLISH_TARGETS", value)
    monkeypatch.setenv("PRESSROOM_PUBLISH_GIT_URL", "git@github.com:example/site.git")
    monkeypatch.setenv("PRESSROOM_PUBLISH_WEBHOOK_URL", "https://site.example/hook")
    monkeypatch.setenv("PRESSROOM_PUBLISH_WEBHOOK_SECRET", "s")
    assert load_settings().publish_targets == ["git", "webhook"]


def test_targets_for_settings_and_channels(tmp_path: Path) -> None:
    assert targets_for(load_settings(data_dir=tmp_path)) == []
    settings = load_settings(data_dir=tmp_path, publish_targets="directory,git", publish_dir=tmp_path / "out",
                             publish_git_url=str(tmp_path / "site.git"), publish_git_author="Ed <ed@example.org>",
                             publish_webhook_url="https://site.example/hook")
    chosen = targets_for(settings)
    assert [t.name for t in chosen] == ["directory", "git"]
    git_target = chosen[1]
    assert isinstance(git_target, GitTarget) and git_target.cache_dir == tmp_path / "git"
    assert (git_target.author_name, git_target.author_email) == ("Ed", "ed@example.org")
    assert [t.name for t in targets_for(settings, ["git"])] == ["git"]
    assert targets_for(settings, []) == []
    with pytest.raises(PermanentError, match=r"^publish target 'webhook' is not configured \(the channel's "
                       r"publish_targets names it\): PRESSROOM_PUBLISH_WEBHOOK_SECRET is not set"):
        targets_for(settings, ["webhook"])

    channel = ChannelConfig.model_validate({"id": NASA, "name": "NASA", "publish_targets": ["git"]})
    assert channel.publish_targets == ["git"]
    assert ChannelConfig(id=NASA, name="NASA").publish_targets is None
    with pytest.raises(ValueError, match="publish_targets"):
        ChannelConfig.model_validate({"id": NASA, "name": "NASA", "publish_targets": ["ftp"]})


def test_publishing_through_targets_for_end_to_end(remote: Path, tmp_path: Path, receiver: Receiver) -> None:
    settings = load_settings(data_dir=tmp_path / "data", publish_targets=["directory", "git", "webhook"],
                             publish_dir=tmp_path / "out", publish_git_url=remote.as_uri(),
                             publish_webhook_url=receiver.url, publish_webhook_secret=SECRET, publish_timeout=20)
    started = time.monotonic()
    wheres = [target.publish(post()) for target in targets_for(settings)]
    assert wheres[0] == str(tmp_path / "out" / "2026-03-14-caching.md")
    assert wheres[1].startswith("main@") and wheres[2] == receiver.url
    assert count(remote, "main") == 1 and receiver.received[0]["signed"]
    assert time.monotonic() - started < 30
