"""The dataset converters (nnunet_losses.convert, scripts/convert_*.py) on small fake trees of the original
downloads: nnU-Net's own integrity check passes on the output, labels, channels, case counts and geometry are as
documented, bad input gives a clear error and leaves nothing behind, and re-running is idempotent."""
import json
import os
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_losses.convert import acdc, brats18, kits19
from nnunet_losses.convert._common import ConversionError
from fake_downloads import blocks, write, write_fake_acdc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def script(run_python):
    """``script(name, *args, env=None)``: ``python scripts/NAME ARGS`` in a process of its own."""
    return lambda name, *args, env=None: run_python([sys.executable, os.path.join(REPO, "scripts", name),
                                                     *map(str, args)], env=env)


def verify(folder):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(folder), num_processes=1)


def geometry(path):
    image = sitk.ReadImage(str(path))
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def test_acdc(tmp_path, script):
    source = write_fake_acdc(tmp_path / "database")
    write_fake_acdc(tmp_path / "database", training=(), testing=(102,), testing_gt=False)  # first-release testing
    raw = tmp_path / "raw"
    proc = script("convert_acdc.py", source, "-o", raw, "-np", 2)
    assert proc.returncode == 0, proc.stderr
    out = raw / "Dataset027_ACDC"
    assert proc.stdout.strip().endswith(str(out))
    verify(out)
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "RV": 1, "MLV": 2, "LVC": 3}
    assert dataset["channel_names"] == {"0": "cineMRI"} and dataset["numTraining"] == 6
    assert sorted(os.listdir(out / "imagesTr"))[:2] == [f"patient001_frame{f}_0000.nii.gz" for f in ("01", "12")]
    assert len(os.listdir(out / "labelsTr")) == 6 and len(os.listdir(out / "imagesTs")) == 4
    assert sorted(os.listdir(out / "labelsTs")) == ["patient101_frame01.nii.gz", "patient101_frame12.nii.gz"]
    original = source / "training" / "patient003" / "patient003_frame12.nii.gz"
    assert (out / "imagesTr" / "patient003_frame12_0000.nii.gz").read_bytes() == original.read_bytes()
    assert geometry(out / "labelsTr" / "patient003_frame12.nii.gz") == geometry(original)
    assert sorted(os.listdir(raw)) == ["Dataset027_ACDC"]  # no temporary folder left

    stamp = os.stat(out / "dataset.json").st_mtime_ns
    again = script("convert_acdc.py", source, "-o", raw)
    assert again.returncode == 0 and "already up to date" in again.stdout
    assert os.stat(out / "dataset.json").st_mtime_ns == stamp

    write(blocks((8, 20, 20), (3, 2, 1)), source / "training/patient002/patient002_frame01_gt.nii.gz")
    assert "pass --overwrite" in script("convert_acdc.py", source, "-o", raw).stderr
    assert script("convert_acdc.py", source, "-o", raw, "--overwrite").returncode == 0
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / "patient002_frame01.nii.gz")))[1, 2, 3] == 3
    assert sorted(os.listdir(raw)) == ["Dataset027_ACDC"]


def test_acdc_errors(tmp_path, capsys, script):
    source = write_fake_acdc(tmp_path / "database", testing=())
    raw = tmp_path / "raw"
    gt = source / "training/patient002/patient002_frame01_gt.nii.gz"
    write(blocks((8, 20, 20), (1, 7, 3)), gt)
    proc = script("convert_acdc.py", source, "-o", raw)
    assert proc.returncode == 2 and f"error: {gt}: unexpected label values [7]" in proc.stderr
    assert os.listdir(raw) == []  # nothing half-written

    env = {k: v for k, v in os.environ.items() if k != "nnUNet_raw"}
    proc = script("convert_acdc.py", source, env=env)
    assert proc.returncode == 2 and "set the nnUNet_raw environment variable" in proc.stderr

    assert acdc.main([str(tmp_path / "nowhere"), "-o", str(raw)]) == 2
    assert f"no folder {tmp_path / 'nowhere' / 'training'}" in capsys.readouterr().err
    write(blocks((8, 20, 20), (1, 2, 3)), gt)
    os.makedirs(raw / "Dataset027_Other")
    with pytest.raises(ConversionError, match="dataset id 27 is taken by .*Dataset027_Other"):
        acdc.convert(str(source), str(raw))
    os.remove(gt)
    with pytest.raises(ConversionError, match="training frames without a _gt file: patient002_frame01"):
        acdc.convert(str(source), str(raw))


