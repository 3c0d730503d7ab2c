"""Region-wise maps from integer label arrays (numpy + the ``edt`` package; nothing here imports torch or nnunetv2).

All map functions take labels (*spatial), 1-3 spatial dimensions, and return float32 (num_classes, *spatial).
:mod:`.formats` names the map kinds and holds the table of stored formats of the precomputed ones.
"""
from .distance import (
    ac_map, boundary_map, boundary_map_authors, rectified_map_from_inside, rrw_inside_map, rrw_map, rrw_own_class_map)
from .formats import (
    FORMATS, MAP_FUNCTIONS, MAP_KINDS, PRECOMPUTED_KINDS, STORED_KINDS, MapFormat, MapKind, map_format, stored_kind)

__all__ = ["rrw_map", "rrw_inside_map", "rrw_own_class_map", "rectified_map_from_inside", "boundary_map",
           "boundary_map_authors", "ac_map", "MapKind", "MAP_KINDS", "STORED_KINDS", "PRECOMPUTED_KINDS",
           "MapFormat", "FORMATS", "MAP_FUNCTIONS", "map_format", "stored_kind"]
