"""The object-store interface every step writes through; local directory and S3 implement it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


class ObjectStore(Protocol):
    """Keys are '/'-separated, e.g. videos/<id>/<step>/<hash>/transcript.json."""

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False, content_type: str | None = None) -> bool:
        """Write atomically. With if_absent, an existing object is kept and False is returned."""

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> None:
        """Stream a file in (multipart on S3); never holds it whole in memory."""

    def get_bytes(self, key: str) -> bytes:
        """Raise KeyError when the key does not exist."""

    def get_file(self, key: str, dest: Path) -> Path:
        """Stream an object to dest; raise KeyError when the key does not exist."""

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> Iterator[str]: ...

    def delete(self, key: str) -> None: ...

    def url(self, key: str, expires: int = 3600) -> str:
        """A link for humans: presigned on S3, file:// locally."""

    def where(self, key: str) -> str:
        """Where an object is, to print: a file's path, or s3://bucket/key."""


def put_model(store: ObjectStore, key: str, model: BaseModel, *, if_absent: bool = False) -> bool:
    data = model.model_dump_json(indent=1).encode()
    return store.put_bytes(key, data, if_absent=if_absent, content_type="application/json")


def get_model(store: ObjectStore, key: str, cls: type[M]) -> M:
    return cls.model_validate_json(store.get_bytes(key))
