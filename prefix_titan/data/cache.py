"""The package's cache files: the folder they live in, and a write that leaves a whole file or
none. A cache file holds what can be built again from its inputs; its name is a hash of them."""

from __future__ import annotations

import os
import tempfile

CACHE_ENV = "PREFIX_TITAN_CACHE"
"""The folder of the cache files; unset: prefix_titan under XDG_CACHE_HOME (~/.cache where that
is unset)."""


def cache_folder() -> str:
    return os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "prefix_titan"
    )


def write_whole(path: str, data: bytes) -> None:
    """Write `data` to `path` whole or not at all (a temporary file in its folder, then renamed
    over it: processes writing it at once each put a complete file there). A folder that cannot
    be written leaves no file: the next process builds the contents again."""
    folder = os.path.dirname(path)
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".partial-", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
