"""Channel feeds: the real NASA feed (shorts, a 0-view stream, a 24/7 stream), WebSub notifications, hostile XML."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.channels import ChannelFilters
from workers.errors import PermanentError
from workers.watch.feed import Feed, FeedEntry, classify, is_wait, parse_feed, select

ROOT = Path(__file__).resolve().parents[1]
NASA_FEED = ROOT.parent / "shared" / "fixtures" / "youtube-feed-nasa.xml"
NASA = "UCLA_DiR1FfKNvjuUpBHmylQ"

SHORTS = {"myZ9kn9MIWQ", "QP5Fs3AYuWE", "VV_JW4iCni0"}
ZERO_VIEWS = "yW-VAhqVJok"  # "U.S. Spacewalk 97": a live stream
ISS_STREAM = "M3HKLzjvKPc"  # a 24/7 live stream with 720,942 views: the feed cannot tell
# The normal uploads, oldest first.
NORMAL = [
    "M3HKLzjvKPc", "ea9gZp_KxBU", "IDUtReQSlb0", "x8344PSeH30", "Sempwv5MPMQ", "mpWTcLv72oE",
    "XNKdYbmPKJ8", "Q5_BtWc-G7Y", "rSvCuSQhC3w", "UbAsuvO-164", "I_GUQdY01b0",
]  # fmt: skip

NOTIFICATION = f"""<?xml version='1.0' encoding='UTF-8'?>
<feed xmlns:yt="http://www.youtube.com/xml/schemas/2015" xmlns="http://www.w3.org/2005/Atom"
      xmlns:at="http://purl.org/atompub/tombstones/1.0">
  <link rel="hub" href="https://pubsubhubbub.appspot.com"/>
  <link rel="self" href="https://www.youtube.com/xml/feeds/videos.xml?channel_id={NASA}"/>
  <title>YouTube video feed</title>
  <updated>2026-08-20T10:00:01.552394234+00:00</updated>
  <entry>
    <id>yt:video:abcdefghijk</id>
    <yt:videoId>abcdefghijk</yt:videoId>
    <yt:channelId>{NASA}</yt:channelId>
    <title>Artemis Briefing</title>
    <link rel="alternate" href="https://www.youtube.com/watch?v=abcdefghijk"/>
    <author><name>NASA</name><uri>https://www.youtube.com/channel/{NASA}</uri></author>
    <published>2026-08-20T09:58:00+00:00</published>
    <updated>2026-08-20T10:00:01.552394234+00:00</updated>
  </entry>
  <at:deleted-entry ref="yt:video:I_GUQdY01b0" when="2026-08-20T09:00:00.123456789+00:00">
    <link href="https://www.youtube.com/watch?v=I_GUQdY01b0"/>
    <at:by><name>NASA</name><uri>https://www.youtube.com/channel/{NASA}</uri></at:by>
  </at:deleted-entry>
