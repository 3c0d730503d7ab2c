"""Paired permutation test (the RW paper, Valverde & Tohka, Pattern Recognition 2023, arXiv:2108.01405, Tables 2-4:
"a paired permutation test with 10000 random iterations").

Under the null hypothesis the two losses are exchangeable on every case, so each paired difference d_i = a_i - b_i
keeps or flips its sign with probability 1/2. Statistic: |mean(d)|. Two-sided p-value:

* exact, over all 2^n sign vectors, when 2^n <= ``n_permutations`` (cheaper than sampling, and exact):
  p = #{|T*| >= |T|} / 2^n (the observed sign vector is one of them, so p >= 2^-n);
* otherwise Monte Carlo with ``n_permutations`` random sign vectors: p = (1 + #{|T*| >= |T|}) / (1 + n_permutations)
  (Phipson & Smyth 2010: never 0, valid).

Ties are compared with a relative tolerance of 1e-12 (floating-point sums of the same values in another order).

``paired_class_mean_test`` tests the mean over classes of the class means (nnU-Net's ``foreground_mean``) with the
same sign flips, each case's whole vector of class values flipped together.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InvalidInput
from ._validate import as_pairs

_CHUNK = 4096


def _count_extreme(diffs: np.ndarray, signs: np.ndarray, threshold: float) -> int:
    stats = np.abs(signs @ diffs) / diffs.size
    return int(np.count_nonzero(stats >= threshold))


def paired_permutation_test(a: Sequence[float], b: Sequence[float], n_permutations: int = 10000, seed: int = 0,
                            nan_policy: str = "raise") -> float:
    """Two-sided p-value that paired samples ``a`` and ``b`` (e.g. per-case Dice of two losses) differ in mean.

    ``nan_policy``: ``raise`` (default) or ``omit`` (drop pairs with a NaN on either side). Fewer than one pair,
    or all differences zero, gives p = 1.
    """
    if n_permutations < 1:
        raise InvalidInput(f"n_permutations must be >= 1, got {n_permutations}")
    a_arr, b_arr = as_pairs(a, b, nan_policy)
    diffs = a_arr - b_arr
    n = diffs.size
    if n == 0 or not np.any(diffs):
        return 1.0
    observed = abs(diffs.mean())
    threshold = observed - 1e-12 * max(observed, np.abs(diffs).max())
    if n < 63 and 2 ** n <= n_permutations:
        count = 0
        for start in range(0, 2 ** n, _CHUNK):
            codes = np.arange(start, min(start + _CHUNK, 2 ** n), dtype=np.int64)
            signs = 1.0 - 2.0 * ((codes[:, None] >> np.arange(n)) & 1)
            count += _count_extreme(diffs, signs, threshold)
        return count / 2 ** n
    rng = np.random.default_rng(seed)
    count = 0
    for start in range(0, n_permutations, _CHUNK):
        size = min(_CHUNK, n_permutations - start)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(size, n))
        count += _count_extreme(diffs, signs, threshold)
    return (1 + count) / (1 + n_permutations)


def paired_class_mean_test(a: np.ndarray, b: np.ndarray, n_permutations: int = 10000, seed: int = 0) -> float:
    """Two-sided p-value that two losses differ in the mean over classes of their per-class means over cases.

    ``a``, ``b``: (cases, classes) values of the same cases, NaN where a value is undefined (e.g. a class absent
    from both masks). A (case, class) pair counts where both sides are defined; a class with no such pair is left
    out. Under the null hypothesis the two losses are exchangeable on every case, so each case's vector of
    differences keeps or flips its sign as a whole. With n_c the defined pairs of class c and C the classes kept,
    the statistic mean_c (1/n_c) sum_i d_ic equals sum_i w_i with w_i = (1/C) sum_c d_ic / n_c, so the test is
    :func:`paired_permutation_test` on the per-case weights w_i (same p-value, exact or Monte Carlo alike).
    """
    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_arr.ndim != 2 or a_arr.shape != b_arr.shape:
        raise ValueError(f"expected two (cases, classes) arrays of one shape, got {a_arr.shape} and {b_arr.shape}")
    both = ~np.isnan(a_arr) & ~np.isnan(b_arr)
    pairs = both.sum(axis=0)
    kept = pairs > 0
    if not kept.any():
        return 1.0
    diffs = np.where(both, a_arr - b_arr, 0.0)[:, kept] / pairs[kept]
    weights = diffs.sum(axis=1)[both[:, kept].any(axis=1)] / kept.sum()
    return paired_permutation_test(weights, np.zeros_like(weights), n_permutations=n_permutations, seed=seed)
