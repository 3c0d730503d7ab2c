"""Overlap metrics between a predicted and a reference label map."""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np


def dice_per_class(pred: np.ndarray, ref: np.ndarray, labels: Sequence[int]) -> Dict[int, float]:
    """Dice of every label in ``labels``; NaN where the label is absent from both (counted apart, never averaged
    as 0 or 1)."""
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    out = {}
    for label in labels:
        p, r = pred == label, ref == label
        denom = int(p.sum()) + int(r.sum())
        out[int(label)] = float(2 * np.logical_and(p, r).sum() / denom) if denom else float("nan")
    return out


def read_label_file(path: str) -> np.ndarray:
    """A label image (any format SimpleITK reads) as an integer array."""
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.int64)
