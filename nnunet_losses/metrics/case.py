"""All metrics of one class in one case, with defined values for empty masks.

Counts (TP, FP, FN, TN) are taken over the valid voxels (nnU-Net's ignore label removed). Definitions:

=========== ============================ ==============================================================
metric      formula                      when undefined
=========== ============================ ==============================================================
dice        2 TP / (2 TP + FP + FN)      both masks empty: 1 (nothing to find, nothing found)
iou         TP / (TP + FP + FN)          both masks empty: 1
hd, hd95,   medpy's surface distances    both empty: 0; exactly one empty: the image diagonal in mm
assd        (see ``metrics.surface``)    (of its axes longer than 1: the largest distance possible)
fpr         FP / (FP + TN)               no negative voxel: NaN
fnr         FN / (FN + TP)               empty reference: NaN
precision   TP / (TP + FP)               empty prediction: NaN
recall      TP / (TP + FN)               empty reference: NaN
vol_pred,   voxel count x voxel volume   (always defined, mm^3)
vol_ref
=========== ============================ ==============================================================

NaN values are never averaged: summaries leave them out and report how many there were (``n_undefined``). Every
row carries ``status``: ``both``, ``ref_empty``, ``pred_empty`` or ``both_empty``, so that a table can say how many
cases each mean stands on. Axes of length 1 are dropped before surface distances (a 2D image stored as one slice
is measured in 2D: with its third axis kept, every voxel would touch the array border and count as surface).
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import numpy as np

from .surface import surface_distances

METRICS = ("dice", "iou", "hd", "hd95", "assd", "fpr", "fnr", "precision", "recall", "vol_pred", "vol_ref")
COUNTS = ("tp", "fp", "fn", "tn")
LOWER_IS_BETTER = frozenset({"hd", "hd95", "assd", "fpr", "fnr"})


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan


def class_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                  valid: Optional[np.ndarray] = None) -> Dict[str, object]:
    """Metrics of one binary prediction mask against one binary reference mask (same shape, ``spacing`` per axis).

    ``valid``: voxels to evaluate (False where the reference has nnU-Net's ignore label); prediction voxels
    outside it are dropped before counting and before surface distances.
    """
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
        row.update(dice=1.0, iou=1.0, hd=0.0, hd95=0.0, assd=0.0)
        return row
    row.update(dice=2 * tp / (2 * tp + fp + fn), iou=tp / (tp + fp + fn))
    keep = [axis for axis, n in enumerate(pred.shape) if n > 1] or [0]
    shape, kept_spacing = tuple(pred.shape[a] for a in keep), [float(spacing[a]) for a in keep]
    if status == "both":
        distances = surface_distances(pred.reshape(shape), ref.reshape(shape), kept_spacing)
        row.update(distances._asdict())
    else:
        diagonal = float(np.sqrt(sum((n * s) ** 2 for n, s in zip(shape, kept_spacing))))
        row.update(hd=diagonal, hd95=diagonal, assd=diagonal)
    return row
