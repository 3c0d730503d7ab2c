"""ACDC 2017 in nnU-Net v2 raw format, as used by Valverde & Tohka, "Region-wise loss for biomedical image
segmentation" (sec. 4, Table 1: cine MRI of 100 patients, two segmented 3D frames each, background, right
ventricle, myocardium, left ventricle). nnunetv2 2.8.1's own Dataset027_ACDC converter crashes on its path type.

Source: the challenge download (e.g. ACDC/database):
    training/patientNNN/patientNNN_frameXX.nii.gz      a segmented frame (end-diastole or end-systole)
    training/patientNNN/patientNNN_frameXX_gt.nii.gz   its labels
    testing/patientNNN/...                             optional, with or without _gt files (later or first release)
    patientNNN_4d.nii.gz and Info.cfg are ignored.

Output: DatasetXXX_ACDC (default 027), one case per frame, named patientNNN_frameXX; channel 0 "cineMRI"; labels
background 0, RV 1 (right ventricle), MLV 2 (myocardium), LVC 3 (left ventricle cavity): the challenge's own
values, named as in nnU-Net's ACDC dataset.json. training/ -> imagesTr, labelsTr; testing/ -> imagesTs, and
labelsTs for the frames with _gt. Files are copied byte for byte (geometry unchanged) once the labels are checked
to be within {0, 1, 2, 3}. The paper's half/half split is made later (nnunet-losses split), not here.
"""
from __future__ import annotations

import glob
import os
from typing import List, Optional, Tuple

import SimpleITK as sitk

from ._common import (ConversionError, check_labels, copy_file, make_parser, map_cases, read_image, require_dir,
                      run, write_dataset)

LABELS = {"background": 0, "RV": 1, "MLV": 2, "LVC": 3}


def find_frames(folder: str) -> List[Tuple[str, str, Optional[str]]]:
    """(case, image, labels or None) of every segmented frame under ``folder``, sorted."""
    frames = []
    for image in sorted(glob.glob(os.path.join(folder, "patient*", "patient*_frame[0-9][0-9].nii.gz"))):
        labels = image[:-len(".nii.gz")] + "_gt.nii.gz"
        frames.append((os.path.basename(image)[:-len(".nii.gz")], image, labels if os.path.isfile(labels) else None))
    return frames


def copy_frame(job: Tuple[str, Optional[str], str, str]) -> None:
    image, labels, image_out, labels_out = job
    if labels:
        check_labels(sitk.GetArrayFromImage(read_image(labels)), LABELS.values(), labels)
        copy_file(labels, labels_out)
    copy_file(image, image_out)


def convert(source: str, nnunet_raw: Optional[str], dataset_id: int = 27, num_processes: int = 1,
            overwrite: bool = False) -> str:
    """Write DatasetXXX_ACDC from the ACDC download at ``source``; returns its path."""
    require_dir(os.path.join(source, "training"), "the ACDC download: training/patientNNN/patientNNN_frameXX.nii.gz")
    train = find_frames(os.path.join(source, "training"))
    if not train:
        raise ConversionError(f"no training/patientNNN/patientNNN_frameXX.nii.gz under {source}")
    unlabelled = [case for case, _, labels in train if labels is None]
    if unlabelled:
        raise ConversionError(f"training frames without a _gt file: {', '.join(unlabelled)}")
    test = find_frames(os.path.join(source, "testing"))

    def build(folder: str) -> None:
        jobs = [(image, labels, os.path.join(folder, f"images{split}", f"{case}_0000.nii.gz"),
                 os.path.join(folder, f"labels{split}", f"{case}.nii.gz"))
                for split, frames in (("Tr", train), ("Ts", test)) for case, image, labels in frames]
        map_cases(copy_frame, jobs, num_processes, "ACDC")

    dataset_json = dict(channel_names={0: "cineMRI"}, labels=LABELS, num_training_cases=len(train),
                        file_ending=".nii.gz", dataset_name="ACDC",
                        reference="https://www.creatis.insa-lyon.fr/Challenge/acdc/",
                        description="ACDC 2017 segmented frames, copied unchanged (nnunet_losses.convert.acdc)")
    return write_dataset(nnunet_raw, dataset_id, "ACDC", dataset_json, build, overwrite)


def main(argv: Optional[List[str]] = None) -> int:
    args = make_parser("nnunet-losses convert acdc", __doc__, 27).parse_args(argv)
    return run(lambda: convert(args.source, args.output, args.dataset_id, args.num_processes, args.overwrite))


if __name__ == "__main__":
    raise SystemExit(main())
