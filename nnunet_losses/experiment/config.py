"""Experiment specs (``configs/*.toml``): which dataset, configuration, split, trainers and repeated runs reproduce
one table or figure of a paper. Schema: see ``configs/README.md``; every key is checked here with a clear message.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Dict, List, Tuple

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from ..metrics.case import METRICS

CONVERTERS = ("acdc", "brats18", "kits19", "synthetic", "")
SPLITS = ("half", "alternate", "nnunet")
PLOTS = ("box", "cdf", "curves")
REPORT_METRICS = tuple(m for m in METRICS if not m.startswith("vol_"))
_REQUIRED = ("name", "dataset", "configuration", "trainers")


@dataclass(frozen=True)
class Run:
    """One nnU-Net training of the matrix: a loss label, the trainer name with its seed token, a fold."""
    label: str
    trainer: str
    seed: int
    fold: int

    @property
    def key(self) -> str:
        return f"{self.trainer}/fold_{self.fold}"


@dataclass(frozen=True)
class Experiment:
    path: str
    name: str
    paper: str
    description: str
    dataset: int
    convert: str
    configuration: str
    plans: str
    folds: Tuple[int, ...]
    split: str
    split_group: str
    split_seed: int
    split_offset: int
    runs: int
    reference: str
    metrics: Tuple[str, ...]
    plots: Tuple[str, ...]
    permutations: int
    trainers: Dict[str, str]

    @property
    def matrix(self) -> List[Run]:
        """Every training, run-major so that a partial matrix already holds one run of every loss."""
        return [Run(label, f"{name}_s{seed}", seed, fold) for seed in range(1, self.runs + 1)
                for label, name in self.trainers.items() for fold in self.folds]


def _fail(path: str, message: str):
    raise ValueError(f"{path}: {message}")


def load_experiment(path: str) -> Experiment:
    """Read and check a spec; trainer names are validated with the same parser nnU-Net's import goes through."""
    from ..nnunet.naming import TrainerNameError
    from ..nnunet.trainers import trainer_class

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such experiment spec: {path}")
    with open(path, "rb") as f:
        try:
            spec = tomllib.load(f)
        except tomllib.TOMLDecodeError as err:
            _fail(path, f"not valid TOML: {err}")
    exp, trainers = dict(spec.get("experiment", {})), spec.get("trainers", {})
    exp["trainers"] = trainers
    missing = [k for k in _REQUIRED if not exp.get(k)]
    if missing:
        _fail(path, f"missing {', '.join(missing)} ([experiment] keys and a [trainers] table)")
    unknown = set(spec) - {"experiment", "trainers"}
    if unknown:
        _fail(path, f"unknown table(s) {sorted(unknown)}; expected [experiment] and [trainers]")
    known = {"name", "paper", "description", "dataset", "convert", "configuration", "plans", "folds", "split",
             "split_group", "split_seed", "split_offset", "runs", "reference", "metrics", "plots", "permutations",
             "trainers"}
    if set(exp) - known:
        _fail(path, f"unknown [experiment] key(s) {sorted(set(exp) - known)}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(exp["name"])):
        _fail(path, f"name {exp['name']!r}: letters, digits, '_', '.', '-' only (it names a folder)")
    for label, name in trainers.items():
        if re.search(r"_s\d+$", name):
            _fail(path, f"trainer {label} = {name!r}: leave out the seed token; runs = N appends _s1.._sN")
        try:
            trainer_class(f"{name}_s1")
        except (TrainerNameError, ValueError, KeyError) as err:
            _fail(path, f"trainer {label} = {name!r}: {err}")
    for key, allowed, default in (("convert", CONVERTERS, ""), ("split", SPLITS, "nnunet")):
        if exp.get(key, default) not in allowed:
            _fail(path, f"{key} = {exp.get(key)!r}; choose one of {allowed}")
    metrics = tuple(exp.get("metrics", ("dice", "hd")))
    plots = tuple(exp.get("plots", ("box",)))
    for values, allowed, key in ((metrics, REPORT_METRICS, "metrics"), (plots, PLOTS, "plots")):
        bad = [v for v in values if v not in allowed]
        if bad:
            _fail(path, f"{key}: unknown {bad}; choose from {allowed}")
    reference = exp.get("reference", next(iter(trainers)))
    if reference not in trainers:
        _fail(path, f"reference {reference!r} is not a label of [trainers] ({', '.join(trainers)})")
    runs, permutations = int(exp.get("runs", 1)), int(exp.get("permutations", 10000))
    folds = tuple(int(f) for f in exp.get("folds", (0,)))
    split = exp.get("split", "nnunet")
    if runs < 1 or permutations < 1 or not folds:
        _fail(path, "runs and permutations must be >= 1 and folds non-empty")
    if split != "nnunet" and folds != (0,):
        _fail(path, f"split = {split!r} has one fold (0), got folds = {list(folds)}")
    split_offset = int(exp.get("split_offset", 0))
    if split_offset not in (0, 1):
        _fail(path, f"split_offset must be 0 or 1, got {split_offset}")
    if split_group := exp.get("split_group", ""):
        try:
            if re.compile(split_group).groups < 1:
                _fail(path, f"split_group {split_group!r} needs a capture group")
        except re.error as err:
            _fail(path, f"split_group {split_group!r}: {err}")
    return Experiment(path=os.path.abspath(path), name=str(exp["name"]), paper=str(exp.get("paper", "")),
                      description=str(exp.get("description", "")), dataset=int(exp["dataset"]),
                      convert=str(exp.get("convert", "")), configuration=str(exp["configuration"]),
                      plans=str(exp.get("plans", "nnUNetPlans")), folds=folds, split=split,
                      split_group=split_group, split_seed=int(exp.get("split_seed", 0)),
                      split_offset=split_offset, runs=runs,
                      reference=reference, metrics=metrics, plots=plots, permutations=permutations,
                      trainers=dict(trainers))
