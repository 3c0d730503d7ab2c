"""ACDC 2017 into nnU-Net raw format (nnunetv2 2.8.1's own Dataset027_ACDC converter crashes on its path type).

Source: the challenge's ``database`` (or ``training``/``testing`` parent) folder::

    training/patientNNN/patientNNN_frameXX.nii.gz, patientNNN_frameXX_gt.nii.gz (+ _4d.nii.gz, Info.cfg: ignored)
    testing/patientNNN/...                                                      (optional; gt optional)

Output: case ``patientNNN_frameXX``, channel 0 "cineMRI", labels background 0, RV 1, MLV 2, LVC 3 (the challenge's
values, as nnU-Net names them); training frames -> imagesTr/labelsTr, testing frames -> imagesTs (+ labelsTs).
Images and labels are copied unchanged (geometry included); label values are checked.
"""
from __future__ import annotations

import glob
import os
import shutil
import sys
from typing import Dict, List, Optional, Tuple

from tqdm import tqdm

from ._common import ConversionError, check_labels, output_root, parser, run, write_dataset

LABELS = {"background": 0, "RV": 1, "MLV": 2, "LVC": 3}


def find_frames(split_folder: str) -> List[Tuple[str, str, Optional[str]]]:
    """(case id, image, label or None) for every ``patient*/patient*_frameXX.nii.gz``."""
    frames = []
    for image in sorted(glob.glob(os.path.join(split_folder, "patient*", "patient*_frame[0-9][0-9].nii.gz"))):
        case = os.path.basename(image)[:-len(".nii.gz")]
        label = image[:-len(".nii.gz")] + "_gt.nii.gz"
        frames.append((case, image, label if os.path.isfile(label) else None))
    return frames


def convert(source: str, nnunet_raw: str, dataset_id: int = 27, overwrite: bool = False) -> str:
    import SimpleITK as sitk

    training = os.path.join(source, "training")
    if not os.path.isdir(training):
        raise ConversionError(f"{source} has no training/ folder (expected ACDC's database layout)")
    train = find_frames(training)
    if not train:
        raise ConversionError(f"no patient*/patient*_frameXX.nii.gz in {training}")
    missing = [case for case, _, label in train if label is None]
    if missing:
        raise ConversionError(f"training frames without _gt label: {', '.join(missing[:5])}")
    test = find_frames(os.path.join(source, "testing")) if os.path.isdir(os.path.join(source, "testing")) else []

    def fill(folder: str) -> Dict[str, object]:
        if test:
            os.makedirs(os.path.join(folder, "imagesTs"))
        if any(label for _, _, label in test):
            os.makedirs(os.path.join(folder, "labelsTs"))
        for split, frames in (("Tr", train), ("Ts", test)):
            for case, image, label in tqdm(frames, desc=f"ACDC {split}", unit="frame", file=sys.stdout):
                shutil.copyfile(image, os.path.join(folder, f"images{split}", f"{case}_0000.nii.gz"))
                if label:
                    check_labels(sitk.GetArrayFromImage(sitk.ReadImage(label)), LABELS.values(), label)
                    shutil.copyfile(label, os.path.join(folder, f"labels{split}", f"{case}.nii.gz"))
        return {"channel_names": {0: "cineMRI"}, "labels": LABELS, "num_training_cases": len(train),
                "file_ending": ".nii.gz", "dataset_name": "ACDC",
                "reference": "https://www.creatis.insa-lyon.fr/Challenge/acdc/",
                "description": "ACDC 2017 cine MRI, converted by nnunet-losses (frames copied unchanged)"}

    return write_dataset(nnunet_raw, dataset_id, "ACDC", fill, overwrite)


def main(argv=None) -> int:
    args = parser("convert_acdc.py", __doc__, 27).parse_args(argv)
    return run(lambda: convert(args.source, output_root(args.o), args.d, args.overwrite))


if __name__ == "__main__":
    raise SystemExit(main())
