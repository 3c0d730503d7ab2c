"""BraTS 2018 in nnU-Net v2 raw format with three plain classes, as used by Valverde & Tohka, "Region-wise loss for
biomedical image segmentation" (sec. 4, Table 1: "the 210 high-grade glioma patients", segmented into background,
edema, enhancing tumor and necrotic and non-enhancing tumor core). nnU-Net's own BraTS converters declare nested
regions (whole tumour, tumour core, enhancing tumour) for sigmoid training instead: not what the paper trains.

Source: MICCAI_BraTS_2018_Data_Training:
    HGG/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz    the 210 high-grade glioma patients
    LGG/<case>/...                                     the 75 low-grade ones (only with --grades HGG LGG)

Output: DatasetXXX_BraTS18 (default 218), one case per patient folder, named as the folder. Channels in the
authors' order (their datasplits/brats18.py): 0 T2, 1 T1, 2 T1CE, 3 FLAIR (nnU-Net's own BraTS order is T1, T1CE,
T2, FLAIR; the order does not change nnU-Net's training). Labels, the authors' mapping of the original values:
background 0 (0), NCR_NET 1 (1, necrotic and non-enhancing tumour core), ED 2 (2, edema), ET 3 (4, enhancing
tumour); any other value is an error naming the file. Images are copied byte for byte; the labels are rewritten
as uint8 with the geometry of the original file.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ._common import (ConversionError, check_labels, copy_file, make_parser, map_cases, read_image, require_dir,
                      run, write_dataset, write_image)

MODALITIES = ("t2", "t1", "t1ce", "flair")
LABELS = {"background": 0, "NCR_NET": 1, "ED": 2, "ET": 3}
SOURCE_VALUES = (0, 1, 2, 4)


def find_cases(source: str, grades: Sequence[str]) -> List[Tuple[str, str]]:
    """(case, folder) of every patient of ``grades``, sorted; every one must have its five files."""
    cases = []
    for grade in grades:
        folder = os.path.join(source, grade)
        require_dir(folder, f"BraTS 2018 training data: {grade}/<case>/<case>_t1.nii.gz, ...")
        cases += [(name, os.path.join(folder, name)) for name in sorted(os.listdir(folder))
                  if os.path.isdir(os.path.join(folder, name))]
    if not cases:
        raise ConversionError(f"no case folder in {', '.join(os.path.join(source, g) for g in grades)}")
    for case, folder in cases:
        for suffix in (*MODALITIES, "seg"):
            if not os.path.isfile(os.path.join(folder, f"{case}_{suffix}.nii.gz")):
                raise ConversionError(f"{folder}: missing {case}_{suffix}.nii.gz")
    return cases


def convert_case(job: Tuple[str, str, str]) -> None:
    case, folder, out = job
    for channel, modality in enumerate(MODALITIES):
        copy_file(os.path.join(folder, f"{case}_{modality}.nii.gz"),
                  os.path.join(out, "imagesTr", f"{case}_{channel:04d}.nii.gz"))
    path = os.path.join(folder, f"{case}_seg.nii.gz")
    seg = read_image(path)
    values = sitk.GetArrayFromImage(seg)
    check_labels(values, SOURCE_VALUES, path)
    labels = sitk.GetImageFromArray(np.where(values == 4, 3, values).astype(np.uint8))
    labels.CopyInformation(seg)
    write_image(labels, os.path.join(out, "labelsTr", f"{case}.nii.gz"))


def convert(source: str, nnunet_raw: Optional[str], dataset_id: int = 218, grades: Sequence[str] = ("HGG",),
            num_processes: int = 1, overwrite: bool = False) -> str:
    """Write DatasetXXX_BraTS18 from the BraTS 2018 training data at ``source``; returns its path."""
    cases = find_cases(source, grades)

    def build(folder: str) -> None:
        map_cases(convert_case, [(case, path, folder) for case, path in cases], num_processes, "BraTS18")

    dataset_json = dict(channel_names={i: m.upper() for i, m in enumerate(MODALITIES)}, labels=LABELS,
                        num_training_cases=len(cases), file_ending=".nii.gz", dataset_name="BraTS18",
                        reference="https://www.med.upenn.edu/sbia/brats2018/data.html",
                        description=f"BraTS 2018 {'+'.join(grades)} as three plain classes, original label 4 -> 3 "
                                    "(nnunet_losses.convert.brats18)")
    return write_dataset(nnunet_raw, dataset_id, "BraTS18", dataset_json, build, overwrite)


def main(argv: Optional[List[str]] = None) -> int:
    parser = make_parser("nnunet-losses convert brats18", __doc__, 218)
    parser.add_argument("--grades", nargs="+", choices=("HGG", "LGG"), default=["HGG"],
                        help="grade folders to convert (default: HGG, the paper's 210 patients)")
    args = parser.parse_args(argv)
    return run(lambda: convert(args.source, args.output, args.dataset_id, tuple(dict.fromkeys(args.grades)),
                               args.num_processes, args.overwrite))


if __name__ == "__main__":
    raise SystemExit(main())
