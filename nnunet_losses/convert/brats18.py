"""BraTS 2018 into nnU-Net raw format with three plain classes, as the RW paper uses it (001, sec. 5.1: the 210
high-grade glioma patients; background, NCR/NET, edema, enhancing tumour). nnU-Net's own BraTS converters declare
nested regions (whole tumour, tumour core, enhancing) for sigmoid training: not what the paper trains.

Source: ``MICCAI_BraTS_2018_Data_Training`` with ``HGG/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz`` (and ``LGG/``).

Output: case = the folder name; channels 0 T2, 1 T1, 2 T1CE, 3 FLAIR (the authors' order); labels background 0,
NCR_NET 1, ED 2, ET 3 (the original 4 becomes 3, as the authors' script does; values other than 0, 1, 2, 4 are an
error). Default: HGG only (``--grades HGG LGG`` adds the low-grade cases).
"""
from __future__ import annotations

import os
import shutil
import sys
from typing import Dict, List, Tuple

import numpy as np
from tqdm import tqdm

from ._common import ConversionError, check_labels, output_root, parser, run, write_dataset

MODALITIES = ("t2", "t1", "t1ce", "flair")
LABELS = {"background": 0, "NCR_NET": 1, "ED": 2, "ET": 3}


def find_cases(source: str, grades) -> List[Tuple[str, str]]:
    cases = []
    for grade in grades:
        folder = os.path.join(source, grade)
        if not os.path.isdir(folder):
            raise ConversionError(f"{source} has no {grade}/ folder (expected BraTS 2018's training layout)")
        cases += [(name, os.path.join(folder, name)) for name in sorted(os.listdir(folder))
                  if os.path.isdir(os.path.join(folder, name))]
    if not cases:
        raise ConversionError(f"no case folders under {source}/{'|'.join(grades)}")
    return cases


def convert(source: str, nnunet_raw: str, dataset_id: int = 218, grades=("HGG",), overwrite: bool = False) -> str:
    import SimpleITK as sitk

    cases = find_cases(source, grades)
    for case, folder in cases:
        for suffix in (*MODALITIES, "seg"):
            if not os.path.isfile(os.path.join(folder, f"{case}_{suffix}.nii.gz")):
                raise ConversionError(f"{folder}: missing {case}_{suffix}.nii.gz")

    def fill(out: str) -> Dict[str, object]:
        for case, folder in tqdm(cases, desc="BraTS18", unit="case", file=sys.stdout):
            for channel, modality in enumerate(MODALITIES):
                shutil.copyfile(os.path.join(folder, f"{case}_{modality}.nii.gz"),
                                os.path.join(out, "imagesTr", f"{case}_{channel:04d}.nii.gz"))
            seg_path = os.path.join(folder, f"{case}_seg.nii.gz")
            seg = sitk.ReadImage(seg_path)
            labels = sitk.GetArrayFromImage(seg)
            check_labels(labels, (0, 1, 2, 4), seg_path)
            converted = sitk.GetImageFromArray(np.where(labels == 4, 3, labels).astype(np.uint8))
            converted.CopyInformation(seg)
            sitk.WriteImage(converted, os.path.join(out, "labelsTr", f"{case}.nii.gz"))
        return {"channel_names": {i: m.upper() for i, m in enumerate(MODALITIES)}, "labels": LABELS,
                "num_training_cases": len(cases), "file_ending": ".nii.gz", "dataset_name": "BraTS18",
                "description": f"BraTS 2018 {'+'.join(grades)}, three plain classes (label 4 -> 3), "
                               "converted by nnunet-losses"}

    return write_dataset(nnunet_raw, dataset_id, "BraTS18", fill, overwrite)


def main(argv=None) -> int:
    p = parser("convert_brats18.py", __doc__, 218)
    p.add_argument("--grades", nargs="+", default=["HGG"], choices=("HGG", "LGG"),
                   help="grade folders to convert (default HGG, as the paper)")
    args = p.parse_args(argv)
    return run(lambda: convert(args.source, output_root(args.o), args.d, tuple(args.grades), args.overwrite))


if __name__ == "__main__":
    raise SystemExit(main())
