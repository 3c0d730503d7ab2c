"""Per-case, per-class segmentation metrics (numpy/scipy/edt; nothing here imports torch)."""
from .case import LOWER_IS_BETTER, METRICS, class_metrics
from .evaluate import EvalClass, case_metrics, summarise
from .surface import SurfaceDistances, directed_distances, from_directed, surface_distances

__all__ = ["LOWER_IS_BETTER", "METRICS", "class_metrics", "EvalClass", "case_metrics", "summarise",
           "SurfaceDistances", "directed_distances", "from_directed", "surface_distances"]
