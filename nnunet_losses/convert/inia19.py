"""INIA19 macaque brain in nnU-Net v2 raw format: 2D coronal slices of the INIA19 T1 template with seven NeuroMaps
structures of graded size, a real-anatomy dataset small enough to train on a CPU.

Source: Debian's ``mricron-data`` package (``apt-get install mricron-data``) installs, in /usr/share/mricron/templates
(the default SOURCE):
    inia19-t1-brain.nii.gz      the INIA19 T1-weighted template, skull-stripped, 0.5 mm isotropic
    inia19-NeuroMaps.nii.gz     its NeuroMaps parcellation: structure X in one hemisphere, 1000 + X in the other
Rohlfing T., Kroenke C. D., Sullivan E. V., Dubach M. F., Bowden D. M., Grant K. A., Pfefferbaum A., "The INIA19
template and NeuroMaps atlas for primate brain image parcellation and spatial normalization", Frontiers in
Neuroinformatics 6:27, 2012, doi:10.3389/fninf.2012.00027 (CC-BY).

Conversion: X and 1000 + X are merged (one class for both hemispheres). Both volumes are reduced by --factor (default
2: 1 mm isotropic; trailing voxels that do not fill a block are dropped): the template by the mean of each block,
the parcellation by its most frequent label (ties: the lower label). Every coronal slice with brain (a nonzero
template voxel) becomes a case ``inia19_cor<NNN>`` (NNN: the slice's index, anterior to posterior), a (1, S-I, R-L)
image written with the in-plane spacing, as nnU-Net reads 2D data. Coronal, because the NeuroMaps atlas is drawn on
coronal sections, both hemispheres' copies of a structure lie in the same slice (two regions per class), and the
slices are the smallest of the three planes (84 x 64 pixels at 1 mm).

Classes (dataset.json labels 1..7, numbered by decreasing volume; NeuroMaps id; its pixels over all pixels of the
written slices that contain it, and those slices, training / test, at the defaults, as every conversion prints them):
    1 cerebral_white_matter           55   6.917 %   14 / 4
    2 superior_temporal_gyrus         54   2.505 %   20 / 8
    3 putamen                         98   1.742 %   11 / 4
    4 caudate_nucleus                 82   0.887 %   14 / 8
    5 claustrum                      148   0.334 %   13 / 4
    6 body_of_the_lateral_ventricle   73   0.193 %   11 / 4
    7 third_ventricle                125   0.103 %    8 / 3
chosen from the merged structures listed by volume (--list) for sizes 1.4- to 2.8-fold apart, down to 0.1 %, each in
at least 11 written slices; every other structure is background. --structures ID,ID,... chooses others.

Held-out slices: from the first slice with brain, every --period (16) slices hold --period - --test-slices - 2 --gap
training slices (imagesTr/labelsTr), --gap (2) slices left out, --test-slices (4) held-out slices (imagesTs/labelsTs)
and --gap slices left out: every test slice is at least --gap + 1 slices (3 mm) from every training slice. At the
defaults: 40 training and 20 test slices of the 78 with brain (18 left out).

Output: DatasetXXX_INIA19 (default 905), channel 0 "T1". dataset.json also records the source files, the structure ids,
the slice scheme and the measured pixel fractions (key ``inia19``).
"""
from __future__ import annotations

import argparse
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .._args import positive_int
from ._common import ConversionError, raw_root, read_image, run, write_dataset, write_image

DEFAULT_SOURCE = "/usr/share/mricron/templates"
TEMPLATE = "inia19-t1-brain.nii.gz"
ATLAS = "inia19-NeuroMaps.nii.gz"
OTHER_HEMISPHERE = 1000  # the NeuroMaps id of a structure's other-hemisphere copy: 1000 + X
DEFAULT_ID = 905
# NeuroMaps id: name (the atlas's label table, without its hemisphere prefix)
STRUCTURES = {55: "cerebral_white_matter", 54: "superior_temporal_gyrus", 98: "putamen", 82: "caudate_nucleus",
              148: "claustrum", 73: "body_of_the_lateral_ventricle", 125: "third_ventricle"}
INSTALL = "apt-get install mricron-data"


