"""Input checks shared by the statistics: 1-D finite samples, NaN refused or dropped on request."""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

NAN_POLICIES = ("raise", "omit")


def as_sample(values: Sequence[float], name: str, nan_policy: str) -> np.ndarray:
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sample, got shape {arr.shape}")
    if np.isinf(arr).any():
        raise ValueError(f"{name}: infinite values")
    if np.isnan(arr).any():
        if nan_policy == "raise":
            raise ValueError(f"{name}: {int(np.isnan(arr).sum())} NaN value(s); pass nan_policy='omit' to drop them")
        arr = arr[~np.isnan(arr)]
    return arr


def as_pairs(a: Sequence[float], b: Sequence[float], nan_policy: str) -> Tuple[np.ndarray, np.ndarray]:
    """Two paired samples; a pair with a NaN on either side is refused or dropped as a whole."""
    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_arr.ndim != 1 or a_arr.shape != b_arr.shape:
        raise ValueError(f"paired samples must be 1-D of equal length, got {a_arr.shape} and {b_arr.shape}")
    nan = np.isnan(a_arr) | np.isnan(b_arr)
    if nan.any() and nan_policy == "omit":
        a_arr, b_arr = a_arr[~nan], b_arr[~nan]
    elif nan.any():
        as_sample(a_arr - b_arr, "a - b", nan_policy)  # raises with the policy's message
    return as_sample(a_arr, "a", "raise"), as_sample(b_arr, "b", "raise")
