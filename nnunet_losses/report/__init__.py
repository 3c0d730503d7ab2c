"""Paper-style tables and plots from evaluation outputs (``nnunet-losses report``)."""
from .build import build_report
from .plots import box_plots, cdf_plot, curves_plot
from .training_log import parse_training_logs

__all__ = ["build_report", "box_plots", "cdf_plot", "curves_plot", "parse_training_logs"]
