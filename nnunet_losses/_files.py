"""Atomic files and folders: written under a temporary name in the same folder, then renamed, so that a reader (or a
resumed job) never sees half a file; on failure the temporary file is removed and an older file at ``path`` is kept.
Every durable write of the package (maps and their records, settings, checkpoints, reports, splits, plans) goes
through here, and only this module knows the temporary names (:func:`partial_files`)."""
from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import IO, Any, Iterator, List, Optional

_TMP = ".tmp"  # path + _TMP + pid: the temporary name of an atomic file


@contextmanager
def atomic_file(path: str, mode: str = "w") -> Iterator[IO]:
    """``with atomic_file(path, "wb") as f: ...``: ``path`` appears, complete, when the block ends without error."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}{_TMP}{os.getpid()}"
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


def atomic_write_bytes(path: str, data: bytes) -> str:
    with atomic_file(path, "wb") as f:
        f.write(data)
    return path


def atomic_write_json(path: str, obj: Any, **dump_kwargs) -> str:
    """``json.dump(obj, **dump_kwargs)`` into ``path``, atomically."""
    return atomic_write_text(path, json.dumps(obj, **dump_kwargs))


def partial_files(pattern: str) -> List[str]:
    """The temporary files that killed atomic writes of the files matching ``pattern`` (a glob) left behind."""
    return sorted(glob.glob(pattern + _TMP + "*"))


def remove_partial_files(pattern: str) -> List[str]:
    """Remove :func:`partial_files` of ``pattern``; returns the removed paths."""
    removed = partial_files(pattern)
    for path in removed:
        os.remove(path)
    return removed


@contextmanager
def atomic_folder(path: str) -> Iterator[str]:
    """``with atomic_folder(path) as tmp: ...`` fills a temporary sibling folder, renamed to ``path`` (which must not
    exist) when the block ends without error; removed otherwise."""
    path = os.path.normpath(os.fspath(path))
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}{_TMP}", dir=parent)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
