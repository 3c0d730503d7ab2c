"""The one atomic-write helper: whole files or nothing, leftovers of killed writes found by one rule."""
import json
import os

import pytest

from nnunet_losses._files import (
    atomic_file, atomic_folder, atomic_write_bytes, atomic_write_json, partial_files, remove_partial_files)


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


def test_partial_files_of_a_killed_write(tmp_path):
    (tmp_path / "checkpoint_final.pth").write_bytes(b"whole")
    (tmp_path / "checkpoint_final.pth.tmp4242").write_bytes(b"half")
    pattern = str(tmp_path / "checkpoint_*.pth")
    assert partial_files(pattern) == [str(tmp_path / "checkpoint_final.pth.tmp4242")]
    assert remove_partial_files(pattern) and not partial_files(pattern)
    assert (tmp_path / "checkpoint_final.pth").read_bytes() == b"whole"


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
