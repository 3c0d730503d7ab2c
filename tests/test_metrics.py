"""Metrics: surface distances against medpy (the implementation nnU-Net v1 used) and against a brute-force reference
written here (HD, both HD95s, ASSD, NSD), empty-mask conventions, folder evaluation on NIfTI files with anisotropic
spacing, warnings and --strict, and the ``evaluate`` command."""
import csv
import json
import math
import os
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.distance import cdist

from nnunet_losses.evaluation import parse_class_arguments, parse_tolerances
from nnunet_losses.metrics import class_metrics, surface
from nnunet_losses.metrics.evaluate import EvalClass
from nnunet_losses.nnunet.evaluation import evaluate_folder

surface_distances = surface.surface_distances

medpy_binary = pytest.importorskip("medpy.metric.binary")


def _blob(shape, seed, threshold=0.5, sigma=2.0):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), sigma) > threshold


def _medpy(pred, ref, spacing):
    return (medpy_binary.hd(pred, ref, spacing), medpy_binary.hd95(pred, ref, spacing),
            medpy_binary.assd(pred, ref, spacing))


def _ours_medpy_subset(distances):
    return (distances.hd, distances.hd95, distances.assd)


def brute_force(pred, ref, spacing, tolerance):
    """Every surface metric from all pairwise distances between the surface voxels (scipy erosion + cdist)."""
    spacing = np.ones(pred.ndim) if spacing is None else np.asarray(spacing, float)
    structure = ndimage.generate_binary_structure(pred.ndim, 1)
    surfaces = [np.argwhere(m & ~ndimage.binary_erosion(m, structure, border_value=0)) * spacing for m in (pred, ref)]
    pairwise = cdist(surfaces[0], surfaces[1])
    forward, backward = pairwise.min(1), pairwise.min(0)
    pooled = np.concatenate([forward, backward])
    nsd = (np.sum(forward <= tolerance) + np.sum(backward <= tolerance)) / pooled.size
    return (pooled.max(), np.percentile(pooled, 95),
            max(np.percentile(forward, 95), np.percentile(backward, 95)), pooled.mean(), nsd)


@pytest.mark.parametrize("shape,spacing", [((40, 50), (0.7, 1.3)), ((12, 60, 50), (5.0, 0.8, 0.8)),
                                           ((30, 30, 30), None), ((64,), (2.0,))])
@pytest.mark.parametrize("seed", [0, 1])
def test_surface_distances_equal_medpy(shape, spacing, seed):
    pred, ref = _blob(shape, seed, 0.51), _blob(shape, seed + 10, 0.49)
    np.testing.assert_allclose(_ours_medpy_subset(surface_distances(pred, ref, spacing)), _medpy(pred, ref, spacing),
                               rtol=1e-5)


@pytest.mark.parametrize("kdtree", [True, False])
@pytest.mark.parametrize("shape,spacing,tolerance", [((40, 50), (0.7, 1.3), 1.0), ((12, 30, 25), (5.0, 0.8, 0.8), 2.1),
                                                     ((25, 25, 25), None, 1.5), ((64,), (2.0,), 3.0)])
def test_every_surface_metric_equals_a_brute_force_reference(shape, spacing, tolerance, kdtree, monkeypatch):
    monkeypatch.setattr(surface, "KDTREE_VOXELS_PER_POINT", 0 if kdtree else 10 ** 9)  # both distance paths
    pred, ref = _blob(shape, 5, 0.51), _blob(shape, 15, 0.49)
    np.testing.assert_allclose(surface_distances(pred, ref, spacing, tolerance),
                               brute_force(pred, ref, spacing, tolerance), rtol=1e-5)


def test_a_small_spurious_blob_separates_the_two_hd95s():
    ref = np.zeros((60, 60), bool)
    ref[5:25, 5:25] = True
    pred = ref.copy()
    pred[50:53, 50:53] = True  # 8 surface voxels far away: ~10% of the prediction's surface, ~5% of both
    ours = surface_distances(pred, ref, (1.0, 1.0), 1.0)
    np.testing.assert_allclose(ours, brute_force(pred, ref, (1.0, 1.0), 1.0), rtol=1e-6)
    assert ours.hd95_max > 30 and ours.hd95 < 3  # max-directed sees the blob, pooled barely
    assert ours.nsd == pytest.approx(152 / 160)


