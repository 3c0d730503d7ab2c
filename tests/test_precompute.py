"""precompute-maps: values equal the map functions, per-slice 2D vs 3D, stale detection by settings and content,
corrupt maps (every byte checked at training start), resume, atomic writes, concurrent runs, read-only data."""
import glob
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from nnunet_losses.maps import boundary_map, rrw_inside_map, rrw_own_class_map
from nnunet_losses.nnunet.precompute import (
    case_status, check_maps, compute_case_map, map_file, map_settings, maps_folder, precompute_maps)
from fake_nnunet import blobs, write_preprocessed_case


def _read(path, kind):
    import blosc2

    from nnunet_losses.maps.formats import dequantise

    return dequantise(blosc2.open(urlpath=path, mode="r")[...], kind)


def test_own_class_map_is_the_inside_map_collapsed():
    labels = blobs((30, 40), 4, 1)
    labels[0, 0] = 9  # an ignore label: no class
    own = rrw_own_class_map(labels, 4)
    inside = rrw_inside_map(labels, 4)
    for k in range(4):
        assert np.allclose(own * (labels == k), inside[k], atol=1e-6)
    assert own[0, 0] == 0


@pytest.mark.parametrize("is_2d", [True, False])
def test_precomputed_values(tmp_path, is_2d):
    folder = str(tmp_path / "nnUNetPlans_x")
    seg = blobs((5, 24, 20), 3, 2)[None]
    seg[0, 0, :3, :3] = -1  # outside the nonzero mask: background
    write_preprocessed_case(folder, "case_a", seg)
    spacing = (2.0, 1.0, 0.5)
    summary = precompute_maps(folder, ["rrw", "boundary"], 3, is_2d, spacing, progress=False)
    assert summary["computed"] == 1 and summary["folder"] == maps_folder(folder)
    assert maps_folder(folder) == folder + "_maps"
    rrw = _read(map_file(maps_folder(folder), "case_a", "rrw"), "rrw")
    boundary = _read(map_file(maps_folder(folder), "case_a", "boundary"), "boundary")
    labels = np.where(seg[0] < 0, 0, seg[0])
    assert rrw.shape == (1,) + labels.shape and boundary.shape == (3,) + labels.shape
    if is_2d:
        for z in range(labels.shape[0]):
            expected = rrw_inside_map(labels[z], 3, spacing[1:]).sum(0)
            assert np.allclose(rrw[0, z], expected, atol=0.5 / 255 + 1e-6)  # uint8 storage
            assert np.allclose(boundary[:, z], boundary_map(labels[z], 3, spacing[1:]), atol=0.125 + 1e-6)
    else:
        assert np.allclose(rrw[0], rrw_inside_map(labels, 3, spacing).sum(0), atol=0.5 / 255 + 1e-6)
        assert np.allclose(boundary, boundary_map(labels, 3, spacing), atol=0.125 + 1e-6)
    assert np.allclose(compute_case_map(seg, "rrw", 3, is_2d, spacing), rrw, atol=0.5 / 255 + 1e-6)
    assert not np.allclose(rrw, 0) and rrw.max() == 1.0


def test_resume_stale_and_missing(tmp_path):
    folder = str(tmp_path / "data")
    for i in range(3):
        write_preprocessed_case(folder, f"c{i}", blobs((1, 16, 16), 3, i)[None])
    first = precompute_maps(folder, ["rrw"], 3, True, None, progress=False)
    assert first["computed"] == 3
    again = precompute_maps(folder, ["rrw"], 3, True, None, progress=False)
    assert again["computed"] == 0 and again["up_to_date"] == 3
    check_maps(folder, ["c0", "c1", "c2"], "rrw", "CMD")

    settings = map_settings("rrw", 3, True, None)
    write_preprocessed_case(folder, "c1", blobs((1, 16, 16), 3, 7)[None])  # re-preprocessed: new segmentation
    assert case_status(folder, "c1", settings) == "stale"
    os.remove(map_file(maps_folder(folder), "c2", "rrw"))
    assert case_status(folder, "c2", settings) == "missing"
    with pytest.raises(RuntimeError, match="stale: 1 case.*missing: 1 case.*Run: CMD|missing: 1 case.*stale: 1"):
        check_maps(folder, ["c0", "c1", "c2"], "rrw", "CMD")
    with pytest.raises(RuntimeError, match="Run: nnunet-losses precompute-maps"):
        check_maps(folder, ["c0", "c1", "c2"], "rrw", "nnunet-losses precompute-maps -d 1 -c 2d")

    # an interrupted write (days ago) leaves only a .tmp file, which is neither used nor counted
    leftover = map_file(maps_folder(folder), "c2", "rrw") + ".tmp4242"
    open(leftover, "w").write("half")
    old = time.time() - 3 * 24 * 3600
    os.utime(leftover, (old, old))
    third = precompute_maps(folder, ["rrw"], 3, True, None, progress=False, num_processes=2)
    assert third["computed"] == 2 and third["stale_before"] == 1
    check_maps(folder, ["c0", "c1", "c2"], "rrw", "CMD")
    assert not os.path.exists(map_file(maps_folder(folder), "c2", "rrw") + ".tmp4242")


