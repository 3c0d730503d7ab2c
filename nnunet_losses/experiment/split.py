"""The RW paper's split (001, Datasets: "we divided each dataset in half: training and validation set") as nnU-Net's
``splits_final.json`` with one fold: half of the cases train, the other half validate (fold 0).

Cases that share a group (``--group`` regex, first capture group: ``^(patient\\d+)`` keeps the two ACDC frames of a
patient together) land on the same side. Two ways to halve the sorted groups:

* ``alternate`` (the authors' data scripts): every other group, starting at ``offset`` (their ACDC17 split trains on
  the even patients 002, 004, ... = offset 1; KiTS19 on cases 00000, 00002, ... and BraTS18 on the 1st, 3rd, ...
  HGG folder = offset 0);
* ``half``: groups shuffled with a fixed seed, the first half trains; with an odd count validation gets the extra.
"""
from __future__ import annotations

import json
import os
import re
from typing import Dict, List, Optional, Sequence

import numpy as np

from .._files import atomic_write_text


def compile_group(group: str) -> "re.Pattern":
    """The ``--group`` pattern, compiled; ValueError unless it is a regular expression with a capture group."""
    try:
        pattern = re.compile(group)
    except re.error as err:
        raise ValueError(f"group pattern {group!r} is not a regular expression: {err}") from None
    if pattern.groups < 1:
        raise ValueError(f"group pattern {group!r} needs a capture group naming the case's group, e.g. "
                         r"'^(patient\d+)'")
    return pattern


def half_split(cases: Sequence[str], seed: int = 0, group: Optional[str] = None,
               alternate: Optional[int] = None) -> List[Dict[str, List[str]]]:
    """One fold: random halves (``seed``) or, with ``alternate`` = 0 or 1, every other sorted group from there."""
    if len(cases) < 2:
        raise ValueError(f"a half split needs at least 2 cases, got {len(cases)}")
    pattern = compile_group(group) if group else None
    groups: Dict[str, List[str]] = {}
    for case in sorted(cases):
        match = pattern.search(case) if pattern else None
        if pattern and (not match or match.group(1) is None):
            raise ValueError(f"case {case!r} does not match the group pattern {group!r} (or its first group "
                             "captures nothing)")
        groups.setdefault(match.group(1) if match else case, []).append(case)
    if len(groups) < 2:
        raise ValueError(f"all {len(cases)} cases fall in one group of {group!r}: nothing to split")
    keys = sorted(groups)
    if alternate is not None:
        train_keys = {k for i, k in enumerate(keys) if i % 2 == alternate}
    else:
        order = np.random.default_rng(seed).permutation(len(keys))
        train_keys = {keys[i] for i in order[: len(keys) // 2]}
    train = sorted(c for k in train_keys for c in groups[k])
    val = sorted(c for k in keys if k not in train_keys for c in groups[k])
    return [{"train": train, "val": val}]


def dataset_half_split(preprocessed_dataset: str, seed: int = 0, group: Optional[str] = None,
                       alternate: Optional[int] = None) -> List[Dict[str, List[str]]]:
    """The half split of the cases in ``gt_segmentations`` (what :func:`write_half_split` writes)."""
    with open(os.path.join(preprocessed_dataset, "dataset.json")) as f:
        ending = json.load(f)["file_ending"]
    gt = os.path.join(preprocessed_dataset, "gt_segmentations")
    if not os.path.isdir(gt):
        raise FileNotFoundError(f"{gt} does not exist: run nnUNetv2_plan_and_preprocess first")
    cases = [n[: -len(ending)] for n in os.listdir(gt) if n.endswith(ending)]
    return half_split(cases, seed, group, alternate)


def write_half_split(preprocessed_dataset: str, seed: int = 0, group: Optional[str] = None,
                     alternate: Optional[int] = None, force: bool = False) -> str:
    """Write ``splits_final.json`` for the cases in ``gt_segmentations``; an existing different split is refused
    unless ``force`` (trainings of the experiment would otherwise mix splits)."""
    splits = dataset_half_split(preprocessed_dataset, seed, group, alternate)
    path = os.path.join(preprocessed_dataset, "splits_final.json")
    if os.path.isfile(path) and not force:
        with open(path) as f:
            existing = json.load(f)
        if existing != splits:
            raise RuntimeError(f"{path} holds another split ({len(existing)} fold(s)); remove it or pass --force "
                               "(trainings already run on the old split would no longer match)")
        return path
    return atomic_write_text(path, json.dumps(splits, indent=1))
