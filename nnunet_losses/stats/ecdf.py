"""Empirical cumulative distribution function, as the RW paper (Valverde & Tohka, Pattern Recognition 2023,
arXiv:2108.01405) plots the final Dice of repeated runs (Fig. 5)."""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from ._validate import as_sample


def ecdf(values: Sequence[float], nan_policy: str = "raise") -> Tuple[np.ndarray, np.ndarray]:
    """The distinct sorted values x and F(x) = fraction of values <= x (a right-continuous step function)."""
    sample = as_sample(values, "values", nan_policy)
    if sample.size == 0:
        raise ValueError("the empirical CDF of an empty sample is undefined")
    x, counts = np.unique(sample, return_counts=True)
    return x, np.cumsum(counts) / sample.size
