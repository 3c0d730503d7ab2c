"""KiTS19 in nnU-Net v2 raw format as Valverde & Tohka, "Region-wise loss for biomedical image segmentation"
prepared it (sec. 4: "we resized KiTS19 image slices to 256x256", 210 patients, 2D training, Table 1).

Source: the kits19 repository's data/ folder:
    case_XXXXX/imaging.nii.gz, case_XXXXX/segmentation.nii.gz
    Cases without segmentation.nii.gz (case_00210 on, the challenge's test cases) are skipped with a message.

Output: DatasetXXX_KiTS19RW (default 219), one case per patient, channel 0 "CT", labels background 0, kidney 1,
tumor 2 (KiTS19's values). Each case is one volume of stacked axial slices, so that nnU-Net's 2d configuration
(which slices along the axis of coarsest spacing: the axial one here) trains on them:
  * the axial axis is the image axis closest to the world superior-inferior axis (from the direction cosines;
    KiTS19 stores it first, NIfTI axis 0), or --slice-axis (NIfTI/ITK axis order);
  * every slice is resampled in-plane to --size x --size (256): the CT with linear interpolation, the labels with
    nearest neighbour; the in-plane spacing becomes spacing x old size / new size, so the physical extent and
    the outer edges stay where they were; the slice spacing is unchanged;
  * --keep-slices foreground (default) keeps only the slices containing kidney or tumour, as the authors'
    datasplits/kits19.py does (slices = np.sum(labels, axis=(1, 2)) != 0 on the original array, whose first
    axis is the axial one); --keep-slices all keeps every slice. Kept slices are stacked in order; a case whose
    foreground slices are not contiguous is reported, as its stack then skips the slices between.
  Unlike that script (which resized the labels like the CT, with Pillow 8's default bicubic filter, and kept the
  original spacing in the header), labels are resampled by nearest neighbour and the header has the new spacing.
"""
from __future__ import annotations

import os
from typing import List, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from ._common import (ConversionError, check_labels, make_parser, map_cases, positive_int, read_image, require_dir,
                      run, write_dataset, write_image)

LABELS = {"background": 0, "kidney": 1, "tumor": 2}


def axial_axis(image: sitk.Image) -> int:
    """The image (ITK/NIfTI order) axis whose direction is closest to the world superior-inferior (z) axis."""
    direction = np.reshape(image.GetDirection(), (3, 3))  # column j: direction of image axis j
    return int(np.argmax(np.abs(direction[2])))


def resize_slices(image: sitk.Image, axis: int, size: int, interpolator: int) -> sitk.Image:
    """``image`` resampled to ``size`` x ``size`` across ``axis``, keeping its outer edges and its slices."""
    old_size, old_spacing = np.array(image.GetSize()), np.array(image.GetSpacing())
    new_size = np.where(np.arange(3) == axis, old_size, size)
    new_spacing = old_spacing * old_size / new_size
    direction = np.reshape(image.GetDirection(), (3, 3))
    origin = np.array(image.GetOrigin()) + direction @ ((new_spacing - old_spacing) / 2)  # first voxel centre
    return sitk.Resample(image, new_size.tolist(), sitk.Transform(), interpolator, origin.tolist(),
                         new_spacing.tolist(), image.GetDirection(), 0.0, image.GetPixelID())


def take_slices(image: sitk.Image, axis: int, slices: np.ndarray) -> sitk.Image:
    """The ``slices`` (indices along ``axis``) of ``image`` stacked, placed at the first one."""
    stacked = sitk.GetImageFromArray(np.take(sitk.GetArrayViewFromImage(image), slices, axis=2 - axis))
    first = [0, 0, 0]
    first[axis] = int(slices[0])
    stacked.SetOrigin(image.TransformIndexToPhysicalPoint(first))
    stacked.SetSpacing(image.GetSpacing())
    stacked.SetDirection(image.GetDirection())
    return stacked


