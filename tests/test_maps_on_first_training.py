"""Maps made by the first training (precompute.ensure_maps): made when missing or stale, once when several
trainings start together, resumed after a kill, refused when switched off or when the folder is read-only."""
import glob
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nnunet_losses.nnunet.precompute import (
    LOCK, MAKE_MAPS, MapsNotReady, case_status, ensure_maps, map_file, map_settings, maps_folder, precompute_maps)


def _data_folder(root, num_cases=6, shape=(1, 3, 40, 48)):
    """A preprocessed data folder as nnU-Net writes it (segmentations only: maps need nothing else)."""
    import blosc2

    folder = os.path.join(root, "nnUNetPlans_2d")
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    for i in range(num_cases):
        seg = np.zeros(shape, np.int16)
        seg[..., 5 + i:20 + i, 8:30] = 1
        seg[..., 25:30, 30:38 + i] = 2
        seg[rng.random(shape) < 0.01] = 3
        blosc2.asarray(seg, urlpath=os.path.join(folder, f"case{i}_seg.b2nd"), mode="w")
    return folder


def _cases(folder):
    return sorted(f[:-len("_seg.b2nd")] for f in os.listdir(folder) if f.endswith("_seg.b2nd"))


def _ensure(folder, log, spacing=(1.0, 1.0)):
    return ensure_maps(folder, _cases(folder), "rrw", "CMD", num_classes=4, is_2d=True, spacing=spacing,
                       log=log.append)


def _all_ok(folder, spacing=(1.0, 1.0)):
    settings = map_settings("rrw", 4, True, spacing)
    return all(case_status(folder, c, settings) == "ok" for c in _cases(folder))


def test_missing_maps_are_made_once_and_logged(tmp_path):
    folder = _data_folder(str(tmp_path))
    log = []
    settings = _ensure(folder, log)
    assert settings["spacing"] == [1.0, 1.0] and _all_ok(folder)
    assert "no precomputed 'rrw' maps" in log[0] and "making them now, as `CMD` would" in log[0]
    assert "'rrw' maps of 6 case(s) made, 0 up to date" in log[-1]
    # the next training finds them up to date and writes nothing
    stamps = {f: os.stat(f).st_mtime_ns for f in glob.glob(os.path.join(maps_folder(folder), "*"))}
    log.clear()
    _ensure(folder, log)
    assert log == [] and stamps == {f: os.stat(f).st_mtime_ns for f in stamps}


def test_a_changed_segmentation_is_remade_in_the_manifest_units(tmp_path):
    """A re-preprocessed case makes its map stale; maps made in voxels (precompute-maps --voxel-units) stay voxels."""
    import blosc2

    folder = _data_folder(str(tmp_path))
    precompute_maps(folder, ["rrw"], 4, True, None, progress=False)  # voxel units
    seg_path = os.path.join(folder, "case2_seg.b2nd")
    seg = blosc2.open(urlpath=seg_path, mode="r")[...]
    seg[..., :3, :3] = 3
    blosc2.asarray(seg, urlpath=seg_path, mode="w")
    log = []
    settings = _ensure(folder, log, spacing=(0.5, 0.5))
    assert settings["spacing"] is None and _all_ok(folder, spacing=None)
    assert "stale: 1 case(s), e.g. case2" in log[0] and "1 case(s) made, 5 up to date" in log[-1]


@pytest.mark.parametrize("value", ["f", "0", "False", "no"])
def test_switched_off_refuses_with_the_command(tmp_path, monkeypatch, value):
    folder = _data_folder(str(tmp_path))
    monkeypatch.setenv(MAKE_MAPS, value)
    with pytest.raises(MapsNotReady, match=r"Run: CMD .*nnUNet_losses_make_maps is off") as err:
        _ensure(folder, [])
    assert "\n" not in str(err.value) and not os.path.exists(maps_folder(folder))


def test_an_unknown_switch_value_names_the_variable(tmp_path, monkeypatch):
    folder = _data_folder(str(tmp_path))
    monkeypatch.setenv(MAKE_MAPS, "sometimes")
    with pytest.raises(ValueError, match="nnUNet_losses_make_maps='sometimes': expected a false value"):
        _ensure(folder, [])


def test_a_read_only_dataset_refuses_in_one_line(tmp_path, monkeypatch):
    folder = _data_folder(str(tmp_path))
    read_only = os.path.abspath(os.path.dirname(folder))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: os.path.abspath(p) != read_only and
                        real_access(p, mode, **kw))  # root may write anywhere: chmod alone would not show it
    with pytest.raises(MapsNotReady) as err:
        _ensure(folder, [])
    message = str(err.value)
    assert "\n" not in message and "Run: CMD" in message
    assert f"the training cannot make them itself: cannot write maps into {maps_folder(folder)}" in message
    assert not os.path.exists(maps_folder(folder))


