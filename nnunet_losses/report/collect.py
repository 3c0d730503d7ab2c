"""Evaluation outputs of an experiment, grouped by loss: ``EVAL_ROOT/<label>/<trainer>/fold_<f>.json`` as
``nnunet-losses reproduce`` writes them (one JSON of ``nnunet-losses evaluate`` per training; ``<f>`` a number or
``all``, nnU-Net's fold trained on every case).

Every problem that would make losses incomparable is refused with a message naming the files: unreadable or
non-evaluation JSON (or one whose classes, cases or summary have the wrong shape), different class sets, different
empty-mask conventions or NSD tolerances, a metric an evaluation lacks, and evaluations of different settings under
one label (runs of one loss differ in their seed only: :func:`check_one_setting_per_label`). Only the labels
reported are read. ``coverage`` finds the cases every loss has, so that means and tests use the same cases."""
from __future__ import annotations

import glob
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import InvalidInput, MissingInput

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
        raise InvalidInput(f"{path}: not valid JSON (truncated or unfinished?): {err}; rerun nnunet-losses "
                           "evaluate for it") from None
    missing = [k for k in ("classes", "cases", "summary") if not isinstance(evaluation, dict) or k not in evaluation]
    if missing:
        raise InvalidInput(f"{path}: not an nnunet-losses evaluate JSON (no {', '.join(repr(k) for k in missing)})")
    _check_shape(path, evaluation)
    return evaluation


