"""The one small interface every publish target implements, and the post it is given.

A target takes a rendered post and puts it somewhere the site is built from; it returns where the post went
(a path, `branch@commit`, a URL). Publishing the same post again is harmless: a redelivered task changes
nothing, a re-run of the same video (same name, new text) replaces the post in place.

Errors are one line naming the target and the setting to fix: `TransientError` for what is worth retrying
(network, a push rejected because the remote moved, 5xx, 429 — the publish step's retry policy retries it),
`PermanentError` for the rest (a bad URL, refused credentials, other 4xx).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from workers.errors import PermanentError


@dataclass(frozen=True)
class PostFile:
    """A rendered post, ready to publish."""

    name: str
    """File name, e.g. "2026-03-14-caching.md"; already unique per video."""
    text: str
    """The rendered markdown (front matter + body): exactly what is published."""
    front_matter: dict[str, Any]
    video_id: str
    run_id: str
    title: str
    """For commit messages and logs."""

    @property
    def draft(self) -> bool:
        return bool(self.front_matter.get("draft", True))

    @property
    def data(self) -> bytes:
        return self.text.encode("utf-8")

    @property
    def stem(self) -> str:
        """The name without its `.md`."""
        return self.name.removesuffix(".md")


class PublishTarget(Protocol):
    name: str
    """"directory", "git", "webhook"."""

    def publish(self, post: PostFile) -> str:
        """Put the post there and say where it went; idempotent. TransientError / PermanentError."""
        ...


def check_name(target: str, name: str) -> str:
    """A post's name must be one plain file name: no directory, nothing hidden, no control characters."""
    if (not name or "/" in name or "\\" in name or name.startswith(".") or len(name.encode()) > 255
            or any(ord(c) < 32 or ord(c) == 127 for c in name)):
        raise PermanentError(f"{target} target: {name[:80]!r} is not a post file name (one plain name, e.g. "
                             "2026-03-14-caching.md)")
    return name


def one_line(text: str, limit: int = 200) -> str:
    """Text on one short line (a receiver's answer, git's complaint)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