def source_files(source: Optional[str]) -> Tuple[str, str]:
    """The template and parcellation under ``source`` (default the Debian folder); a one-line ConversionError
    saying how to install them when either is missing."""
    folder = source or DEFAULT_SOURCE
    paths = (os.path.join(folder, TEMPLATE), os.path.join(folder, ATLAS))
    missing = [os.path.basename(p) for p in paths if not os.path.isfile(p)]
    if missing:
        raise ConversionError(f"no {' and '.join(missing)} in {folder}: {INSTALL} (Debian's INIA19 files), or pass "
                              "the folder that holds them")
    return paths


def merge_hemispheres(atlas: np.ndarray) -> np.ndarray:
    """NeuroMaps labels with 1000 + X (the other hemisphere's copy) turned into X."""
    atlas = np.asarray(atlas).astype(np.int32)
    return np.where(atlas >= OTHER_HEMISPHERE, atlas - OTHER_HEMISPHERE, atlas)


def _blocks(volume: np.ndarray, factor: int) -> np.ndarray:
    """(..., factor**3) view of the non-overlapping factor^3 blocks; trailing voxels that fill no block dropped."""
    shape = [s // factor for s in volume.shape]
    if min(shape) < 1:
        raise ConversionError(f"--factor {factor} is larger than the volume ({'x'.join(map(str, volume.shape))})")
    cropped = volume[tuple(slice(0, s * factor) for s in shape)]
    split = cropped.reshape(shape[0], factor, shape[1], factor, shape[2], factor)
    return split.transpose(0, 2, 4, 1, 3, 5).reshape(*shape, factor ** 3)


def block_mean(volume: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return volume.astype(np.float32)
    return _blocks(volume.astype(np.float32), factor).mean(axis=-1, dtype=np.float64).astype(np.float32)


def block_mode(labels: np.ndarray, factor: int) -> np.ndarray:
    """Each block's most frequent label; ties go to the lower label."""
    if factor == 1:
        return labels
    values = np.sort(_blocks(labels, factor), axis=-1)
    counts = (values[..., :, None] == values[..., None, :]).sum(axis=-1)
    return np.take_along_axis(values, counts.argmax(axis=-1)[..., None], axis=-1)[..., 0]


def volumes(labels: np.ndarray) -> Dict[int, int]:
    """Voxels of each structure (background left out), largest first."""
    ids, counts = np.unique(labels, return_counts=True)
    pairs = sorted(((int(i), int(c)) for i, c in zip(ids, counts) if i != 0), key=lambda p: (-p[1], p[0]))
    return dict(pairs)


def split_slices(slices: Sequence[int], period: int = 16, test: int = 4, gap: int = 2) -> Tuple[List[int], List[int]]:
    """(training, test) slice indices: from ``slices[0]``, each ``period`` holds ``period - test - 2 gap`` training
    slices, ``gap`` left out, ``test`` test slices, ``gap`` left out."""
    train_end = period - test - 2 * gap
    if test < 1 or gap < 0 or train_end < 1:
        raise ConversionError(f"--period {period} must exceed --test-slices {test} + 2 x --gap {gap} (test >= 1, "
                              "gap >= 0)")
    first = slices[0] if len(slices) else 0
    train = [s for s in slices if (s - first) % period < train_end]
    held_out = [s for s in slices if train_end + gap <= (s - first) % period < train_end + gap + test]
    return train, held_out


def _oriented(image: sitk.Image) -> np.ndarray:
    """The volume as a (S-I, A-P, R-L) array: row 0 superior, slice 0 anterior, column 0 the subject's right."""
    array = sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))  # (z: I->S, y: A->P, x: R->L)
    return array[::-1]


def _read(source: Optional[str]) -> Tuple[np.ndarray, np.ndarray, Tuple[float, float, float]]:
    """(template, merged parcellation, spacing (R-L, A-P, S-I) in mm) as (S-I, A-P, R-L) arrays."""
    template_path, atlas_path = source_files(source)
    template, atlas = read_image(template_path, sitk.sitkFloat32), read_image(atlas_path)
    if template.GetSize() != atlas.GetSize():
        raise ConversionError(f"{template_path} and {atlas_path} differ in size ({template.GetSize()} and "
                              f"{atlas.GetSize()})")
    spacing = sitk.DICOMOrient(template, "LPS").GetSpacing()
    return _oriented(template), merge_hemispheres(_oriented(atlas)), spacing


