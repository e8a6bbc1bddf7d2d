"""Channel feeds: a channel feed shaped like YouTube's (shorts, a 0-view stream, a 24/7 stream), WebSub
notifications, hostile XML."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.channels import ChannelFilters
from workers.errors import PermanentError
from workers.watch.feed import Feed, FeedEntry, classify, is_wait, parse_feed, select

# An invented conference channel, in the exact structure of a real YouTube channel feed.
CHANNEL_FEED = Path(__file__).parent / "fixtures" / "youtube-feed-channel.xml"
CHANNEL = "UCq7Rk2_TzVx9mWnB4cLpH3e"

SHORTS = {"Xy5-Hb0fJqU", "m4Jd_7sKcWo", "Lq3_dM5yZ2c"}
ZERO_VIEWS = "h6Vt-QaR0yB"  # "Workshop Livestream: …": a live stream about to start
RADIO_STREAM = "dW6nJ4pLa7Q"  # a 24/7 live stream with 812,377 views: the feed cannot tell
# The normal uploads, oldest first.
NORMAL = [
    "dW6nJ4pLa7Q", "Y8gC2mHs0wT", "oF5xR1gK3pD", "Vq4Ws8bT6jN", "eH7rY2nV-9k", "tB1kFz6oW8r",
    "J0sPq7aXv_4", "cN9wE3uYk5M", "Zp2LgN8eT1s", "Rw8_pZc4HnA", "kT3vQ9xLm2E",
]  # fmt: skip

NOTIFICATION = f"""<?xml version='1.0' encoding='UTF-8'?>
<feed xmlns:yt="http://www.youtube.com/xml/schemas/2015" xmlns="http://www.w3.org/2005/Atom"
      xmlns:at="http://purl.org/atompub/tombstones/1.0">
  <link rel="hub" href="https://pubsubhubbub.appspot.com"/>
  <link rel="self" href="https://www.youtube.com/xml/feeds/videos.xml?channel_id={CHANNEL}"/>
  <title>YouTube video feed</title>
  <updated>2026-09-20T10:00:01.552394234+00:00</updated>
  <entry>
    <id>yt:video:abcdefghijk</id>
    <yt:videoId>abcdefghijk</yt:videoId>
    <yt:channelId>{CHANNEL}</yt:channelId>
    <title>Lightning Talks Replay</title>
    <link rel="alternate" href="https://www.youtube.com/watch?v=abcdefghijk"/>
    <author><name>Lattice Dev Summit</name><uri>https://www.youtube.com/channel/{CHANNEL}</uri></author>
    <published>2026-09-20T09:58:00+00:00</published>
    <updated>2026-09-20T10:00:01.552394234+00:00</updated>
  </entry>
  <at:deleted-entry ref="yt:video:kT3vQ9xLm2E" when="2026-09-20T09:00:00.123456789+00:00">
    <link href="https://www.youtube.com/watch?v=kT3vQ9xLm2E"/>
    <at:by><name>Lattice Dev Summit</name><uri>https://www.youtube.com/channel/{CHANNEL}</uri></at:by>
  </at:deleted-entry>