@pytest.mark.parametrize("kdtree", [True, False])
def test_nsd_counts_a_distance_equal_to_the_tolerance_on_both_paths(kdtree, monkeypatch):
    monkeypatch.setattr(surface, "KDTREE_VOXELS_PER_POINT", 0 if kdtree else 10 ** 9)
    ref = np.zeros((30, 30), bool)
    ref[5:20, 5:20] = True
    pred = np.roll(ref, 1, axis=1)  # every surface voxel is 0 or exactly one step (0.7 mm) from the other
    assert surface_distances(pred, ref, (1.3, 0.7), 0.7).nsd == 1.0
    assert surface_distances(pred, ref, (1.3, 0.7), 0.69).nsd < 1.0
    with pytest.raises(ValueError, match="tolerance"):
        surface_distances(pred, ref, (1.3, 0.7), -1.0)


def test_surface_by_slicing_equals_scipys_erosion():
    rng = np.random.default_rng(0)
    for shape in [(40, 50), (12, 30, 25), (2, 5, 7), (64,), (3, 3, 3)]:
        mask = rng.random(shape) > 0.3
        expected = mask & ~ndimage.binary_erosion(mask, ndimage.generate_binary_structure(mask.ndim, 1),
                                                  border_value=0)
        np.testing.assert_array_equal(surface.surface(mask), expected)


def test_surface_distances_masks_touching_the_border_and_single_voxels():
    pred = np.zeros((20, 20), bool)
    pred[:5, :] = True  # touches three borders: medpy counts them as surface
    ref = np.zeros((20, 20), bool)
    ref[15, 7] = True
    np.testing.assert_allclose(_ours_medpy_subset(surface_distances(pred, ref, (1.0, 2.0))),
                               _medpy(pred, ref, (1.0, 2.0)), rtol=1e-6)
    assert surface_distances(ref, ref) == (0.0, 0.0, 0.0, 0.0, 1.0)


def test_surface_distances_refuse_empty_and_mismatched_masks():
    full = np.ones((4, 4), bool)
    with pytest.raises(ValueError, match="non-empty"):
        surface_distances(full, np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="shapes differ"):
        surface_distances(full, np.ones((4, 5), bool))
    with pytest.raises(ValueError, match="spacing"):
        surface_distances(full, full, (1.0,))


def test_empty_mask_conventions():
    empty, mask = np.zeros((10, 20), bool), np.zeros((10, 20), bool)
    mask[2:5, 3:9] = True
    spacing = (2.0, 1.0)
    diagonal = math.hypot(10 * 2.0, 20 * 1.0)
    shape_metrics = ("dice", "iou", "hd", "hd95", "hd95_max", "assd", "nsd")

    both_empty = class_metrics(empty, empty, spacing)  # nnU-Net's evaluator: undefined
    assert both_empty["status"] == "both_empty"
    assert all(math.isnan(both_empty[m]) for m in shape_metrics)
    assert math.isnan(both_empty["fnr"]) and math.isnan(both_empty["precision"]) and both_empty["fpr"] == 0.0
    one = class_metrics(empty, empty, spacing, both_empty="one")
    assert [one[m] for m in shape_metrics] == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="both_empty"):
        class_metrics(empty, empty, spacing, both_empty="zero")

    missed = class_metrics(empty, mask, spacing)
    assert missed["status"] == "pred_empty" and missed["dice"] == 0.0 and missed["fnr"] == 1.0
    assert missed["recall"] == 0.0 and math.isnan(missed["precision"]) and missed["nsd"] == 0.0
    assert missed["hd"] == missed["hd95"] == missed["hd95_max"] == missed["assd"] == pytest.approx(diagonal)
    assert class_metrics(empty, mask, spacing, both_empty="one")["dice"] == 0.0

    false_alarm = class_metrics(mask, empty, spacing)
    assert false_alarm["status"] == "ref_empty" and false_alarm["precision"] == 0.0
    assert math.isnan(false_alarm["recall"]) and false_alarm["fpr"] == pytest.approx(18 / 200)
    assert false_alarm["vol_pred"] == pytest.approx(18 * 2.0) and false_alarm["vol_ref"] == 0.0


