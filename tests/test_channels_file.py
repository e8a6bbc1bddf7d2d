"""Channel configuration: id forms, filter validation, and the YAML file people edit."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas.channels import ChannelConfig, ChannelFilters, ChannelsFile
from schemas.post import FrontMatterDefaults
from workers.errors import PermanentError
from workers.watch.channels_file import add_channel, load_channels, remove_channel, save_channels

NASA = "UCLA_DiR1FfKNvjuUpBHmylQ"
OTHER = "UCXuqSBlHAE6Xw-yeJA0Tunw"


def nasa(**changes: object) -> ChannelConfig:
    return ChannelConfig.model_validate({"id": NASA, "name": "NASA", **changes})


def test_channel_id_forms() -> None:
    assert nasa().id == NASA
    assert ChannelConfig(id="LA_DiR1FfKNvjuUpBHmylQ", name="NASA").id == NASA  # the feed-level form
    assert ChannelConfig(id=f"  {NASA}\n", name="NASA").id == NASA
    assert nasa().uploads_playlist_id == "UULA_DiR1FfKNvjuUpBHmylQ"


@pytest.mark.parametrize("bad", ["@NASA", "https://www.youtube.com/@NASA", NASA + "x", "UC" + "!" * 22, ""])
def test_bad_channel_id_says_what_an_id_looks_like(bad: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ChannelConfig(id=bad, name="NASA")
    text = str(caught.value)
    assert "is not a YouTube channel id" in text
    assert "'UC' and 22 letters" in text and "youtube.com/channel/UC" in text and "Copy channel ID" in text


def test_uploads_playlist_id_gets_a_hint() -> None:
    with pytest.raises(ValidationError, match="that is the uploads playlist"):
        ChannelConfig(id="UULA_DiR1FfKNvjuUpBHmylQ", name="NASA")


def test_feed_url() -> None:
    assert nasa().feed_url() == f"https://www.youtube.com/feeds/videos.xml?channel_id={NASA}"
    assert nasa().feed_url("http://127.0.0.1:9/feeds/{channel_id}.xml") == f"http://127.0.0.1:9/feeds/{NASA}.xml"
    with pytest.raises(ValueError, match=r"no \{channel_id\} placeholder"):
        nasa().feed_url("https://example.test/feed")


def test_filters_validate() -> None:
    with pytest.raises(ValidationError, match=r"title_exclude: '\(live' is not a valid regular expression"):
        ChannelFilters(title_exclude=["(live"])
    with pytest.raises(ValidationError, match=r"title_include: '\[a-' is not a valid regular expression"):
        ChannelFilters(title_include=["ok", "[a-"])
    with pytest.raises(ValidationError, match="min_duration 600 s is above max_duration 300 s"):
        ChannelFilters(min_duration=600, max_duration=300)
    with pytest.raises(ValidationError):
        ChannelFilters(min_duration=-1)
    with pytest.raises(ValidationError):
        nasa(backfill=-1)
    with pytest.raises(ValidationError):
        nasa(captions="sometimes")
    with pytest.raises(ValidationError, match="skip_short"):
        ChannelFilters.model_validate({"skip_short": False})  # a typo is an error, not a silent default


def test_ids_are_unique_in_either_form() -> None:
    with pytest.raises(ValidationError, match=f"channel {NASA} is listed twice \\(entries 1 and 3\\)"):
        ChannelsFile(channels=[nasa(), ChannelConfig(id=OTHER, name="Other"), ChannelConfig(id=NASA[2:], name="Again")])
    assert ChannelsFile(channels=[nasa()]).get(NASA[2:]) == nasa()


def test_missing_or_empty_file_is_no_channels(tmp_path: Path) -> None:
    assert load_channels(tmp_path / "channels.yaml") == ChannelsFile()
    (tmp_path / "empty.yaml").write_text("")
    assert load_channels(tmp_path / "empty.yaml") == ChannelsFile()


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "channels.yaml"
    channels = ChannelsFile(
        channels=[
            nasa(
                captions="auto",
                backfill=3,
                glossary="glossaries/nasa.yaml",
                defaults=FrontMatterDefaults(area="space", project=["artemis"], draft=False),
                filters=ChannelFilters(skip_shorts=False, min_duration=300, title_exclude=[r"\btrailer\b"]),
            ),
            ChannelConfig(id=OTHER, name="Other", enabled=False),
        ]
    )
    save_channels(path, channels)
    assert load_channels(path) == channels
    text = path.read_text()
    assert text.startswith(f"channels:\n- id: {NASA}\n  name: NASA\n")
    assert "skip_live" not in text  # defaults are left out
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_save_keeps_the_file_mode_and_refuses_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "channels.yaml"
    save_channels(path, [nasa()])
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    path.chmod(0o600)
    save_channels(path, [nasa(name="NASA TV")])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(PermanentError, match=f"not saved: channels: channel {NASA} is listed twice"):
        save_channels(path, [nasa(), nasa()])
    assert load_channels(path).channels[0].name == "NASA TV"


def test_add_and_remove(tmp_path: Path) -> None:
    path = tmp_path / "channels.yaml"
    assert [c.id for c in add_channel(path, nasa()).channels] == [NASA]
    assert [c.id for c in add_channel(path, ChannelConfig(id=OTHER, name="Other")).channels] == [NASA, OTHER]
    with pytest.raises(PermanentError, match=f"{path}: channel {NASA} \\(NASA\\) is already watched"):
        add_channel(path, ChannelConfig(id=NASA[2:], name="NASA again"))
    replaced = add_channel(path, nasa(name="NASA TV"), replace=True)
    assert [(c.id, c.name) for c in replaced.channels] == [(NASA, "NASA TV"), (OTHER, "Other")]
    assert load_channels(path) == replaced
    assert [c.id for c in remove_channel(path, NASA[2:]).channels] == [OTHER]
    with pytest.raises(PermanentError, match=f"channel {NASA} is not watched; watched: {OTHER} \\(Other\\)"):
        remove_channel(path, NASA)
    with pytest.raises(PermanentError, match="'@NASA' is not a YouTube channel id"):
        remove_channel(path, "@NASA")
    assert [c.id for c in load_channels(path).channels] == [OTHER]


def test_bad_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "channels.yaml"
    path.write_text("channels:\n  - id: [unclosed\n")
    with pytest.raises(PermanentError, match=f"{path}: not valid YAML at line 3") as caught:
        load_channels(path)
    assert "\n" not in str(caught.value)
    path.write_text("- just a list\n")
    with pytest.raises(PermanentError, match="expected a mapping with `channels:` at the top, got list"):
        load_channels(path)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            f"{{id: {NASA}, name: NASA, filters: {{min_duration: long}}}}",
            f"channel 'NASA' ({NASA}), filters.min_duration: Input should be a valid number",
        ),
        (
            f"{{id: {NASA}, name: NASA, filters: {{title_exclude: ['(live']}}}}",
            f"channel 'NASA' ({NASA}), filters.title_exclude: title_exclude: '(live' is not a valid regular expression",
        ),
        ("{id: '@NASA', name: NASA}", "channel 'NASA' (@NASA), id: '@NASA' is not a YouTube channel id"),
        (f"{{id: {NASA}, name: NASA, captions: always}}", f"channel 'NASA' ({NASA}), captions: Input should be"),
        (f"{{id: {NASA}, nmae: NASA}}", f"channel ({NASA}), name: Field required (and 1 more)"),
        ("just text", "channel #2: Input should be a valid dictionary"),
    ],
)
def test_invalid_channel_names_file_channel_and_field(tmp_path: Path, entry: str, expected: str) -> None:
    path = tmp_path / "channels.yaml"
    path.write_text(f"channels:\n  - {{id: {OTHER}, name: Other}}\n  - {entry}\n")
    with pytest.raises(PermanentError) as caught:
        load_channels(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: {expected}")
    assert text.endswith("see the layout in workers/watch/channels_file.py")
    assert "\n" not in text
