"""Past uploads beyond the feed's 15 newest: yt-dlp's flat listing of the channel's uploads playlist."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.channels import ChannelConfig
from workers.errors import TransientError
from workers.steps.download import watch_url
from workers.watch.feed import FeedEntry


def list_uploads(channel: ChannelConfig, count: int, *, ydl_factory: Any = None) -> list[FeedEntry]:
    """The channel's latest `count` uploads, newest first, without downloading anything."""
    import yt_dlp

    factory = ydl_factory or yt_dlp.YoutubeDL
    options = {"extract_flat": "in_playlist", "playlistend": count, "quiet": True, "no_warnings": True,
               "skip_download": True}
    url = f"https://www.youtube.com/playlist?list={channel.uploads_playlist_id}"
    try:
        with factory(options) as ydl:
            info = ydl.extract_info(url, download=False) or {}
    except yt_dlp.utils.DownloadError as exc:
        raise TransientError(f"cannot list the uploads of {channel.name} ({channel.id}): {exc}") from None
    now = datetime.now(UTC)
    entries = []
    for item in (info.get("entries") or [])[:count]:
        if not item or not item.get("id"):
            continue
        url = item.get("url") or watch_url(item["id"])
        entries.append(FeedEntry(
            video_id=item["id"], channel_id=channel.id, title=item.get("title") or "", url=url,
            published=now, updated=None, description=item.get("description") or "",
            views=item.get("view_count"), is_short="/shorts/" in url,
        ))
    return entries