def test_counts_ratios_and_ignore_mask():
    pred, ref = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    pred[0:4, 0:4] = True
    ref[2:6, 2:6] = True
    row = class_metrics(pred, ref, (1.0, 1.0))
    assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (4, 12, 12, 36)
    assert row["dice"] == pytest.approx(8 / 32) and row["iou"] == pytest.approx(4 / 28)
    assert row["fpr"] == pytest.approx(12 / 48) and row["precision"] == pytest.approx(4 / 16)
    valid = np.ones((8, 8), bool)
    valid[0:2, :] = False  # predicted voxels under the ignore label are dropped
    masked = class_metrics(pred, ref, (1.0, 1.0), valid)
    assert (masked["tp"], masked["fp"], masked["fn"], masked["tn"]) == (4, 4, 12, 28)


def test_single_slice_images_are_measured_in_2d():
    pred, ref = _blob((1, 40, 40), 3), _blob((1, 40, 40), 4)
    row = class_metrics(pred, ref, (999.0, 1.0, 1.5), nsd_tolerance=2.0)
    np.testing.assert_allclose((row["hd"], row["hd95"], row["assd"]), _medpy(pred[0], ref[0], (1.0, 1.5)),
                               rtol=1e-5)
    np.testing.assert_allclose([row[m] for m in ("hd", "hd95", "hd95_max", "assd", "nsd")],
                               brute_force(pred[0], ref[0], (1.0, 1.5), 2.0), rtol=1e-5)


def _write(array, path, spacing_xyz):
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing_xyz)
    sitk.WriteImage(image, str(path))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """ACDC-like volumes (z, y, x) = (10, 48, 40) (few thick slices), spacing 10 x 1.5 x 1.25 mm, labels 1-3 with an
    ignore band."""
    root = tmp_path_factory.mktemp("eval")
    pred_dir, ref_dir = root / "pred", root / "gt"
    pred_dir.mkdir()
    ref_dir.mkdir()
    spacing_zyx = (10.0, 1.5, 1.25)
    cases = {}
    for i in range(4):
        ref = np.zeros((10, 48, 40), np.uint8)
        pred = np.zeros_like(ref)
        for label, threshold in ((1, 0.505), (2, 0.512), (3, 0.518)):
            ref[_blob(ref.shape, 100 * i + label, threshold, 3)] = label
            pred[_blob(ref.shape, 100 * i + label + 50, threshold, 3) | (ref == label)
                 & _blob(ref.shape, 7 + i, 0.5, 3)] = label
        if i == 3:
            pred[pred == 3] = 0  # a missed class
            ref[:, :4] = 4  # ignore label
        _write(ref, ref_dir / f"case_{i}.nii.gz", spacing_zyx[::-1])
        _write(pred, pred_dir / f"case_{i}.nii.gz", spacing_zyx[::-1])
        cases[f"case_{i}"] = (pred, ref)
    dataset = {"labels": {"background": 0, "RV": 1, "MLV": 2, "LVC": 3, "ignore": 4}, "file_ending": ".nii.gz",
               "channel_names": {"0": "MRI"}, "numTraining": 4}
    (root / "dataset.json").write_text(json.dumps(dataset))
    return {"root": root, "pred": pred_dir, "ref": ref_dir, "cases": cases, "spacing": spacing_zyx}


