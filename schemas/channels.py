"""Watched channels: which YouTube channels become posts, with what defaults, and which uploads to skip.

No I/O here; `workers.watch.channels_file` reads and writes the YAML file these models describe.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from schemas.base import Model
from schemas.post import FrontMatterDefaults

CaptionsPolicy = Literal["off", "human", "auto"]

FEED_URL_TEMPLATE = "https://www.youtube.com/feeds/videos.xml?channel_id={channel_id}"

_CHANNEL_ID = re.compile(r"UC[0-9A-Za-z_-]{22}")
_BARE_ID = re.compile(r"[0-9A-Za-z_-]{22}")
CHANNEL_ID_HELP = (
    "a channel id is 'UC' and 22 letters, digits, '-' or '_' (e.g. UCLA_DiR1FfKNvjuUpBHmylQ); "
    "find it in the channel's address youtube.com/channel/UC…, or on the channel page under "
    "About → Share channel → Copy channel ID (a @handle is not an id)"
)


def normalise_channel_id(value: str) -> str:
    """`UC` + 22 characters; the 22-character form of a feed's own yt:channelId gets its `UC` back.

    Raises ValueError with a message that says what an id looks like and where to find one.
    """
    text = value.strip()
    if _CHANNEL_ID.fullmatch(text):
        return text
    if _BARE_ID.fullmatch(text):
        return "UC" + text
    hint = " (that is the uploads playlist; use the id that starts with UC)" if text.startswith("UU") else ""
    raise ValueError(f"{text!r} is not a YouTube channel id{hint}: {CHANNEL_ID_HELP}")


def _check_patterns(field: str, patterns: list[str]) -> list[str]:
    for pattern in patterns:
        try:
            re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"{field}: {pattern!r} is not a valid regular expression ({exc})") from None
    return patterns


class ChannelFilters(Model):
    """Which uploads of a channel are worth a post; the rest are skipped with a reason."""

    skip_shorts: bool = Field(default=True, description="skip shorts (their link is /shorts/…)")
    skip_live: bool = Field(default=True, description="skip live streams, live now or recorded")
    skip_upcoming: bool = Field(
        default=True,
        description="drop scheduled streams and premieres not yet aired; false: wait and judge them once aired",
    )
    skip_premieres: bool = Field(default=False, description="skip premieres once they have aired")
    min_duration: float | None = Field(default=None, ge=0, description="seconds; shorter uploads are skipped")
    max_duration: float | None = Field(default=None, ge=0, description="seconds; longer uploads are skipped")
    title_include: list[str] = Field(
        default_factory=list, description="regexes, case-insensitive; if any are given a title must match one"
    )
    title_exclude: list[str] = Field(
        default_factory=list, description="regexes, case-insensitive; a title matching one is skipped"
    )

    @field_validator("title_include")
    @classmethod
    def _include_compiles(cls, value: list[str]) -> list[str]:
        return _check_patterns("title_include", value)

    @field_validator("title_exclude")
    @classmethod
    def _exclude_compiles(cls, value: list[str]) -> list[str]:
        return _check_patterns("title_exclude", value)

    @model_validator(mode="after")
    def _durations_ordered(self) -> ChannelFilters:
        if self.min_duration is not None and self.max_duration is not None and self.min_duration > self.max_duration:
            raise ValueError(
                f"min_duration {self.min_duration:g} s is above max_duration {self.max_duration:g} s: "
                "no upload could pass"
            )
        return self


class ChannelConfig(Model):
    """One watched channel: what its posts default to and which of its uploads to take."""

    id: str = Field(description="UC + 22 characters; the feed-level form without UC is accepted")
    name: str = Field(min_length=1, description="for people: logs, listings, error messages")
    enabled: bool = True
    defaults: FrontMatterDefaults = Field(default_factory=FrontMatterDefaults)
    glossary: str | None = Field(default=None, description="path of the channel's glossary (YAML)")
    filters: ChannelFilters = Field(default_factory=ChannelFilters)
    captions: CaptionsPolicy = Field(
        default="human", description="use the video's captions instead of transcription: human ones, or auto too"
    )
    backfill: int = Field(default=0, ge=0, description="how many past uploads to process when the channel is added")
    publish_targets: list[Literal["directory", "git", "webhook"]] | None = Field(
        default=None,
        description="where this channel's posts go besides the store: any of directory, git, webhook (each needs "
        "its PRESSROOM_PUBLISH_… settings); [] = none (only the store and PRESSROOM_OUT_DIR); unset = "
        "PRESSROOM_PUBLISH_TARGETS",
    )

    @field_validator("id")
    @classmethod
    def _normalise_id(cls, value: str) -> str:
        return normalise_channel_id(value)

    @property
    def uploads_playlist_id(self) -> str:
        """The channel's "all uploads" playlist: its id with UU for UC (for backfill past the feed's 15)."""
        return "UU" + self.id[2:]

    def feed_url(self, template: str = FEED_URL_TEMPLATE) -> str:
        """The channel's Atom feed; `template` has a `{channel_id}` placeholder (a test server, a proxy)."""
        if "{channel_id}" not in template:
            raise ValueError(f"feed URL template {template!r} has no {{channel_id}} placeholder")
        return template.replace("{channel_id}", self.id)


class ChannelsFile(Model):
    """Every watched channel, each listed once."""

    channels: list[ChannelConfig] = Field(default_factory=list)

    @field_validator("channels")
    @classmethod
    def _unique_ids(cls, value: list[ChannelConfig]) -> list[ChannelConfig]:
        seen: dict[str, int] = {}
        for index, channel in enumerate(value):
            if channel.id in seen:
                raise ValueError(
                    f"channel {channel.id} is listed twice (entries {seen[channel.id] + 1} and {index + 1}): keep one"
                )
            seen[channel.id] = index
        return value

    def get(self, channel_id: str) -> ChannelConfig | None:
        """The channel with this id (either id form), or None."""
        wanted = normalise_channel_id(channel_id)
        return next((c for c in self.channels if c.id == wanted), None)
