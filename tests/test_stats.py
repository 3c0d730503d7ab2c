"""Statistics: the paired permutation test (exact and Monte Carlo) against hand counts and scipy, bootstrap CIs,
the empirical CDF, and their refusals."""
import numpy as np
import pytest
from scipy import stats

from nnunet_losses.stats import bootstrap_ci, ecdf, paired_class_mean_test, paired_permutation_test


def test_exact_p_value_by_hand():
    # differences 1, 2, 3: of the 8 sign vectors only +++ and --- reach |mean| = 2
    assert paired_permutation_test([2, 4, 6], [1, 2, 3]) == pytest.approx(2 / 8)
    # one pair: the two sign vectors are equally extreme
    assert paired_permutation_test([1.0], [0.0]) == 1.0


def _scipy_paired(a, b, n_resamples):
    result = stats.permutation_test((a, b), lambda x, y, axis: np.mean(x - y, axis=axis), vectorized=True,
                                    permutation_type="samples", n_resamples=n_resamples, alternative="two-sided",
                                    rng=np.random.default_rng(0))
    return result.pvalue


@pytest.mark.parametrize("seed", range(4))
def test_exact_test_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.8, 0.05, 11)
    b = a - rng.normal(0.02, 0.04, 11)
    assert paired_permutation_test(a, b) == pytest.approx(_scipy_paired(a, b, np.inf))


def test_monte_carlo_test_is_close_to_exact_enumeration_and_reproducible():
    rng = np.random.default_rng(5)
    a = rng.normal(0.8, 0.05, 16)
    b = a - rng.normal(0.01, 0.04, 16)
    exact = paired_permutation_test(a, b, n_permutations=2 ** 16)
    sampled = paired_permutation_test(a, b, n_permutations=10000, seed=3)
    assert abs(sampled - exact) < 0.02
    assert sampled == paired_permutation_test(a, b, n_permutations=10000, seed=3)
    assert sampled != paired_permutation_test(a, b, n_permutations=10000, seed=4)


def test_clear_difference_gives_small_but_nonzero_p():
    a = np.linspace(0.80, 0.90, 100)
    p = paired_permutation_test(a, a - 0.05)
    assert p == pytest.approx(1 / 10001)
    assert paired_permutation_test(a, a) == 1.0


def test_permutation_test_refuses_bad_input():
    with pytest.raises(ValueError, match="equal length"):
        paired_permutation_test([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        paired_permutation_test([1, np.nan, 3], [1, 2, 2])
    with pytest.raises(ValueError, match="n_permutations"):
        paired_permutation_test([1, 2], [0, 0], n_permutations=0)
    with pytest.raises(ValueError, match="infinite"):
        paired_permutation_test([1, np.inf], [0, 0])
    # omit drops the whole pair
    assert paired_permutation_test([2, np.nan, 4, 6], [1, 0, 2, 3], nan_policy="omit") == pytest.approx(2 / 8)


def test_bootstrap_ci_matches_scipy_and_contains_the_mean():
    values = np.random.default_rng(0).normal(0.85, 0.05, 40)
    low, high = bootstrap_ci(values, n_resamples=2000, method="percentile", seed=1)
    reference = stats.bootstrap((values,), np.mean, n_resamples=2000, method="percentile",
                                rng=np.random.default_rng(1)).confidence_interval
    assert (low, high) == pytest.approx((reference.low, reference.high))
    assert low < values.mean() < high
    bca = bootstrap_ci(values, n_resamples=2000)
    assert bca[0] < values.mean() < bca[1]
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_ci([0.5])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(values, confidence=95)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([0.1, np.nan, 0.3])


def test_ecdf_steps_and_ties():
    x, f = ecdf([0.9, 0.1, 0.5, 0.5])
    np.testing.assert_allclose(x, [0.1, 0.5, 0.9])
    np.testing.assert_allclose(f, [0.25, 0.75, 1.0])
    x, f = ecdf([0.2, np.nan, 0.4], nan_policy="omit")
    np.testing.assert_allclose(f, [0.5, 1.0])
    with pytest.raises(ValueError, match="empty"):
        ecdf([])
    with pytest.raises(ValueError, match="nan_policy"):
        ecdf([1.0], nan_policy="skip")


def _class_mean_statistic(a, b):
    both = ~np.isnan(a) & ~np.isnan(b)
    kept = both.any(axis=0)
    return np.mean([np.mean((a - b)[both[:, c], c]) for c in np.flatnonzero(kept)])


def test_class_mean_test_flips_each_case_vector_as_a_whole():
    """Exact enumeration of the 2^n flips of whole case vectors, computed directly from the class means."""
    rng = np.random.default_rng(1)
    a = rng.uniform(0.4, 0.9, (9, 4))
    b = a - rng.normal(0.03, 0.05, (9, 4))
    a[rng.random((9, 4)) < 0.3] = np.nan  # undefined values on either side
    b[0, 3] = np.nan
    a[:, 2] = np.nan  # a class defined nowhere is left out
    observed = abs(_class_mean_statistic(a, b))
    count = 0
    for code in range(2 ** 9):
        signs = np.array([-1.0 if code >> i & 1 else 1.0 for i in range(9)])[:, None]
        # flipping a case swaps its two vectors: the differences change sign, case by case
        flipped_a = np.where(signs > 0, a, b)
        flipped_b = np.where(signs > 0, b, a)
        count += abs(_class_mean_statistic(flipped_a, flipped_b)) >= observed - 1e-12
    assert paired_class_mean_test(a, b) == pytest.approx(count / 2 ** 9)


def test_class_mean_test_of_one_class_is_the_paired_test_and_refuses_other_shapes():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(size=12), rng.uniform(size=12)
    assert paired_class_mean_test(a[:, None], b[:, None], n_permutations=500, seed=1) == \
        paired_permutation_test(a, b, n_permutations=500, seed=1)
    assert paired_class_mean_test(np.full((3, 2), np.nan), np.zeros((3, 2))) == 1.0
    with pytest.raises(ValueError, match="one shape"):
        paired_class_mean_test(np.zeros((3, 2)), np.zeros((3, 3)))