def choose_classes(labels: np.ndarray, structures: Sequence[int]) -> Dict[int, int]:
    """{NeuroMaps id: class} for ``structures``, classes 1..N by decreasing volume in ``labels``."""
    measured = volumes(labels)
    absent = [s for s in structures if s not in measured]
    if absent:
        raise ConversionError(f"structure(s) {', '.join(map(str, absent))} not in the parcellation (at this --factor)")
    if len(set(structures)) != len(structures):
        raise ConversionError(f"--structures lists a structure twice: {', '.join(map(str, structures))}")
    ranked = sorted(structures, key=lambda s: (-measured[s], s))
    return {structure: cls for cls, structure in enumerate(ranked, start=1)}


def pixel_fractions(labels: np.ndarray, slices: Sequence[int], classes: Sequence[int]) -> Dict[int, Tuple[float, int]]:
    """Per class: (its pixels / all pixels of the slices where it appears, number of those slices), over ``slices``
    of the (S-I, slice, R-L) class map."""
    out = {}
    plane = labels.shape[0] * labels.shape[2]
    for cls in classes:
        per_slice = np.array([np.count_nonzero(labels[:, s] == cls) for s in slices])
        present = int(np.count_nonzero(per_slice))
        out[cls] = (float(per_slice.sum() / (present * plane)) if present else 0.0, present)
    return out


def _write_slice(array: np.ndarray, spacing: Tuple[float, float], path: str) -> None:
    image = sitk.GetImageFromArray(array[None])  # (1, rows, columns): nnU-Net's 2D layout
    image.SetSpacing((float(spacing[0]), float(spacing[1]), 1.0))
    write_image(image, path)


def _name(structure: int) -> str:
    return STRUCTURES.get(structure, f"neuromaps_{structure}")


def convert(source: Optional[str] = None, nnunet_raw: Optional[str] = None, dataset_id: int = DEFAULT_ID,
            structures: Optional[Sequence[int]] = None, factor: int = 2, period: int = 16, test_slices: int = 4,
            gap: int = 2, overwrite: bool = False) -> str:
    """Write DatasetXXX_INIA19 from the INIA19 files in ``source`` (default the Debian folder); returns its path and
    prints each class's pixel fraction."""
    source_files(source)  # missing files, then no output folder: said before anything is read
    raw_root(nnunet_raw)
    template, atlas, spacing = _read(source)
    image, labels = block_mean(template, factor), block_mode(atlas, factor)
    spacing = tuple(s * factor for s in spacing)  # (R-L, A-P, S-I)
    classes = choose_classes(labels, list(structures or STRUCTURES))
    class_map = np.zeros(labels.shape, np.uint8)
    for structure, cls in classes.items():
        class_map[labels == structure] = cls
    brain = [int(s) for s in np.flatnonzero((image > 0).any(axis=(0, 2)))]
    train, test = split_slices(brain, period, test_slices, gap)
    fractions = {part: pixel_fractions(class_map, slices, classes.values())
                 for part, slices in (("all", train + test), ("train", train), ("test", test))}
    unseen = [_name(s) for s, cls in classes.items() if fractions["train"][cls][1] == 0]
    if unseen:
        raise ConversionError(f"{', '.join(unseen)} in no training slice: change --period, --test-slices or --gap")
    print(_fraction_table(classes, fractions))

    def build(folder: str) -> None:
        for part, slices in (("Tr", train), ("Ts", test)):
            for s in slices:
                case = f"inia19_cor{s:03d}"
                _write_slice(image[:, s], (spacing[0], spacing[2]), os.path.join(folder, f"images{part}",
                                                                                 f"{case}_0000.nii.gz"))
                _write_slice(class_map[:, s], (spacing[0], spacing[2]), os.path.join(folder, f"labels{part}",
                                                                                     f"{case}.nii.gz"))

    labels_json = {"background": 0, **{_name(s): cls for s, cls in classes.items()}}
    record = {"source": [TEMPLATE, ATLAS], "factor": factor, "spacing_mm": list(spacing),
              "structures": {_name(s): s for s in classes}, "merged": f"X and {OTHER_HEMISPHERE} + X",
              "slices": "coronal", "period": period, "test_slices": test_slices, "gap": gap,
              "train": train, "test": test,
              "pixel_fraction": {_name(s): round(fractions["all"][cls][0], 6) for s, cls in classes.items()}}
    dataset_json = dict(channel_names={0: "T1"}, labels=labels_json, num_training_cases=len(train),
                        file_ending=".nii.gz", dataset_name="INIA19",
                        reference="https://www.nitrc.org/projects/inia19/ (Rohlfing et al., Front. Neuroinform. 2012, "
                                  "doi:10.3389/fninf.2012.00027)",
                        license="CC-BY", converted_by="nnunet_losses.convert.inia19",
                        description="INIA19 T1 template, coronal slices with NeuroMaps structures (both hemispheres "
                                    "merged); held-out slices separated by a gap", inia19=record)
    return write_dataset(nnunet_raw, dataset_id, "INIA19", dataset_json, build, overwrite)