def convert_case(job: Tuple[str, str, str, int, str, Optional[int]]) -> Optional[str]:
    """Write one case; returns a note when its kept slices are not contiguous."""
    case, folder, out, size, keep_slices, slice_axis = job
    image = read_image(os.path.join(folder, "imaging.nii.gz"), sitk.sitkFloat32)
    labels_path = os.path.join(folder, "segmentation.nii.gz")
    labels = read_image(labels_path)
    if image.GetSize() != labels.GetSize():
        raise ConversionError(f"{folder}: imaging size {image.GetSize()} != segmentation size {labels.GetSize()}")
    check_labels(sitk.GetArrayViewFromImage(labels), LABELS.values(), labels_path)
    axis = axial_axis(image) if slice_axis is None else slice_axis
    if keep_slices == "all":
        slices = np.arange(image.GetSize()[axis])
    else:
        in_plane = tuple(a for a in range(3) if a != 2 - axis)  # numpy axes
        slices = np.flatnonzero(sitk.GetArrayViewFromImage(labels).any(axis=in_plane))
        if not len(slices):
            raise ConversionError(f"{labels_path}: no kidney or tumour voxel (--keep-slices all keeps every slice)")
    write_image(take_slices(resize_slices(image, axis, size, sitk.sitkLinear), axis, slices),
                os.path.join(out, "imagesTr", f"{case}_0000.nii.gz"))
    write_image(take_slices(resize_slices(sitk.Cast(labels, sitk.sitkUInt8), axis, size, sitk.sitkNearestNeighbor),
                            axis, slices), os.path.join(out, "labelsTr", f"{case}.nii.gz"))
    skipped = slices[-1] - slices[0] + 1 - len(slices)
    return f"{case}: {skipped} slice(s) without kidney or tumour between kept ones left out" if skipped else None


def convert(source: str, nnunet_raw: Optional[str], dataset_id: int = 219, size: int = 256,
            keep_slices: str = "foreground", slice_axis: Optional[int] = None, num_processes: int = 1,
            overwrite: bool = False) -> str:
    """Write DatasetXXX_KiTS19RW from the kits19 data/ folder at ``source``; returns its path."""
    if keep_slices not in ("foreground", "all"):
        raise ConversionError(f"keep_slices is 'foreground' or 'all', not {keep_slices!r}")
    require_dir(source, "the kits19 repository's data/ folder: case_XXXXX/imaging.nii.gz, segmentation.nii.gz")
    cases = sorted(d for d in os.listdir(source) if d.startswith("case_") and os.path.isdir(os.path.join(source, d)))
    labelled = [c for c in cases if os.path.isfile(os.path.join(source, c, "segmentation.nii.gz"))]
    if len(labelled) < len(cases):
        print(f"skipping {len(cases) - len(labelled)} case(s) without segmentation.nii.gz")
    if not labelled:
        raise ConversionError(f"no case_XXXXX/segmentation.nii.gz in {source}")

    def build(folder: str) -> None:
        jobs = [(case, os.path.join(source, case), folder, size, keep_slices, slice_axis) for case in labelled]
        for note in map_cases(convert_case, jobs, num_processes, "KiTS19"):
            if note:
                print(note)

    dataset_json = dict(channel_names={0: "CT"}, labels=LABELS, num_training_cases=len(labelled),
                        file_ending=".nii.gz", dataset_name="KiTS19RW", reference="https://github.com/neheller/kits19",
                        description=f"KiTS19 axial slices resized to {size}x{size}, {keep_slices} slices, as the "
                                    "Region-wise loss paper prepared them (nnunet_losses.convert.kits19)")
    return write_dataset(nnunet_raw, dataset_id, "KiTS19RW", dataset_json, build, overwrite)


def main(argv: Optional[List[str]] = None) -> int:
    parser = make_parser("nnunet-losses convert kits19", __doc__, 219)
    parser.add_argument("--size", type=positive_int, default=256, help="in-plane size of every slice (default 256)")
    parser.add_argument("--keep-slices", choices=("foreground", "all"), default="foreground",
                        help="slices with kidney or tumour only (default, as the authors) or all")
    parser.add_argument("--slice-axis", type=int, choices=(0, 1, 2),
                        help="axial axis in NIfTI/ITK order (default: from the direction cosines)")
    args = parser.parse_args(argv)
    return run(lambda: convert(args.source, args.output, args.dataset_id, args.size, args.keep_slices,
                               args.slice_axis, args.num_processes, args.overwrite))


if __name__ == "__main__":
    raise SystemExit(main())
