"""Statistics of the papers: the paired permutation test of the RW paper (Valverde & Tohka, "Region-wise loss for
biomedical image segmentation", Pattern Recognition 2023, doi:10.1016/j.patcog.2022.109208, arXiv:2108.01405;
Tables 2-4: 10,000 permutations of each loss against RRW) and its form for the mean over classes of the class
means, bootstrap confidence intervals, and the empirical CDF of its Fig. 5. Nothing here imports torch or
nnunetv2."""
from .bootstrap import bootstrap_ci
from .ecdf import ecdf
from .permutation import paired_class_mean_test, paired_permutation_test

__all__ = ["bootstrap_ci", "ecdf", "paired_class_mean_test", "paired_permutation_test"]
