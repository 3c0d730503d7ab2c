"""nnU-Net's ``splits_final.json`` written by us: the half split of the RW paper, and grouped k-fold splits.

Cases that share a group (``--group`` regex, first capture group: ``^(patient\\d+)`` keeps the two ACDC frames of a
patient together) always land on the same side of a fold.

One fold, half train and half validate (Valverde & Tohka, Region-wise loss for biomedical image segmentation,
Pattern Recognition 2023, doi:10.1016/j.patcog.2022.109208, Datasets: "we divided each dataset in half: training and
validation set"). Two ways to halve the sorted groups:

* ``alternate`` (the authors' data scripts): every other group, starting at ``offset`` (their ACDC17 split trains on
  the even patients 002, 004, ... = offset 1; KiTS19 on cases 00000, 00002, ... and BraTS18 on the 1st, 3rd, ...
  HGG folder = offset 0);
* ``half``: groups shuffled with a fixed seed, the first half trains; with an odd count validation gets the extra.

K folds (``--folds 5``; what nnU-Net's ``generate_crossval_split`` writes, but by group instead of by case): the
sorted groups are shuffled with ``numpy.random.default_rng(seed).permutation``, then dealt largest group first (groups
of one size in the shuffled order), each to the fold whose validation set has the fewest cases so far (the
lowest-numbered fold on ties). With groups of one size (ACDC: two frames per patient) this deals the shuffled groups
round-robin. Every case validates in exactly one fold and trains in the others; each fold's ``train`` and ``val``
lists are sorted.
"""
from __future__ import annotations

import json
import os
import re
from typing import Dict, List, Optional, Sequence

import numpy as np

from .._files import atomic_write_text
from ..errors import InvalidInput, MissingInput, StepFailed

NNUNET_FOLDS = 5  # split = "nnunet" with a split_group: as many folds as nnU-Net's own split
Splits = List[Dict[str, List[str]]]


def compile_group(group: str) -> "re.Pattern":
    """The ``--group`` pattern, compiled; ValueError unless it is a regular expression with a capture group."""
    try:
        pattern = re.compile(group)
    except re.error as err:
        raise InvalidInput(f"group pattern {group!r} is not a regular expression: {err}") from None
    if pattern.groups < 1:
        raise InvalidInput(f"group pattern {group!r} needs a capture group naming the case's group, e.g. "
                           r"'^(patient\d+)'")
    return pattern


def group_cases(cases: Sequence[str], group: Optional[str] = None) -> Dict[str, List[str]]:
    """The sorted cases of each group (``group``'s first capture group; without ``group`` each case is a group)."""
    pattern = compile_group(group) if group else None
    groups: Dict[str, List[str]] = {}
    for case in sorted(cases):
        match = pattern.search(case) if pattern else None
        if pattern and (not match or match.group(1) is None):
            raise InvalidInput(f"case {case!r} does not match the group pattern {group!r} (or its first group "
                               "captures nothing)")
        groups.setdefault(match.group(1) if match else case, []).append(case)
    return groups


def _fold(groups: Dict[str, List[str]], val_keys) -> Dict[str, List[str]]:
    return {"train": sorted(c for k in groups if k not in val_keys for c in groups[k]),
            "val": sorted(c for k in val_keys for c in groups[k])}