def test_evaluate_folder_matches_medpy_with_header_spacing(folders, tmp_path):
    out = tmp_path / "metrics.json"
    result = evaluate_folder(str(folders["pred"]), str(folders["ref"]), output=str(out), progress=False)
    assert [c["name"] for c in result["classes"]] == ["RV", "MLV", "LVC"] and result["ignore_label"] == 4
    rows = {(r["case"], r["class"]): r for r in result["cases"]}
    for case, (pred, ref) in folders["cases"].items():
        valid = ref != 4
        for label, name in ((1, "RV"), (2, "MLV"), (3, "LVC")):
            row = rows[(case, name)]
            p, r = (pred == label) & valid, (ref == label) & valid
            if p.any():
                np.testing.assert_allclose((row["hd"], row["hd95"], row["assd"]),
                                           _medpy(p, r, folders["spacing"]), rtol=1e-5)
                np.testing.assert_allclose((row["hd95_max"], row["nsd"]),
                                           brute_force(p, r, folders["spacing"], 1.0)[2::2], rtol=1e-5)
                assert row["dice"] == pytest.approx(medpy_binary.dc(p, r))
            else:
                assert row["status"] == "pred_empty" and row["dice"] == 0.0
    summary = result["summary"]
    assert summary["LVC"]["status"]["pred_empty"] == 1
    assert summary["LVC"]["precision"]["n_undefined"] == 1 and summary["LVC"]["precision"]["n"] == 3
    dice = [rows[(c, "RV")]["dice"] for c in folders["cases"]]
    assert summary["RV"]["dice"]["mean"] == pytest.approx(np.mean(dice))
    assert summary["RV"]["dice"]["median"] == pytest.approx(np.median(dice))

    saved = json.loads(out.read_text())  # valid JSON: NaN written as null
    assert saved["summary"] == json.loads(json.dumps(summary))
    assert saved["aggregation"]["both_empty"] == "exclude" and "pooled" in saved["hd95"]["hd95"]
    assert saved["nsd_tolerance_mm"] == {"RV": 1.0, "MLV": 1.0, "LVC": 1.0} and saved["warnings"] == []
    assert "NaN" not in out.read_text()
    with open(tmp_path / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 12 and table[0]["case"] == "case_0" and "hd95" in table[0]


def test_evaluate_regions_labels_and_errors(folders, tmp_path):
    regions = parse_class_arguments(["1,2,3", "2,3", "3"])
    assert regions[0] == EvalClass("1,2,3", (1, 2, 3))
    result = evaluate_folder(str(folders["pred"]), str(folders["ref"]), classes=regions, progress=False)
    whole = [r for r in result["cases"] if r["class"] == "1,2,3" and r["case"] == "case_0"][0]
    pred, ref = folders["cases"]["case_0"]
    assert whole["dice"] == pytest.approx(medpy_binary.dc(pred > 0, ref > 0))
    with pytest.raises(ValueError, match="not a label"):
        parse_class_arguments(["kidney"])
    (tmp_path / "extra.nii.gz").write_bytes((folders["pred"] / "case_0.nii.gz").read_bytes())
    with pytest.raises(FileNotFoundError, match="no reference"):
        evaluate_folder(str(tmp_path), str(folders["ref"]), progress=False)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        evaluate_folder(str(tmp_path / "nope"), str(folders["ref"]), progress=False)


def test_evaluate_refuses_a_prediction_of_another_geometry(folders, tmp_path):
    pred, _ = folders["cases"]["case_0"]
    _write(pred[:, :-6], tmp_path / "case_0.nii.gz", folders["spacing"][::-1])
    with pytest.raises(ValueError, match="shape"):
        evaluate_folder(str(tmp_path), str(folders["ref"]), progress=False)
    _write(pred, tmp_path / "case_0.nii.gz", (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        evaluate_folder(str(tmp_path), str(folders["ref"]), progress=False)


def test_evaluate_command_in_parallel(folders, tmp_path, run_python):
    cli = os.path.join(os.path.dirname(sys.executable), "nnunet-losses")
    out = tmp_path / "cli.json"
    proc = run_python([cli, "evaluate", str(folders["pred"]), str(folders["ref"]), "-o", str(out), "-np", "2",
                       "--no-progress"])
    assert proc.returncode == 0, proc.stderr
    assert "RV" in proc.stdout and "mean (per class)" in proc.stdout and "foreground_mean" in proc.stdout
    serial = evaluate_folder(str(folders["pred"]), str(folders["ref"]), progress=False)
    assert json.loads(out.read_text())["summary"] == json.loads(json.dumps(serial["summary"]))
    proc = run_python([cli, "evaluate", str(tmp_path / "missing"), str(folders["ref"])])
    assert proc.returncode == 2 and "no such folder" in proc.stderr


def _disc(shape, centre, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


@pytest.fixture
def slices(tmp_path):
    """Three 2D cases (one slice, 1 x 32 x 32 at 1.5 x 1 mm) of two classes; class 'b' is absent from case 2's
    reference and prediction (both empty); dataset.json beside the references."""
    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    ref_dir.mkdir()
    for i in range(3):
        ref = np.zeros((1, 32, 32), np.uint8)
        ref[0][_disc((32, 32), (10, 10), 5)] = 1
        pred = np.zeros_like(ref)
        pred[0][_disc((32, 32), (10, 10 + i), 5)] = 1
        if i < 2:
            ref[0][_disc((32, 32), (24, 22), 3)] = 2
            pred[0][_disc((32, 32), (24, 22 + i), 3)] = 2
        _write(ref, ref_dir / f"s{i}.nii.gz", (1.0, 1.5, 10.0))
        _write(pred, pred_dir / f"s{i}.nii.gz", (1.0, 1.5, 10.0))
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "a": 1, "b": 2},
                                                       "file_ending": ".nii.gz"}))
    return pred_dir, ref_dir


