"""The map kinds: one table, :data:`KINDS`, of every map a loss takes, and everything that follows from it (numpy
only; the rebuilds are arithmetic and take torch tensors too).

Kinds (the map a loss takes, Valverde & Tohka, "Region-wise loss for biomedical image segmentation", Pattern
Recognition 2023, doi:10.1016/j.patcog.2022.109208): ``rrw`` (eq. 4), ``boundary`` (eq. 3), ``boundary_authors``
(eq. 3 as the authors' code computes it, inside ``-d``) and ``ac`` (``1 - Y``, section 3.2).

A row (:class:`MapKindSpec`) says

* ``made``: where the map is made. :data:`PRECOMPUTED`: ``precompute-maps`` writes its stored form beside nnU-Net's
  preprocessed data (a trainer name's ``_online`` makes the full map in the loader workers instead);
  :data:`ONLINE`: the full map in nnU-Net's loader workers, after augmentation, from each deep-supervision scale's
  labels; :data:`DEVICE`: built on the training device from each scale's labels, the loader carries nothing.
* ``compute(labels, num_classes, spacing)``: integer labels (*spatial) -> float32 (C, *spatial), what is made before
  the training device: the stored form of a precomputed kind, the full map of a kind made online; None for a kind
  made on the device.
* ``one_channel``: the stored form has C = 1 channel (else C = K, one per class).
* ``interpolation``: :data:`LINEAR` or :data:`NEAREST`, how the stored form is resampled: by nnU-Net's spatial
  augmentation (it travels as the ``regression_target``, cropped and zero-padded with the image) and to each
  deep-supervision scale. Maps made after augmentation are not resampled (None).
* ``stored``: the file and quantisation of a precomputed kind (:class:`StoredFormat`); kinds that share a file
  share its ``compute`` and channels (``boundary_authors`` reads the ``boundary`` file).
* ``rebuild(made, Y)``: the full K-channel map on the training device from what was made (resampled to the scale;
  None for a kind made on the device) and that scale's float one-hot labels ``Y``; None: what was made is the map.

The full map of a kind is ``rebuild(compute(labels), Y)`` (:meth:`MapKindSpec.full`, :data:`MAP_FUNCTIONS`);
the kinds of each place, the stored kinds and formats are read off the table, and :class:`MapSource` says where a
trainer's map is made. Stored forms (the full map is rebuilt after augmentation from the augmented labels, so that
zero padding stays correct):

* ``rrw``: one channel, the normalised inside distance ``m`` of each voxel within its own class
  (:func:`~nnunet_losses.maps.rrw_own_class_map`), uint8 in steps of 1/255; rebuilt as
  :func:`~nnunet_losses.maps.rectified_map_from_inside`, ``z = (1 - Y) - m Y``.
* ``boundary``: the K-channel signed distance (:func:`~nnunet_losses.maps.boundary_map`), int16 in steps of 1/4
  of the distance unit; used as stored, or minus ``Y`` for ``boundary_authors``.

Adding a kind is one row and its compute function (documentation/maps.md, "Adding a map kind").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Literal, Optional, Sequence, Tuple

import numpy as np

from ..errors import InvalidInput
from .distance import boundary_map, complement, onehot, rectified_map_from_inside, rrw_own_class_map

PRECOMPUTED, ONLINE, DEVICE = "precomputed", "online", "device"  # where a map is made
LINEAR, NEAREST = "linear", "nearest"  # how a stored form is resampled


@dataclass(frozen=True)
class StoredFormat:
    """The file ``<case>_<name>.b2nd`` of a precomputed map: integers ``round(value * scale)`` of ``dtype``."""

    name: str
    dtype: type
    scale: float

    def quantise(self, array: np.ndarray) -> np.ndarray:
        info = np.iinfo(self.dtype)
        return np.clip(np.round(array * self.scale), info.min, info.max).astype(self.dtype)

    def dequantise(self, stored: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """float32 values of the stored integers (written into ``out`` when given)."""
        return np.divide(stored, np.float32(self.scale), out=out, dtype=np.float32, casting="unsafe")


@dataclass(frozen=True)
class MapKindSpec:
    """One row of :data:`KINDS` (the fields are described in the module's documentation)."""

    kind: str
    made: str
    compute: Optional[Callable[[np.ndarray, int, Optional[Sequence[float]]], np.ndarray]]
    one_channel: bool = False
    interpolation: Optional[str] = None
    stored: Optional[StoredFormat] = None
    rebuild: Optional[Callable] = None

    def __post_init__(self):
        def wrong(what):
            return ValueError(f"map kind {self.kind!r} (made {self.made!r}): {what}")

        if self.made not in (PRECOMPUTED, ONLINE, DEVICE):
            raise wrong(f"made must be one of {PRECOMPUTED}, {ONLINE}, {DEVICE}")
        if (self.compute is None) != (self.made == DEVICE):
            raise wrong("a compute function for every kind not made on the device, none for those made there")
        if self.made == DEVICE and self.rebuild is None:
            raise wrong("a kind made on the device needs its rebuild from the one-hot labels")
        if (self.stored is None) != (self.made != PRECOMPUTED):
            raise wrong("a stored format for precomputed kinds only")
        if self.made == PRECOMPUTED and self.interpolation not in (LINEAR, NEAREST):
            raise wrong(f"the interpolation of a precomputed kind is {LINEAR} or {NEAREST}")
        if self.made != PRECOMPUTED and self.interpolation is not None:
            raise wrong("only precomputed maps are resampled (interpolation None)")

    @property
    def places(self) -> Tuple[str, ...]:
        """Where the map can be made: a precomputed kind also online (``_online``)."""
        return (PRECOMPUTED, ONLINE) if self.made == PRECOMPUTED else (self.made,)

    def channels(self, num_classes: int) -> int:
        """Channels of the stored form."""
        return 1 if self.one_channel else int(num_classes)

    @property
    def dtype(self) -> type:
        return self.stored.dtype

    @property
    def scale(self) -> float:
        return self.stored.scale

    def quantise(self, array: np.ndarray) -> np.ndarray:
        return self.stored.quantise(array)

    def dequantise(self, stored: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        return self.stored.dequantise(stored, out)

    def full(self, labels: np.ndarray, num_classes: int, spacing: Optional[Sequence[float]] = None) -> np.ndarray:
        """The full map (what the loss takes) of labels (*spatial): float32 (num_classes, *spatial)."""
        made = None if self.compute is None else self.compute(labels, num_classes, spacing)
        if self.rebuild is None:
            return made.astype(np.float32, copy=False)
        return self.rebuild(made, onehot(labels, num_classes)).astype(np.float32, copy=False)


def _own_class_channel(labels: np.ndarray, num_classes: int, spacing: Optional[Sequence[float]]) -> np.ndarray:
    return rrw_own_class_map(labels, num_classes, spacing)[None]


def _minus_labels(made, onehot_labels):
    """The RW authors' boundary map from eq. 3's: ``made - Y``."""
    return made - onehot_labels


def _labels_complement(made, onehot_labels):
    """RW-AC's ``1 - Y``, from the labels alone (nothing is made before the device)."""
    return complement(onehot_labels)


def _table(*rows: MapKindSpec) -> Dict[str, MapKindSpec]:
    """The rows by kind; kinds that share a stored file must agree on what it holds."""
    table: Dict[str, MapKindSpec] = {}
    for row in rows:
        if row.kind in table:
            raise ValueError(f"map kind {row.kind!r} twice in the table")
        first = next((r for r in table.values() if row.stored and r.stored and r.stored.name == row.stored.name), None)
        if first is not None and (first.stored, first.compute, first.one_channel) != (
                row.stored, row.compute, row.one_channel):
            raise ValueError(f"map kinds {first.kind!r} and {row.kind!r} share the file {row.stored.name!r} "
                             "but not its format, compute function or channels")
        table[row.kind] = row
    return table


_RRW_FILE = StoredFormat("rrw", np.uint8, 255.0)  # steps of 1/255 (error <= 0.002)
_BOUNDARY_FILE = StoredFormat("boundary", np.int16, 4.0)  # steps of 1/4 of the distance unit (error <= 1/8)

# The one table of map kinds. Columns: kind, made, compute, one_channel, interpolation, stored, rebuild.
KINDS: Dict[str, MapKindSpec] = _table(
    MapKindSpec("rrw", PRECOMPUTED, _own_class_channel, True, LINEAR, _RRW_FILE, rectified_map_from_inside),
    MapKindSpec("boundary", PRECOMPUTED, boundary_map, False, LINEAR, _BOUNDARY_FILE, None),
    MapKindSpec("boundary_authors", PRECOMPUTED, boundary_map, False, LINEAR, _BOUNDARY_FILE, _minus_labels),
    MapKindSpec("ac", DEVICE, None, False, None, None, _labels_complement),
)


def kinds_made(place: str) -> Tuple[str, ...]:
    """The kinds made at ``place`` (PRECOMPUTED, ONLINE or DEVICE) unless a trainer name says otherwise."""
    return tuple(kind for kind, row in KINDS.items() if row.made == place)


MAP_KINDS: Tuple[str, ...] = tuple(KINDS)
MapKind = Literal[MAP_KINDS]  # type: ignore[valid-type]  # the kind names, for annotations
PRECOMPUTED_KINDS: Tuple[str, ...] = kinds_made(PRECOMPUTED)
DEVICE_KINDS: Tuple[str, ...] = kinds_made(DEVICE)
STORED_KINDS: Tuple[str, ...] = tuple(dict.fromkeys(r.stored.name for r in KINDS.values() if r.stored))  # files
FORMATS: Dict[str, MapKindSpec] = {kind: KINDS[kind] for kind in PRECOMPUTED_KINDS}
# the full map of each kind from labels (*spatial) -> (K, *spatial): what the loss takes, computed at once online
MAP_FUNCTIONS: Dict[str, Callable] = {kind: row.full for kind, row in KINDS.items()}


def map_kind(kind: str) -> MapKindSpec:
    """The row of ``kind``; ValueError naming the kinds otherwise."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown map kind {kind!r}; one of {', '.join(KINDS)}")
    return KINDS[kind]


def map_format(kind: str) -> MapKindSpec:
    """The row of a precomputed kind; ValueError naming the precomputed kinds otherwise."""
    if kind not in KINDS or KINDS[kind].made != PRECOMPUTED:
        raise InvalidInput(f"unknown map kind {kind!r}; precomputed kinds: {', '.join(kinds_made(PRECOMPUTED))}")
    return KINDS[kind]


def stored_kind(kind: str) -> str:
    """The stored file a precomputed map is built from (``boundary_authors`` from ``boundary``)."""
    return map_format(kind).stored.name


def stored_row(name: str) -> MapKindSpec:
    """The first row stored in the file ``name`` (its compute, channels and format are the file's); ValueError
    naming the stored kinds otherwise."""
    for row in KINDS.values():
        if row.stored is not None and row.stored.name == name:
            return row
    names = dict.fromkeys(r.stored.name for r in KINDS.values() if r.stored)
    raise InvalidInput(f"unknown map kind {name!r}; stored kinds: {', '.join(names)}")


def quantise(array: np.ndarray, name: str) -> np.ndarray:
    return stored_row(name).quantise(array)


def dequantise(stored: np.ndarray, name: str, out: Optional[np.ndarray] = None) -> np.ndarray:
    return stored_row(name).dequantise(stored, out)


@dataclass(frozen=True)
class MapSource:
    """The map a trainer's loss takes (``kind``) and where it is made (``made``: one of the kind's places).
    :func:`nnunet_losses.catalogue.map_source` gives a trainer's;
    :class:`~nnunet_losses.nnunet.map_pipeline.MapPipeline` carries it."""

    kind: str
    made: str

    def __post_init__(self):
        row = map_kind(self.kind)
        if self.made not in row.places:
            if self.made == PRECOMPUTED:
                raise ValueError(f"{self.kind!r} maps are not precomputed; precomputed kinds: "
                                 f"{', '.join(kinds_made(PRECOMPUTED))}")
            raise ValueError(f"{self.kind!r} maps are made {' or '.join(row.places)}, not {self.made}")

    @classmethod
    def of(cls, kind: str, online: bool = False) -> "MapSource":
        """Where the ``kind`` map is made: its row's place; ``online`` moves a precomputed map to the loader
        workers and changes nothing for the others."""
        row = map_kind(kind)
        return cls(kind, ONLINE if online and ONLINE in row.places else row.made)

    @property
    def row(self) -> MapKindSpec:
        return map_kind(self.kind)

    @property
    def precomputed(self) -> bool:
        return self.made == PRECOMPUTED

    @property
    def stored(self) -> Optional[str]:
        """The file read from disk (``boundary_authors`` reads ``boundary``); None when not precomputed."""
        return self.row.stored.name if self.precomputed else None

    @property
    def online_option(self) -> bool:
        """A trainer name's ``_online`` changes where this kind is made (precomputed kinds)."""
        return len(self.row.places) > 1
