"""Region-wise maps from integer label arrays (numpy + the ``edt`` package; nothing here imports torch).

All functions take labels (*spatial), 1-3 spatial dimensions, and return float32 (num_classes, *spatial).
"""
from .distance import ac_map, boundary_map, boundary_map_authors, rrw_inside_map, rrw_map, rrw_own_class_map

__all__ = ["rrw_map", "rrw_inside_map", "rrw_own_class_map", "boundary_map", "boundary_map_authors", "ac_map"]
