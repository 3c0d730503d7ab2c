"""The many-class generated dataset (``synthetic_images.make_many_classes``: one large and five small foreground
classes) in nnU-Net v2 raw format.

It stands in for multi-class anatomy with many small classes, such as a 7-class brain dataset whose classes hold
0.09-5% of the voxels, on which RRW and Combo failed to learn the small classes. Used by the learning tests
(``tests/test_learning.py``) and the measurements in ``docs/learning.md``:

    python -m nnunet_losses.nnunet.synthetic_many $nnUNet_raw 902
"""
from __future__ import annotations

import sys

from ..synthetic_images import MANY_LABELS as LABELS, make_many_classes as make_many_class_dataset  # noqa: F401


def write_many_class_dataset(raw_root: str, dataset_id: int = 902, name: str = "SyntheticManyClasses",
                             num_train: int = 24, num_test: int = 8, size: int = 64, seed: int = 0) -> str:
    """Write ``raw_root/DatasetXXX_name`` with these images (``synthetic.write_synthetic_dataset``: idempotent,
    atomic, ids other datasets have refused); return its path."""
    from .synthetic import write_synthetic_dataset

    return write_synthetic_dataset(raw_root, dataset_id, name, num_train=num_train, num_test=num_test, size=size,
                                   seed=seed, kind="many")


if __name__ == "__main__":
    print(write_many_class_dataset(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 902))
