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
