"""Every metric of :mod:`nnunet_losses.metrics.case` for each class of one case (a pair of label maps), what would
misread them (labels outside the classes, headers that differ), and the summary over cases. Reading files and
folders, the JSON and CSV, the command line: :mod:`nnunet_losses.evaluation`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .case import DEFAULT_NSD_TOLERANCE, METRICS, class_metrics

AGGREGATION = {
    "exclude": "nnU-Net's evaluator: a class absent from both prediction and reference is undefined (null) for Dice, "
               "IoU, distances and NSD, left out of the means and counted in n_undefined; one mask empty: Dice/IoU/"
               "NSD 0, distances = the image diagonal",
    "one": "both empty = 1: a class absent from both prediction and reference gets Dice = IoU = NSD = 1 and "
           "distances 0; one mask empty: Dice/IoU/NSD 0, distances = the image diagonal",
}
HD95_DEFINITIONS = {"hd95": "pooled: 95th percentile of both directions' surface distances together (medpy)",
                    "hd95_max": "max-directed: the larger of the two directed 95th percentiles (Metrics Reloaded, "
                                "MONAI)"}
ORIGIN_TOLERANCE_MM = 1e-3  # origins agree within 1e-3 mm + ORIGIN_TOLERANCE_RELATIVE x |origin| per axis
ORIGIN_TOLERANCE_RELATIVE = 1e-5  # above float32 (NIfTI) and 6-digit text (MetaImage, NRRD) rounding
DIRECTION_TOLERANCE = 1e-3  # direction cosines agree within this


@dataclass(frozen=True)
class Header:
    """Where a file's voxels lie, in ITK's convention (LPS): origin in mm, direction cosines row by row (one column
    per array axis, x first)."""
    origin: Tuple[float, ...]
    direction: Tuple[float, ...]


@dataclass(frozen=True)
class EvalClass:
    """One evaluated class: a name and the labels it covers (one label, or several for an nnU-Net region)."""
    name: str
    labels: Tuple[int, ...]


def _integer_values(values: np.ndarray) -> List[int]:
    """The distinct values of an integer-valued array (a bincount when their range is small, else a sort)."""
    if values.size == 0:
        return []
    low, high = int(values.min()), int(values.max())
    if high - low < 1 << 16:
        counts = np.bincount((values.ravel() - low).astype(np.intp), minlength=high - low + 1)
        return [int(v) + low for v in np.flatnonzero(counts)]
    return [int(v) for v in np.unique(values)]


def label_problems(array: np.ndarray, known: FrozenSet[int], what: str) -> List[str]:
    """What would be misread in a segmentation: non-finite values, non-integer values, labels not in ``known``."""
    problems = []
    values = array
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        if not finite.all():
            problems.append(f"{what} has {int(finite.size - np.count_nonzero(finite))} non-finite voxels "
                            "(NaN or inf)")
            values = values[finite]
        integral = values == np.round(values)
        if not integral.all():
            problems.append(f"{what} has {int(integral.size - np.count_nonzero(integral))} voxels of non-integer "
                            f"value (e.g. {float(values[~integral].flat[0]):g}): not a label map")
            values = values[integral]
    unknown = [v for v in _integer_values(values) if v not in known]
    if unknown:
        problems.append(f"{what} has labels outside the classes and the ignore label: "
                        f"{', '.join(str(v) for v in unknown)}")
    return problems


def _numbers(values: Sequence[float]) -> str:
    return f"({', '.join(f'{float(v) + 0.0:.6g}' for v in values)})"  # + 0.0: no "-0"


def header_problems(pred: Optional[Header], ref: Optional[Header]) -> List[str]:
    """Where the prediction's direction or origin differs from the reference's (nothing where either has no
    header): the scores compare the arrays as stored, so the two must describe the same voxels."""
    if pred is None or ref is None:
        return []
    problems = []
    if len(pred.direction) != len(ref.direction) or not np.allclose(pred.direction, ref.direction, rtol=0,
                                                                    atol=DIRECTION_TOLERANCE):
        problems.append(f"prediction direction {_numbers(pred.direction)} differs from the reference's "
                        f"{_numbers(ref.direction)} (direction cosines, row by row; the arrays are compared as "
                        "stored)")
    if len(pred.origin) != len(ref.origin) or not np.allclose(pred.origin, ref.origin, rtol=ORIGIN_TOLERANCE_RELATIVE,
                                                              atol=ORIGIN_TOLERANCE_MM):
        problems.append(f"prediction origin {_numbers(pred.origin)} mm differs from the reference's "
                        f"{_numbers(ref.origin)} mm (tolerance {ORIGIN_TOLERANCE_MM:g} mm + "
                        f"{ORIGIN_TOLERANCE_RELATIVE:g} x |origin|)")
    return problems


def case_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], classes: Sequence[EvalClass],
                 ignore_label: Optional[int] = None, both_empty: str = "exclude",
                 nsd_tolerances: Optional[Mapping[str, float]] = None) -> List[Dict[str, object]]:
    """One row per class of one case: :func:`~.case.class_metrics` of the class's masks in the label maps ``pred``
    and ``ref`` (one shape, ``spacing`` in mm per axis), voxels where ``ref`` is ``ignore_label`` left out;
    ``nsd_tolerances``: mm per class name (others: 1 mm)."""
    valid = None if ignore_label is None else ref != ignore_label
    rows = []
    for cls in classes:
        tolerance = (nsd_tolerances or {}).get(cls.name, DEFAULT_NSD_TOLERANCE)
        masks = [(a == cls.labels[0]) if len(cls.labels) == 1 else np.isin(a, cls.labels) for a in (pred, ref)]
        row = class_metrics(*masks, spacing, valid, both_empty=both_empty, nsd_tolerance=tolerance)
        rows.append({"class": cls.name, **row})
    return rows


def summarise(rows: Sequence[Dict[str, object]], classes: Sequence[EvalClass]) -> Dict[str, dict]:
    """Per class and metric: mean, std, median over the cases where the value is defined, n and n_undefined;
    per class: how many cases had each status. ``mean_foreground`` averages the classes per case first (what the
    report's paired tests use); ``foreground_mean`` is nnU-Net's summary.json value: the mean over classes of the
    class means."""
    summary: Dict[str, dict] = {}
    groups = {cls.name: [r for r in rows if r["class"] == cls.name] for cls in classes}
    for name, class_rows in groups.items():
        entry = {m: _stats([r[m] for r in class_rows]) for m in METRICS}
        entry["status"] = {s: sum(r["status"] == s for r in class_rows)
                           for s in ("both", "ref_empty", "pred_empty", "both_empty")}
        summary[name] = entry
    by_case: Dict[str, list] = {}
    for r in rows:
        by_case.setdefault(r["case"], []).append(r)
    summary["mean_foreground"] = {m: _stats([_defined_mean([r[m] for r in case_rows])
                                             for case_rows in by_case.values()]) for m in METRICS}
    summary["foreground_mean"] = {m: _defined_mean([math.nan if summary[c.name][m]["mean"] is None
                                                    else summary[c.name][m]["mean"] for c in classes])
                                  for m in METRICS}
    return summary


def _defined_mean(values: Sequence[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def _stats(values: Sequence[float]) -> Dict[str, Optional[float]]:
    arr = np.asarray(values, dtype=np.float64)
    defined = arr[~np.isnan(arr)]
    if defined.size == 0:
        return {"mean": None, "std": None, "median": None, "n": 0, "n_undefined": int(arr.size)}
    return {"mean": float(defined.mean()), "std": float(defined.std()), "median": float(np.median(defined)),
            "n": int(defined.size), "n_undefined": int(arr.size - defined.size)}