</feed>
"""


@pytest.fixture(scope="module")
def channel_feed() -> Feed:
    return parse_feed(CHANNEL_FEED.read_bytes())


def ids(entries: list[FeedEntry]) -> list[str]:
    return [e.video_id for e in entries]


def test_channel_feed_parses(channel_feed: Feed) -> None:
    # the feed itself leaves UC off: <yt:channelId>q7Rk2_TzVx9mWnB4cLpH3e</yt:channelId>
    assert f"<yt:channelId>{CHANNEL[2:]}</yt:channelId>" in CHANNEL_FEED.read_text(encoding="utf-8")
    assert channel_feed.channel_id == CHANNEL
    assert channel_feed.title == "Lattice Dev Summit"
    assert len(channel_feed.entries) == 15
    assert {e.video_id for e in channel_feed.entries if e.is_short} == SHORTS
    assert [e.video_id for e in channel_feed.entries if e.views == 0] == [ZERO_VIEWS]
    assert all(e.channel_id == CHANNEL and e.views is not None for e in channel_feed.entries)
    first = channel_feed.entries[0]
    assert first.video_id == "kT3vQ9xLm2E"
    assert first.title == "Summit 2026 Program Announcement (Sept. 18, 2026)"
    assert first.url == "https://www.youtube.com/watch?v=kT3vQ9xLm2E"
    assert first.published == datetime(2026, 9, 18, 17, 22, 41, tzinfo=UTC)
    assert first.updated == datetime(2026, 9, 18, 17, 40, 12, tzinfo=UTC)
    assert first.views == 48213
    assert first.description.startswith("Today we are announcing the full program for Lattice Dev Summit 2026")
    assert "This year’s program" in first.description and "with a live Q&A\n" in first.description
    assert channel_feed.deleted == []


def test_parse_accepts_text(channel_feed: Feed) -> None:
    assert parse_feed(CHANNEL_FEED.read_text(encoding="utf-8")) == channel_feed


def test_select_default_filters(channel_feed: Feed) -> None:
    take, skipped = select(channel_feed, ChannelFilters())
    assert ids(take) == NORMAL
    assert [(e.video_id, r) for e, r in skipped] == [
        ("Lq3_dM5yZ2c", "short"),
        (ZERO_VIEWS, "wait: 0 views (live, upcoming or just published)"),
        ("m4Jd_7sKcWo", "short"),
        ("Xy5-Hb0fJqU", "short"),
    ]
    assert [is_wait(r) for _, r in skipped] == [False, True, False, False]


def test_select_keeping_shorts(channel_feed: Feed) -> None:
    take, skipped = select(channel_feed, ChannelFilters(skip_shorts=False))
    assert ids(take) == [
        "dW6nJ4pLa7Q", "Y8gC2mHs0wT", "oF5xR1gK3pD", "Vq4Ws8bT6jN", "eH7rY2nV-9k", "Lq3_dM5yZ2c",
        "tB1kFz6oW8r", "J0sPq7aXv_4", "cN9wE3uYk5M", "Zp2LgN8eT1s", "m4Jd_7sKcWo", "Xy5-Hb0fJqU",
        "Rw8_pZc4HnA", "kT3vQ9xLm2E",
    ]  # fmt: skip
    assert [(e.video_id, is_wait(r)) for e, r in skipped] == [(ZERO_VIEWS, True)]


def test_select_title_include_is_case_insensitive(channel_feed: Feed) -> None:
    take, skipped = select(channel_feed, ChannelFilters(title_include=[r"PANEL\s+DISCUSSION"]))
    assert ids(take) == ["Y8gC2mHs0wT", "oF5xR1gK3pD", "Vq4Ws8bT6jN", "tB1kFz6oW8r"]
    assert len(skipped) == 11
    assert dict((e.video_id, r) for e, r in skipped)["kT3vQ9xLm2E"] == "title matches no title_include pattern"


def test_select_title_exclude(channel_feed: Feed) -> None:
    take, skipped = select(channel_feed, ChannelFilters(title_exclude=[r"keynote|workshop"]))
    assert ids(take) == [
        "dW6nJ4pLa7Q", "oF5xR1gK3pD", "Vq4Ws8bT6jN", "eH7rY2nV-9k", "tB1kFz6oW8r", "Rw8_pZc4HnA", "kT3vQ9xLm2E",
    ]  # fmt: skip
    reasons = {e.video_id: r for e, r in skipped}
    assert reasons["Zp2LgN8eT1s"] == "title excludes 'keynote|workshop'"
    assert reasons[ZERO_VIEWS] == "title excludes 'keynote|workshop'"  # a final reason beats "wait"
    assert reasons["Xy5-Hb0fJqU"] == "short"  # its title says keynote, but "short" comes first


def test_metadata_decides_what_the_feed_cannot(channel_feed: Feed) -> None:
    by_id = {e.video_id: e for e in channel_feed.entries}
    stream, radio, normal = by_id[ZERO_VIEWS], by_id[RADIO_STREAM], by_id["eH7rY2nV-9k"]
    default = ChannelFilters()
    assert classify(stream, default, live_status="was_live") == "live stream"
    assert classify(stream, ChannelFilters(skip_live=False), live_status="was_live") is None
    assert classify(stream, default, live_status="not_live") is None  # just published after all
    assert classify(radio, default) is None  # from the feed alone it looks like any upload
    assert classify(radio, default, live_status="is_live") == "live stream"
    assert classify(radio, ChannelFilters(skip_live=False), live_status="is_live") == (
        "wait: live now (take it once it has ended)"
    )
    assert is_wait(classify(radio, ChannelFilters(skip_live=False), live_status="post_live"))
    assert classify(stream, default, live_status="is_upcoming") == "upcoming"
    assert classify(stream, ChannelFilters(skip_upcoming=False), live_status="is_upcoming") == (
        "wait: upcoming (not aired yet)"
    )
    assert classify(normal, default, live_status="was_premiere") is None
    assert classify(normal, ChannelFilters(skip_premieres=True), live_status="was_premiere") == "premiere"
    with pytest.raises(ValueError, match="live_status 'premiered'"):
        classify(normal, default, live_status="premiered")


def test_duration_limits(channel_feed: Feed) -> None:
    entry = channel_feed.entries[0]
    limits = ChannelFilters(min_duration=300, max_duration=7200)
    assert classify(entry, limits) is None  # the feed has no durations: the run checks them
    assert classify(entry, limits, duration=120) == "shorter than 5 min"
    assert classify(entry, limits, duration=9000) == "longer than 2 h"
    assert classify(entry, limits, duration=1800) is None
    assert classify(entry, ChannelFilters(min_duration=90), duration=30) == "shorter than 90 s"
    short = next(e for e in channel_feed.entries if e.is_short)
    assert classify(short, limits) == "short"


def test_websub_notification_with_entry_and_deletion() -> None:
    feed = parse_feed(NOTIFICATION.encode())
    assert feed.channel_id == CHANNEL
    assert [(e.video_id, e.title, e.views, e.is_short) for e in feed.entries] == [
        ("abcdefghijk", "Lightning Talks Replay", None, False)
    ]
    assert feed.entries[0].updated == datetime(2026, 9, 20, 10, 0, 1, 552394, tzinfo=UTC)
    assert [(d.video_id, d.when) for d in feed.deleted] == [
        ("kT3vQ9xLm2E", datetime(2026, 9, 20, 9, 0, 0, 123456, tzinfo=UTC))
    ]
    take, skipped = select(feed, ChannelFilters())
    assert ids(take) == ["abcdefghijk"] and skipped == []  # no statistics: views is None, not 0


def test_deletion_only_notification_takes_channel_from_author() -> None:
    xml = f"""<feed xmlns:at="http://purl.org/atompub/tombstones/1.0" xmlns="http://www.w3.org/2005/Atom">
      <at:deleted-entry ref="yt:video:kT3vQ9xLm2E" when="2026-09-20T09:00:00+00:00">
        <at:by><name>Lattice Dev Summit</name><uri>https://www.youtube.com/channel/{CHANNEL}</uri></at:by>
      </at:deleted-entry></feed>"""
    feed = parse_feed(xml)
    assert (feed.channel_id, feed.entries, [d.video_id for d in feed.deleted]) == (CHANNEL, [], ["kT3vQ9xLm2E"])


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
        (NOTIFICATION.replace("yt:video:kT3vQ9xLm2E", "yt:video:x").encode(), "not a YouTube video id"),
        (NOTIFICATION.replace("2026-09-20T09:58:00+00:00", "yesterday").encode(), "'yesterday' is not an ISO 8601"),
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
