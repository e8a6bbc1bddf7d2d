"""Both object-store backends through the same interface: local directory and S3 over HTTP (moto)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from schemas.artifacts import Chapter
from workers.storage import ObjectStore, get_model, open_store, put_model


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return open_store(str(tmp_path / "store"))
    url = request.getfixturevalue("s3_url")
    endpoint = request.getfixturevalue("s3_endpoint")
    return open_store(url, endpoint_url=endpoint, access_key_id="test", secret_access_key="test")


def test_bytes_roundtrip_and_listing(store: ObjectStore) -> None:
    assert store.put_bytes("videos/a/x/1/one.json", b"1")
    assert store.put_bytes("videos/a/x/1/two.json", b"22")
    assert store.put_bytes("videos/b/x/1/one.json", b"3")
    assert store.get_bytes("videos/a/x/1/two.json") == b"22"
    assert sorted(store.list("videos/a/")) == ["videos/a/x/1/one.json", "videos/a/x/1/two.json"]
    assert store.exists("videos/b/x/1/one.json")
    assert not store.exists("videos/c/none")
    with pytest.raises(KeyError):
        store.get_bytes("videos/c/none")
    store.delete("videos/b/x/1/one.json")
    assert not store.exists("videos/b/x/1/one.json")


def test_create_only_keeps_the_first_write(store: ObjectStore) -> None:
    assert store.put_bytes("k/first", b"first", if_absent=True) is True
    assert store.put_bytes("k/first", b"second", if_absent=True) is False
    assert store.get_bytes("k/first") == b"first"
    assert store.put_bytes("k/first", b"third") is True  # plain writes replace
    assert store.get_bytes("k/first") == b"third"


def test_large_file_streams_both_ways(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    data = os.urandom(20 * 1024 * 1024 + 123)  # over the multipart threshold
    src.write_bytes(data)
    store.put_file("videos/v/download/h/audio.m4a", src)
    out = store.get_file("videos/v/download/h/audio.m4a", tmp_path / "back" / "audio.m4a")
    assert out.read_bytes() == data
    with pytest.raises(KeyError):
        store.get_file("videos/v/none", tmp_path / "none")


def test_models_roundtrip(store: ObjectStore) -> None:
    put_model(store, "m/chapter.json", Chapter(title="Intro", start=0, end=12.5))
    assert get_model(store, "m/chapter.json", Chapter) == Chapter(title="Intro", start=0, end=12.5)


def test_url_is_a_link(store: ObjectStore) -> None:
    store.put_bytes("posts/p.md", b"# hi")
    url = store.url("posts/p.md")
    assert url.startswith(("file://", "http://"))


def test_local_rejects_keys_outside_the_root(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    with pytest.raises(ValueError, match="bad object key"):
        store.put_bytes("../escape", b"x")
