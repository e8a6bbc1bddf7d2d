"""The git target: each post committed into the site's repository and pushed.

Git's own command line, run without a shell, each command with a timeout (its whole process group is
killed when it runs over), with `GIT_TERMINAL_PROMPT=0` and no terminal, so nothing ever waits for a
password. A URL's credentials never appear in a message (`redact`, and git's own words are scrubbed).

The working clone is a bare repository in the cache directory, one per URL (keyed by a hash of it),
made once (`git init --bare`, `git remote add origin <url>`) and reused. Each publish, holding an fcntl
lock on a file next to it so two publishes on one machine never interleave:

1. `git fetch --prune --no-tags origin`: the remote's branches as they are now (an empty repository too);
2. the branch's tip (`refs/remotes/origin/<branch>`) is the parent — the local state is rebuilt from the
   remote every time, as a hard reset would; a branch the remote does not have yet starts from the
   publish branch (a review branch) or from nothing (an empty repository);
3. the post's bytes become a blob (`git hash-object -w --no-filters --stdin`, exactly the bytes given);
   if the parent already has that blob at `<path>/<name>`, nothing is committed: a redelivered publish
   leaves one commit;
4. otherwise the parent's tree with that one file put in place (`read-tree`, `update-index --cacheinfo`,
   `write-tree` on a private index) is committed (`commit-tree`, "pressroom: <title> (<video id>)") and
   pushed (`git push origin <commit>:refs/heads/<branch>`, fast-forward only);
5. a push rejected because someone pushed meanwhile goes back to 1 on their new tip, a few times, then
   TransientError (the publish step retries later).

No worktree is checked out: the site's other files are never touched, nothing local can go stale.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import posixpath
import random
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from workers.errors import PermanentError, TransientError, redact
from workers.publishing.base import PostFile, check_name, one_line

_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:]*):[^/@\s]*@")
# a push refused because the remote's branch moved on (not "[remote rejected]", which is a hook or a rule)
_MOVED = ("[rejected]", "non-fast-forward", "fetch first", "stale info")
_NETWORK = ("could not resolve host", "connection refused", "connection timed out", "timed out",
            "connection reset", "network is unreachable", "no route to host", "early eof", "hung up unexpectedly",
            "rpc failed", "returned error: 5", "returned error: 429", "temporary failure", "broken pipe",
            "gnutls", "ssl", "tls", "unexpected disconnect", "remote end hung up")
_REFUSED = ("authentication failed", "permission denied", "could not read username", "could not read password",
            "terminal prompts disabled", "invalid username or password", "access denied", "returned error: 401",
            "returned error: 403", "returned error: 404", "repository not found", "not found",
            "does not appear to be a git repository", "host key verification failed", "[remote rejected]",
            "protected branch", "not a valid", "unsupported url", "unable to find remote helper",
            "transport '", "is not allowed", "is not a git command")
_BOILERPLATE = ("fatal: Could not read from remote repository.",
                "Please make sure you have the correct access rights and the repository exists.")
# what would point git at another repository than the one asked for
_REPO_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
             "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_PREFIX", "GIT_CEILING_DIRECTORIES")


def repo_path(path: str) -> str:
    """A directory inside the repository as `a/b` ("" = the root); ValueError for absolute or escaping ones."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if path.startswith("/") or ".." in parts or any(p.lower().startswith(".git") for p in parts):
        raise ValueError(f"{path!r} must be a directory relative to the repository's root, e.g. posts")
    return "/".join(parts)


class _Failed(Exception):
    """A git command ended with a non-zero status."""

    def __init__(self, command: str, status: int, output: str) -> None:
        super().__init__(output)
        self.command, self.status, self.output = command, status, output