def test_both_empty_conventions_in_the_folder_summary(slices):
    pred_dir, ref_dir = slices
    nnunet = evaluate_folder(str(pred_dir), str(ref_dir), progress=False)
    one = evaluate_folder(str(pred_dir), str(ref_dir), progress=False, both_empty="one")
    rows = {r["case"]: r for r in nnunet["cases"] if r["class"] == "b"}
    assert rows["s2"]["status"] == "both_empty" and math.isnan(rows["s2"]["dice"])
    dice_b = [rows["s0"]["dice"], rows["s1"]["dice"]]
    assert dice_b[0] == 1.0 and dice_b[1] < 1.0
    stats = nnunet["summary"]["b"]["dice"]
    assert stats["mean"] == pytest.approx(np.mean(dice_b)) and (stats["n"], stats["n_undefined"]) == (2, 1)
    assert one["summary"]["b"]["dice"]["mean"] == pytest.approx(np.mean(dice_b + [1.0]))
    assert one["summary"]["b"]["dice"]["n"] == 3 and one["summary"]["b"]["nsd"]["n"] == 3
    assert nnunet["aggregation"]["both_empty"] == "exclude" and "nnU-Net" in nnunet["aggregation"]["description"]
    assert one["aggregation"]["both_empty"] == "one"
    # nnU-Net's summary.json foreground_mean: mean of the class means; mean_foreground: per case first
    a_mean = nnunet["summary"]["a"]["dice"]["mean"]
    assert nnunet["summary"]["foreground_mean"]["dice"] == pytest.approx((a_mean + np.mean(dice_b)) / 2)
    a_rows = {r["case"]: r["dice"] for r in nnunet["cases"] if r["class"] == "a"}
    per_case = [(a_rows["s0"] + dice_b[0]) / 2, (a_rows["s1"] + dice_b[1]) / 2, a_rows["s2"]]
    assert nnunet["summary"]["mean_foreground"]["dice"]["mean"] == pytest.approx(np.mean(per_case))


def test_per_class_nsd_tolerances(slices):
    pred_dir, ref_dir = slices
    result = evaluate_folder(str(pred_dir), str(ref_dir), progress=False, nsd_tolerance={"b": 0.5})
    assert result["nsd_tolerance_mm"] == {"a": 1.0, "b": 0.5}
    row = [r for r in result["cases"] if r["class"] == "b" and r["case"] == "s1"][0]
    assert row["nsd"] < 1.0  # shifted by one 1-mm column: beyond 0.5 mm
    wide = evaluate_folder(str(pred_dir), str(ref_dir), progress=False, nsd_tolerance=1.0)
    assert [r for r in wide["cases"] if r["class"] == "b" and r["case"] == "s1"][0]["nsd"] == 1.0
    assert parse_tolerances(["2"]) == 2.0 and parse_tolerances(["a=1", "b=2.5"]) == {"a": 1.0, "b": 2.5}
    with pytest.raises(ValueError, match="no class c"):
        evaluate_folder(str(pred_dir), str(ref_dir), progress=False, nsd_tolerance={"c": 1.0})
    with pytest.raises(ValueError, match="nsd-tolerance"):
        parse_tolerances(["a=wide"])