@pytest.mark.parametrize("name", ["convert_acdc.py", "convert_brats18.py", "convert_kits19.py"])
def test_help(name, script):
    proc = script(name, "--help")
    assert proc.returncode == 0 and "Region-wise loss" in proc.stdout and "Source:" in proc.stdout
    assert "Output:" in proc.stdout and "--overwrite" in proc.stdout and "-np" in proc.stdout


def write_fake_brats(root):
    rng = np.random.default_rng(1)
    for grade, cases in (("HGG", ("Brats18_2013_10_1", "Brats18_CBICA_AAB_1")), ("LGG", ("Brats18_TCIA09_141_1",))):
        for case in cases:
            for shift, modality in enumerate(("t1", "t1ce", "t2", "flair")):
                write((rng.normal(size=(8, 16, 16)) + 10 * shift).astype(np.float32),
                      root / grade / case / f"{case}_{modality}.nii.gz", spacing=(1.0, 1.0, 1.0))
            write(blocks((8, 16, 16), (1, 2, 4)).astype(np.int16), root / grade / case / f"{case}_seg.nii.gz",
                  spacing=(1.0, 1.0, 1.0))
    return root


def test_brats18(tmp_path, script):
    source = write_fake_brats(tmp_path / "MICCAI_BraTS_2018_Data_Training")
    raw = tmp_path / "raw"
    proc = script("convert_brats18.py", source, "-o", raw)
    assert proc.returncode == 0, proc.stderr
    out = raw / "Dataset218_BraTS18"
    verify(out)
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "NCR_NET": 1, "ED": 2, "ET": 3} and dataset["numTraining"] == 2
    assert dataset["channel_names"] == {"0": "T2", "1": "T1", "2": "T1CE", "3": "FLAIR"}
    case = source / "HGG" / "Brats18_2013_10_1"
    for channel, modality in enumerate(("t2", "t1", "t1ce", "flair")):
        copied = out / "imagesTr" / f"Brats18_2013_10_1_{channel:04d}.nii.gz"
        assert copied.read_bytes() == (case / f"Brats18_2013_10_1_{modality}.nii.gz").read_bytes()
    labels = out / "labelsTr" / "Brats18_2013_10_1.nii.gz"
    assert geometry(labels) == geometry(case / "Brats18_2013_10_1_seg.nii.gz")
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "Brats18_2013_10_1_seg.nii.gz")))
    converted = sitk.ReadImage(str(labels))
    assert converted.GetPixelID() == sitk.sitkUInt8
    assert np.array_equal(sitk.GetArrayFromImage(converted), np.choose(seg, [0, 1, 2, -1, 3]))

    both = brats18.convert(str(source), str(raw), 318, grades=("HGG", "LGG"))
    assert json.loads(open(os.path.join(both, "dataset.json")).read())["numTraining"] == 3

    with pytest.raises(ConversionError, match="no folder .*nowhere.HGG"):
        brats18.convert(str(tmp_path / "nowhere"), str(raw), 418)
    bad = source / "LGG" / "Brats18_TCIA09_141_1" / "Brats18_TCIA09_141_1_seg.nii.gz"
    write(blocks((8, 16, 16), (1, 3, 4)), bad, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ConversionError, match=f"{bad}: unexpected label values \\[3\\]"):
        brats18.convert(str(source), str(raw), 418, grades=("LGG",))
    os.remove(case / "Brats18_2013_10_1_flair.nii.gz")
    proc = script("convert_brats18.py", source, "-o", raw, "-d", 418)
    assert proc.returncode == 2 and f"{case}: missing Brats18_2013_10_1_flair.nii.gz" in proc.stderr
    assert sorted(os.listdir(raw)) == ["Dataset218_BraTS18", "Dataset318_BraTS18"]


KITS_DIRECTION = (0.0, 0.0, -1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 0.0)  # image axis 0 along world z, as KiTS19's files
KITS_SPACING = (3.0, 0.75, 1.0)  # ITK (NIfTI) axis order: slices, then 32 and 24 pixels


def write_fake_kits(root):
    """Two cases of 12 axial slices of 32 x 24 pixels (ITK axis order; numpy (24, 32, 12)): kidney in slices 3-6
    and 9, tumour in slices 4-5; the CT is 10 x (axis 1 index) + (axis 2 index); case_00210 has no labels."""
    labels = np.zeros((12, 32, 24), np.uint8)  # ITK index order, transposed when written
    labels[[3, 4, 5, 6, 9], 8:24, 6:18] = 1
    labels[4:6, 12:16, 9:12] = 2
    ct = np.fromfunction(lambda k, i, j: 10.0 * i + j, labels.shape, dtype=np.float32)
    for case in ("case_00000", "case_00001", "case_00210"):
        write(ct.T, root / case / "imaging.nii.gz", KITS_SPACING, (10.0, -5.0, 3.0), KITS_DIRECTION)
        if case != "case_00210":
            write(labels.T, root / case / "segmentation.nii.gz", KITS_SPACING, (10.0, -5.0, 3.0), KITS_DIRECTION)
    return root


