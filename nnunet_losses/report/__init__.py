"""Paper-style tables and plots from evaluation outputs (``nnunet-losses report``)."""
from .build import build_report
from .plots import box_plots, cdf_plot, curves_plot, loss_colours
from .training_log import parse_training_log, parse_training_logs

__all__ = ["build_report", "box_plots", "cdf_plot", "curves_plot", "loss_colours", "parse_training_log",
           "parse_training_logs"]
