"""What every converter shares: the output folder (``$nnUNet_raw/DatasetXXX_Name``, written into a temporary sibling
and renamed into place, so an interrupted conversion leaves nothing half-written), dataset.json through nnU-Net's own
``generate_dataset_json``, label checks, and the command-line frame."""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from typing import Callable, Dict, Iterable, Optional

import numpy as np


class ConversionError(ValueError):
    """The source tree is not what the converter expects (missing files, unexpected labels)."""


def output_root(path: Optional[str]) -> str:
    root = path or os.environ.get("nnUNet_raw")
    if not root:
        raise ConversionError("give -o NNUNET_RAW or set nnU-Net's nnUNet_raw environment variable")
    return os.path.abspath(root)


def check_labels(labels: np.ndarray, allowed: Iterable[int], path: str) -> None:
    unexpected = sorted(set(np.unique(labels).tolist()) - set(allowed))
    if unexpected:
        raise ConversionError(f"{path}: unexpected label values {unexpected} (expected {sorted(allowed)})")


def write_dataset(raw_root: str, dataset_id: int, name: str, fill: Callable[[str], Dict[str, object]],
                  overwrite: bool = False) -> str:
    """Create ``raw_root/DatasetXXX_name`` with ``fill(tmp_folder)``, which writes imagesTr/labelsTr(/imagesTs,
    labelsTs) and returns the keyword arguments of nnU-Net's ``generate_dataset_json``. An existing dataset folder
    with the same id is refused unless ``overwrite``."""
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    folder = os.path.join(raw_root, f"Dataset{dataset_id:03d}_{name}")
    existing = [d for d in os.listdir(raw_root) if d.startswith(f"Dataset{dataset_id:03d}_")] \
        if os.path.isdir(raw_root) else []
    if existing and not overwrite:
        raise ConversionError(f"{os.path.join(raw_root, existing[0])} exists; pass --overwrite to replace it")
    os.makedirs(raw_root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".Dataset{dataset_id:03d}_", dir=raw_root)
    try:
        for sub in ("imagesTr", "labelsTr"):
            os.makedirs(os.path.join(tmp, sub))
        generate_dataset_json(tmp, **fill(tmp))
        for old in existing:
            shutil.rmtree(os.path.join(raw_root, old))
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def parser(prog: str, description: str, default_id: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="the dataset as downloaded (see above)")
    p.add_argument("-o", default=None, help="nnUNet_raw folder (default: $nnUNet_raw)")
    p.add_argument("-d", type=int, default=default_id, help=f"nnU-Net dataset id (default {default_id})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset with this id")
    return p


def run(main: Callable[[], str]) -> int:
    """Print the written folder, or the error in one line (exit 2)."""
    import sys

    try:
        print(f"wrote {main()}")
        return 0
    except (ConversionError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
