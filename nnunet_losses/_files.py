"""Atomic files: written to a temporary name in the same folder, then renamed, so that a reader (or a resumed job)
never sees half a file; on failure the temporary file is removed and an older file at ``path`` is kept."""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import IO, Iterator, Optional


@contextmanager
def atomic_file(path: str, mode: str = "w") -> Iterator[IO]:
    """``with atomic_file(path, "wb") as f: ...``: ``path`` appears, complete, when the block ends without error."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, mode) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str, text: str, mode: Optional[int] = None) -> str:
    """Write ``text`` atomically; ``mode``: file permissions (e.g. 0o755 for scripts)."""
    with atomic_file(path) as f:
        f.write(text)
        if mode is not None:
            os.fchmod(f.fileno(), mode)
    return path
