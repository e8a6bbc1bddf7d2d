"""A directory as an object store: the embedded default. Writes are temp-file + rename, so atomic."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from workers.errors import PermanentError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


class LocalStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PermanentError(f"cannot use {self.root} as the store ({exc.strerror or exc}): make it writable, "
                                 "or set PRESSROOM_DATA_DIR or PRESSROOM_STORAGE_URL elsewhere") from None

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or key.endswith("/") or not key:
            raise ValueError(f"bad object key {key!r}: use a relative path like videos/<id>/<step>/name")
        return path

    def _temp(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:40]}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; objects are ordinary files (posts are read by a site)
        os.close(fd)
        return Path(tmp)

    def _commit(self, tmp: Path, path: Path, if_absent: bool) -> bool:
        try:
            if if_absent:
                try:
                    os.link(tmp, path)  # atomic create-only: fails if the key exists
                except FileExistsError:
                    return False
            else:
                os.replace(tmp, path)
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False, content_type: str | None = None) -> bool:
        path = self._path(key)
        if if_absent and path.exists():
            return False
        tmp = self._temp(path)
        tmp.write_bytes(data)
        return self._commit(tmp, path, if_absent)

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> None:
        dest = self._path(key)
        tmp = self._temp(dest)
        with open(path, "rb") as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1024 * 1024)
        self._commit(tmp, dest, False)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def get_file(self, key: str, dest: Path) -> Path:
        src = self._path(key)
        if not src.is_file():
            raise KeyError(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        return dest

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix
        start = base if base.is_dir() else base.parent
        if not start.is_dir():
            return
        for path in sorted(start.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.endswith(".tmp"):
                yield key

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def url(self, key: str, expires: int = 3600) -> str:
        return self._path(key).as_uri()

    def where(self, key: str) -> str:
        return str(self._path(key))


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file outside the store (an output directory) so readers never see half of it; OSError if the
    directory cannot be made or written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:40]}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
