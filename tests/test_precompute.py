"""precompute-maps: values equal the map functions, per-slice 2D vs 3D, stale detection, resume, atomic writes."""
import os
import time

import numpy as np
import pytest

from nnunet_losses.maps import boundary_map, rrw_inside_map, rrw_own_class_map
from nnunet_losses.nnunet.precompute import (
    case_status, check_maps, compute_case_map, map_file, maps_folder, precompute_maps)


def _blobs(shape, num_classes, seed):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=(num_classes,) + shape), 2.0, axes=range(1, len(shape) + 1))
    return np.argmax(field, 0).astype(np.int16)


def _write_case(folder, case, seg):
    import blosc2

    os.makedirs(folder, exist_ok=True)
    data = np.random.default_rng(0).normal(size=seg.shape).astype(np.float32)
    blosc2.asarray(data, urlpath=os.path.join(folder, case + ".b2nd"), mode="w")
    path = os.path.join(folder, case + "_seg.b2nd")
    tmp = path + ".x"
    blosc2.asarray(seg, urlpath=tmp, mode="w")
    os.replace(tmp, path)


def _read(path, kind):
    import blosc2

    from nnunet_losses.nnunet.precompute import dequantise

    return dequantise(blosc2.open(urlpath=path, mode="r")[...], kind)


def test_own_class_map_is_the_inside_map_collapsed():
    labels = _blobs((30, 40), 4, 1)
    labels[0, 0] = 9  # an ignore label: no class
    own = rrw_own_class_map(labels, 4)
    inside = rrw_inside_map(labels, 4)
    for k in range(4):
        assert np.allclose(own * (labels == k), inside[k], atol=1e-6)
    assert own[0, 0] == 0


@pytest.mark.parametrize("is_2d", [True, False])
def test_precomputed_values(tmp_path, is_2d):
    folder = str(tmp_path / "nnUNetPlans_x")
    seg = _blobs((5, 24, 20), 3, 2)[None]
    seg[0, 0, :3, :3] = -1  # outside the nonzero mask: background
    _write_case(folder, "case_a", seg)
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
        _write_case(folder, f"c{i}", _blobs((1, 16, 16), 3, i)[None])
    first = precompute_maps(folder, ["rrw"], 3, True, None, progress=False)
    assert first["computed"] == 3
    again = precompute_maps(folder, ["rrw"], 3, True, None, progress=False)
    assert again["computed"] == 0 and again["up_to_date"] == 3
    check_maps(folder, ["c0", "c1", "c2"], "rrw", "CMD")

    time.sleep(0.01)
    _write_case(folder, "c1", _blobs((1, 16, 16), 3, 7)[None])  # re-preprocessed: new segmentation
    assert case_status(folder, "c1", "rrw") == "stale"
    os.remove(map_file(maps_folder(folder), "c2", "rrw"))
    assert case_status(folder, "c2", "rrw") == "missing"
    with pytest.raises(RuntimeError, match="stale: 1 case.*missing: 1 case.*Run: CMD|missing: 1 case.*stale: 1"):
        check_maps(folder, ["c0", "c1", "c2"], "rrw", "CMD")
    with pytest.raises(RuntimeError, match="Run: nnunet-losses precompute-maps"):
        check_maps(folder, ["c0", "c1", "c2"], "rrw", "nnunet-losses precompute-maps -d 1 -c 2d")

    # an interrupted write leaves only a .tmp file, which is neither used nor counted
    open(map_file(maps_folder(folder), "c2", "rrw") + ".tmp", "w").write("half")
    third = precompute_maps(folder, ["rrw"], 3, True, None, progress=False, num_processes=2)
    assert third["computed"] == 2 and third["stale_before"] == 1
    check_maps(folder, ["c0", "c1", "c2"], "rrw", "CMD")
    assert not os.path.exists(map_file(maps_folder(folder), "c2", "rrw") + ".tmp")


def test_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="plan_and_preprocess"):
        precompute_maps(str(tmp_path / "nope"), ["rrw"], 3, True, None, progress=False)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no preprocessed cases"):
        precompute_maps(str(tmp_path / "empty"), ["rrw"], 3, True, None, progress=False)
    with pytest.raises(ValueError, match="unknown map kind"):
        precompute_maps(str(tmp_path / "empty"), ["ac"], 3, True, None, progress=False)
