"""Per-case, per-class segmentation metrics (numpy only; nothing here imports nnU-Net or torch)."""
from .overlap import dice_per_class, read_label_file

__all__ = ["dice_per_class", "read_label_file"]
