"""Evaluation outputs of an experiment, grouped by loss: ``EVAL_ROOT/<label>/<trainer>/fold_<f>.json`` as
``nnunet-losses reproduce`` writes them (one JSON of ``nnunet-losses evaluate`` per training; ``<f>`` a number or
``all``, nnU-Net's fold trained on every case).

Every problem that would make losses incomparable is refused with a message naming the files: unreadable or
non-evaluation JSON, different class sets, different empty-mask conventions or NSD tolerances, a metric an
evaluation lacks. ``coverage`` finds the cases every loss has, so that means and tests use the same cases."""
from __future__ import annotations

import glob
import json
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

# evaluations written before the convention was recorded gave a class absent from both masks Dice 1
LEGACY_AGGREGATION = {"both_empty": "one", "description": "both empty = 1 (Dice = IoU = 1, distances 0; "
                                                          "evaluation written before conventions were recorded)"}


@dataclass
class RunResult:
    label: str
    trainer: str
    fold: Union[int, str]
    path: str
    evaluation: dict

    @property
    def classes(self) -> List[str]:
        return [c["name"] for c in self.evaluation["classes"]]

    @property
    def aggregation(self) -> dict:
        return self.evaluation.get("aggregation", LEGACY_AGGREGATION)

    @property
    def fold_dir(self) -> str:
        """The nnU-Net fold folder (its validation/ or test_predictions/ folder was evaluated): training logs live
        there."""
        return os.path.dirname(os.path.normpath(self.evaluation["pred_dir"]))

    def values(self, metric: str, cls: str) -> Dict[str, float]:
        return {r["case"]: _float(r[metric]) for r in self.evaluation["cases"] if r["class"] == cls}

    def cases(self) -> List[str]:
        return sorted({r["case"] for r in self.evaluation["cases"]})

    def mean_over_classes(self, metric: str, mean: str = "per-class") -> float:
        """This run's mean over classes: ``per-class`` the mean of the class means over the cases where each is
        defined (nnU-Net's ``foreground_mean``), ``per-case`` the mean over cases of each case's class mean."""
        if mean == "per-case":
            value = self.evaluation["summary"]["mean_foreground"][metric]["mean"]
            return math.nan if value is None else float(value)
        class_means = [np.mean(defined) for defined in
                       ([v for v in self.values(metric, cls).values() if not math.isnan(v)] for cls in self.classes)
                       if defined]
        return float(np.mean(class_means)) if class_means else math.nan


def _float(value) -> float:
    return math.nan if value is None else float(value)


def _load(path: str) -> dict:
    try:
        with open(path) as f:
            evaluation = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON (truncated or unfinished?): {err}; rerun nnunet-losses "
                         "evaluate for it") from None
    missing = [k for k in ("classes", "cases", "summary") if not isinstance(evaluation, dict) or k not in evaluation]
    if missing:
        raise ValueError(f"{path}: not an nnunet-losses evaluate JSON (no {', '.join(repr(k) for k in missing)})")
    return evaluation


def _fold(path: str) -> Union[int, str]:
    name = os.path.basename(path)[len("fold_"):-len(".json")]
    if name == "all":
        return "all"
    try:
        return int(name)
    except ValueError:
        raise ValueError(f"{path}: expected fold_<number>.json or fold_all.json") from None


def load_results(eval_root: str, order: Optional[Sequence[str]] = None) -> Dict[str, List[RunResult]]:
    """``{label: [runs]}`` in ``order`` (labels without results are left out), else alphabetical."""
    if not os.path.isdir(eval_root):
        raise FileNotFoundError(f"no evaluation folder {eval_root}")
    results: Dict[str, List[RunResult]] = {}
    for path in sorted(glob.glob(os.path.join(eval_root, "*", "*", "fold_*.json"))):
        label, trainer = path.split(os.sep)[-3:-1]
        results.setdefault(label, []).append(RunResult(label, trainer, _fold(path), path, _load(path)))
    if not results:
        raise FileNotFoundError(f"no evaluation results (<label>/<trainer>/fold_<f>.json) under {eval_root}")
    if order:
        labels = [lab for lab in order if lab in results]
        if not labels:
            raise ValueError(f"--order: no evaluation for {', '.join(order)} under {eval_root} (found: "
                             f"{', '.join(sorted(results))})")
    else:
        labels = sorted(results)
    return {label: results[label] for label in labels}


