"""Publish targets: where a finished post goes besides the store (and PRESSROOM_OUT_DIR).

One small interface (`PublishTarget.publish(PostFile) -> where`), three targets — a directory, the site's
git repository, a signed webhook — chosen by PRESSROOM_PUBLISH_TARGETS, or per channel by the channels
file's `publish_targets`. Every target is idempotent: a redelivered publish changes nothing, a re-run of
the same video replaces its post in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.utils import parseaddr
from typing import get_args

from workers.errors import PermanentError
from workers.publishing.base import PostFile, PublishTarget
from workers.publishing.directory import DirectoryTarget
from workers.publishing.git import GitTarget
from workers.publishing.webhook import WebhookTarget
from workers.settings import PublishTargetName, Settings

__all__ = ["DirectoryTarget", "GitTarget", "PostFile", "PublishTarget", "WebhookTarget", "targets_for"]


def targets_for(settings: Settings, channel_targets: Sequence[str] | None = None) -> list[PublishTarget]:
    """The targets a post goes to, in order: the channel's list when it has one (None = the settings' list).

    A channel may name any target whose settings are present, listed in PRESSROOM_PUBLISH_TARGETS or not;
    naming one that is not configured (or not known) is a PermanentError of one line naming the setting.
    """
    names = list(settings.publish_targets if channel_targets is None else channel_targets)
    known = get_args(PublishTargetName)
    targets: list[PublishTarget] = []
    for name in dict.fromkeys(names):
        if name not in known:
            raise PermanentError(f"unknown publish target {name!r} in the channel's publish_targets: use any of "
                                 f"{', '.join(known)}")
        problems = settings.publish_target_problems([name])
        if problems:
            where = "PRESSROOM_PUBLISH_TARGETS" if channel_targets is None else "the channel's publish_targets"
            raise PermanentError(f"publish target {name!r} is not configured ({where} names it): {problems[0]}")
        targets.append(_build(settings, name))
    return targets


def _build(settings: Settings, name: str) -> PublishTarget:
    if name == "directory":
        assert settings.publish_dir is not None
        return DirectoryTarget(settings.publish_dir)
    if name == "git":
        assert settings.publish_git_url is not None
        author_name, author_email = parseaddr(settings.publish_git_author)
        return GitTarget(settings.publish_git_url, settings.data_dir / "git", branch=settings.publish_git_branch,
                         path=settings.publish_git_path, author_name=author_name or "Pressroom",
                         author_email=author_email or "pressroom@localhost",
                         branch_per_post=settings.publish_git_branch_per_post, timeout=settings.publish_timeout)
    assert settings.publish_webhook_url is not None and settings.publish_webhook_secret is not None
    return WebhookTarget(settings.publish_webhook_url, settings.publish_webhook_secret,
                         timeout=settings.publish_timeout)