def test_kits19_slices_resized_in_place(tmp_path, script):
    source = write_fake_kits(tmp_path / "kits19" / "data")
    raw = tmp_path / "raw"
    proc = script("convert_kits19.py", source, "-o", raw, "--size", 16)
    assert proc.returncode == 0, proc.stderr
    assert "skipping 1 case(s) without segmentation.nii.gz" in proc.stdout
    assert "case_00000: 2 slice(s) without kidney or tumour between kept ones left out" in proc.stdout
    out = raw / "Dataset219_KiTS19RW"
    verify(out)
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["numTraining"] == 2 and dataset["labels"] == {"background": 0, "kidney": 1, "tumor": 2}

    original = sitk.ReadImage(str(source / "case_00000" / "segmentation.nii.gz"))
    result = sitk.ReadImage(str(out / "labelsTr" / "case_00000.nii.gz"))
    assert result.GetSize() == (5, 16, 16)  # the 5 slices with kidney, 16 x 16 each
    assert result.GetSpacing() == pytest.approx((3.0, 0.75 * 32 / 16, 1.0 * 24 / 16))  # same physical extent
    assert result.GetDirection() == pytest.approx(KITS_DIRECTION)
    # the first kept slice (3) in place, and the outer in-plane edges where they were
    edge = original.TransformContinuousIndexToPhysicalPoint((3, -0.5, -0.5))
    assert result.TransformContinuousIndexToPhysicalPoint((0, -0.5, -0.5)) == pytest.approx(edge)
    edge = original.TransformContinuousIndexToPhysicalPoint((3, 31.5, 23.5))
    assert result.TransformContinuousIndexToPhysicalPoint((0, 15.5, 15.5)) == pytest.approx(edge)
    expected = np.zeros((5, 16, 16), np.uint8)  # ITK index order: pixels 8-24 of 32 -> 4-12 of 16, 6-18 of 24 -> 4-12
    expected[:, 4:12, 4:12] = 1
    expected[1:3, 6:8, 6:8] = 2
    assert np.array_equal(sitk.GetArrayFromImage(result).T, expected)

    ct = sitk.ReadImage(str(out / "imagesTr" / "case_00000_0000.nii.gz"))
    assert geometry(out / "imagesTr" / "case_00000_0000.nii.gz") == geometry(out / "labelsTr" / "case_00000.nii.gz")
    centres = np.meshgrid(np.arange(16) * 2 + 0.5, np.arange(16) * 1.5 + 0.25, indexing="ij")  # in old pixels
    assert sitk.GetArrayFromImage(ct).T == pytest.approx(np.broadcast_to(10 * centres[0] + centres[1], (5, 16, 16)))

    assert kits19.convert(str(source), str(raw), size=16) == str(out)  # idempotent
    with pytest.raises(ConversionError, match="exists with different content"):  # told by dataset.json at once
        kits19.convert(str(source), str(raw), size=8)
    every = kits19.convert(str(source), str(raw), 319, size=16, keep_slices="all", slice_axis=0)
    assert sitk.ReadImage(os.path.join(every, "labelsTr", "case_00001.nii.gz")).GetSize() == (12, 16, 16)


def test_kits19_axis_and_errors(tmp_path, script):
    image = sitk.Image(4, 5, 6, sitk.sitkUInt8)
    assert kits19.axial_axis(image) == 2
    image.SetDirection(KITS_DIRECTION)
    assert kits19.axial_axis(image) == 0

    labels = np.zeros((6, 8, 8), np.uint8)
    write(labels, tmp_path / "data" / "case_00000" / "imaging.nii.gz")
    write(labels, tmp_path / "data" / "case_00000" / "segmentation.nii.gz")
    with pytest.raises(ConversionError, match="no kidney or tumour voxel"):
        kits19.convert(str(tmp_path / "data"), str(tmp_path / "raw"))
    labels[2, 2:4, 2:4] = 3
    write(labels, tmp_path / "data" / "case_00000" / "segmentation.nii.gz")
    proc = script("convert_kits19.py", tmp_path / "data", "-o", tmp_path / "raw")
    assert proc.returncode == 2 and "segmentation.nii.gz: unexpected label values [3]" in proc.stderr
    with pytest.raises(ConversionError, match="no folder"):
        kits19.convert(str(tmp_path / "nowhere"), str(tmp_path / "raw"))
    assert os.listdir(tmp_path / "raw") == []
