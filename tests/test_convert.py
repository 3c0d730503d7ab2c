"""Dataset converters on small fake trees of the original download layouts: nnU-Net's own integrity check passes on
the output, labels/channels/geometry are as documented, bad input gives a clear error."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write(array, path, spacing=(1.5, 1.5, 10.0), direction=None, origin=(0.0, 0.0, 0.0)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path))


def _script(name, *args):
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", name), *map(str, args)],
                          capture_output=True, text=True)


def _verify(folder):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(folder), num_processes=1)


def _labels(rng, shape, values):
    labels = np.zeros(shape, np.uint8)
    for i, v in enumerate(values):
        labels[:, 2 + 3 * i: 5 + 3 * i, 4:12] = v
    return labels


def write_fake_acdc(root, training=(1, 2, 3), testing=(101,)):
    """ACDC's database layout: training/ and testing/ patient folders with two labelled frames each."""
    rng = np.random.default_rng(0)
    for split, patients in (("training", training), ("testing", testing)):
        for p in patients:
            folder = root / split / f"patient{p:03d}"
            for frame in (1, 12):
                case = f"patient{p:03d}_frame{frame:02d}"
                _write(rng.normal(size=(6, 20, 20)).astype(np.float32), folder / f"{case}.nii.gz")
                _write(_labels(rng, (6, 20, 20), (1, 2, 3)), folder / f"{case}_gt.nii.gz")
            _write(np.zeros((2, 6, 20, 20), np.float32), folder / f"patient{p:03d}_4d.nii.gz")
            (folder / "Info.cfg").write_text("ED: 1\nES: 12\n")
    return root


@pytest.fixture
def acdc(tmp_path):
    return write_fake_acdc(tmp_path / "ACDC" / "database")


def test_acdc(acdc, tmp_path):
    raw = tmp_path / "raw"
    proc = _script("convert_acdc.py", acdc, "-o", raw)
    assert proc.returncode == 0, proc.stderr
    out = raw / "Dataset027_ACDC"
    _verify(out)
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "RV": 1, "MLV": 2, "LVC": 3} and dataset["numTraining"] == 6
    assert sorted(os.listdir(out / "labelsTr"))[:2] == ["patient001_frame01.nii.gz", "patient001_frame12.nii.gz"]
    assert sorted(os.listdir(out / "imagesTs")) == ["patient101_frame01_0000.nii.gz", "patient101_frame12_0000.nii.gz"]
    assert len(os.listdir(out / "labelsTs")) == 2
    image = sitk.ReadImage(str(out / "imagesTr" / "patient002_frame12_0000.nii.gz"))
    assert image.GetSpacing() == pytest.approx((1.5, 1.5, 10.0))
    assert not [n for n in os.listdir(raw) if n.startswith(".")]  # no temporary folder left

    again = _script("convert_acdc.py", acdc, "-o", raw)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert _script("convert_acdc.py", acdc, "-o", raw, "--overwrite").returncode == 0


def test_acdc_errors(acdc, tmp_path):
    bad = sitk.GetArrayFromImage(sitk.ReadImage(str(acdc / "training/patient002/patient002_frame01_gt.nii.gz")))
    bad[0, 0, 0] = 7
    _write(bad, acdc / "training/patient002/patient002_frame01_gt.nii.gz")
    proc = _script("convert_acdc.py", acdc, "-o", tmp_path / "raw")
    assert proc.returncode == 2 and "unexpected label values [7]" in proc.stderr
    assert "patient002_frame01_gt" in proc.stderr
    assert not os.listdir(tmp_path / "raw")  # nothing half-written
    proc = _script("convert_acdc.py", tmp_path / "nowhere", "-o", tmp_path / "raw")
    assert proc.returncode == 2 and "training/" in proc.stderr
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_raw"}
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "convert_acdc.py"), str(acdc)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "nnUNet_raw" in proc.stderr
    assert "ACDC" in _script("convert_acdc.py", "--help").stdout