def half_split(cases: Sequence[str], seed: int = 0, group: Optional[str] = None,
               alternate: Optional[int] = None) -> Splits:
    """One fold: random halves (``seed``) or, with ``alternate`` = 0 or 1, every other sorted group from there."""
    if len(cases) < 2:
        raise InvalidInput(f"a half split needs at least 2 cases, got {len(cases)}")
    groups = group_cases(cases, group)
    if len(groups) < 2:
        raise InvalidInput(f"all {len(cases)} cases fall in one group of {group!r}: nothing to split")
    keys = sorted(groups)
    if alternate is not None:
        train_keys = {k for i, k in enumerate(keys) if i % 2 == alternate}
    else:
        order = np.random.default_rng(seed).permutation(len(keys))
        train_keys = {keys[i] for i in order[: len(keys) // 2]}
    return [_fold(groups, set(keys) - train_keys)]


def grouped_folds(cases: Sequence[str], seed: int = 0, group: Optional[str] = None, folds: int = 5) -> Splits:
    """``folds`` folds that partition the cases by group, balanced by case count (see the module docstring)."""
    if folds < 2:
        raise InvalidInput(f"a k-fold split needs at least 2 folds, got {folds}")
    groups = group_cases(cases, group)
    if len(groups) < folds:
        raise InvalidInput(f"{folds} folds need at least {folds} groups; the {len(cases)} cases form {len(groups)} "
                           f"group(s) of {group!r}")
    keys = sorted(groups)
    val_keys: List[set] = [set() for _ in range(folds)]
    sizes = [0] * folds
    shuffled = [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]
    for key in sorted(shuffled, key=lambda k: -len(groups[k])):  # stable: the seeded order among equal sizes
        smallest = sizes.index(min(sizes))
        val_keys[smallest].add(key)
        sizes[smallest] += len(groups[key])
    return [_fold(groups, keys_of_fold) for keys_of_fold in val_keys]


def mixed_group(splits: Splits, group: Optional[str]) -> Optional[str]:
    """Where ``splits`` puts a group on both sides of a fold (``"group 'patient001' in training and validation of
    fold 0"``), or None when every fold keeps each group on one side. ValueError for a case the pattern misses."""
    for index, fold in enumerate(splits):
        train = group_cases(fold.get("train", []), group)
        both = sorted(set(train) & set(group_cases(fold.get("val", []), group)))
        if both:
            return f"group {both[0]!r} in training and validation of fold {index}"
    return None


def dataset_cases(preprocessed_dataset: str) -> List[str]:
    """The cases of a preprocessed dataset: its ``gt_segmentations`` (what nnU-Net's split is made of)."""
    with open(os.path.join(preprocessed_dataset, "dataset.json")) as f:
        ending = json.load(f)["file_ending"]
    gt = os.path.join(preprocessed_dataset, "gt_segmentations")
    if not os.path.isdir(gt):
        raise MissingInput(f"{gt} does not exist: run nnUNetv2_plan_and_preprocess first")
    return [n[: -len(ending)] for n in os.listdir(gt) if n.endswith(ending)]


def dataset_half_split(preprocessed_dataset: str, seed: int = 0, group: Optional[str] = None,
                       alternate: Optional[int] = None) -> Splits:
    """The half split of the cases in ``gt_segmentations`` (what :func:`write_half_split` writes)."""
    return half_split(dataset_cases(preprocessed_dataset), seed, group, alternate)


def write_splits(preprocessed_dataset: str, splits: Splits, force: bool = False) -> str:
    """Write ``splits_final.json``; an existing different split is refused unless ``force`` (trainings of the
    experiment would otherwise mix splits)."""
    path = os.path.join(preprocessed_dataset, "splits_final.json")
    if os.path.isfile(path) and not force:
        with open(path) as f:
            existing = json.load(f)
        if existing != splits:
            raise StepFailed(f"{path} holds another split ({len(existing)} fold(s)); remove it or pass --force "
                             "(trainings already run on the old split would no longer match)")
        return path
    return atomic_write_text(path, json.dumps(splits, indent=1))


def write_half_split(preprocessed_dataset: str, seed: int = 0, group: Optional[str] = None,
                     alternate: Optional[int] = None, force: bool = False) -> str:
    """The half split of the cases in ``gt_segmentations`` as ``splits_final.json`` (see :func:`write_splits`)."""
    return write_splits(preprocessed_dataset, dataset_half_split(preprocessed_dataset, seed, group, alternate), force)


def write_grouped_folds(preprocessed_dataset: str, seed: int = 0, group: Optional[str] = None, folds: int = 5,
                        force: bool = False) -> str:
    """The grouped k-fold split of the cases in ``gt_segmentations`` as ``splits_final.json``."""
    splits = grouped_folds(dataset_cases(preprocessed_dataset), seed, group, folds)
    return write_splits(preprocessed_dataset, splits, force)
