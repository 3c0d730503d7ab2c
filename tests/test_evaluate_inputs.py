"""What ``nnunet-losses evaluate`` reads: non-finite voxels that nnU-Net's SimpleITK reader turns into 0 (NIfTI), the
direction and origin of prediction and reference compared (a mirrored or flipped header is a warning, an error with
--strict), each file read once, and one-line errors for an unreadable file and for -o naming a folder."""
import json
import os
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_losses.nnunet import evaluation
from nnunet_losses.nnunet.evaluation import evaluate_folder, read_segmentation

CLI = os.path.join(os.path.dirname(sys.executable), "nnunet-losses")
SPACING_XYZ = (1.25, 1.5, 4.0)
ORIGIN = (-120.5, 80.25, 33.0)


def _label_map(seed=0):
    """(z, y, x) = (6, 20, 24): a box of label 1 (not symmetric in x) and a few voxels of label 2."""
    labels = np.zeros((6, 20, 24), np.uint8)
    labels[1:5, 4:15, 2:12] = 1
    labels[2:4, 8:10, 14 + seed:17 + seed] = 2
    return labels


def _write(array, path, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), origin=ORIGIN, spacing=SPACING_XYZ):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path), True)


def _folders(tmp_path, ending=".nii.gz", cases=2):
    """pred/ and gt/ with identical label maps (and headers), dataset.json beside gt/."""
    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    ref_dir.mkdir()
    for i in range(cases):
        for folder in (pred_dir, ref_dir):
            _write(_label_map(i), folder / f"c{i}{ending}")
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "a": 1, "b": 2},
                                                       "file_ending": ending}))
    return pred_dir, ref_dir


def _dice(result, case, cls="a"):
    return next(r["dice"] for r in result["cases"] if r["case"] == case and r["class"] == cls)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_voxels_in_nifti_are_found_although_simpleitk_reads_them_as_0(tmp_path, bad, capsys):
    pred_dir, ref_dir = _folders(tmp_path)
    pred = _label_map(0).astype(np.float32)
    pred[0, 0, :3] = bad
    _write(pred, pred_dir / "c0.nii.gz")
    assert not np.isnan(sitk.GetArrayFromImage(sitk.ReadImage(str(pred_dir / "c0.nii.gz")))).any()  # what ITK does
    result = evaluate_folder(str(pred_dir), str(ref_dir), progress=False)
    expected = "c0.nii.gz: prediction has 3 non-finite voxels (NaN or inf)"
    assert expected in result["warnings"], result["warnings"]
    assert expected in capsys.readouterr().err
    with pytest.raises(ValueError, match="non-finite") as err:
        evaluate_folder(str(pred_dir), str(ref_dir), progress=False, strict=True)
    assert str(err.value) == f"{expected} (--strict)"


@pytest.mark.parametrize("shape,dtype", [((6, 20, 24), np.float32), ((6, 20, 24), np.float64),
                                         ((1, 20, 24), np.float32), ((20, 24), np.float32)])