def _write_float(array, path, spacing_xyz):
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing(spacing_xyz)
    sitk.WriteImage(image, str(path))


@pytest.mark.parametrize("fault,message", [
    ("label_7", "labels outside the classes and the ignore label: 7"),
    ("label_minus_1", "labels outside the classes and the ignore label: -1"),
    ("nan", "non-finite voxels"),
    ("probabilities", "non-integer value (e.g. 0.9)"),
    ("missing", "reference(s) without a prediction"),
])
def test_misreadable_inputs_warn_and_strict_refuses(slices, fault, message, capsys):
    pred_dir, ref_dir = slices
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(pred_dir / "s0.nii.gz"))).astype(np.float32)
    if fault == "label_7":
        pred[0, 0, 0] = 7
    elif fault == "label_minus_1":
        pred[0, 0, 0] = -1
    elif fault == "nan":  # SimpleITK reads NaN in NIfTI as 0: MetaImage keeps it
        pred[0, 0, :3] = np.nan
        for folder in (pred_dir, ref_dir):
            for path in list(folder.glob("*.nii.gz")):
                sitk.WriteImage(sitk.ReadImage(str(path)), str(path).replace(".nii.gz", ".mha"))
                path.unlink()
        dataset = ref_dir.parent / "dataset.json"
        dataset.write_text(dataset.read_text().replace(".nii.gz", ".mha"))
    elif fault == "probabilities":
        pred *= 0.9
    if fault == "missing":
        (pred_dir / "s0.nii.gz").unlink()
    else:
        _write_float(pred, pred_dir / ("s0.mha" if fault == "nan" else "s0.nii.gz"), (1.0, 1.5, 10.0))
    result = evaluate_folder(str(pred_dir), str(ref_dir), progress=False)
    assert any(message in w for w in result["warnings"]), result["warnings"]
    assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match="--strict") as err:
        evaluate_folder(str(pred_dir), str(ref_dir), progress=False, strict=True)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert ("s0" in str(err.value))


def test_the_ignore_label_and_the_fold_s_own_cases_are_not_warnings(slices, tmp_path, run_python):
    pred_dir, ref_dir = slices
    (ref_dir.parent / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "a": 1, "b": 2,
                                                                        "ignore": 3}, "file_ending": ".nii.gz"}))
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(ref_dir / "s1.nii.gz")))
    ref[0, :2] = 3
    _write(ref, ref_dir / "s1.nii.gz", (1.0, 1.5, 10.0))
    (pred_dir / "s2.nii.gz").unlink()  # not in this fold's validation cases
    splits = tmp_path / "splits_final.json"
    splits.write_text(json.dumps([{"train": ["s2"], "val": ["s0", "s1"]}]))
    cli = os.path.join(os.path.dirname(sys.executable), "nnunet-losses")
    out = tmp_path / "fold.json"
    proc = run_python([cli, "evaluate", str(pred_dir), str(ref_dir), "-o", str(out), "--strict", "--split",
                       str(splits), "--fold", "0", "--no-progress"])
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    assert json.loads(out.read_text())["warnings"] == []
    proc = run_python([cli, "evaluate", str(pred_dir), str(ref_dir), "-o", str(out), "--strict", "--no-progress"])
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "1 reference(s) without a prediction" in proc.stderr and "s2" in proc.stderr


def test_strict_refusal_from_a_worker_process_is_one_line(slices, run_python):
    pred_dir, ref_dir = slices
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(pred_dir / "s1.nii.gz")))
    pred[0, 0, 0] = 7
    _write(pred, pred_dir / "s1.nii.gz", (1.0, 1.5, 10.0))
    cli = os.path.join(os.path.dirname(sys.executable), "nnunet-losses")
    proc = run_python([cli, "evaluate", str(pred_dir), str(ref_dir), "-np", "2", "--strict", "--no-progress"])
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "s1.nii.gz: prediction has labels outside the classes and the ignore label: 7 (--strict)" in proc.stderr
    proc = run_python([cli, "evaluate", str(pred_dir), str(ref_dir), "-np", "2", "--no-progress"])
    assert proc.returncode == 0 and "warning: s1.nii.gz: prediction has labels outside" in proc.stderr