def _kind(value) -> str:
    return {type(None): "null", list: "a list", dict: "an object", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _check_shape(path: str, evaluation: dict) -> None:
    """The parts the report reads have the shapes ``nnunet-losses evaluate`` writes; else a one-line ValueError
    naming the file and the key."""
    def fail(what: str):
        raise InvalidInput(f"{path}: {what} (not what nnunet-losses evaluate writes: evaluate again)")

    for key, kind, expected in (("classes", list, "a list of classes"), ("cases", list, "a list of per-case rows"),
                                ("summary", dict, "an object")):
        if not isinstance(evaluation[key], kind):
            fail(f"{key!r} is {_kind(evaluation[key])}, expected {expected}")
    for i, cls in enumerate(evaluation["classes"]):
        if not isinstance(cls, dict) or not isinstance(cls.get("name"), str):
            fail(f"'classes' entry {i} has no 'name'")
    for i, row in enumerate(evaluation["cases"]):
        if not isinstance(row, dict):
            fail(f"'cases' row {i} is {_kind(row)}, expected an object with 'case' and 'class'")
        if not isinstance(row.get("case"), str) or not isinstance(row.get("class"), str):
            fail(f"'cases' row {i} has no 'case' and 'class' names")
    for key in ("pred_dir", "aggregation", "metrics", "warnings"):
        if key in evaluation and evaluation[key] is not None and not isinstance(
                evaluation[key], {"pred_dir": str, "aggregation": dict, "metrics": list, "warnings": list}[key]):
            fail(f"{key!r} is {_kind(evaluation[key])}")


def _fold(path: str) -> Union[int, str]:
    name = os.path.basename(path)[len("fold_"):-len(".json")]
    if name == "all":
        return "all"
    try:
        return int(name)
    except ValueError:
        raise InvalidInput(f"{path}: expected fold_<number>.json or fold_all.json") from None


def load_results(eval_root: str, order: Optional[Sequence[str]] = None) -> Dict[str, List[RunResult]]:
    """``{label: [runs]}`` in ``order`` (labels without results are left out), else alphabetical."""
    if not os.path.isdir(eval_root):
        raise MissingInput(f"no evaluation folder {eval_root}")
    found: Dict[str, List[str]] = {}
    for path in sorted(glob.glob(os.path.join(eval_root, "*", "*", "fold_*.json"))):
        found.setdefault(path.split(os.sep)[-3], []).append(path)
    if not found:
        raise MissingInput(f"no evaluation results (<label>/<trainer>/fold_<f>.json) under {eval_root}")
    if order:
        labels = [lab for lab in order if lab in found]
        if not labels:
            raise InvalidInput(f"--order: no evaluation for {', '.join(order)} under {eval_root} (found: "
                               f"{', '.join(sorted(found))})")
    else:
        labels = sorted(found)
    return {label: [RunResult(label, path.split(os.sep)[-2], _fold(path), path, _load(path)) for path in found[label]]
            for label in labels}  # only the labels reported are read


def run_settings(run: RunResult) -> Dict[str, Optional[str]]:
    """What must be equal for two evaluations to be runs of one loss: the trainer name without its seed token
    (``_s<N>``), and, where the evaluated folder is nnU-Net's ``<trainer>__<plans>__<configuration>/fold_<f>/<set>``
    (what ``reproduce`` evaluates), the plans, the configuration and the evaluated set (``validation`` or
    ``test_predictions``); None where the evaluation does not say (a folder outside nnU-Net's results)."""
    settings = {"trainer": re.sub(r"_s\d+$", "", run.trainer), "plans": None, "configuration": None,
                "predictions": None}
    pred = run.evaluation.get("pred_dir")
    if isinstance(pred, str):
        fold = os.path.dirname(os.path.normpath(pred))
        parts = os.path.basename(os.path.dirname(fold)).split("__")  # naming.output_folder_name
        if len(parts) == 3 and all(parts) and re.fullmatch(r"fold_(\d+|all)", os.path.basename(fold)):
            settings.update(plans=parts[1], configuration=parts[2],
                            predictions=os.path.basename(os.path.normpath(pred)))
    return settings


def check_one_setting_per_label(results: Dict[str, List[RunResult]]) -> None:
    """Refuse two evaluations under one label that differ in more than the seed (:func:`run_settings`): the report
    would average another trainer, plans, configuration or evaluated set as runs of one loss. The message names
    both files."""
    for label, runs in results.items():
        first = runs[0]
        first_settings = run_settings(first)
        for run in runs[1:]:
            settings = run_settings(run)
            for key, value in settings.items():
                if value is not None and first_settings[key] is not None and value != first_settings[key]:
                    raise InvalidInput(f"{first.path} and {run.path} are evaluations of different settings under "
                                       f"label {label} ({key} {first_settings[key]} and {value}): the runs of a loss "
                                       "differ in their seed (_s<N>) only; move one out of the evaluation folder or "
                                       "give it its own label")


def check_comparable(results: Dict[str, List[RunResult]], metrics: Sequence[str]) -> None:
    """Refuse evaluations that cannot share a table: other classes, conventions or NSD tolerances, or lacking a
    metric. The messages name the evaluation files."""
    runs = [run for loss_runs in results.values() for run in loss_runs]
    first = runs[0]
    for run in runs[1:]:
        if run.classes != first.classes:
            raise InvalidInput(f"evaluations of different classes: {first.path} has {', '.join(first.classes)}; "
                               f"{run.path} has {', '.join(run.classes)}")
        if run.aggregation["both_empty"] != first.aggregation["both_empty"]:
            raise InvalidInput(f"evaluations with different empty-mask conventions: {first.path} both_empty="
                               f"{first.aggregation['both_empty']}, {run.path} both_empty="
                               f"{run.aggregation['both_empty']}; evaluate them again with one --both-empty")
        if "nsd" in metrics and run.evaluation.get("nsd_tolerance_mm") != first.evaluation.get("nsd_tolerance_mm"):
            raise InvalidInput(f"evaluations with different NSD tolerances: {first.path} "
                               f"{first.evaluation.get('nsd_tolerance_mm')}, {run.path} "
                               f"{run.evaluation.get('nsd_tolerance_mm')}")
    for run in runs:
        cases = run.evaluation["cases"]
        available = run.evaluation.get("metrics") or (list(cases[0]) if cases else [])
        lacking = [m for m in metrics if m not in available]
        if lacking:
            raise InvalidInput(f"{run.path} has no {', '.join(lacking)} (written by an older nnunet-losses "
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
