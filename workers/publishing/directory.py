"""The directory target: posts written into a directory (a site's content folder, a mounted volume)."""

from __future__ import annotations

from pathlib import Path

from workers.errors import PermanentError
from workers.publishing.base import PostFile, check_name
from workers.storage.local import write_atomic


class DirectoryTarget:
    name = "directory"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()

    def publish(self, post: PostFile) -> str:
        dest = self.path / check_name(self.name, post.name)
        data = post.data
        try:
            if dest.is_file() and dest.read_bytes() == data:
                return str(dest)  # already there: no write, the file's time stays (no needless site rebuild)
            write_atomic(dest, data)
        except OSError as exc:
            raise PermanentError(f"directory target: cannot write {dest} ({exc.strerror or exc}): make it "
                                 "writable, or set PRESSROOM_PUBLISH_DIR elsewhere") from None
        return str(dest)
