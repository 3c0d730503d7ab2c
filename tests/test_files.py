"""The one atomic-write helper: whole files or nothing, leftovers of killed writes found by one rule, and only
leftovers removed (never another process's file in flight)."""
import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from nnunet_losses._files import (
    STALE_AFTER_S, atomic_file, atomic_folder, atomic_write_bytes, atomic_write_json, partial_files,
    remove_partial_files, temporary_path)


def test_files_appear_whole_or_not_at_all(tmp_path):
    path = str(tmp_path / "sub" / "a.json")
    atomic_write_json(path, {"a": 1}, indent=1)
    assert json.load(open(path)) == {"a": 1}
    with pytest.raises(RuntimeError):
        with atomic_file(path) as f:
            f.write("half")
            raise RuntimeError("killed")
    assert json.load(open(path)) == {"a": 1} and os.listdir(tmp_path / "sub") == ["a.json"]
    atomic_write_bytes(str(tmp_path / "b.bin"), b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"


def _writer(path, then):
    """A process on this host in the middle of ``atomic_file(path)``: it wrote part of the file, then ``then``."""
    code = ("import os, signal, sys, time\n"
            "from nnunet_losses._files import atomic_file\n"
            f"with atomic_file({path!r}, 'wb') as f:\n"
            "    f.write(b'half'); f.flush()\n"
            "    print('writing', flush=True)\n"
            f"    {then}\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "writing\n"
    return proc


def _finished_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(30)
    return proc.pid


def _age(path, seconds):
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_partial_files_of_a_killed_write(tmp_path):
    (tmp_path / "checkpoint_final.pth").write_bytes(b"whole")
    killed = _writer(str(tmp_path / "checkpoint_final.pth"), "os.kill(os.getpid(), signal.SIGKILL)")
    assert killed.wait(30) == -signal.SIGKILL
    pattern = str(tmp_path / "checkpoint_*.pth")
    (partial,) = partial_files(pattern)
    assert partial.startswith(str(tmp_path / "checkpoint_final.pth.tmp"))
    assert remove_partial_files(pattern) == [partial] and not partial_files(pattern)
    assert (tmp_path / "checkpoint_final.pth").read_bytes() == b"whole"


def test_only_leftovers_are_removed(tmp_path):
    """A file in flight (a live process on this host, this process, another host within a day) is kept; a killed
    writer's (its pid gone on this host) or one untouched for a day is removed."""
    target = str(tmp_path / "c0_rrw.b2nd")
    pattern = glob.escape(target)
    live = _writer(target, "time.sleep(120)")
    try:
        own = temporary_path(target)
        open(own, "wb").close()  # another thread of this process, writing
        gone = _finished_pid()
        other_host = temporary_path(target, pid=gone, where="node-17")  # its pid means nothing here
        open(other_host, "wb").close()
        legacy = target + ".tmp4242"  # the name of earlier versions: no host, only its age tells
        open(legacy, "wb").close()
        in_flight = set(partial_files(pattern))
        assert len(in_flight) == 4 and own in in_flight and other_host in in_flight and legacy in in_flight
        assert remove_partial_files(pattern) == [] and set(partial_files(pattern)) == in_flight
        _age(other_host, STALE_AFTER_S + 60)
        _age(legacy, STALE_AFTER_S + 60)
        assert remove_partial_files(pattern) == sorted([other_host, legacy])
    finally:
        live.kill()
        live.wait(30)
    (left_by_live,) = set(partial_files(pattern)) - {own}
    assert remove_partial_files(pattern) == [left_by_live]  # its writer is gone now
    assert partial_files(pattern) == [own]
    assert STALE_AFTER_S >= 6 * 3600


def test_threads_writing_one_file_do_not_collide(tmp_path):
    """Two writers of one path in one process: both finish, the file is one of the two, whole."""
    path = str(tmp_path / "manifest.json")
    both_open = threading.Barrier(2, timeout=30)
    errors = []

    def write(text):
        try:
            with atomic_file(path) as f:
                f.write(text)
                f.flush()
                both_open.wait()
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(c * 100_000,)) for c in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and open(path).read() in ("a" * 100_000, "b" * 100_000)
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_atomic_folder(tmp_path):
    target = tmp_path / "Dataset001_X"
    with pytest.raises(ValueError):
        with atomic_folder(str(target)) as tmp:
            open(os.path.join(tmp, "dataset.json"), "w").write("{}")
            raise ValueError("interrupted")
    assert os.listdir(tmp_path) == []
    with atomic_folder(str(target)) as tmp:
        open(os.path.join(tmp, "dataset.json"), "w").write("{}")
    assert os.listdir(tmp_path) == ["Dataset001_X"] and os.listdir(target) == ["dataset.json"]


def _plain_writes(tree):
    """Lines of ``open(..., "w"/"x")`` calls in ``tree`` that are not inside a ``with atomic_folder(...)`` block
    (whose files appear together, when the folder is renamed into place)."""
    import ast

    def opens_for_writing(node):
        return (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "open" and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant) and bool(set(str(node.args[1].value)) & {"w", "x"}))

    in_atomic_folder = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.With)
                        and any(getattr(item.context_expr.func, "id", None) == "atomic_folder"
                                for item in node.items if isinstance(item.context_expr, ast.Call))
                        for inner in ast.walk(node)}
    return [node.lineno for node in ast.walk(tree) if opens_for_writing(node) and id(node) not in in_atomic_folder]


def test_no_plain_writes_outside_the_helper():
    """Every file the package or a benchmark writes (opened with "w" or "x") goes through ``_files``; appended logs
    are not checked."""
    import ast

    import nnunet_losses

    package = os.path.dirname(nnunet_losses.__file__)
    offenders = []
    for root in (package, os.path.join(os.path.dirname(package), "benchmarks")):
        for dirpath, _, files in os.walk(root):
            for name in (f for f in files if f.endswith(".py") and f != "_files.py"):
                path = os.path.join(dirpath, name)
                with open(path) as f:
                    lines = _plain_writes(ast.parse(f.read()))
                offenders += [f"{os.path.relpath(path, os.path.dirname(package))}:{line}" for line in lines]
    assert not offenders
