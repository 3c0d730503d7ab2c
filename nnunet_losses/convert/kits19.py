"""KiTS19 as the RW paper prepared it (001, sec. 5.1: "we resized KiTS19 image slices to 256x256"; 2D training).

Source: the kits19 repository's ``data/`` folder: ``case_XXXXX/imaging.nii.gz`` and ``segmentation.nii.gz`` (cases
without a segmentation, the challenge's test cases, are skipped with a message).

What is written, per case (one volume of stacked slices, so nnU-Net's ``2d`` configuration trains on the slices):

* the axial slices (the image axis most aligned with the patient's superior-inferior axis, from the direction
  cosines; KiTS19 stores it as the first NIfTI axis) are resampled in-plane to ``--size`` x ``--size`` (256): the CT
  with linear interpolation, the labels (0 background, 1 kidney, 2 tumour) with nearest neighbour;
* the in-plane spacing is scaled so the physical extent is kept (spacing x old size / new size), the slice
  spacing, origin and directions are unchanged;
* by default only the slices that contain kidney or tumour are kept, as the authors' preparation script does
  (``--keep-slices all`` keeps every slice). Their script also resized the labels with image interpolation and
  kept the original spacing in the header: we use nearest neighbour and the correct spacing.
"""
from __future__ import annotations

import os
import sys
from typing import Dict, List, Tuple

import numpy as np
from tqdm import tqdm

from ._common import ConversionError, check_labels, output_root, parser, run, write_dataset

LABELS = {"background": 0, "kidney": 1, "tumor": 2}


def slice_axis(image) -> int:
    """The image (ITK) axis whose direction is closest to the world z axis."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    return int(np.argmax(np.abs(direction[2, :])))


def resample_slices(image, size: int, is_label: bool, keep: np.ndarray):
    """``image`` with its kept slices (boolean per slice) stacked and resampled in-plane to size x size. Kept slices
    are stacked at the original slice spacing, as the authors' script does (kidney slices are contiguous in
    practice; a gap would be closed)."""
    import SimpleITK as sitk

    axis = slice_axis(image)
    old_size = np.array(image.GetSize())
    old_spacing = np.array(image.GetSpacing())
    new_size = old_size.copy()
    new_size[[a for a in range(3) if a != axis]] = size
    new_spacing = old_spacing * old_size / new_size
    array_axis = 2 - axis  # numpy (z, y, x) order
    array = sitk.GetArrayFromImage(image)
    array = np.take(array, np.flatnonzero(keep), axis=array_axis)
    subset = sitk.GetImageFromArray(array)
    first_kept = [0, 0, 0]
    first_kept[axis] = int(np.flatnonzero(keep)[0])
    subset.SetOrigin(image.TransformIndexToPhysicalPoint(first_kept))
    subset.SetSpacing(tuple(old_spacing))
    subset.SetDirection(image.GetDirection())
    new_size[axis] = subset.GetSize()[axis]
    # voxel centres of the new grid: the first one half a new voxel in from the old grid's edge
    shift = (new_spacing - old_spacing) / 2
    shift[axis] = 0.0
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    new_origin = np.array(subset.GetOrigin()) + direction @ shift
    interpolator = sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear
    return sitk.Resample(subset, [int(s) for s in new_size], sitk.Transform(), interpolator, tuple(new_origin),
                         tuple(float(s) for s in new_spacing), image.GetDirection(), 0,
                         subset.GetPixelID())


def find_cases(source: str) -> Tuple[List[str], List[str]]:
    if not os.path.isdir(source):
        raise ConversionError(f"no such folder: {source}")
    cases = sorted(d for d in os.listdir(source) if d.startswith("case_") and
                   os.path.isfile(os.path.join(source, d, "imaging.nii.gz")))
    if not cases:
        raise ConversionError(f"no case_XXXXX/imaging.nii.gz under {source} (expected kits19's data/ folder)")
    labelled = [c for c in cases if os.path.isfile(os.path.join(source, c, "segmentation.nii.gz"))]
    return labelled, sorted(set(cases) - set(labelled))


def convert(source: str, nnunet_raw: str, dataset_id: int = 219, size: int = 256, keep_slices: str = "foreground",
            overwrite: bool = False) -> str:
    import SimpleITK as sitk

    if keep_slices not in ("foreground", "all"):
        raise ConversionError(f"keep_slices must be 'foreground' or 'all', got {keep_slices!r}")
    labelled, unlabelled = find_cases(source)
    if unlabelled:
        print(f"skipping {len(unlabelled)} case(s) without segmentation (e.g. {unlabelled[0]})")
    if not labelled:
        raise ConversionError(f"no case under {source} has a segmentation.nii.gz")

    def fill(out: str) -> Dict[str, object]:
        written = 0
        for case in tqdm(labelled, desc="KiTS19", unit="case", file=sys.stdout):
            image = sitk.ReadImage(os.path.join(source, case, "imaging.nii.gz"), sitk.sitkFloat32)
            label_path = os.path.join(source, case, "segmentation.nii.gz")
            label = sitk.ReadImage(label_path, sitk.sitkUInt8)
            if image.GetSize() != label.GetSize():
                raise ConversionError(f"{case}: image size {image.GetSize()} != segmentation size {label.GetSize()}")
            labels = sitk.GetArrayFromImage(label)
            check_labels(labels, LABELS.values(), label_path)
            axis = 2 - slice_axis(label)
            other = tuple(a for a in range(3) if a != axis)
            keep = labels.any(axis=other) if keep_slices == "foreground" else np.ones(labels.shape[axis], bool)
            if not keep.any():
                print(f"skipping {case}: no kidney or tumour voxel")
                continue
            sitk.WriteImage(resample_slices(image, size, False, keep),
                            os.path.join(out, "imagesTr", f"{case}_0000.nii.gz"))
            sitk.WriteImage(resample_slices(label, size, True, keep), os.path.join(out, "labelsTr", f"{case}.nii.gz"))
            written += 1
        return {"channel_names": {0: "CT"}, "labels": LABELS, "num_training_cases": written, "file_ending": ".nii.gz",
                "dataset_name": "KiTS19RW",
                "description": f"KiTS19 slices resized to {size}x{size} ({keep_slices} slices), as the RW paper "
                               "(001) prepared it; converted by nnunet-losses"}

    return write_dataset(nnunet_raw, dataset_id, "KiTS19RW", fill, overwrite)


def main(argv=None) -> int:
    p = parser("convert_kits19.py", __doc__, 219)
    p.add_argument("--size", type=int, default=256, help="in-plane size of every slice (default 256)")
    p.add_argument("--keep-slices", choices=("foreground", "all"), default="foreground",
                   help="slices with kidney/tumour only (the authors' script, default) or all")
    args = p.parse_args(argv)
    return run(lambda: convert(args.source, output_root(args.o), args.d, args.size, args.keep_slices, args.overwrite))


if __name__ == "__main__":
    raise SystemExit(main())
