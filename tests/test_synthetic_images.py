"""The generated images (nnunet_losses.synthetic_images) and their nnU-Net raw datasets."""
import json
import os

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from nnunet_losses.nnunet.synthetic import write_synthetic_dataset
from nnunet_losses.synthetic_images import GENERATORS, make_phantom


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_every_generator_is_deterministic_and_draws_every_class_in_every_image(kind):
    generator = GENERATORS[kind]
    images, labels = generator.make(6, size=64, seed=3)
    again, labels_again = generator.make(6, size=64, seed=3)
    assert images.shape == (6, 1, 64, 64) and images.dtype == np.float32
    assert labels.shape == (6, 64, 64) and labels.dtype == np.int64
    assert np.array_equal(images, again) and np.array_equal(labels, labels_again)
    assert not np.array_equal(generator.make(6, size=64, seed=4)[1], labels)
    assert sorted(generator.labels.values()) == list(range(len(generator.labels)))
    for lab in labels:
        assert set(np.unique(lab)) == set(generator.labels.values())


def test_phantom_lesion_lies_inside_the_organ_and_class_shares_are_imbalanced():
    images, labels = make_phantom(40, size=64, seed=0)
    share = np.bincount(labels.ravel(), minlength=4) / labels.size
    assert 0.08 < share[1] < 0.2 and 0.01 < share[2] < 0.04 and 0.006 < share[3] < 0.02  # organ, kidney, lesion
    rings = np.stack([binary_dilation(lab == 3) & (lab != 3) for lab in labels])  # the pixels around each lesion
    assert (labels[rings] == 1).mean() > 0.95  # the lesion lies in the organ; it may touch the organ's edge
    assert all((lab[ring] == 1).mean() > 0.7 for lab, ring in zip(labels, rings))
    # partial volume: background pixels touching the organ are brighter than background pixels 3 pixels away
    organ = labels == 1
    touching = np.stack([binary_dilation(o) for o in organ]) & (labels == 0)
    away = np.stack([binary_dilation(o, iterations=4) & ~binary_dilation(o, iterations=3) for o in organ]) \
        & (labels == 0)
    assert images[:, 0][touching].mean() - images[:, 0][away].mean() > 0.1


def test_phantom_dataset_records_its_kind(tmp_path):
    raw = str(tmp_path / "raw")
    folder = write_synthetic_dataset(raw, 905, "Phantom", num_train=2, num_test=1, kind="phantom")
    dataset = json.load(open(os.path.join(folder, "dataset.json")))
    assert dataset["labels"] == {"background": 0, "organ": 1, "kidney": 2, "lesion": 3}
    assert write_synthetic_dataset(raw, 905, "Phantom", num_train=2, num_test=1, kind="phantom") == folder
    with pytest.raises(FileExistsError, match="other settings.*kind"):
        write_synthetic_dataset(raw, 905, "Phantom", num_train=2, num_test=1)
    with pytest.raises(ValueError, match="unknown synthetic dataset kind"):
        write_synthetic_dataset(raw, 906, "X", kind="mri")
    with pytest.raises(ValueError, match="ignore label"):
        write_synthetic_dataset(raw, 906, "X", kind="phantom", ignore_label=True)
