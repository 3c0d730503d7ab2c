"""Evaluation outputs of an experiment, grouped by loss: ``EVAL_ROOT/<label>/<trainer>/fold_<f>.json`` as
``nnunet-losses reproduce`` writes them (one JSON of ``nnunet-losses evaluate`` per training)."""
from __future__ import annotations

import glob
import json
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np


@dataclass
class RunResult:
    label: str
    trainer: str
    fold: int
    path: str
    evaluation: dict

    @property
    def classes(self) -> List[str]:
        return [c["name"] for c in self.evaluation["classes"]]

    @property
    def fold_dir(self) -> str:
        """The nnU-Net fold folder (its validation folder was evaluated): training logs live there."""
        return os.path.dirname(os.path.normpath(self.evaluation["pred_dir"]))

    def values(self, metric: str, cls: str) -> Dict[str, float]:
        return {r["case"]: _float(r[metric]) for r in self.evaluation["cases"] if r["class"] == cls}

    def mean_foreground(self, metric: str) -> float:
        """Mean over cases of the per-case mean over classes (defined values only)."""
        value = self.evaluation["summary"]["mean_foreground"][metric]["mean"]
        return math.nan if value is None else float(value)


def _float(value) -> float:
    return math.nan if value is None else float(value)


def load_results(eval_root: str, order: Optional[Sequence[str]] = None) -> Dict[str, List[RunResult]]:
    """``{label: [runs]}`` in ``order`` (labels without results are left out), else alphabetical."""
    if not os.path.isdir(eval_root):
        raise FileNotFoundError(f"no evaluation folder {eval_root}")
    results: Dict[str, List[RunResult]] = {}
    for path in sorted(glob.glob(os.path.join(eval_root, "*", "*", "fold_*.json"))):
        label, trainer = path.split(os.sep)[-3:-1]
        fold = int(os.path.basename(path)[5:-5])
        with open(path) as f:
            results.setdefault(label, []).append(RunResult(label, trainer, fold, path, json.load(f)))
    if not results:
        raise FileNotFoundError(f"no evaluation results (<label>/<trainer>/fold_<f>.json) under {eval_root}")
    labels = [lab for lab in order if lab in results] if order else sorted(results)
    return {label: results[label] for label in labels}


def per_case(runs: Sequence[RunResult], metric: str, cls: str) -> Dict[str, float]:
    """Each case's value averaged over the runs that evaluated it (the RW paper averages 3 runs); NaN when no
    run has a defined value."""
    collected: Dict[str, List[float]] = {}
    for run in runs:
        for case, value in run.values(metric, cls).items():
            collected.setdefault(case, []).append(value)
    out = {}
    for case, values in sorted(collected.items()):
        defined = [v for v in values if not math.isnan(v)]
        out[case] = float(np.mean(defined)) if defined else math.nan
    return out


def per_case_foreground(runs: Sequence[RunResult], metric: str, classes: Sequence[str]) -> Dict[str, float]:
    """Each case's mean over classes of its run-averaged values."""
    tables = [per_case(runs, metric, cls) for cls in classes]
    out = {}
    for case in tables[0]:
        defined = [t[case] for t in tables if case in t and not math.isnan(t[case])]
        out[case] = float(np.mean(defined)) if defined else math.nan
    return out
