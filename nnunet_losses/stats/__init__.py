"""Statistics of the papers: the paired permutation test of the RW paper (001, Tables 2-4: 10,000 permutations of
each loss against RRW), bootstrap confidence intervals, and the empirical CDF of Fig. 5."""
from .bootstrap import bootstrap_ci
from .ecdf import ecdf
from .permutation import paired_permutation_test

__all__ = ["bootstrap_ci", "ecdf", "paired_permutation_test"]
