"""Region-wise maps from integer label arrays (numpy + the ``edt`` package; nothing here imports torch or nnunetv2).

All map functions take labels (*spatial), 1-3 spatial dimensions, and return float32 (num_classes, *spatial).
:mod:`.formats` holds the one table of map kinds (:data:`KINDS`: where each is made, its stored format, how it is
resampled and rebuilt) and everything derived from it.
"""
from .distance import (
    ac_map, boundary_map, boundary_map_authors, complement, onehot, rectified_map_from_inside, rrw_inside_map, rrw_map,
    rrw_own_class_map)
from .formats import (
    DEVICE, DEVICE_KINDS, FORMATS, KINDS, LINEAR, MAP_FUNCTIONS, MAP_KINDS, NEAREST, ONLINE, PRECOMPUTED,
    PRECOMPUTED_KINDS, STORED_KINDS, MapKind, MapKindSpec, MapSource, StoredFormat, kinds_made, map_format, map_kind,
    stored_kind, stored_row)

__all__ = ["rrw_map", "rrw_inside_map", "rrw_own_class_map", "rectified_map_from_inside", "boundary_map",
           "boundary_map_authors", "ac_map", "onehot", "complement", "KINDS", "MapKindSpec", "StoredFormat",
           "MapSource", "PRECOMPUTED", "ONLINE", "DEVICE", "LINEAR", "NEAREST", "MapKind", "MAP_KINDS",
           "STORED_KINDS", "PRECOMPUTED_KINDS", "DEVICE_KINDS", "FORMATS", "MAP_FUNCTIONS", "kinds_made", "map_kind",
           "map_format", "stored_kind", "stored_row"]
