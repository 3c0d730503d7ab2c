"""All metrics of one class in one case, with documented values for empty masks.

Counts (TP, FP, FN, TN) are taken over the valid voxels (nnU-Net's ignore label removed). Definitions:

=========== ============================ ==============================================================
metric      formula                      empty masks
=========== ============================ ==============================================================
dice        2 TP / (2 TP + FP + FN)      one mask empty: 0
iou         TP / (TP + FP + FN)          one mask empty: 0
hd, hd95,   surface distances (mm, see   one mask empty: the image diagonal in mm (of its axes longer
hd95_max,   ``metrics.surface``)         than 1: the largest distance possible)
assd
nsd         share of both surfaces       one mask empty: 0
            within the tolerance (mm)
fpr         FP / (FP + TN)               no negative voxel: NaN
fnr         FN / (FN + TP)               empty reference: NaN
precision   TP / (TP + FP)               empty prediction: NaN
recall      TP / (TP + FN)               empty reference: NaN
vol_pred,   voxel count x voxel volume   (always defined, mm^3)
vol_ref
=========== ============================ ==============================================================

Both masks empty (the class is absent from the case and was not predicted), by convention ``both_empty``:

* ``"exclude"`` (default): nnU-Net's evaluator (``nnunetv2.evaluation.evaluate_predictions.compute_metrics``,
  and nnU-Net v1's, which the RW paper used): Dice, IoU, the distances and NSD are undefined (NaN);
* ``"one"``: Dice = IoU = NSD = 1 and distances 0 (nothing to find, nothing found).

NaN values are never averaged: summaries leave them out and report how many there were (``n_undefined``). Every
row carries ``status``: ``both``, ``ref_empty``, ``pred_empty`` or ``both_empty``, so that a table can say how many
cases each mean stands on. Axes of length 1 are dropped before surface distances (a 2D image stored as one slice
is measured in 2D: with its third axis kept, every voxel would touch the array border and count as surface).
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import numpy as np

from .surface import from_directed, directed_distances

METRICS = ("dice", "iou", "hd", "hd95", "hd95_max", "assd", "nsd", "fpr", "fnr", "precision", "recall",
           "vol_pred", "vol_ref")
COUNTS = ("tp", "fp", "fn", "tn")
LOWER_IS_BETTER = frozenset({"hd", "hd95", "hd95_max", "assd", "fpr", "fnr"})
BOTH_EMPTY = ("exclude", "one")
OVERLAP_AND_SURFACE = ("dice", "iou", "hd", "hd95", "hd95_max", "assd", "nsd")
DEFAULT_NSD_TOLERANCE = 1.0


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan


def class_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                  valid: Optional[np.ndarray] = None, both_empty: str = "exclude",
                  nsd_tolerance: float = DEFAULT_NSD_TOLERANCE) -> Dict[str, object]:
    """Metrics of one binary prediction mask against one binary reference mask (same shape, ``spacing`` per axis).

    ``valid``: voxels to evaluate (False where the reference has nnU-Net's ignore label); prediction voxels
    outside it are dropped before counting and before surface distances. ``both_empty``: ``"exclude"`` or
    ``"one"`` (module docstring). ``nsd_tolerance`` in mm.
    """
    if both_empty not in BOTH_EMPTY:
        raise ValueError(f"both_empty must be one of {', '.join(BOTH_EMPTY)}, got {both_empty!r}")
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    if valid is not None:
        pred, ref = pred & valid, ref & valid
        num_valid = int(np.count_nonzero(valid))
    else:
        num_valid = pred.size
    tp = int(np.count_nonzero(pred & ref))
    num_pred, num_ref = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    fp, fn = num_pred - tp, num_ref - tp
    tn = num_valid - tp - fp - fn
    status = {(True, True): "both", (False, True): "pred_empty", (True, False): "ref_empty",
              (False, False): "both_empty"}[(num_pred > 0, num_ref > 0)]

    voxel_volume = float(np.prod(spacing))
    row: Dict[str, object] = {"status": status, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
                              "vol_pred": num_pred * voxel_volume, "vol_ref": num_ref * voxel_volume,
                              "fpr": _ratio(fp, fp + tn), "fnr": _ratio(fn, fn + tp),
                              "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn)}
    if status == "both_empty":
        if both_empty == "one":
            row.update(dice=1.0, iou=1.0, hd=0.0, hd95=0.0, hd95_max=0.0, assd=0.0, nsd=1.0)
        else:
            row.update({m: math.nan for m in OVERLAP_AND_SURFACE})
        return row
    row.update(dice=2 * tp / (2 * tp + fp + fn), iou=tp / (tp + fp + fn))
    keep = [axis for axis, n in enumerate(pred.shape) if n > 1] or [0]
    shape, kept_spacing = tuple(pred.shape[a] for a in keep), [float(spacing[a]) for a in keep]
    if status == "both":
        forward, backward = directed_distances(pred.reshape(shape), ref.reshape(shape), kept_spacing)
        row.update(from_directed(forward, backward, nsd_tolerance)._asdict())
    else:
        diagonal = float(np.sqrt(sum((n * s) ** 2 for n, s in zip(shape, kept_spacing))))
        row.update(hd=diagonal, hd95=diagonal, hd95_max=diagonal, assd=diagonal, nsd=0.0)
    return row