def test_float_nifti_is_read_as_nnunets_reader_reads_it(tmp_path, shape, dtype):
    """Float NIfTI is read without nnU-Net's reader (which loses NaN): same array (float32), spacing and header."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    rng = np.random.default_rng(0)
    array = rng.integers(0, 3, shape).astype(dtype)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING_XYZ[:len(shape)])
    image.SetOrigin(ORIGIN[:len(shape)])
    path = str(tmp_path / "f.nii.gz")
    sitk.WriteImage(image, path)
    seg, props = SimpleITKIO().read_seg(path)
    labels, spacing, header = read_segmentation(path)
    assert labels.dtype == seg.dtype and labels.shape == seg[0].shape and np.array_equal(labels, seg[0])
    assert spacing == tuple(props["spacing"])
    assert header.origin == pytest.approx(props["sitk_stuff"]["origin"])
    assert header.direction == pytest.approx(props["sitk_stuff"]["direction"])


@pytest.mark.parametrize("ending", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_a_mirrored_header_is_a_warning_and_strict_refuses(tmp_path, ending, capsys):
    """Same voxels, direction mirrored in y: the scores are those of the stored arrays (Dice 1) and the header
    difference is reported."""
    pred_dir, ref_dir = _folders(tmp_path, ending)
    _write(_label_map(0), pred_dir / f"c0{ending}", direction=(1, 0, 0, 0, -1, 0, 0, 0, 1))
    result = evaluate_folder(str(pred_dir), str(ref_dir), progress=False)
    assert _dice(result, "c0") == 1.0
    expected = (f"c0{ending}: prediction direction (1, 0, 0, 0, -1, 0, 0, 0, 1) differs from the reference's "
                "(1, 0, 0, 0, 1, 0, 0, 0, 1)")
    assert len(result["warnings"]) == 1 and result["warnings"][0].startswith(expected), result["warnings"]
    assert expected in capsys.readouterr().err
    with pytest.raises(ValueError, match="direction") as err:
        evaluate_folder(str(pred_dir), str(ref_dir), progress=False, strict=True)
    assert str(err.value).startswith(expected) and str(err.value).endswith("(--strict)")
    assert "\n" not in str(err.value)


def test_an_image_stored_flipped_names_direction_and_origin(tmp_path):
    """The same physical image stored with x reversed (direction -x, origin at the other end): low Dice as stored,
    and both differences reported."""
    pred_dir, ref_dir = _folders(tmp_path)
    flipped_origin = (ORIGIN[0] + 23 * SPACING_XYZ[0], ORIGIN[1], ORIGIN[2])
    _write(_label_map(0)[:, :, ::-1].copy(), pred_dir / "c0.nii.gz", direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1),
           origin=flipped_origin)
    result = evaluate_folder(str(pred_dir), str(ref_dir), progress=False)
    assert _dice(result, "c0") < 0.5
    assert result["warnings"][0].startswith("c0.nii.gz: prediction direction (-1, 0, 0, 0, 1, 0, 0, 0, 1) differs "
                                            "from the reference's (1, 0, 0, 0, 1, 0, 0, 0, 1)")
    assert result["warnings"][1].startswith("c0.nii.gz: prediction origin (-91.75, 80.25, 33) mm differs from the "
                                            "reference's (-120.5, 80.25, 33) mm")
    assert len(result["warnings"]) == 2


def test_origin_shift_warns_and_rounding_does_not(tmp_path):
    pred_dir, ref_dir = _folders(tmp_path, ".mha")
    _write(_label_map(0), pred_dir / "c0.mha", origin=(ORIGIN[0], ORIGIN[1], ORIGIN[2] + 4.0))
    _write(_label_map(1), pred_dir / "c1.mha", origin=(ORIGIN[0] + 2e-4, ORIGIN[1], ORIGIN[2]),
           direction=(1, 0, 0, 0, 0.99999, 0.0001, 0, -0.0001, 0.99999))
    result = evaluate_folder(str(pred_dir), str(ref_dir), progress=False)
    assert result["warnings"] == [
        "c0.mha: prediction origin (-120.5, 80.25, 37) mm differs from the reference's (-120.5, 80.25, 33) mm "
        "(tolerance 0.001 mm + 1e-05 x |origin|)"], result["warnings"]


def test_each_file_is_read_once(tmp_path, monkeypatch):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    pred_dir, ref_dir = _folders(tmp_path, cases=3)
    reads = []
    original = SimpleITKIO.read_images
    monkeypatch.setattr(SimpleITKIO, "read_images", lambda self, names: reads.append(names) or original(self, names))
    evaluate_folder(str(pred_dir), str(ref_dir), progress=False)
    assert sorted(os.path.basename(n[0]) for n in reads) == sorted(["c0.nii.gz", "c1.nii.gz", "c2.nii.gz"] * 2)


@pytest.mark.parametrize("ending", [".nii.gz", ".mha"])
@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_truncated_prediction_is_one_line_naming_it(tmp_path, ending, processes, run_python):
    pred_dir, ref_dir = _folders(tmp_path, ending)
    path = pred_dir / f"c1{ending}"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    proc = run_python([CLI, "evaluate", str(pred_dir), str(ref_dir), "--no-progress", "-np", processes,
                       "-o", str(tmp_path / "m.json")])
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.startswith(f"nnunet-losses evaluate: error: {path}: cannot read this {ending} file")
    assert "Traceback" not in proc.stdout + proc.stderr
    with pytest.raises(ValueError, match="cannot read") as err:
        read_segmentation(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_nifti_cut_short_in_its_voxels_is_refused_not_read_as_zeros(tmp_path):
    """ITK reads a .nii.gz whose compressed data ends early without a complaint, the missing voxels 0; the size the
    header announces is compared with what the file holds."""
    pred_dir, ref_dir = _folders(tmp_path, cases=1)
    labels = np.random.default_rng(0).integers(0, 3, (6, 20, 24)).astype(np.uint8)  # incompressible
    for folder in (pred_dir, ref_dir):
        _write(labels, folder / "c0.nii.gz")
    path = pred_dir / "c0.nii.gz"
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * 0.9)])
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(path))).shape == labels.shape  # what ITK does
    with pytest.raises(ValueError) as err:
        evaluate_folder(str(pred_dir), str(ref_dir), progress=False)
    assert str(err.value).startswith(f"{path}: cannot read this .nii.gz file (truncated or not an image?): the data "
                                     "ends after ")
    assert str(err.value).endswith(f" of the {352 + labels.size} bytes its header announces")


def test_a_nifti_of_several_gzip_members_is_read(tmp_path):
    """A complete file whose last 4 bytes are not its size (several gzip members, as bgzip writes) is read."""
    import gzip

    pred_dir, ref_dir = _folders(tmp_path, cases=1)
    path = pred_dir / "c0.nii.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    labels, _, _ = read_segmentation(str(path))
    assert np.array_equal(labels, _label_map(0))
    result = evaluate_folder(str(pred_dir), str(ref_dir), progress=False, strict=True)
    assert _dice(result, "c0") == 1.0 and result["warnings"] == []


def test_output_naming_a_folder_is_one_line(tmp_path, run_python):
    pred_dir, ref_dir = _folders(tmp_path, cases=1)
    folder = tmp_path / "out"
    folder.mkdir()
    proc = run_python([CLI, "evaluate", str(pred_dir), str(ref_dir), "--no-progress", "-o", str(folder)])
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.strip() == (f"nnunet-losses evaluate: error: -o {folder} is a folder: -o takes a JSON file "
                                   f"path (e.g. {folder / 'metrics.json'})")
    with pytest.raises(ValueError, match="is a folder"):
        evaluate_folder(str(pred_dir), str(ref_dir), progress=False, output=str(folder))


def test_the_reader_for_an_ending_is_chosen_once_without_reading_twice(tmp_path):
    """nnU-Net picks a reader by trying each one for the ending on an example file; here the first that reads a file
    is kept for the ending, a later file is read by it alone."""
    pred_dir, _ = _folders(tmp_path, ".nii", cases=1)
    evaluation._READERS.clear()
    labels, spacing, header = read_segmentation(str(pred_dir / "c0.nii"))
    assert evaluation._READERS[".nii"].__name__ == "NibabelIO"
    assert np.array_equal(labels, _label_map(0)) and spacing == pytest.approx(SPACING_XYZ[::-1])
    assert header.origin == pytest.approx(ORIGIN) and header.direction == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
