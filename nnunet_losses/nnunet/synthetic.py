"""A small imbalanced 2D segmentation dataset in nnU-Net v2 raw format, generated (nothing is downloaded).

Images come from one of :data:`nnunet_losses.synthetic_images.GENERATORS` (``discs``: three foreground classes whose
sizes differ by orders of magnitude; ``phantom``: abdomen-like slices, the demo's; ``many``: six foreground classes).
Each case is written as a (1, size, size) NIfTI image (z = 1, spacing 1), the usual way to give nnU-Net 2D data.
"""
from __future__ import annotations

import glob
import json
import os
from typing import Dict, Optional, Sequence

import numpy as np

from .._files import atomic_folder

from ..synthetic_images import DISCS_LABELS as LABELS, GENERATORS


def _write_nifti(array: np.ndarray, path: str) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(image, path)


def write_synthetic_dataset(raw_root: str, dataset_id: int = 901, name: str = "SyntheticImbalance",
                            num_train: int = 12, num_test: int = 4, size: int = 64, seed: int = 0,
                            ignore_label: bool = False, regions: bool = False, other_roots: Sequence[str] = (),
                            kind: str = "discs") -> str:
    """Write ``raw_root/DatasetXXX_name`` (imagesTr, labelsTr, imagesTs, labelsTs, dataset.json); return its path.

    Idempotent: an existing folder written with the same settings is returned as is. Atomic: the dataset is
    written to a temporary folder and renamed into place. ``ignore_label`` adds an ignore label (4) on a band of
    every training label map; ``regions`` declares nnU-Net regions (nested foreground regions, sigmoid training).
    A dataset id that another dataset already has in ``raw_root`` or ``other_roots`` (nnUNet_preprocessed,
    nnUNet_results) is refused: nnU-Net would no longer know which of the two the id means. ``kind``: the generator
    (``synthetic_images.GENERATORS``); the ignore label and regions exist for ``discs`` only.
    """
    if kind not in GENERATORS:
        raise ValueError(f"unknown synthetic dataset kind {kind!r}; choose from {', '.join(GENERATORS)}")
    if kind != "discs" and (ignore_label or regions):
        raise ValueError(f"the {kind!r} dataset has neither an ignore label nor regions (only 'discs' has)")

    if not 1 <= dataset_id <= 999:
        raise ValueError(f"the dataset id (-d) must be in 1..999 (nnU-Net's DatasetXXX), got {dataset_id}")
    for value, low, option in ((num_train, 2, "--num-train"), (num_test, 0, "--num-test"), (size, 16, "--size")):
        if value < low:
            raise ValueError(f"{option} must be at least {low}, got {value}")
    spec = {"dataset_id": dataset_id, "name": name, "num_train": num_train, "num_test": num_test, "size": size,
            "seed": seed, "ignore_label": ignore_label, "regions": regions, "version": 1}
    if kind != "discs":  # the datasets written before kinds existed stay up to date
        spec["kind"] = kind
    folder = os.path.join(raw_root, f"Dataset{dataset_id:03d}_{name}")
    for root in (raw_root, *other_roots):
        taken = [p for p in glob.glob(os.path.join(root, f"Dataset{dataset_id:03d}_*"))
                 if os.path.basename(p) != os.path.basename(folder)]
        if taken:
            raise FileExistsError(f"dataset id {dataset_id} is taken by {taken[0]}; choose another id (-d)")
    spec_file = os.path.join(folder, "nnunet_losses_synthetic.json")
    if os.path.isfile(spec_file):
        with open(spec_file) as f:
            existing = json.load(f)
        if existing == spec:
            return folder
        differences = ", ".join(f"{key} {existing.get(key, 'discs' if key == 'kind' else None)!r}"
                                for key in sorted(set(spec) | set(existing)) if existing.get(key) != spec.get(key))
        raise FileExistsError(f"{folder} exists with other settings (it has {differences}); remove it or choose "
                              "another dataset id (-d)")
    if os.path.exists(folder):
        raise FileExistsError(f"{folder} exists and was not written by nnunet-losses; choose another dataset id")
    with atomic_folder(folder) as tmp:
        generator = GENERATORS[kind]
        images, labels = generator.make(num_train + num_test, size=size, seed=seed)
        for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
            os.makedirs(os.path.join(tmp, sub))
        for i in range(num_train + num_test):
            part = "Tr" if i < num_train else "Ts"
            case = f"{name}_{i:03d}"
            lab = labels[i].astype(np.uint8)
            if ignore_label and part == "Tr":
                lab = lab.copy()
                lab[:, : size // 8] = 4  # a band of unknown voxels
            _write_nifti(images[i], os.path.join(tmp, f"images{part}", f"{case}_0000.nii.gz"))
            _write_nifti(lab[None], os.path.join(tmp, f"labels{part}", f"{case}.nii.gz"))
        dataset_labels: Dict[str, object] = dict(generator.labels)
        extra: Dict[str, object] = {}
        if regions:
            dataset_labels = {"background": 0, "any": [1, 2, 3], "medium_or_small": [2, 3], "small": 3}
            extra["regions_class_order"] = [1, 2, 3]
        if ignore_label:
            dataset_labels["ignore"] = 4
        dataset_json = {"channel_names": {"0": "MRI"}, "labels": dataset_labels, "numTraining": num_train,
                        "file_ending": ".nii.gz", "name": name,
                        "description": f"generated by nnunet-losses ({kind}): {generator.description}",
                        **extra}
        with open(os.path.join(tmp, "dataset.json"), "w") as f:
            json.dump(dataset_json, f, indent=2)
        with open(os.path.join(tmp, "nnunet_losses_synthetic.json"), "w") as f:
            json.dump(spec, f)
    return folder


def nnunet_env(root: str, base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment for nnU-Net subprocesses with raw/preprocessed/results under ``root``, one process each for
    preprocessing and augmentation (CPU-friendly), and torch.compile off."""
    env = dict(os.environ if base is None else base)
    root = os.path.abspath(root)
    env.update({"nnUNet_raw": os.path.join(root, "nnUNet_raw"),
                "nnUNet_preprocessed": os.path.join(root, "nnUNet_preprocessed"),
                "nnUNet_results": os.path.join(root, "nnUNet_results"),
                "nnUNet_def_n_proc": "1", "nnUNet_n_proc_DA": "1", "nnUNet_compile": "false"})
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.makedirs(env[key], exist_ok=True)
    return env
