"""A channel's Atom feed (polled, or pushed by WebSub) → entries, and which of them to take.

The feed is the cheap signal: 15 newest uploads, no duration, no live flag. What it does say:
shorts link to /shorts/…, and live or upcoming streams show 0 views. So `classify` decides what it
can from the feed and answers "wait: …" for what it cannot; the caller then asks yt-dlp for the
video's metadata (duration, live_status) and classifies again, and if the answer is still "wait: …"
(live now, not aired yet) tries again on a later poll instead of dropping the video for good.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlparse

from pydantic import Field

from schemas.base import Model
from schemas.channels import FEED_URL_TEMPLATE, ChannelFilters, normalise_channel_id
from workers.errors import PermanentError

ATOM = "{http://www.w3.org/2005/Atom}"
YT = "{http://www.youtube.com/xml/schemas/2015}"
MEDIA = "{http://search.yahoo.com/mrss/}"
TOMBSTONE = "{http://purl.org/atompub/tombstones/1.0}"

MAX_FEED_BYTES = 5_000_000  # a real feed is ~25 kB; a notification ~1 kB
WAIT = "wait: "  # prefix of reasons that mean "not decidable yet", not "skip"
# yt-dlp's live_status values, plus "was_premiere": yt-dlp reports an aired premiere as "not_live",
# so only the caller can know (e.g. it saw the video as "is_upcoming" and it is not live content).
LIVE_STATUSES = frozenset({"not_live", "is_live", "is_upcoming", "was_live", "post_live", "was_premiere"})

_DECLARATION = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_VIDEO_ID = re.compile(r"[0-9A-Za-z_-]{11}")
_CHANNEL_IN_URI = re.compile(r"/channel/([0-9A-Za-z_-]+)")


class FeedEntry(Model):
    """One upload as the feed shows it."""

    video_id: str
    channel_id: str = Field(description="UC…")
    title: str
    url: str
    published: datetime
    updated: datetime | None = None
    description: str = ""
    views: int | None = Field(default=None, description="None in WebSub notifications, which carry no statistics")
    is_short: bool = Field(default=False, description="the link is /shorts/…")


class DeletedEntry(Model):
    """A WebSub tombstone: the video was deleted or made private."""

    video_id: str
    when: datetime | None = None


class Feed(Model):
    channel_id: str = Field(description="UC…, even where the feed itself leaves UC off")
    title: str = ""
    entries: list[FeedEntry] = Field(default_factory=list)
    deleted: list[DeletedEntry] = Field(default_factory=list)


def is_wait(reason: str | None) -> bool:
    """True for a reason that means "ask again later (or with metadata)", not "skip for good"."""
    return reason is not None and reason.startswith(WAIT)


def parse_feed(xml: bytes | str, *, where: str = "feed") -> Feed:
    """Parse a channel feed or a WebSub notification; PermanentError (one line) if it is neither.

    Notifications come from the internet, so a DOCTYPE or ENTITY declaration is refused before
    parsing (what defusedxml does): YouTube never sends one, and entity expansion is the attack.
    The text is decoded first so the check cannot be dodged by another encoding.
    """
    if len(xml) > MAX_FEED_BYTES:
        raise PermanentError(f"{where}: {len(xml)} bytes is too big for a YouTube feed (limit {MAX_FEED_BYTES})")
    if isinstance(xml, bytes):
        try:
            xml = xml.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise PermanentError(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start}); YouTube feeds are") from None
    if _DECLARATION.search(xml):
        raise PermanentError(f"{where}: has a DOCTYPE or ENTITY declaration; refused (YouTube feeds have none)")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise PermanentError(f"{where}: not well-formed XML ({exc}); expected a YouTube Atom feed") from None
    if root.tag != f"{ATOM}feed":
        raise PermanentError(
            f"{where}: not an Atom feed (root element <{root.tag.rpartition('}')[2]}>); "
            f"expected a YouTube channel feed like {FEED_URL_TEMPLATE}"
        )
    channel_id = _feed_channel_id(root, where)
    return Feed(
        channel_id=channel_id,
        title=(root.findtext(f"{ATOM}title") or "").strip(),
        entries=[_entry(e, channel_id, where) for e in root.iter(f"{ATOM}entry")],
        deleted=[_deleted(d, where) for d in root.iter(f"{TOMBSTONE}deleted-entry")],
    )


def classify(
    entry: FeedEntry, filters: ChannelFilters, *, duration: float | None = None, live_status: str | None = None
) -> str | None:
    """None: take it. Otherwise a short reason to skip, or a "wait: …" reason (see `is_wait`).

    `duration` (seconds) and `live_status` (yt-dlp's, or "was_premiere") come from the video's
    metadata when the caller has it; they override what the feed suggests. Without them:
    - 0 views means live now, upcoming, or uploaded minutes ago: "wait", never a final skip, so
      a normal upload that is merely new is not lost. (Only the metadata can tell them apart.)
    - a 24/7 stream with views looks like any upload and is taken: only live_status can catch it.
    - duration limits apply only when `duration` is given: the feed has no durations, and answering
      "wait" would hold every upload of a channel with a limit. The run enforces them instead once
      its download step has the metadata (the poller passes them to `submit`).
    Final reasons come first, so a short with 0 views is "short", not "wait".
    """
    if live_status is not None and live_status not in LIVE_STATUSES:
        raise ValueError(f"live_status {live_status!r} is not one of {sorted(LIVE_STATUSES)}")
    if filters.skip_shorts and entry.is_short:
        return "short"
    for pattern in filters.title_exclude:
        if re.search(pattern, entry.title, re.IGNORECASE):
            return f"title excludes {pattern!r}"
    if filters.title_include and not any(re.search(p, entry.title, re.IGNORECASE) for p in filters.title_include):
        return "title matches no title_include pattern"
    reason = _live_reason(entry, filters, live_status)
    if reason is not None:
        return reason
    return _duration_reason(filters, duration)


def select(feed: Feed, filters: ChannelFilters) -> tuple[list[FeedEntry], list[tuple[FeedEntry, str]]]:
    """(take, skipped with reason), oldest first, from the feed alone; "wait: …" reasons are in skipped."""
    take: list[FeedEntry] = []
    skipped: list[tuple[FeedEntry, str]] = []
    for entry in sorted(feed.entries, key=lambda e: e.published):
        reason = classify(entry, filters)
        if reason is None:
            take.append(entry)
        else:
            skipped.append((entry, reason))
    return take, skipped


def _live_reason(entry: FeedEntry, filters: ChannelFilters, live_status: str | None) -> str | None:
    if live_status is None:
        return f"{WAIT}0 views (live, upcoming or just published)" if entry.views == 0 else None
    if live_status == "is_upcoming":
        return "upcoming" if filters.skip_upcoming else f"{WAIT}upcoming (not aired yet)"
    if live_status in ("is_live", "was_live", "post_live") and filters.skip_live:
        return "live stream"
    if live_status == "is_live":
        return f"{WAIT}live now (take it once it has ended)"
    if live_status == "post_live":
        return f"{WAIT}live stream ended, recording still processing"
    if live_status == "was_premiere" and filters.skip_premieres:
        return "premiere"
    return None


def _duration_reason(filters: ChannelFilters, duration: float | None) -> str | None:
    if duration is None:
        return None
    if filters.min_duration is not None and duration < filters.min_duration:
        return f"shorter than {_span(filters.min_duration)}"
    if filters.max_duration is not None and duration > filters.max_duration:
        return f"longer than {_span(filters.max_duration)}"
    return None


def _span(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _feed_channel_id(root: ET.Element, where: str) -> str:
    """The feed's own yt:channelId (no UC), else an entry's, the self link's, or a tombstone author's."""
    candidates = [root.findtext(f"{YT}channelId"), root.findtext(f"{ATOM}entry/{YT}channelId")]
    for link in root.findall(f"{ATOM}link[@rel='self']"):
        candidates.extend(parse_qs(urlparse(link.get("href", "")).query).get("channel_id", []))
    for uri in root.iterfind(f"{TOMBSTONE}deleted-entry/{TOMBSTONE}by/{ATOM}uri"):
        found = _CHANNEL_IN_URI.search(uri.text or "")
        candidates.append(found.group(1) if found else None)
    value = next((c.strip() for c in candidates if c and c.strip()), None)
    if value is None:
        raise PermanentError(
            f"{where}: an Atom feed, but not a YouTube channel's (no yt:channelId); "
            f"expected a feed like {FEED_URL_TEMPLATE}"
        )
    try:
        return normalise_channel_id(value)
    except ValueError:
        raise PermanentError(f"{where}: the feed's channel id {value!r} is not a YouTube channel id") from None


def _entry(element: ET.Element, channel_id: str, where: str) -> FeedEntry:
    video_id = _video_id(element.findtext(f"{YT}videoId") or element.findtext(f"{ATOM}id"), where)
    own_channel = (element.findtext(f"{YT}channelId") or "").strip()
    try:
        entry_channel = normalise_channel_id(own_channel) if own_channel else channel_id
    except ValueError:
        raise PermanentError(f"{where}: video {video_id} has channel id {own_channel!r}, not a YouTube one") from None
    link = element.find(f"{ATOM}link[@rel='alternate']")
    url = (link.get("href", "") if link is not None else "") or f"https://www.youtube.com/watch?v={video_id}"
    published = element.findtext(f"{ATOM}published") or element.findtext(f"{ATOM}updated")
    if not published:
        raise PermanentError(f"{where}: video {video_id} has no <published> date")
    updated = element.findtext(f"{ATOM}updated")
    group = f"{MEDIA}group/"
    views = element.find(f"{group}{MEDIA}community/{MEDIA}statistics")
    return FeedEntry(
        video_id=video_id,
        channel_id=entry_channel,
        title=(element.findtext(f"{ATOM}title") or element.findtext(f"{group}{MEDIA}title") or "").strip(),
        url=url,
        published=_time(published, where),
        updated=_time(updated, where) if updated else None,
        description=element.findtext(f"{group}{MEDIA}description") or "",
        views=_int(views.get("views") if views is not None else None),
        is_short="/shorts/" in urlparse(url).path,
    )


def _deleted(element: ET.Element, where: str) -> DeletedEntry:
    when = element.get("when")
    return DeletedEntry(video_id=_video_id(element.get("ref"), where), when=_time(when, where) if when else None)


def _video_id(raw: str | None, where: str) -> str:
    """From yt:videoId, or an Atom id / tombstone ref `yt:video:ID`."""
    value = (raw or "").strip().removeprefix("yt:video:")
    if not _VIDEO_ID.fullmatch(value):
        raise PermanentError(f"{where}: entry id {raw!r} is not a YouTube video id (yt:video: and 11 characters)")
    return value


def _time(text: str, where: str) -> datetime:
    """ISO 8601; WebSub sends nanoseconds, which Python 3.11 reads (and truncates to microseconds)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise PermanentError(f"{where}: {text.strip()!r} is not an ISO 8601 date") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
