"""What the three converters share: reading and checking the source, the progress bar over cases, the command line,
and writing the dataset folder atomically.

The folder ``<nnUNet_raw>/DatasetXXX_Name`` is built in a hidden temporary sibling (dataset.json by nnU-Net's own
``generate_dataset_json``) and renamed into place (``_files.atomic_folder``), so an interrupted conversion leaves no
half-written dataset.
Re-running with the same source and options finds an identical folder and leaves it alone; a different dataset
under the same id is refused unless ``overwrite``.
"""
from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
import tempfile
from multiprocessing import Pool
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from .._args import positive_int
from .._files import atomic_folder
from ..errors import InvalidInput


class ConversionError(InvalidInput):
    """The source tree or the output folder is not what the converter expects."""


def raw_root(path: Optional[str]) -> str:
    """``path`` or, as nnU-Net does, the ``nnUNet_raw`` environment variable."""
    root = path or os.environ.get("nnUNet_raw")
    if not root:
        raise ConversionError("no output folder: pass -o NNUNET_RAW or set the nnUNet_raw environment variable")
    return os.path.abspath(root)


def require_dir(path: str, expected: str) -> None:
    if not os.path.isdir(path):
        raise ConversionError(f"no folder {path} (expected {expected})")


def read_image(path: str, pixel_type: int = sitk.sitkUnknown) -> sitk.Image:
    if not os.path.isfile(path):
        raise ConversionError(f"missing file {path}")
    try:
        return sitk.ReadImage(path, pixel_type)
    except RuntimeError as err:
        raise ConversionError(f"cannot read {path}: {str(err).strip().splitlines()[-1]}") from None


def copy_file(source: str, destination: str) -> None:
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    shutil.copyfile(source, destination)


def write_image(image: sitk.Image, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sitk.WriteImage(image, path)


def check_labels(labels: np.ndarray, allowed: Iterable[int], path: str) -> None:
    unexpected = sorted(set(np.unique(labels).tolist()) - set(allowed))
    if unexpected:
        raise ConversionError(f"{path}: unexpected label values {unexpected} (allowed: {sorted(allowed)})")


def map_cases(function: Callable, jobs: Sequence, num_processes: int, desc: str) -> List:
    """``[function(job) for job in jobs]`` with a progress bar, in worker processes if ``num_processes`` > 1."""
    if num_processes <= 1:
        return [function(job) for job in tqdm(jobs, desc=desc, unit="case")]
    with Pool(num_processes) as pool:
        return list(tqdm(pool.imap(function, jobs), total=len(jobs), desc=desc, unit="case"))


def same_bytes(a: str, b: str) -> bool:
    return os.path.isfile(a) and os.path.isfile(b) and filecmp.cmp(a, b, shallow=False)


def same_files(a: str, b: str) -> bool:
    """Whether two folders hold the same relative file names with the same bytes."""
    def names(root: str) -> List[str]:
        return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)

    return names(a) == names(b) and all(same_bytes(os.path.join(a, n), os.path.join(b, n)) for n in names(a))


class _UpToDate(Exception):
    """The dataset just built equals the one in place: the new folder is discarded."""


def _move_aside(paths: Sequence[str], root: str) -> str:
    """Move the existing ``paths`` into a hidden folder under ``root`` (removed once the new dataset is in place)."""
    old = tempfile.mkdtemp(prefix=".replaced.", dir=root)
    for path in paths:
        if os.path.exists(path):
            os.rename(path, os.path.join(old, os.path.basename(path)))
    return old


def write_dataset(nnunet_raw: Optional[str], dataset_id: int, name: str, dataset_json: Dict,
                  build: Callable[[str], None], overwrite: bool = False) -> str:
    """Write ``DatasetXXX_name`` under ``nnunet_raw`` (default ``$nnUNet_raw``) and return its path: dataset.json
    from ``dataset_json`` (keyword arguments of nnU-Net's ``generate_dataset_json``), then ``build(folder)`` writes
    the images and labels. A different dataset.json already there is refused before any image is converted."""
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    root = raw_root(nnunet_raw)
    prefix = f"Dataset{dataset_id:03d}_"
    target = os.path.join(root, prefix + name)
    os.makedirs(root, exist_ok=True)
    others = [os.path.join(root, d) for d in sorted(os.listdir(root)) if d.startswith(prefix) and d != prefix + name]
    if others and not overwrite:
        raise ConversionError(f"dataset id {dataset_id} is taken by {others[0]}: choose another -d or pass --overwrite")
    refusal = f"{target} exists with different content: pass --overwrite to replace it"
    try:
        with atomic_folder(target) as tmp:  # renamed to target when the block ends, removed on any error
            generate_dataset_json(tmp, **dataset_json)
            if os.path.exists(target) and not overwrite and not same_bytes(os.path.join(tmp, "dataset.json"),
                                                                           os.path.join(target, "dataset.json")):
                raise ConversionError(refusal)
            build(tmp)
            if os.path.isdir(target) and same_files(tmp, target):
                raise _UpToDate
            if os.path.exists(target) and not overwrite:
                raise ConversionError(refusal)
            replaced = _move_aside([*others, target], root)  # the rename needs target gone: last step of the block
    except _UpToDate:
        print(f"{target} is already up to date")
        return target
    shutil.rmtree(replaced)
    return target


def make_parser(prog: str, doc: str, default_id: int) -> argparse.ArgumentParser:
    """The options every converter has; ``doc`` (the module docstring) describes source, output and choices."""
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="the downloaded dataset folder, laid out as described above")
    parser.add_argument("-o", "--output", help="nnU-Net raw folder (default: the nnUNet_raw environment variable)")
    parser.add_argument("-d", "--dataset-id", type=int, default=default_id,
                        help=f"nnU-Net dataset id (default {default_id})")
    parser.add_argument("-np", "--num-processes", type=positive_int, default=1, help="worker processes (default 1)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a different dataset already stored under this id")
    return parser


def run(convert: Callable[[], str]) -> int:
    """Exit status of a command line: 0 and the dataset folder on stdout, or 2 and the error in one line."""
    try:
        print(convert())
    except ConversionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