def test_brats18(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "MICCAI_BraTS_2018_Data_Training"
    for grade, cases in (("HGG", ("Brats18_2013_10_1", "Brats18_CBICA_AAB_1")), ("LGG", ("Brats18_TCIA09_141_1",))):
        for case in cases:
            for modality in ("t1", "t1ce", "t2", "flair"):
                _write(rng.normal(size=(8, 16, 16)).astype(np.float32),
                       root / grade / case / f"{case}_{modality}.nii.gz", spacing=(1.0, 1.0, 1.0))
            _write(_labels(rng, (8, 16, 16), (1, 2, 4)), root / grade / case / f"{case}_seg.nii.gz",
                   spacing=(1.0, 1.0, 1.0))
    raw = tmp_path / "raw"
    proc = _script("convert_brats18.py", root, "-o", raw)
    assert proc.returncode == 0, proc.stderr
    out = raw / "Dataset218_BraTS18"
    _verify(out)
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "NCR_NET": 1, "ED": 2, "ET": 3} and dataset["numTraining"] == 2
    assert dataset["channel_names"] == {"0": "T2", "1": "T1", "2": "T1CE", "3": "FLAIR"}
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / "Brats18_2013_10_1.nii.gz")))
    assert set(np.unique(seg)) == {0, 1, 2, 3}
    source = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "HGG/Brats18_2013_10_1/Brats18_2013_10_1_seg.nii.gz")))
    assert np.array_equal(seg == 3, source == 4)
    t2 = root / "HGG/Brats18_2013_10_1/Brats18_2013_10_1_t2.nii.gz"
    assert (out / "imagesTr" / "Brats18_2013_10_1_0000.nii.gz").read_bytes() == t2.read_bytes()

    both = _script("convert_brats18.py", root, "-o", raw, "-d", 219, "--grades", "HGG", "LGG")
    assert both.returncode == 0 and json.loads((raw / "Dataset219_BraTS18" / "dataset.json").read_text())[
        "numTraining"] == 3
    os.remove(t2)
    proc = _script("convert_brats18.py", root, "-o", tmp_path / "raw2")
    assert proc.returncode == 2 and "missing Brats18_2013_10_1_t2.nii.gz" in proc.stderr


def test_kits19_slices_resized_with_geometry_kept(tmp_path):
    """KiTS19 stores the axial axis first (ITK axis 0 along world z): 12 slices of 32 x 24 pixels, kidney in slices
    3-6 only, resized to 16 x 16."""
    root = tmp_path / "kits19" / "data"
    direction = (0.0, 0.0, -1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 0.0)  # ITK axis 0 -> world z, as KiTS19's affines
    spacing = (3.0, 0.78125, 0.9)  # (slice, y, x) in ITK axis order
    labels = np.zeros((24, 32, 12), np.uint8)  # numpy order: (ITK axis 2, axis 1, axis 0)
    labels[8:16, 8:24, 3:7] = 1
    labels[10:14, 12:16, 4:6] = 2
    image = np.random.default_rng(2).normal(size=labels.shape).astype(np.float32)
    for case in ("case_00000", "case_00001"):
        _write(image, root / case / "imaging.nii.gz", spacing, direction, (10.0, -5.0, 3.0))
        _write(labels, root / case / "segmentation.nii.gz", spacing, direction, (10.0, -5.0, 3.0))
    _write(image, root / "case_00300" / "imaging.nii.gz", spacing, direction)  # a test case: no segmentation
    raw = tmp_path / "raw"
    proc = _script("convert_kits19.py", root, "-o", raw, "--size", 16)
    assert proc.returncode == 0, proc.stderr
    assert "skipping 1 case(s) without segmentation" in proc.stdout
    out = raw / "Dataset219_KiTS19RW"
    _verify(out)
    source = sitk.ReadImage(str(root / "case_00000" / "segmentation.nii.gz"))
    result = sitk.ReadImage(str(out / "labelsTr" / "case_00000.nii.gz"))
    assert result.GetSize() == (4, 16, 16)  # the 4 foreground slices, 16 x 16 each
    assert result.GetSpacing() == pytest.approx((3.0, 0.78125 * 32 / 16, 0.9 * 24 / 16))
    assert result.GetDirection() == pytest.approx(direction)
    assert set(np.unique(sitk.GetArrayFromImage(result))) == {0, 1, 2}  # nearest neighbour: no new values

    def centre(img, value):
        index = np.argwhere(sitk.GetArrayFromImage(img) == value)[:, ::-1].mean(0)  # ITK index order
        return np.array(img.TransformContinuousIndexToPhysicalPoint(index.tolist()))

    for value in (1, 2):  # the structures stay where they were, within one new voxel
        assert np.abs(centre(result, value) - centre(source, value)).max() < 1.6
    ct = sitk.ReadImage(str(out / "imagesTr" / "case_00000_0000.nii.gz"))
    assert ct.GetSize() == result.GetSize() and ct.GetOrigin() == pytest.approx(result.GetOrigin())

    every = _script("convert_kits19.py", root, "-o", raw, "-d", 220, "--size", 16, "--keep-slices", "all")
    assert every.returncode == 0
    assert sitk.ReadImage(str(raw / "Dataset220_KiTS19RW" / "labelsTr" / "case_00001.nii.gz")).GetSize() == (12, 16, 16)


def test_kits19_refuses_unexpected_labels(tmp_path):
    root = tmp_path / "data"
    labels = np.zeros((8, 8, 4), np.uint8)
    labels[2:4, 2:4, 1] = 3
    _write(np.zeros(labels.shape, np.float32), root / "case_00000" / "imaging.nii.gz")
    _write(labels, root / "case_00000" / "segmentation.nii.gz")
    proc = _script("convert_kits19.py", root, "-o", tmp_path / "raw")
    assert proc.returncode == 2 and "unexpected label values [3]" in proc.stderr
