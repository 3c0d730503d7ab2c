"""Atomic files and folders: written under a temporary name in the same folder, then renamed, so that a reader (or a
resumed job) never sees half a file; on failure the temporary file is removed and an older file at ``path`` is kept.
Every durable write of the package (maps and their records, settings, checkpoints, reports, splits, plans) goes
through here, and only this module knows the temporary names (:func:`partial_files`).

A temporary name is ``<path>.tmp<pid>-<n>-<host>``: unique per write (threads of one process and processes that
write one file at once do not collide), and it says who writes it. :func:`remove_partial_files` removes only
leftovers: those of a writer on this host (and PID namespace) that is gone, and any other untouched for
:data:`STALE_AFTER_S` (a writer on another host, or a name of earlier versions, ``<path>.tmp<pid>``); a file another
process is writing now is never removed, so that runs sharing a folder (two jobs on a cluster) do not break
each other's writes."""
from __future__ import annotations

import glob
import itertools
import json
import os
import re
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import IO, Any, Iterator, List, Optional

_TMP = ".tmp"  # path + _TMP + "<pid>-<n>-<host>": the temporary name of an atomic file
_NAME = re.compile(r"(\d+)-(\d+)-([A-Za-z0-9_-]+)")  # what follows _TMP
STALE_AFTER_S = 24 * 3600  # a temporary file untouched this long is a leftover, whoever wrote it
_count = itertools.count()


@lru_cache(maxsize=None)
def _where() -> str:
    """This host (and PID namespace, where there are several): where the PIDs in temporary names mean something."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:48] or "host"
    try:
        namespace = re.sub(r"\D", "", os.readlink("/proc/self/ns/pid"))
    except OSError:
        namespace = ""
    return f"{host}_{namespace}" if namespace else host


def temporary_path(path: str, pid: Optional[int] = None, where: Optional[str] = None) -> str:
    """A new temporary name of ``path`` for a writer ``pid`` (default: this process) on host ``where`` (default:
    this one)."""
    pid = os.getpid() if pid is None else int(pid)
    return f"{os.fspath(path)}{_TMP}{pid}-{next(_count)}-{_where() if where is None else where}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's process
        return True
    return True


def _is_leftover(tmp: str, now: float) -> bool:
    """Whether the temporary file ``tmp`` is no write in flight (see the module's doc)."""
    try:
        untouched = now - os.stat(tmp).st_mtime
    except FileNotFoundError:  # renamed into place or removed meanwhile
        return False
    if untouched > STALE_AFTER_S:
        return True
    name = _NAME.fullmatch(os.path.basename(tmp).rsplit(_TMP, 1)[-1])
    if name is None or name.group(3) != _where() or os.name == "nt":  # os.kill(pid, 0) ends a process on Windows
        return False
    pid = int(name.group(1))
    return pid != os.getpid() and pid > 0 and not _pid_alive(pid)


@contextmanager
def atomic_file(path: str, mode: str = "w") -> Iterator[IO]:
    """``with atomic_file(path, "wb") as f: ...``: ``path`` appears, complete, when the block ends without error."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, mode.replace("w", "x")) as f:
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
    """The temporary files of atomic writes of the files matching ``pattern`` (a glob): writes in flight and the
    leftovers of killed ones."""
    return sorted(glob.glob(pattern + _TMP + "*"))


def remove_partial_files(pattern: str) -> List[str]:
    """Remove the leftovers among :func:`partial_files` of ``pattern`` (never a write in flight, see the module's
    doc); returns the removed paths."""
    now = time.time()
    removed = []
    for path in partial_files(pattern):
        if _is_leftover(path, now):
            with suppress(FileNotFoundError):  # another run removed it first
                os.remove(path)
                removed.append(path)
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
