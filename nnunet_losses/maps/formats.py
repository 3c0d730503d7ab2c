"""Map kinds and the stored formats of the precomputed ones: the one table ``precompute-maps`` writes by and the
trainer's data pipeline reads and rebuilds by (numpy only; the rebuilds are arithmetic and take torch tensors too).

Kinds (the map a loss takes, Valverde & Tohka, "Region-wise loss for biomedical image segmentation", Pattern
Recognition 2023, doi:10.1016/j.patcog.2022.109208): ``rrw`` (eq. 4), ``boundary`` (eq. 3), ``boundary_authors``
(eq. 3 as the authors' code computes it, inside ``-d``) and ``ac`` (``1 - Y``, section 3.2). The first three are
precomputed; ``ac`` costs nothing and is always built after augmentation.

Stored forms (one file per case and stored kind; the full map is rebuilt after augmentation from the augmented
labels, so that zero padding stays correct):

* ``rrw``: one channel, the normalised inside distance ``m`` of each voxel within its own class
  (:func:`~nnunet_losses.maps.rrw_own_class_map`), uint8 in steps of 1/255; rebuilt as
  :func:`~nnunet_losses.maps.rectified_map_from_inside`, ``z = (1 - Y) - m Y``.
* ``boundary``: the K-channel signed distance (:func:`~nnunet_losses.maps.boundary_map`), int16 in steps of 1/4
  of the distance unit; used as stored, or minus ``Y`` for ``boundary_authors``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Dict, Literal, Optional, Sequence, Tuple, get_args

import numpy as np

from .distance import (
    ac_map, boundary_map, boundary_map_authors, rectified_map_from_inside, rrw_map, rrw_own_class_map)

MapKind = Literal["rrw", "boundary", "boundary_authors", "ac"]
StoredKind = Literal["rrw", "boundary"]
MAP_KINDS: Tuple[str, ...] = get_args(MapKind)
STORED_KINDS: Tuple[str, ...] = get_args(StoredKind)  # what precompute-maps writes
PRECOMPUTED_KINDS: Tuple[str, ...] = ("rrw", "boundary", "boundary_authors")  # built from a stored map
# the full map of each kind from labels (*spatial) -> (K, *spatial): what the loss takes, computed at once online
MAP_FUNCTIONS: Dict[str, Callable] = {"rrw": rrw_map, "boundary": boundary_map,
                                      "boundary_authors": boundary_map_authors, "ac": ac_map}


def _own_class_channel(labels: np.ndarray, num_classes: int, spacing: Optional[Sequence[float]]) -> np.ndarray:
    return rrw_own_class_map(labels, num_classes, spacing)[None]


def _minus_labels(stored, onehot):
    """The RW authors' boundary map from eq. 3's: ``stored - Y``."""
    return stored - onehot


@dataclass(frozen=True)
class MapFormat:
    """How the ``kind`` map is stored and rebuilt.

    ``stored``: the file it is read from (``<case>_<stored>.b2nd``); ``compute(labels, num_classes, spacing)``: the
    stored form in float32 (C, *spatial); ``one_channel``: C = 1 (else C = K); stored integers are
    ``round(value * scale)`` of ``dtype``; ``rebuild(stored, onehot)``: the full K-channel map from the stored form
    and the one-hot labels (None: the stored form is the map). The stored form travels through the data loader as
    it is (full resolution only); the trainer resamples it to each deep-supervision scale and rebuilds it there.
    """

    kind: str
    stored: str
    compute: Callable[[np.ndarray, int, Optional[Sequence[float]]], np.ndarray]
    one_channel: bool
    dtype: type
    scale: float
    rebuild: Optional[Callable] = None

    def channels(self, num_classes: int) -> int:
        """Channels of the stored form."""
        return 1 if self.one_channel else int(num_classes)

    def quantise(self, array: np.ndarray) -> np.ndarray:
        info = np.iinfo(self.dtype)
        return np.clip(np.round(array * self.scale), info.min, info.max).astype(self.dtype)

    def dequantise(self, stored: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """float32 values of the stored integers (written into ``out`` when given)."""
        return np.divide(stored, np.float32(self.scale), out=out, dtype=np.float32, casting="unsafe")


_RRW = MapFormat("rrw", "rrw", _own_class_channel, True, np.uint8, 255.0, rectified_map_from_inside)
_BOUNDARY = MapFormat("boundary", "boundary", boundary_map, False, np.int16, 4.0)
FORMATS: Dict[str, MapFormat] = {
    "rrw": _RRW,
    "boundary": _BOUNDARY,
    "boundary_authors": replace(_BOUNDARY, kind="boundary_authors", rebuild=_minus_labels),
}


def map_format(kind: str) -> MapFormat:
    """The format of a precomputed kind; ValueError naming the precomputed kinds otherwise."""
    if kind not in FORMATS:
        raise ValueError(f"unknown map kind {kind!r}; precomputed kinds: {', '.join(PRECOMPUTED_KINDS)}")
    return FORMATS[kind]


def stored_kind(kind: str) -> str:
    """The stored kind a precomputed map is built from (``boundary_authors`` from ``boundary``)."""
    return map_format(kind).stored


def quantise(array: np.ndarray, kind: str) -> np.ndarray:
    return map_format(kind).quantise(array)


def dequantise(stored: np.ndarray, kind: str, out: Optional[np.ndarray] = None) -> np.ndarray:
    return map_format(kind).dequantise(stored, out)