def check_comparable(results: Dict[str, List[RunResult]], metrics: Sequence[str]) -> None:
    """Refuse evaluations that cannot share a table: other classes, conventions or NSD tolerances, or lacking a
    metric. The messages name the evaluation files."""
    runs = [run for loss_runs in results.values() for run in loss_runs]
    first = runs[0]
    for run in runs[1:]:
        if run.classes != first.classes:
            raise ValueError(f"evaluations of different classes: {first.path} has {', '.join(first.classes)}; "
                             f"{run.path} has {', '.join(run.classes)}")
        if run.aggregation["both_empty"] != first.aggregation["both_empty"]:
            raise ValueError(f"evaluations with different empty-mask conventions: {first.path} both_empty="
                             f"{first.aggregation['both_empty']}, {run.path} both_empty="
                             f"{run.aggregation['both_empty']}; evaluate them again with one --both-empty")
        if "nsd" in metrics and run.evaluation.get("nsd_tolerance_mm") != first.evaluation.get("nsd_tolerance_mm"):
            raise ValueError(f"evaluations with different NSD tolerances: {first.path} "
                             f"{first.evaluation.get('nsd_tolerance_mm')}, {run.path} "
                             f"{run.evaluation.get('nsd_tolerance_mm')}")
    for run in runs:
        cases = run.evaluation["cases"]
        available = run.evaluation.get("metrics") or (list(cases[0]) if cases else [])
        lacking = [m for m in metrics if m not in available]
        if lacking:
            raise ValueError(f"{run.path} has no {', '.join(lacking)} (written by an older nnunet-losses "
                             "evaluate?): evaluate it again")


@dataclass
class Coverage:
    """The cases every loss has (``common``), the others with the losses that lack them, and per loss the number
    of cases averaged over fewer runs than its others."""
    common: List[str]
    left_out: Dict[str, List[str]]
    fewer_runs: Dict[str, Tuple[int, int, int]]  # loss: (cases, their runs, the loss's most runs per case)


def coverage(results: Dict[str, List[RunResult]]) -> Coverage:
    runs_per_case = {loss: {} for loss in results}
    for loss, runs in results.items():
        for run in runs:
            for case in run.cases():
                runs_per_case[loss][case] = runs_per_case[loss].get(case, 0) + 1
    every = sorted(set().union(*(set(c) for c in runs_per_case.values())))
    common = [c for c in every if all(c in counts for counts in runs_per_case.values())]
    left_out = {c: [loss for loss, counts in runs_per_case.items() if c not in counts] for c in every
                if c not in common}
    fewer_runs = {}
    for loss, counts in runs_per_case.items():
        shared = [counts[c] for c in common]
        if shared and min(shared) < max(shared):
            fewer = [n for n in shared if n < max(shared)]
            fewer_runs[loss] = (len(fewer), min(fewer), max(shared))
    return Coverage(common, left_out, fewer_runs)


def per_case(runs: Sequence[RunResult], metric: str, cls: str,
             cases: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """Each case's value averaged over the runs that evaluated it (the RW paper averages 3 runs); NaN when no
    run has a defined value. ``cases``: only these."""
    keep = None if cases is None else set(cases)
    collected: Dict[str, List[float]] = {}
    for run in runs:
        for case, value in run.values(metric, cls).items():
            if keep is None or case in keep:
                collected.setdefault(case, []).append(value)
    out = {}
    for case, values in sorted(collected.items()):
        defined = [v for v in values if not math.isnan(v)]
        out[case] = float(np.mean(defined)) if defined else math.nan
    return out


def per_case_foreground(runs: Sequence[RunResult], metric: str, classes: Sequence[str],
                        cases: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """Each case's mean over classes of its run-averaged values (defined values only)."""
    tables = [per_case(runs, metric, cls, cases) for cls in classes]
    out = {}
    for case in tables[0]:
        defined = [t[case] for t in tables if case in t and not math.isnan(t[case])]
        out[case] = float(np.mean(defined)) if defined else math.nan
    return out