class GitTarget:
    name = "git"

    def __init__(
        self,
        url: str,
        cache_dir: str | Path,
        *,
        branch: str = "main",
        path: str = "posts",
        author_name: str = "Pressroom",
        author_email: str = "pressroom@localhost",
        branch_per_post: bool = False,
        timeout: float = 30.0,
        attempts: int = 4,
        lock_timeout: float | None = None,
    ) -> None:
        if not url or url.startswith("-") or any(c in url for c in "\n\r\0"):
            raise PermanentError(f"git target: {redact(url)!r} is not a git URL: set PRESSROOM_PUBLISH_GIT_URL")
        if not branch or branch.startswith("-"):
            raise PermanentError(f"git target: {branch!r} is not a branch name: set PRESSROOM_PUBLISH_GIT_BRANCH")
        try:
            self.path = repo_path(path)
        except ValueError as exc:
            raise PermanentError(f"git target: {exc}: set PRESSROOM_PUBLISH_GIT_PATH") from None
        self.url = url
        self.where = redact(url)
        self.cache_dir = Path(cache_dir).expanduser()
        self.branch = branch
        self.author_name, self.author_email = author_name, author_email
        self.branch_per_post = branch_per_post
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.lock_timeout = lock_timeout if lock_timeout is not None else max(60.0, 2 * timeout)
        key = hashlib.sha256(url.encode()).hexdigest()[:16]
        self.repo = self.cache_dir / f"{key}.git"
        self.lock_file = self.cache_dir / f"{key}.lock"

    # --- the interface ---------------------------------------------------------------------------------
    def branch_for(self, post: PostFile) -> str:
        """Where the post goes: its own review branch for a draft when branch_per_post is on."""
        if not (self.branch_per_post and post.draft):
            return self.branch
        stem = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", post.stem)).strip(".-")
        return f"pressroom/{stem.removesuffix('.lock') or 'post'}"  # a valid ref name whatever the post's name

    def file_path(self, post: PostFile) -> str:
        name = check_name(self.name, post.name)
        return posixpath.join(self.path, name) if self.path else name

    def publish(self, post: PostFile) -> str:
        file_path = self.file_path(post)
        branch = self.branch_for(post)
        with self._locked():
            self._ensure_repo()
            for attempt in range(1, self.attempts + 1):
                self._network("fetch", "--prune", "--no-tags", "--quiet", "origin")
                tip = self._rev(f"refs/remotes/origin/{branch}")
                base = tip
                if tip is None and branch != self.branch:
                    base = self._rev(f"refs/remotes/origin/{self.branch}")  # a review branch starts from the site
                blob = self._local("hash-object", "-w", "--no-filters", "--stdin", input=post.data)
                if base is not None and self._rev(f"{base}:{file_path}") == blob:
                    return f"{branch if tip else self.branch}@{base[:12]}"  # already there: no commit
                commit = self._commit(base, file_path, blob, post)
                if self._push(commit, branch):
                    return f"{branch}@{commit[:12]}"
                time.sleep(random.uniform(0.1, 0.5) * attempt)  # someone pushed meanwhile: again on their tip
        raise TransientError(f"git target: pushing {post.name} to {self.where} branch {branch} was rejected "
                             f"{self.attempts} times (the branch keeps moving); will retry")

    # --- steps -----------------------------------------------------------------------------------------
    def _ensure_repo(self) -> None:
        """The bare working clone for this URL, made once; remade if it is broken or points elsewhere."""
        if (self.repo / "HEAD").is_file():
            with contextlib.suppress(_Failed):
                if self._git(["config", "--get", "remote.origin.url"]) == self.url:
                    return
        shutil.rmtree(self.repo, ignore_errors=True)  # half made, damaged, or another URL's
        tmp = self.cache_dir / f".{self.repo.name}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            self._git(["init", "--bare", "--quiet", str(tmp)], repo=None)
            self._git(["remote", "add", "origin", self.url], repo=tmp)
            self._git(["config", "gc.autoDetach", "false"], repo=tmp)
            os.replace(tmp, self.repo)
        except (_Failed, OSError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            words = self._scrub(exc.output) if isinstance(exc, _Failed) else (exc.strerror or str(exc))
            raise TransientError(f"git target: cannot make the working clone in {self.cache_dir} ({words}): make "
                                 "it writable (PRESSROOM_DATA_DIR)") from None

    def _commit(self, base: str | None, file_path: str, blob: str, post: PostFile) -> str:
        index = self.repo / "pressroom.index"  # a private index: the tree is built without a worktree
        index.unlink(missing_ok=True)
        env = {"GIT_INDEX_FILE": str(index)}
        self._local("read-tree", *([base] if base else ["--empty"]), env=env)
        self._local("update-index", "--add", "--cacheinfo", f"100644,{blob},{file_path}", env=env)
        tree = self._local("write-tree", env=env)
        index.unlink(missing_ok=True)
        title = one_line(post.title, 100) or post.name
        message = (f"pressroom: {title} ({post.video_id})\n\nPressroom-Video: {post.video_id}\n"
                   f"Pressroom-Run: {post.run_id}\n")
        parents = ["-p", base] if base else []
        return self._local("commit-tree", tree, *parents, "-F", "-", input=message.encode(), env=self._identity())

    def _push(self, commit: str, branch: str) -> bool:
        """True once pushed; False when the remote's branch moved on since the fetch (fetch and try again)."""
        try:
            self._network("push", "--porcelain", "--quiet", "origin", f"{commit}:refs/heads/{branch}")
        except _Moved:
            return False
        return True

    # --- running git -----------------------------------------------------------------------------------
    def _rev(self, rev: str) -> str | None:
        """The object a revision names, or None when there is none."""
        try:
            return self._git(["rev-parse", "--verify", "--quiet", rev if ":" in rev else f"{rev}^{{commit}}"])
        except _Failed:
            return None

    def _local(self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> str:
        """A command that only touches the working clone: its failure means the clone is damaged."""
        try:
            return self._git(list(args), input=input, env=env)
        except _Failed as exc:
            shutil.rmtree(self.repo, ignore_errors=True)  # made again, fresh, on the next try
            raise TransientError(f"git target: git {exc.command} failed in the working clone of {self.where} "
                                 f"({self._scrub(exc.output)}); it was removed and will be made again") from None

    def _network(self, *args: str) -> str:
        """fetch or push: classify a failure as worth retrying, refused, or the remote having moved."""
        try:
            return self._git(list(args))
        except _Failed as exc:
            words = self._scrub(exc.output)
            low = words.lower()
            if exc.command == "push" and any(m in low for m in _MOVED):
                raise _Moved() from None
            what = "cannot fetch from" if exc.command == "fetch" else "cannot push to"
            if not any(m in low for m in _NETWORK) and any(m in low for m in _REFUSED):
                raise PermanentError(f"git target: {what} {self.where} ({words}): check PRESSROOM_PUBLISH_GIT_URL, "
                                     "its credentials and that they may push to PRESSROOM_PUBLISH_GIT_BRANCH") from None
            raise TransientError(f"git target: {what} {self.where} ({words}); will retry") from None

    def _git(self, args: list[str], *, repo: Path | bool | None = True, input: bytes | None = None,
             env: dict[str, str] | None = None) -> str:
        where = self.repo if repo is True else repo
        command = ["git", *(["--git-dir", str(where)] if isinstance(where, Path) else []), *args]
        full_env = {k: v for k, v in os.environ.items() if k not in _REPO_ENV}
        full_env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANGUAGE": "C", "GIT_MERGE_AUTOEDIT": "no"})
        full_env.update(env or {})
        try:
            proc = subprocess.Popen(command, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env,
                                    start_new_session=True)  # no terminal to prompt on; killed as a group
        except FileNotFoundError:
            raise PermanentError("git target: the git command is not installed: install git (or remove git from "
                                 "PRESSROOM_PUBLISH_TARGETS)") from None
        try:
            out, err = proc.communicate(input, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self._kill(proc)
            raise TransientError(f"git target: git {args[0]} with {self.where} took over {self.timeout:g} s; will "
                                 "retry (raise PRESSROOM_PUBLISH_TIMEOUT for a large repository)") from None
        except BaseException:  # the task's time limit, a signal: leave no git behind
            self._kill(proc)
            raise
        if proc.returncode != 0:
            said, told = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
            lines = [line for line in told.splitlines() if not line.startswith(("error: failed to push", "hint:"))]
            if args[0] == "push":  # the porcelain lines (stdout) say why a ref was rejected: "!<tab>ref<tab>why"
                lines = [line.split("\t")[2] for line in said.splitlines()
                         if line.startswith("!") and line.count("\t") >= 2] + lines
            output = " ".join(line.strip() for line in lines if line.strip()) or said.strip()
            raise _Failed(args[0], proc.returncode, output or f"exit status {proc.returncode}")
        return out.decode("utf-8", "replace").strip()

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.communicate(timeout=5)

    def _identity(self) -> dict[str, str]:
        return {"GIT_AUTHOR_NAME": self.author_name, "GIT_AUTHOR_EMAIL": self.author_email,
                "GIT_COMMITTER_NAME": self.author_name, "GIT_COMMITTER_EMAIL": self.author_email}

    def _scrub(self, text: str) -> str:
        """Git's words on one line, with no credentials of any URL in them."""
        text = " ".join(text.split()).replace(self.url, self.where)
        for words in _BOILERPLATE:
            text = text.replace(words, "")
        return one_line(_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One publish at a time in this working clone (threads and processes of this machine)."""
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            handle = open(self.lock_file, "a+b")  # noqa: SIM115 - held for the block below
        except OSError as exc:
            raise PermanentError(f"git target: cannot use {self.cache_dir} for the working clone "
                                 f"({exc.strerror or exc}): make it writable, or set PRESSROOM_DATA_DIR") from None
        with handle:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TransientError(f"git target: the working clone of {self.where} was busy with another "
                                             f"publish for {self.lock_timeout:g} s; will retry") from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class _Moved(Exception):
    """The push was rejected: the remote's branch is not where the fetch saw it."""
