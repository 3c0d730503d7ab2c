"""A generated 2D dataset with one large and five small foreground classes (nnU-Net v2 raw format).

It is the stand-in for the multi-class anatomy on which RRW and Combo stopped learning (issue 8: a 7-class brain
dataset, classes 0.09-5% of the voxels): a large disc (~12% of the image), a medium ellipse (~2%) and four small
structures of 0.2-0.8% (a square, a disc, a dot, a short bar), each class with its own mean intensity under noise,
at random positions. Used by the learning tests (``tests/test_learning.py``) and the measurements in
``docs/learning.md``:

    python -m nnunet_losses.nnunet.synthetic_many $nnUNet_raw 902
"""
from __future__ import annotations

import sys

import numpy as np

LABELS = {"background": 0, "large": 1, "medium": 2, "square": 3, "disc": 4, "dot": 5, "bar": 6}
INTENSITY = np.array([0.0, 1.0, 1.6, 2.2, -1.0, -1.6, 2.8], np.float32)


def make_many_class_dataset(num_images: int, size: int = 64, seed: int = 0, noise: float = 0.6):
    """Images (N, 1, size, size) float32 and labels (N, size, size) int64 with the 6 classes of ``LABELS``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.zeros((num_images, 1, size, size), np.float32)
    labels = np.zeros((num_images, size, size), np.int64)
    for n in range(num_images):
        lab = np.zeros((size, size), np.int64)
        cy, cx = rng.uniform(0.35, 0.65, 2) * size
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 < (size * rng.uniform(0.18, 0.22)) ** 2] = 1
        cy, cx = rng.uniform(0.15, 0.85, 2) * size
        a, b = size * rng.uniform(0.06, 0.09), size * rng.uniform(0.03, 0.05)
        lab[((yy - cy) / a) ** 2 + ((xx - cx) / b) ** 2 < 1] = 2
        cy, cx = rng.uniform(0.1, 0.9, 2) * size
        half = size * 0.045
        lab[(np.abs(yy - cy) < half) & (np.abs(xx - cx) < half)] = 3
        cy, cx = rng.uniform(0.1, 0.9, 2) * size
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 < (size * 0.05) ** 2] = 4
        cy, cx = rng.uniform(0.1, 0.9, 2) * size
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 < (size * 0.025) ** 2 + 1] = 5
        cy, cx = rng.uniform(0.15, 0.85, 2) * size
        lab[(np.abs(yy - cy) < size * 0.02) & (np.abs(xx - cx) < size * 0.1)] = 6
        images[n, 0] = INTENSITY[lab] + rng.normal(0, noise, (size, size)).astype(np.float32)
        labels[n] = lab
    return images, labels


def write_many_class_dataset(raw_root: str, dataset_id: int = 902, name: str = "SyntheticManyClasses",
                             num_train: int = 24, num_test: int = 8, size: int = 64, seed: int = 0) -> str:
    """Write ``raw_root/DatasetXXX_name`` with these images (``synthetic.write_synthetic_dataset``: idempotent,
    atomic, ids other datasets have refused); return its path."""
    from .synthetic import write_synthetic_dataset

    return write_synthetic_dataset(raw_root, dataset_id, name, num_train=num_train, num_test=num_test, size=size,
                                   seed=seed, many_classes=True)


if __name__ == "__main__":
    print(write_many_class_dataset(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 902))
