"""Metrics: surface distances against medpy (the implementation nnU-Net v1 used), empty-mask conventions, folder
evaluation on NIfTI files with anisotropic spacing, and the ``evaluate`` command."""
import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from nnunet_losses.metrics import class_metrics, evaluate_folder, surface_distances
from nnunet_losses.metrics.evaluate import EvalClass, parse_class_arguments

medpy_binary = pytest.importorskip("medpy.metric.binary")


def _blob(shape, seed, threshold=0.5, sigma=2.0):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), sigma) > threshold


def _medpy(pred, ref, spacing):
    return (medpy_binary.hd(pred, ref, spacing), medpy_binary.hd95(pred, ref, spacing),
            medpy_binary.assd(pred, ref, spacing))


@pytest.mark.parametrize("shape,spacing", [((40, 50), (0.7, 1.3)), ((12, 60, 50), (5.0, 0.8, 0.8)),
                                           ((30, 30, 30), None), ((64,), (2.0,))])
@pytest.mark.parametrize("seed", [0, 1])
def test_surface_distances_equal_medpy(shape, spacing, seed):
    pred, ref = _blob(shape, seed, 0.51), _blob(shape, seed + 10, 0.49)
    np.testing.assert_allclose(surface_distances(pred, ref, spacing), _medpy(pred, ref, spacing), rtol=1e-5)


def test_surface_distances_masks_touching_the_border_and_single_voxels():
    pred = np.zeros((20, 20), bool)
    pred[:5, :] = True  # touches three borders: medpy counts them as surface
    ref = np.zeros((20, 20), bool)
    ref[15, 7] = True
    np.testing.assert_allclose(surface_distances(pred, ref, (1.0, 2.0)), _medpy(pred, ref, (1.0, 2.0)), rtol=1e-6)
    assert surface_distances(ref, ref) == (0.0, 0.0, 0.0)


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

    both_empty = class_metrics(empty, empty, spacing)
    assert both_empty["status"] == "both_empty"
    assert (both_empty["dice"], both_empty["iou"], both_empty["hd"], both_empty["hd95"]) == (1.0, 1.0, 0.0, 0.0)
    assert math.isnan(both_empty["fnr"]) and math.isnan(both_empty["precision"]) and both_empty["fpr"] == 0.0

    missed = class_metrics(empty, mask, spacing)
    assert missed["status"] == "pred_empty" and missed["dice"] == 0.0 and missed["fnr"] == 1.0
    assert missed["recall"] == 0.0 and math.isnan(missed["precision"])
    assert missed["hd"] == missed["hd95"] == missed["assd"] == pytest.approx(diagonal)

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
    row = class_metrics(pred, ref, (999.0, 1.0, 1.5))
    np.testing.assert_allclose((row["hd"], row["hd95"], row["assd"]), _medpy(pred[0], ref[0], (1.0, 1.5)),
                               rtol=1e-5)


def _write(array, path, spacing_xyz):
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing_xyz)
    sitk.WriteImage(image, str(path))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """ACDC-shaped volumes (z, y, x) = (10, 96, 80), spacing 10 x 1.5 x 1.25 mm, labels 1-3 with an ignore band."""
    root = tmp_path_factory.mktemp("eval")
    pred_dir, ref_dir = root / "pred", root / "gt"
    pred_dir.mkdir()
    ref_dir.mkdir()
    spacing_zyx = (10.0, 1.5, 1.25)
    cases = {}
    for i in range(4):
        ref = np.zeros((10, 96, 80), np.uint8)
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
    _write(pred[:, :90], tmp_path / "case_0.nii.gz", folders["spacing"][::-1])
    with pytest.raises(ValueError, match="shape"):
        evaluate_folder(str(tmp_path), str(folders["ref"]), progress=False)
    _write(pred, tmp_path / "case_0.nii.gz", (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        evaluate_folder(str(tmp_path), str(folders["ref"]), progress=False)


def test_evaluate_command_in_parallel(folders, tmp_path):
    cli = os.path.join(os.path.dirname(sys.executable), "nnunet-losses")
    out = tmp_path / "cli.json"
    proc = subprocess.run([cli, "evaluate", str(folders["pred"]), str(folders["ref"]), "-o", str(out), "-np", "2",
                           "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "RV" in proc.stdout and "mean_foreground" in proc.stdout
    serial = evaluate_folder(str(folders["pred"]), str(folders["ref"]), progress=False)
    assert json.loads(out.read_text())["summary"] == json.loads(json.dumps(serial["summary"]))
    proc = subprocess.run([cli, "evaluate", str(tmp_path / "missing"), str(folders["ref"])], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "no such folder" in proc.stderr