def _fraction_table(classes: Dict[int, int], fractions: Dict[str, Dict[int, Tuple[float, int]]]) -> str:
    lines = ["class  NeuroMaps  name                            pixel fraction  slices (train/test)"]
    for structure, cls in classes.items():
        fraction, _ = fractions["all"][cls]
        lines.append(f"{cls:5d}  {structure:9d}  {_name(structure):30s}  {100 * fraction:12.3f} %  "
                     f"{fractions['train'][cls][1]}/{fractions['test'][cls][1]}")
    return "\n".join(lines)


def list_structures(source: Optional[str] = None, factor: int = 2, top: int = 60) -> str:
    """The merged structures by volume at ``factor``: voxels, slices, pixel fraction of the slices they appear in."""
    _, atlas, _ = _read(source)
    labels = block_mode(atlas, factor)
    rows = ["NeuroMaps  voxels  slices  pixel fraction"]
    for structure, voxels in list(volumes(labels).items())[:top]:
        slices = int(np.count_nonzero((labels == structure).any(axis=(0, 2))))
        fraction = voxels / (slices * labels.shape[0] * labels.shape[2])
        rows.append(f"{structure:9d}  {voxels:6d}  {slices:6d}  {100 * fraction:12.3f} %  "
                    f"{STRUCTURES.get(structure, '')}")
    return "\n".join(rows)


def _structure_ids(text: str) -> List[int]:
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NeuroMaps ids separated by commas, got {text!r}") from None
    if not ids or min(ids) < 1 or max(ids) >= OTHER_HEMISPHERE:
        raise argparse.ArgumentTypeError(f"NeuroMaps ids are 1..{OTHER_HEMISPHERE - 1} (1000 + X is merged into X)")
    return ids


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnunet-losses convert inia19", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", default=DEFAULT_SOURCE,
                        help=f"folder with {TEMPLATE} and {ATLAS} (default {DEFAULT_SOURCE}: {INSTALL})")
    parser.add_argument("-o", "--output", help="nnU-Net raw folder (default: the nnUNet_raw environment variable)")
    parser.add_argument("-d", "--dataset-id", type=int, default=DEFAULT_ID,
                        help=f"nnU-Net dataset id (default {DEFAULT_ID})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a different dataset already stored under this id")
    parser.add_argument("--structures", type=_structure_ids, default=None,
                        help="NeuroMaps ids of the classes, comma-separated (default: "
                             f"{','.join(map(str, STRUCTURES))})")
    parser.add_argument("--factor", type=positive_int, default=2, help="reduction per axis (default 2: 1 mm)")
    parser.add_argument("--period", type=positive_int, default=16, help="slices per train/gap/test/gap cycle (16)")
    parser.add_argument("--test-slices", type=positive_int, default=4, help="held-out slices per cycle (4)")
    parser.add_argument("--gap", type=int, default=2, help="slices left out on each side of a test block (2)")
    parser.add_argument("--list", action="store_true",
                        help="print the merged structures by volume (at --factor) and exit, writing nothing")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = make_parser().parse_args(argv)
    if args.list:
        return run(lambda: list_structures(args.source, args.factor))
    return run(lambda: convert(args.source, args.output, args.dataset_id, args.structures, args.factor, args.period,
                               args.test_slices, args.gap, args.overwrite))


if __name__ == "__main__":
    raise SystemExit(main())