def test_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="plan_and_preprocess"):
        precompute_maps(str(tmp_path / "nope"), ["rrw"], 3, True, None, progress=False)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no preprocessed cases"):
        precompute_maps(str(tmp_path / "empty"), ["rrw"], 3, True, None, progress=False)
    with pytest.raises(ValueError, match="unknown map kind"):
        precompute_maps(str(tmp_path / "empty"), ["ac"], 3, True, None, progress=False)


def _three_cases(tmp_path, shape=(2, 24, 20)):
    folder = str(tmp_path / "nnUNetPlans_2d")
    for i in range(3):
        write_preprocessed_case(folder, f"c{i}", blobs(shape, 3, 10 + i)[None])
    return folder


def _snapshot(root):
    """Every file under root with its size, mtime and bytes: any write shows."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[path] = (os.stat(path).st_mtime_ns, f.read())
    return out


def test_change_of_units_or_settings_recomputes(tmp_path):
    """Maps computed in mm are stale for a run in voxel units (and the other way round): they are recomputed, not
    reported "up to date"."""
    folder = _three_cases(tmp_path)
    spacing = (3.0, 2.0, 0.5)
    assert precompute_maps(folder, ["boundary"], 3, True, spacing, progress=False)["computed"] == 3
    voxels = precompute_maps(folder, ["boundary"], 3, True, None, progress=False)
    assert voxels["computed"] == 3 and voxels["stale_before"] == 3
    labels = blobs((2, 24, 20), 3, 10)
    stored = _read(map_file(maps_folder(folder), "c0", "boundary"), "boundary")
    assert np.allclose(stored[:, 1], boundary_map(labels[1], 3), atol=0.125 + 1e-6)  # in voxels now
    # the through-plane spacing of a 2D configuration changes nothing; in-plane spacing, classes, 2D/3D do
    assert precompute_maps(folder, ["boundary"], 3, True, (3.0, 2.0, 0.5), progress=False)["computed"] == 3
    assert precompute_maps(folder, ["boundary"], 3, True, (9.0, 2.0, 0.5), progress=False)["computed"] == 0
    assert precompute_maps(folder, ["boundary"], 4, True, (9.0, 2.0, 0.5), progress=False)["computed"] == 3
    assert precompute_maps(folder, ["boundary"], 4, False, (9.0, 2.0, 0.5), progress=False)["computed"] == 3

    # training start: the maps must fit the trainer's configuration (3D, 4 classes, spacing (9, 2, 0.5) now)
    cases = ["c0", "c1", "c2"]
    check_maps(folder, cases, "boundary", "CMD", num_classes=4, is_2d=False, spacing=(9.0, 2.0, 0.5))
    with pytest.raises(RuntimeError, match=r"stale: spacing \[9.0, 2.0, 0.5\] \(configuration: \[1.0, 2.0, 0.5\]\)"
                                           r".*Run: CMD"):
        check_maps(folder, cases, "boundary", "CMD", num_classes=4, is_2d=False, spacing=(1.0, 2.0, 0.5))
    with pytest.raises(RuntimeError, match="stale: num_classes 4 \\(configuration: 3\\)"):
        check_maps(folder, cases, "boundary", "CMD", num_classes=3, is_2d=False, spacing=(9.0, 2.0, 0.5))
    with pytest.raises(RuntimeError, match="per_slice_2d False"):
        check_maps(folder, cases, "boundary", "CMD", num_classes=4, is_2d=True, spacing=(9.0, 2.0, 0.5))
    # voxel units fit any spacing, and the command to rewrite them says --voxel-units
    precompute_maps(folder, ["boundary"], 4, False, None, progress=False)
    check_maps(folder, cases, "boundary", "CMD", num_classes=4, is_2d=False, spacing=(1.0, 2.0, 0.5))
    os.remove(map_file(maps_folder(folder), "c1", "boundary"))
    with pytest.raises(RuntimeError, match="missing: 1 case.*Run: CMD --voxel-units$"):
        check_maps(folder, cases, "boundary", "CMD", num_classes=4, is_2d=False, spacing=(1.0, 2.0, 0.5))


def _truncate(path, other):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _overwrite(path, other):
    size = os.path.getsize(path)
    with open(path, "wb") as f:
        f.write(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())


def _flip_byte(path, other):
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        data[len(data) // 2] ^= 0xFF
        f.seek(0)
        f.write(bytes(data))


def _copy_map(path, other):
    shutil.copyfile(other, path)


def _copy_map_and_record(path, other):
    shutil.copyfile(other, path)
    shutil.copyfile(other[:-5] + ".json", path[:-5] + ".json")


@pytest.mark.parametrize("damage", [_truncate, _overwrite, _flip_byte, _copy_map, _copy_map_and_record])
def test_corrupt_maps_are_found_and_recomputed(tmp_path, damage):
    """Damaged maps (truncated, overwritten, a flipped byte, another case's map or record) fail the start check, and
    precompute-maps recomputes them instead of calling them up to date."""
    folder = _three_cases(tmp_path)
    precompute_maps(folder, ["rrw", "boundary"], 3, True, None, progress=False)
    good = _read(map_file(maps_folder(folder), "c0", "boundary"), "boundary")
    target = map_file(maps_folder(folder), "c0", "boundary")
    damage(target, map_file(maps_folder(folder), "c2", "boundary"))
    with pytest.raises(RuntimeError, match=r"(corrupt|stale): 1 case\(s\), e.g. c0.*Run: CMD"):
        check_maps(folder, ["c0", "c1", "c2"], "boundary", "CMD")
    check_maps(folder, ["c0", "c1", "c2"], "rrw", "CMD")  # the other kind is intact
    again = precompute_maps(folder, ["rrw", "boundary"], 3, True, None, progress=False)
    assert again["computed"] == 1 and again["stale_before"] + again["corrupt_before"] == 1
    assert np.array_equal(_read(target, "boundary"), good)
    check_maps(folder, ["c0", "c1", "c2"], "boundary", "CMD")


def test_unreadable_map_in_a_loader_names_file_and_command(tmp_path):
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    from nnunet_losses.nnunet.map_pipeline import MapDataset, MapReadError

    folder = _three_cases(tmp_path)
    precompute_maps(folder, ["boundary"], 3, True, None, progress=False)
    dataset = MapDataset(nnUNetDatasetBlosc2(folder), "boundary", "nnunet-losses precompute-maps -d 5 -c 2d")
    data = dataset.load_case("c1")[0]
    assert data.shape == (4, 2, 24, 20) and np.isfinite(data[:, :, 3:9, 2:7]).all()
    path = map_file(maps_folder(folder), "c1", "boundary")
    _overwrite(path, None)
    with pytest.raises(MapReadError, match=f"cannot read the precomputed map {path} .*"
                                           f"Run: nnunet-losses precompute-maps -d 5 -c 2d") as info:
        dataset.load_case("c1")[0][:, :, 3:9, 2:7]
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)  # crosses process boundaries intact


def test_copied_dataset_is_up_to_date(tmp_path):
    """`cp -r` gives every file a new mtime; the content decides, so nothing is recomputed."""
    folder = _three_cases(tmp_path / "a")
    precompute_maps(folder, ["rrw", "boundary"], 3, True, None, progress=False)
    copy = str(tmp_path / "b" / "nnUNetPlans_2d")
    for src, dst in ((folder, copy), (maps_folder(folder), maps_folder(copy))):
        shutil.copytree(src, dst, copy_function=shutil.copy)  # cp -r: contents, not times
    check_maps(copy, ["c0", "c1", "c2"], "rrw", "CMD")
    assert precompute_maps(copy, ["rrw", "boundary"], 3, True, None, progress=False)["computed"] == 0


def test_up_to_date_writes_nothing_and_read_only_is_one_line(tmp_path, monkeypatch):
    """Read-only shared data: no write when up to date; otherwise one message naming the folder."""
    folder = _three_cases(tmp_path)
    precompute_maps(folder, ["rrw", "boundary"], 3, True, None, progress=False)
    before = _snapshot(str(tmp_path))
    summary = precompute_maps(folder, ["rrw", "boundary"], 3, True, None, progress=False)
    assert summary["computed"] == 0 and _snapshot(str(tmp_path)) == before

    os.remove(map_file(maps_folder(folder), "c1", "rrw"))
    before = _snapshot(str(tmp_path))
    read_only = os.path.abspath(maps_folder(folder))
    os.chmod(read_only, 0o555)
    if os.geteuid() == 0:  # root writes anyway: deny as a read-only mount does
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: not (os.path.abspath(p) == read_only
                                                                   and mode & os.W_OK) and real_access(p, mode))
    try:
        with pytest.raises(PermissionError) as info:
            precompute_maps(folder, ["rrw", "boundary"], 3, True, None, progress=False)
    finally:
        os.chmod(read_only, 0o755)
    message = str(info.value)
    assert "\n" not in message and f"cannot write maps into {read_only}" in message and "1 case(s)" in message
    assert _snapshot(str(tmp_path)) == before


def _flip_bit_in_the_middle(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2)
        byte = f.read(1)[0]
        f.seek(size // 2)
        f.write(bytes([byte ^ 0x10]))


@pytest.mark.parametrize("kind", ["rrw", "boundary"])
def test_start_check_reads_every_byte(tmp_path, kind):
    """One bit flipped in the middle of a map (far from its first and last 64 KiB), or of the segmentation it was
    computed from: training does not start."""
    folder = str(tmp_path / "nnUNetPlans_2d")
    cases = ["c0", "c1", "c2"]
    for i, case in enumerate(cases):
        write_preprocessed_case(folder, case, blobs((32, 160, 160), 3, 30 + i)[None])
    precompute_maps(folder, [kind], 3, True, None, progress=False)
    check_maps(folder, cases, kind, "CMD")
    path = map_file(maps_folder(folder), "c1", kind)
    assert os.path.getsize(path) > 4 * 65536
    _flip_bit_in_the_middle(path)
    with pytest.raises(RuntimeError, match=r"corrupt: 1 case\(s\), e.g. c1\). Run: CMD --voxel-units$"):
        check_maps(folder, cases, kind, "CMD")
    assert precompute_maps(folder, [kind], 3, True, None, progress=False)["corrupt_before"] == 1
    check_maps(folder, cases, kind, "CMD")

    seg = os.path.join(folder, "c2_seg.b2nd")
    assert os.path.getsize(seg) > 2 * 65536 + 2  # its middle byte lies outside the first and last 64 KiB
    _flip_bit_in_the_middle(seg)
    with pytest.raises(RuntimeError, match=r"stale: 1 case\(s\), e.g. c2\). Run: CMD --voxel-units$"):
        check_maps(folder, cases, kind, "CMD")


def test_a_file_where_the_maps_folder_goes(tmp_path, capsys, monkeypatch):
    """Said as it is (a file, not a folder) with what to do, in one line, also from the command line."""
    from types import SimpleNamespace

    from nnunet_losses import cli
    from nnunet_losses.nnunet import datasets

    folder = _three_cases(tmp_path)
    open(maps_folder(folder), "w").write("not a folder")
    with pytest.raises(OSError) as info:
        precompute_maps(folder, ["rrw"], 3, True, None, progress=False)
    message = str(info.value)
    assert "\n" not in message and "not writable" not in message
    assert f"{maps_folder(folder)} is a file, not a folder" in message and "move or delete it" in message
    with pytest.raises(RuntimeError, match=r"_maps is a file, not the folder of precomputed maps: move or delete "
                                           r"it. Run: CMD$"):
        check_maps(folder, ["c0", "c1", "c2"], "rrw", "CMD")

    labels = SimpleNamespace(has_regions=False, num_segmentation_heads=3)
    monkeypatch.setattr(datasets, "resolve_dataset", lambda d, c, p: (folder, labels, True, (1.0, 1.0, 1.0)))
    assert cli.main(["precompute-maps", "-d", "5", "-c", "2d", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"nnunet-losses precompute-maps: error: cannot write maps into {maps_folder(folder)}")
    assert open(maps_folder(folder)).read() == "not a folder"


_PAUSED_RUN = """
import os, sys, time
ready, go, folder = sys.argv[1:]
real_replace = os.replace

def paused(src, dst):  # the first map: hold its temporary file in flight until the other run has finished
    if dst.endswith(".b2nd") and not os.path.exists(ready):
        os.close(os.open(ready, os.O_CREAT | os.O_WRONLY))
        deadline = time.time() + 120
        while not os.path.exists(go):
            if time.time() > deadline:
                sys.exit("not released")
            time.sleep(0.01)
    return real_replace(src, dst)

os.replace = paused
from nnunet_losses.nnunet.precompute import precompute_maps
summary = precompute_maps(folder, ["rrw", "boundary"], 3, True, None, progress=False)
print("computed", summary["computed"])
"""


def test_concurrent_runs_on_one_dataset(tmp_path):
    """Two folds' jobs run precompute-maps on one dataset at once: one run is held with a map's temporary file in
    flight while the other runs from start to end; both finish, and the maps are right."""
    folder = _three_cases(tmp_path / "pre")
    ready, go = str(tmp_path / "ready"), str(tmp_path / "go")
    first = subprocess.Popen([sys.executable, "-c", _PAUSED_RUN, ready, go, folder], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not os.path.exists(ready) and first.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert os.path.exists(ready), first.communicate(timeout=30)
        in_flight = glob.glob(os.path.join(glob.escape(maps_folder(folder)), "*.b2nd.tmp*"))
        assert len(in_flight) == 1
        second = precompute_maps(folder, ["rrw", "boundary"], 3, True, None, progress=False)
        assert second["computed"] == 3 and glob.glob(os.path.join(glob.escape(maps_folder(folder)), "*.tmp*")) \
            == in_flight  # the other run's file is left alone
    finally:
        open(go, "w").close()
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0 and out.strip() == "computed 3", err[-2000:]
    assert not glob.glob(os.path.join(glob.escape(maps_folder(folder)), "*.tmp*"))
    for kind in ("rrw", "boundary"):
        check_maps(folder, ["c0", "c1", "c2"], kind, "CMD")
    assert precompute_maps(folder, ["rrw", "boundary"], 3, True, None, progress=False)["computed"] == 0
    labels = blobs((2, 24, 20), 3, 10)
    stored = _read(map_file(maps_folder(folder), "c0", "boundary"), "boundary")
    assert np.allclose(stored[:, 1], boundary_map(labels[1], 3), atol=0.125 + 1e-6)


def test_leftovers_of_killed_record_and_manifest_writes(tmp_path):
    """A kill while a map, its record or the manifest is written leaves a temporary file; the next run removes it
    (its writer is gone) but not a file another host is writing now."""
    from nnunet_losses._files import temporary_path

    folder = _three_cases(tmp_path)
    precompute_maps(folder, ["rrw"], 3, True, None, progress=False)
    maps = maps_folder(folder)
    names = [os.path.join(maps, name) for name in ("manifest.json", "c0_rrw.json", "c1_rrw.b2nd")]
    code = ("import os, signal, sys\n"
            "from nnunet_losses._files import atomic_file\n"
            "files = [atomic_file(path, 'w') for path in sys.argv[1:]]\n"
            "for f in files:\n"
            "    f.__enter__().write('{\"half')\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    assert subprocess.run([sys.executable, "-c", code, *names]).returncode == -signal.SIGKILL
    killed = glob.glob(os.path.join(glob.escape(maps), "*.tmp*"))
    assert len(killed) == 3
    elsewhere = temporary_path(os.path.join(maps, "c2_rrw.json"), pid=1, where="node-17")
    open(elsewhere, "w").close()
    again = precompute_maps(folder, ["rrw"], 3, True, None, progress=False)
    assert again["computed"] == 0 and glob.glob(os.path.join(glob.escape(maps), "*.tmp*")) == [elsewhere]
    check_maps(folder, ["c0", "c1", "c2"], "rrw", "CMD")