_CHILD = textwrap.dedent("""
    import os, signal, sys, time
    from nnunet_losses._files import temporary_path
    from nnunet_losses.nnunet import precompute

    folder, mode = sys.argv[1], sys.argv[2]
    cases = sorted(f[:-9] for f in os.listdir(folder) if f.endswith("_seg.b2nd"))
    if mode == "kill":  # die (SIGKILL, nothing cleaned up) while the third case's map is written
        compute, done = precompute._compute_job, []
        def dying(args):
            if len(done) == 2:
                real = precompute.atomic_write_bytes
                def write(path, data):
                    with open(temporary_path(path), "wb") as f:
                        f.write(data[: len(data) // 2])
                    os.kill(os.getpid(), signal.SIGKILL)
                precompute.atomic_write_bytes = write
            done.append(args)
            return compute(args)
        precompute._compute_job = dying
    if mode == "slow":  # the maker holds the lock long enough for the other training to find it held
        compute = precompute._compute_job
        precompute._compute_job = lambda args: (time.sleep(0.2), compute(args))[1]
    precompute.ensure_maps(folder, cases, "rrw", "CMD", num_classes=4, is_2d=True, spacing=(1.0, 1.0),
                           log=lambda line: print(line, flush=True))
""")


def _child(folder, mode):
    return subprocess.Popen([sys.executable, "-c", _CHILD, folder, mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_trainings_starting_together_make_the_maps_once(tmp_path):
    folder = _data_folder(str(tmp_path), num_cases=8)
    first = _child(folder, "slow")
    second = _child(folder, "slow")
    outputs = [p.communicate(timeout=120) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    logs = [out for out, _ in outputs]
    made = [int(line.split("maps of ")[1].split(" case")[0]) for log in logs for line in log.splitlines()
            if "case(s) made" in line]
    assert sum(made) == 8, logs  # one made all eight, the other made none
    assert any("another process is making the maps" in log for log in logs) or len(made) == 1, logs
    assert _all_ok(folder)


def test_a_kill_during_the_making_resumes(tmp_path):
    folder = _data_folder(str(tmp_path), num_cases=6)
    killed = _child(folder, "kill")
    out, err = killed.communicate(timeout=120)
    assert killed.returncode == -9, (out, err)
    assert glob.glob(os.path.join(glob.escape(maps_folder(folder)), "case2_rrw.b2nd.tmp*"))  # half a map
    assert os.path.exists(os.path.join(maps_folder(folder), LOCK))
    log = []
    _ensure(folder, log)  # the dead process's lock is gone with it: no wait
    assert not any("waiting" in line for line in log)
    assert "4 case(s) made, 2 up to date" in log[-1] and _all_ok(folder)
    assert not glob.glob(os.path.join(glob.escape(maps_folder(folder)), "*.tmp*"))
    assert os.path.getsize(map_file(maps_folder(folder), "case2", "rrw")) > 0


@pytest.mark.nnunet
def test_nnunet_train_makes_the_maps_when_two_folds_start_together(tmp_path):
    """`nnUNetv2_plan_and_preprocess` then two `nnUNetv2_train` at once, no other command: both train on the same
    maps, byte for byte those `precompute-maps` writes."""
    import shutil

    from nnunet_losses import ext_trainers
    from nnunet_losses.nnunet.synthetic import nnunet_env, write_synthetic_dataset

    env = nnunet_env(str(tmp_path))
    env["nnUNet_extTrainer"] = os.path.dirname(ext_trainers.__file__)
    raw = write_synthetic_dataset(env["nnUNet_raw"], 941, "Synth941", num_train=6, num_test=0)
    bin_dir = os.path.dirname(sys.executable)
    subprocess.run([os.path.join(bin_dir, "nnUNetv2_plan_and_preprocess"), "-d", "941", "-c", "2d", "-npfp", "1",
                    "-np", "1"], env=env, check=True, capture_output=True)
    trainings = [subprocess.Popen([os.path.join(bin_dir, "nnUNetv2_train"), "941", "2d", str(fold), "-tr",
                                   "RRWTrainer_ep1_it2", "-device", "cpu"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for fold in (0, 1)]
    outputs = [p.communicate(timeout=600)[0] for p in trainings]
    assert [p.returncode for p in trainings] == [0, 0], [o[-3000:] for o in outputs]
    made = [o for o in outputs if "making them now" in o]
    assert made and "'rrw' maps of 6 case(s) made" in "".join(made)
    for o in outputs:
        assert "using precomputed 'rrw' maps" in o
    pre = os.path.join(env["nnUNet_preprocessed"], os.path.basename(raw))
    maps = os.path.join(pre, "nnUNetPlans_2d_maps")
    fresh = dict(env, nnUNet_preprocessed=str(tmp_path / "copy"))
    shutil.copytree(pre, str(tmp_path / "copy" / os.path.basename(raw)),
                    ignore=shutil.ignore_patterns("nnUNetPlans_2d_maps"))
    subprocess.run([os.path.join(bin_dir, "nnunet-losses"), "precompute-maps", "-d", "941", "-c", "2d", "--kinds",
                    "rrw", "--no-progress"], env=fresh, check=True, capture_output=True)
    written = sorted(f for f in os.listdir(maps) if f.endswith(".b2nd"))
    assert len(written) == 6
    for name in written:
        with open(os.path.join(maps, name), "rb") as a, \
                open(str(tmp_path / "copy" / os.path.basename(raw) / "nnUNetPlans_2d_maps" / name), "rb") as b:
            assert a.read() == b.read(), name
