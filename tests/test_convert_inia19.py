"""The INIA19 converter (nnunet_losses.convert.inia19) on a small fake template and parcellation written here (the
Debian package is not needed): hemispheres merged, classes numbered by volume, other structures background, only
slices with brain, no test slice within the gap of a training slice, nnU-Net's own integrity check, the message when
the files are missing; and, where Debian's mricron-data is installed, the real conversion with its documented
classes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_losses.convert import inia19
from nnunet_losses.convert._common import ConversionError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BRAIN = (4, 36)  # the fake brain's coronal slices (A-P index), end excluded


def _write(array, path):
    image = sitk.GetImageFromArray(array)  # identity direction: x to the left, y posterior, z superior
    image.SetSpacing((0.5, 0.5, 0.5))
    sitk.WriteImage(image, str(path))


@pytest.fixture
def source(tmp_path):
    """A (z 12, y 40, x 16) template and parcellation: structure 10 (and its twin 1010 in the other hemisphere) the
    largest, 30 next, 20 the smallest, 40 not chosen; 50 only in the top row (superior)."""
    folder = tmp_path / "templates"
    folder.mkdir()
    template = np.zeros((12, 40, 16), np.float32)
    template[1:11, BRAIN[0]:BRAIN[1], 1:15] = 100.0
    atlas = np.zeros(template.shape, np.int16)
    atlas[3:9, BRAIN[0]:BRAIN[1], 2:6] = 10
    atlas[3:9, BRAIN[0]:BRAIN[1], 10:14] = 1010
    atlas[9:11, 8:30, 6:10] = 30
    atlas[1:3, 10:28, 7:9] = 20
    atlas[1:3, 10:28, 9:10] = 1020
    atlas[5:7, BRAIN[0]:BRAIN[1], 7:9] = 40
    atlas[10, BRAIN[0]:BRAIN[1], 1] = 50
    _write(template, folder / inia19.TEMPLATE)
    _write(atlas, folder / inia19.ATLAS)
    return folder


def _slice(case):
    return int(case[len("inia19_cor"):len("inia19_cor") + 3])


def _cases(folder, part):
    return sorted(_slice(f) for f in os.listdir(folder / f"labels{part}"))


def test_converts_merges_ranks_and_holds_out_with_a_gap(source, tmp_path, capsys):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    out = tmp_path / "raw"
    folder = Path(inia19.convert(str(source), str(out), dataset_id=977, structures=[20, 10, 30, 50], factor=1,
                                 period=10, test_slices=2, gap=3))
    assert folder.name == "Dataset977_INIA19"
    verify_dataset_integrity(str(folder), num_processes=1)
    dataset = json.loads((folder / "dataset.json").read_text())
    # classes by decreasing volume, whatever the order asked for; unnamed structures get their NeuroMaps id
    assert dataset["labels"] == {"background": 0, "neuromaps_10": 1, "neuromaps_30": 2, "neuromaps_20": 3,
                                 "neuromaps_50": 4}
    train, test = _cases(folder, "Tr"), _cases(folder, "Ts")
    assert train == [s for s in range(*BRAIN) if (s - BRAIN[0]) % 10 < 2]
    assert test == [s for s in range(*BRAIN) if 5 <= (s - BRAIN[0]) % 10 < 7]
    assert min(abs(t - r) for t in test for r in train) > 3  # the gap: 3 slices on each side of a test block
    assert dataset["numTraining"] == len(train) and dataset["inia19"]["train"] == train
    assert all(BRAIN[0] <= s < BRAIN[1] for s in train + test)  # only slices with brain
    image = sitk.ReadImage(str(folder / "imagesTr" / f"inia19_cor{train[0]:03d}_0000.nii.gz"))
    assert image.GetSize() == (16, 12, 1) and image.GetSpacing()[:2] == (0.5, 0.5)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "labelsTr" / f"inia19_cor{14:03d}.nii.gz")))[0]
    assert labels.shape == (12, 16)
    # row 0 is superior: the parcellation's z = 11 - row; both hemispheres' copies share one class; 40 is background
    assert set(labels[11 - 5, 2:6]) == {1} and set(labels[11 - 5, 10:14]) == {1}
    assert set(labels[11 - 6, 7:9]) == {0}
    assert set(labels[11 - 2, 7:10]) == {3} and set(labels[11 - 10, 6:10]) == {2} and labels[1, 1] == 4
    printed = capsys.readouterr().out
    assert "neuromaps_20" in printed and "%" in printed
    fraction = dataset["inia19"]["pixel_fraction"]["neuromaps_10"]
    assert fraction == pytest.approx(2 * 6 * 4 / (12 * 16), abs=1e-6)  # both copies, in every slice with brain
    # again: the same dataset is left alone
    assert inia19.convert(str(source), str(out), dataset_id=977, structures=[20, 10, 30, 50], factor=1, period=10,
                          test_slices=2, gap=3) == str(folder)


def test_reduction_means_the_template_and_takes_the_most_frequent_label():
    labels = np.zeros((2, 2, 4), np.int32)
    labels[:, :, :2] = [[[5, 5], [5, 3]], [[3, 3], [3, 5]]]  # 4 of each: the tie goes to the lower label
    labels[:, :, 2:] = [[[7, 7], [7, 7]], [[7, 2], [0, 0]]]
    np.testing.assert_array_equal(inia19.block_mode(labels, 2), [[[3, 7]]])
    np.testing.assert_allclose(inia19.block_mean(np.arange(8, dtype=np.float32).reshape(2, 2, 2), 2), [[[3.5]]])
    np.testing.assert_array_equal(inia19.merge_hemispheres(np.array([0, 7, 1007, 999])), [0, 7, 7, 999])


def test_split_keeps_the_gap_and_refuses_a_cycle_too_short():
    train, test = inia19.split_slices(list(range(5, 60)), period=16, test=4, gap=2)
    assert train[:9] == [5, 6, 7, 8, 9, 10, 11, 12, 21] and test[:5] == [15, 16, 17, 18, 31]
    assert min(abs(t - r) for t in test for r in train) == 3
    with pytest.raises(ConversionError, match="--period 8"):
        inia19.split_slices(list(range(20)), period=8, test=4, gap=2)


def test_missing_files_say_which_package_installs_them(tmp_path, source):
    with pytest.raises(ConversionError, match="apt-get install mricron-data"):
        inia19.convert(str(tmp_path / "nowhere"), str(tmp_path / "raw"))
    with pytest.raises(ConversionError, match="structure.s. 77 not in the parcellation"):
        inia19.convert(str(source), str(tmp_path / "raw"), structures=[10, 77], factor=1)
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "convert_inia19.py"),
                           str(tmp_path / "nowhere"), "-o", str(tmp_path / "raw")], capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "apt-get install mricron-data" in proc.stderr
    assert not os.path.exists(tmp_path / "raw" / "Dataset905_INIA19")


def test_command_line_lists_structures_by_volume(source):
    proc = subprocess.run([sys.executable, "-m", "nnunet_losses.cli", "convert", "inia19", str(source), "--list",
                           "--factor", "1"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    ids = [int(line.split()[0]) for line in proc.stdout.splitlines()[1:]]
    assert ids == [10, 30, 40, 20, 50]  # merged twins counted together: 10 first


@pytest.mark.skipif(not all(os.path.isfile(os.path.join(inia19.DEFAULT_SOURCE, f))
                            for f in (inia19.TEMPLATE, inia19.ATLAS)), reason="Debian's mricron-data not installed")
def test_real_conversion_has_the_documented_classes(tmp_path):
    folder = Path(inia19.convert(None, str(tmp_path)))
    dataset = json.loads((folder / "dataset.json").read_text())
    assert list(dataset["labels"])[1:] == list(inia19.STRUCTURES.values())  # the default order is by volume
    fractions = dataset["inia19"]["pixel_fraction"]
    assert fractions["cerebral_white_matter"] > 0.05 and 0.0008 < fractions["third_ventricle"] < 0.0015
    assert len(os.listdir(folder / "imagesTr")) == 40 and len(os.listdir(folder / "imagesTs")) == 20