</feed>
"""


@pytest.fixture(scope="module")
def nasa() -> Feed:
    return parse_feed(NASA_FEED.read_bytes())


def ids(entries: list[FeedEntry]) -> list[str]:
    return [e.video_id for e in entries]


def test_real_feed_parses(nasa: Feed) -> None:
    assert nasa.channel_id == NASA  # the feed says LA_DiR1FfKNvjuUpBHmylQ
    assert nasa.title == "NASA"
    assert len(nasa.entries) == 15
    assert {e.video_id for e in nasa.entries if e.is_short} == SHORTS
    assert [e.video_id for e in nasa.entries if e.views == 0] == [ZERO_VIEWS]
    assert all(e.channel_id == NASA and e.views is not None for e in nasa.entries)
    first = nasa.entries[0]
    assert first.video_id == "I_GUQdY01b0"
    assert first.title == "Special Event Announcement (Aug. 14, 2026)"
    assert first.url == "https://www.youtube.com/watch?v=I_GUQdY01b0"
    assert first.published == datetime(2026, 8, 14, 19, 14, 36, tzinfo=UTC)
    assert first.updated == datetime(2026, 8, 14, 19, 30, 55, tzinfo=UTC)
    assert first.views == 66195
    assert first.description.startswith("We are holding a news conference")
    assert nasa.deleted == []


def test_parse_accepts_text(nasa: Feed) -> None:
    assert parse_feed(NASA_FEED.read_text(encoding="utf-8")) == nasa


def test_select_default_filters(nasa: Feed) -> None:
    take, skipped = select(nasa, ChannelFilters())
    assert ids(take) == NORMAL
    assert [(e.video_id, r) for e, r in skipped] == [
        ("VV_JW4iCni0", "short"),
        (ZERO_VIEWS, "wait: 0 views (live, upcoming or just published)"),
        ("QP5Fs3AYuWE", "short"),
        ("myZ9kn9MIWQ", "short"),
    ]
    assert [is_wait(r) for _, r in skipped] == [False, True, False, False]


def test_select_keeping_shorts(nasa: Feed) -> None:
    take, skipped = select(nasa, ChannelFilters(skip_shorts=False))
    assert ids(take) == [
        "M3HKLzjvKPc", "ea9gZp_KxBU", "IDUtReQSlb0", "x8344PSeH30", "Sempwv5MPMQ", "VV_JW4iCni0",
        "mpWTcLv72oE", "XNKdYbmPKJ8", "Q5_BtWc-G7Y", "rSvCuSQhC3w", "QP5Fs3AYuWE", "myZ9kn9MIWQ",
        "UbAsuvO-164", "I_GUQdY01b0",
    ]  # fmt: skip
    assert [(e.video_id, is_wait(r)) for e, r in skipped] == [(ZERO_VIEWS, True)]


def test_select_title_include_is_case_insensitive(nasa: Feed) -> None:
    take, skipped = select(nasa, ChannelFilters(title_include=[r"NEWS\s+CONFERENCE"]))
    assert ids(take) == ["ea9gZp_KxBU", "IDUtReQSlb0", "x8344PSeH30", "mpWTcLv72oE"]
    assert len(skipped) == 11
    assert dict((e.video_id, r) for e, r in skipped)["I_GUQdY01b0"] == "title matches no title_include pattern"


def test_select_title_exclude(nasa: Feed) -> None:
    take, skipped = select(nasa, ChannelFilters(title_exclude=[r"eclipse|spacewalk"]))
    assert ids(take) == [
        "M3HKLzjvKPc", "IDUtReQSlb0", "x8344PSeH30", "Sempwv5MPMQ", "mpWTcLv72oE", "UbAsuvO-164", "I_GUQdY01b0",
    ]  # fmt: skip
    reasons = {e.video_id: r for e, r in skipped}
    assert reasons["rSvCuSQhC3w"] == "title excludes 'eclipse|spacewalk'"
    assert reasons[ZERO_VIEWS] == "title excludes 'eclipse|spacewalk'"  # a final reason beats "wait"
    assert reasons["myZ9kn9MIWQ"] == "short"


def test_metadata_decides_what_the_feed_cannot(nasa: Feed) -> None:
    by_id = {e.video_id: e for e in nasa.entries}
    stream, iss, normal = by_id[ZERO_VIEWS], by_id[ISS_STREAM], by_id["Sempwv5MPMQ"]
    default = ChannelFilters()
    assert classify(stream, default, live_status="was_live") == "live stream"
    assert classify(stream, ChannelFilters(skip_live=False), live_status="was_live") is None
    assert classify(stream, default, live_status="not_live") is None  # just published after all
    assert classify(iss, default) is None  # from the feed alone it looks like any upload
    assert classify(iss, default, live_status="is_live") == "live stream"
    assert classify(iss, ChannelFilters(skip_live=False), live_status="is_live") == (
        "wait: live now (take it once it has ended)"
    )
    assert is_wait(classify(iss, ChannelFilters(skip_live=False), live_status="post_live"))
    assert classify(stream, default, live_status="is_upcoming") == "upcoming"
    assert classify(stream, ChannelFilters(skip_upcoming=False), live_status="is_upcoming") == (
        "wait: upcoming (not aired yet)"
    )
    assert classify(normal, default, live_status="was_premiere") is None
    assert classify(normal, ChannelFilters(skip_premieres=True), live_status="was_premiere") == "premiere"
    with pytest.raises(ValueError, match="live_status 'premiered'"):
        classify(normal, default, live_status="premiered")


def test_duration_limits(nasa: Feed) -> None:
    entry = nasa.entries[0]
    limits = ChannelFilters(min_duration=300, max_duration=7200)
    assert classify(entry, limits) is None  # the feed has no durations: the run checks them
    assert classify(entry, limits, duration=120) == "shorter than 5 min"
    assert classify(entry, limits, duration=9000) == "longer than 2 h"
    assert classify(entry, limits, duration=1800) is None
    assert classify(entry, ChannelFilters(min_duration=90), duration=30) == "shorter than 90 s"
    short = next(e for e in nasa.entries if e.is_short)
    assert classify(short, limits) == "short"


def test_websub_notification_with_entry_and_deletion() -> None:
    feed = parse_feed(NOTIFICATION.encode())
    assert feed.channel_id == NASA
    assert [(e.video_id, e.title, e.views, e.is_short) for e in feed.entries] == [
        ("abcdefghijk", "Artemis Briefing", None, False)
    ]
    assert feed.entries[0].updated == datetime(2026, 8, 20, 10, 0, 1, 552394, tzinfo=UTC)
    assert [(d.video_id, d.when) for d in feed.deleted] == [
        ("I_GUQdY01b0", datetime(2026, 8, 20, 9, 0, 0, 123456, tzinfo=UTC))
    ]
    take, skipped = select(feed, ChannelFilters())
    assert ids(take) == ["abcdefghijk"] and skipped == []  # no statistics: views is None, not 0


def test_deletion_only_notification_takes_channel_from_author() -> None:
    xml = f"""<feed xmlns:at="http://purl.org/atompub/tombstones/1.0" xmlns="http://www.w3.org/2005/Atom">
      <at:deleted-entry ref="yt:video:I_GUQdY01b0" when="2026-08-20T09:00:00+00:00">
        <at:by><name>NASA</name><uri>https://www.youtube.com/channel/{NASA}</uri></at:by>
      </at:deleted-entry></feed>"""
    feed = parse_feed(xml)
    assert (feed.channel_id, feed.entries, [d.video_id for d in feed.deleted]) == (NASA, [], ["I_GUQdY01b0"])


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE feed [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<feed xmlns="http://www.w3.org/2005/Atom"><title>&lol2;</title></feed>"""


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (b"<feed xmlns='http://www.w3.org/2005/Atom'><entry>", "not well-formed XML"),
        (b"", "not well-formed XML"),
        (BILLION_LAUGHS.encode(), "DOCTYPE or ENTITY declaration"),
        (BILLION_LAUGHS.encode("utf-16"), "not UTF-8"),
        (b"<rss version='2.0'><channel><title>Blog</title></channel></rss>", "not an Atom feed (root element <rss>)"),
        (b"<html><body>Sign in</body></html>", "not an Atom feed (root element <html>)"),
        (
            b"<feed xmlns='http://www.w3.org/2005/Atom'><title>Blog</title><entry><id>1</id></entry></feed>",
            "not a YouTube channel's",
        ),
        (NOTIFICATION.replace("yt:video:I_GUQdY01b0", "yt:video:x").encode(), "not a YouTube video id"),
        (NOTIFICATION.replace("2026-08-20T09:58:00+00:00", "yesterday").encode(), "'yesterday' is not an ISO 8601"),
        (b"x" * 5_000_001, "too big"),
    ],
)
def test_bad_input_is_one_permanent_line(xml: bytes, message: str) -> None:
    with pytest.raises(PermanentError) as caught:
        parse_feed(xml, where="https://example.test/hook")
    text = str(caught.value)
    assert message in text
    assert text.startswith("https://example.test/hook: ")
    assert "\n" not in text
