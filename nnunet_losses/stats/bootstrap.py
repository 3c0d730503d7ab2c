"""Bootstrap confidence intervals (percentile or BCa), a thin check-first wrapper over ``scipy.stats.bootstrap``."""
from __future__ import annotations

from typing import Callable, Sequence, Tuple

import numpy as np
from scipy import stats

from ._validate import as_sample


def bootstrap_ci(values: Sequence[float], statistic: Callable = np.mean, confidence: float = 0.95,
                 n_resamples: int = 10000, seed: int = 0, method: str = "BCa",
                 nan_policy: str = "raise") -> Tuple[float, float]:
    """(low, high) confidence interval of ``statistic`` of ``values`` (e.g. the mean Dice over cases, or the
    mean of paired differences a - b). ``method``: ``BCa`` (default) or ``percentile``. Needs >= 2 values; a
    constant sample gives (value, value)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if method not in ("BCa", "percentile"):
        raise ValueError(f"method must be 'BCa' or 'percentile', got {method!r}")
    sample = as_sample(values, "values", nan_policy)
    if sample.size < 2:
        raise ValueError(f"a bootstrap needs at least 2 values, got {sample.size}")
    if np.all(sample == sample[0]):
        value = float(statistic(sample))
        return value, value
    result = stats.bootstrap((sample,), lambda x, axis: statistic(x, axis=axis), vectorized=True,
                             confidence_level=confidence, n_resamples=n_resamples, method=method,
                             rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
