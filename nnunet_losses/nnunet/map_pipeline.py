"""A map's trip from disk (or from the augmented labels) to the loss, through nnU-Net's own loader, augmentation and
deep supervision: :class:`MapPipeline` and the pieces it wires.

``MapPipeline(kind, num_classes, precomputed)``; the trainer (and the end-to-end test and the benchmarks) call

* ``.wrap(dataset)``: precomputed maps only. :class:`MapDataset` wraps nnU-Net's dataset: ``load_case`` returns
  the image with the stored map channels appended (a lazy view that dequantises, so only the patch is read), and
  nnU-Net's loader crops and zero-pads both with the same box.
* ``.add_to(transforms)``: precomputed maps: :class:`SplitMapChannelsTransform` first moves those channels to
  ``regression_target``, which batchgeneratorsv2 carries through the spatial transform (linear interpolation,
  zero padding) and mirroring while the intensity transforms leave it alone; :class:`PrecomputedMapsToTargetTransform`
  last appends it to the segmentation list: ``[labels per scale..., stored]``.
  A kind resampled by nearest neighbour (its row's ``interpolation``) has nnU-Net's spatial transform sample it so
  (:class:`NearestMapsSpatialTransform`). Online maps (the ``_online`` trainers, the papers' code, and the kinds
  made online): :class:`AttachMapsTransform` last computes the full map of every scale's augmented label patch (RRW
  normalised over the patch, as the RW paper's code) and appends them: ``[labels per scale..., map per scale...]``.
  Maps made on the device (:data:`~nnunet_losses.maps.DEVICE_KINDS`: RW-AC's ``1 - Y``) add nothing: the loader
  carries no map.
  nnU-Net's loader collates each list entry into its own batch tensor, so the labels stay int16 and the maps
  float32, with no concatenation in the workers.
* ``.take(batch, device)``: in the main process, separates labels and maps again (:func:`split_maps`), moves the
  maps to the device and, for precomputed maps, resamples the stored form to every deep-supervision scale and
  rebuilds the full map there (RRW: ``z = (1 - Y) - m Y``, :func:`~nnunet_losses.maps.rectified_map_from_inside`;
  ``boundary_authors``: minus Y); maps made on the device are built there from each scale's labels: (target, maps)
  per scale, the target as nnU-Net's trainer expects it (a list under deep supervision, else one tensor).

Where each kind is made, what is stored, in how many channels, how it is resampled and how the full map is rebuilt
is the table :data:`nnunet_losses.maps.KINDS`. The classes live in the installed package so that they pickle under
fork, spawn and forkserver. A map that cannot be read (damaged after the start check) stops the worker with the
file and the command to run.
"""
from __future__ import annotations

import os
from typing import List, Optional, Tuple, Union

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform

from ..errors import StepFailed
from ..maps import DEVICE, NEAREST, PRECOMPUTED, MapKind, MapKindSpec, MapSource, map_format, map_kind
from ..maps.formats import dequantise
from .precompute import map_file, maps_folder

Maps = Union[torch.Tensor, List[torch.Tensor]]


def onehot(labels: torch.Tensor, num_classes: int, dtype=torch.float32) -> torch.Tensor:
    """(B, 1, ...) labels -> (B, K, ...) one-hot; negative labels count as background 0 (as in :mod:`..maps`),
    labels >= K (the ignore label) as no class."""
    classes = torch.arange(num_classes, device=labels.device).view((1, -1) + (1,) * (labels.ndim - 2))
    return (labels.long().clamp(min=0) == classes).to(dtype)


# ---------------------------------------------------------------------------------------- precomputed: reading
class MapReadError(StepFailed):
    """A precomputed map that cannot be read (plain message argument: pickles between processes)."""


def _read_error(path: str, command: str, reason) -> MapReadError:
    return MapReadError(f"cannot read the precomputed map {path} ({reason}); the file is damaged or was changed "
                        f"after the start check. Run: {command}")


class _ImageWithMaps:
    """Read-only lazy concatenation of image channels and map channels; slicing reads only the slice."""

    def __init__(self, image, maps, stored_kind: str, path: str, command: str):
        if tuple(image.shape[1:]) != tuple(maps.shape[1:]):
            raise _read_error(path, command, f"map shape {tuple(maps.shape)}, image shape {tuple(image.shape)}")
        self.image, self.maps, self.stored_kind, self.path, self.command = image, maps, stored_kind, path, command
        self.shape = (image.shape[0] + maps.shape[0],) + tuple(image.shape[1:])
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, index):
        if not isinstance(index, tuple) or index[0] != slice(None):
            raise IndexError("_ImageWithMaps supports crops over all channels only")
        image = self.image[index]
        try:
            stored = np.asarray(self.maps[index])
        except Exception as err:  # blosc2 raises RuntimeError/ValueError on damaged chunks
            raise _read_error(self.path, self.command, err) from None
        # one output written in place: no concatenated copy, no float32 temporary of the map
        crop = np.empty((image.shape[0] + stored.shape[0],) + image.shape[1:], dtype=np.float32)
        crop[:image.shape[0]] = image
        dequantise(stored, self.stored_kind, out=crop[image.shape[0]:])
        return crop


class MapDataset:
    """nnU-Net dataset whose cases carry the ``stored_kind`` maps (a stored file of
    :data:`~nnunet_losses.maps.KINDS`, as ``precompute-maps`` writes it) as extra image channels; ``command``: what
    to run when a map cannot be read."""

    def __init__(self, dataset, stored_kind: str, command: str = "nnunet-losses precompute-maps"):
        self.dataset = dataset
        self.stored_kind = stored_kind
        self.command = command
        self.folder = maps_folder(dataset.source_folder)

    def __getattr__(self, name):  # identifiers, source_folder, ... of the wrapped dataset
        if name in ("dataset", "stored_kind", "folder", "command"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, identifier):
        return self.load_case(identifier)

    def load_case(self, identifier):
        import blosc2

        data, seg, seg_prev, properties = self.dataset.load_case(identifier)
        path = map_file(self.folder, identifier, self.stored_kind)
        kwargs = {} if os.name == "nt" else {"mmap_mode": "r"}
        try:
            maps = blosc2.open(urlpath=path, mode="r", dparams={"nthreads": 1}, **kwargs)
        except Exception as err:
            raise _read_error(path, self.command, err) from None
        return _ImageWithMaps(data, maps, self.stored_kind, path, self.command), seg, seg_prev, properties


# ------------------------------------------------------------------------------------ precomputed: transforms
class SplitMapChannelsTransform(BasicTransform):
    """Move the last ``num_map_channels`` image channels to ``regression_target`` (first in the pipeline)."""

    def __init__(self, num_map_channels: int):
        super().__init__()
        self.num_map_channels = int(num_map_channels)

    def apply(self, data_dict, **params):
        image = data_dict["image"]
        n = self.num_map_channels
        data_dict["regression_target"] = image[-n:]  # a view: the channels do not overlap, no copy needed
        data_dict["image"] = image[:-n]
        return data_dict


def _resize(maps: torch.Tensor, shape, interpolation: str) -> torch.Tensor:
    """(B, C, *spatial) maps resampled to ``shape`` (unchanged when they have it): linearly, or by nearest neighbour
    as nnU-Net resamples the segmentation to the deep-supervision scales."""
    if tuple(maps.shape[2:]) == tuple(shape):
        return maps
    if interpolation == NEAREST:
        return torch.nn.functional.interpolate(maps, size=tuple(shape), mode="nearest-exact")
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return torch.nn.functional.interpolate(maps, size=tuple(shape), mode=mode, align_corners=False)


class NearestMapsSpatialTransform(SpatialTransform):
    """nnU-Net's spatial transform, with the maps it carries (``regression_target``) sampled by nearest neighbour
    instead of the image's linear interpolation; :meth:`of` copies a configured transform."""

    @classmethod
    def of(cls, transform: SpatialTransform) -> "NearestMapsSpatialTransform":
        copy = cls.__new__(cls)
        copy.__dict__.update(transform.__dict__)
        return copy

    def _apply_to_regr_target(self, regression_target, **params) -> torch.Tensor:
        image_mode, self.mode_image = self.mode_image, "nearest"
        try:
            return self._apply_to_image(regression_target, **params)
        finally:
            self.mode_image = image_mode


class PrecomputedMapsToTargetTransform(BasicTransform):
    """Last in the pipeline: ``regression_target`` (the stored form, augmented with the image, at full resolution)
    appended to the segmentation list, ``[labels per scale..., stored]``; the labels stay nnU-Net's.

    The trainer resamples the stored form to every scale and rebuilds the full map on its device
    (:meth:`MapPipeline.take`), so the workers neither resample nor rebuild and the collated batch carries one
    copy of the stored channels.
    """

    def __init__(self, kind: MapKind):
        super().__init__()
        map_format(kind)  # ValueError for a kind that is not precomputed
        self.kind = kind

    def apply(self, data_dict, **params):
        stored = data_dict.pop("regression_target", None)
        if stored is None:
            raise RuntimeError("the precomputed maps were lost in augmentation (regression_target is None)")
        scales = _scales(data_dict)
        if tuple(scales[0].shape[1:]) != tuple(stored.shape[1:]):
            raise RuntimeError(f"the precomputed map {tuple(stored.shape)} does not match the segmentation "
                               f"{tuple(scales[0].shape)} after augmentation")
        data_dict["segmentation"] = scales + [stored.float()]
        return data_dict


def _scales(data_dict) -> List[torch.Tensor]:
    """The segmentation of every deep-supervision scale (one entry without deep supervision), as a new list."""
    seg = data_dict.get("segmentation")
    if seg is None:
        raise RuntimeError("the map transforms need the segmentation")
    return list(seg) if isinstance(seg, (list, tuple)) else [seg]


# ------------------------------------------------------------------------------------------------- online
class AttachMapsTransform(BasicTransform):
    """Last in the pipeline: the full ``kind`` map (any kind of :data:`~nnunet_losses.maps.KINDS`) of every
    deep-supervision scale's augmented labels, float32 (K, *spatial), appended to the segmentation list:
    ``[labels per scale..., map per scale...]``."""

    def __init__(self, kind: MapKind, num_classes: int):
        super().__init__()
        map_kind(kind)  # ValueError for an unknown kind
        self.kind = kind
        self.num_classes = int(num_classes)

    def _map(self, seg: torch.Tensor) -> torch.Tensor:
        labels = seg[0].numpy().astype(np.int64)
        return torch.from_numpy(map_kind(self.kind).full(labels, self.num_classes))

    def apply(self, data_dict, **params):
        scales = _scales(data_dict)
        data_dict["segmentation"] = scales + [self._map(s) for s in scales]
        return data_dict

    def __repr__(self):
        return f"{type(self).__name__}(kind={self.kind!r}, num_classes={self.num_classes})"


# ------------------------------------------------------------------------------------------- main process
def split_maps(target, num_map_channels: int, maps_per_scale: bool) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Undo the map transforms: ``[labels per scale..., maps...]`` -> (labels per scale, maps): one map per scale
    when ``maps_per_scale`` (online), else the one full-resolution stored form (precomputed). RuntimeError when the
    batch carries no such maps (the data loader did not add the map transforms)."""
    entries = list(target) if isinstance(target, (list, tuple)) else [target]
    n_maps = len(entries) // 2 if maps_per_scale else 1
    labels, maps = entries[:len(entries) - n_maps], entries[len(entries) - n_maps:]
    paired = labels[:len(maps)] if maps_per_scale else labels[:1] * len(maps)  # the labels each map must match

    def fits(m, lab):
        return (m.is_floating_point() and m.ndim == lab.ndim and m.shape[1] == num_map_channels
                and m.shape[2:] == lab.shape[2:] and lab.shape[1] == 1)

    if not labels or not maps or not all(fits(m, lab) for m, lab in zip(maps, paired)):
        raise RuntimeError(f"the batch carries no {num_map_channels}-channel maps (target: "
                           f"{[tuple(t.shape) for t in entries]}): the data loader did not attach maps")
    return labels, maps


class MapPipeline:
    """The map of a ``kind`` (None: no map) from its source to the loss for a ``num_classes`` softmax;
    ``precomputed``: read the maps ``precompute-maps`` stored (the precomputed kinds), else make them where the
    kind's row says, moved from precomputed to the loader workers (online). :meth:`from_source`: the pipeline of a
    trainer's :func:`~nnunet_losses.catalogue.map_source`."""

    def __init__(self, kind: Optional[MapKind], num_classes: int, precomputed: bool):
        if kind is None and precomputed:
            raise ValueError("no map kind to read precomputed maps of")
        self.source = None if kind is None else (
            MapSource(kind, PRECOMPUTED) if precomputed else MapSource.of(kind, online=True))
        self.num_classes = int(num_classes)
        self._rebuild_on_device = self._rebuild  # compile_rebuild() swaps in the compiled function

    @classmethod
    def from_source(cls, source: Optional[MapSource], num_classes: int) -> "MapPipeline":
        """The pipeline of a :class:`~nnunet_losses.maps.MapSource` (None: no map)."""
        return cls(source and source.kind, num_classes, source is not None and source.precomputed)

    def __repr__(self):
        return f"MapPipeline({self.kind!r}, {self.num_classes}, precomputed={self.precomputed})"

    @property
    def kind(self) -> Optional[str]:
        return self.source and self.source.kind

    @property
    def made(self) -> Optional[str]:
        """Where the maps are made: ``precomputed``, ``online`` (the loader workers) or ``device``; None: no map."""
        return self.source and self.source.made

    @property
    def precomputed(self) -> bool:
        return self.made == PRECOMPUTED

    @property
    def row(self) -> Optional[MapKindSpec]:
        """The kind's row of :data:`~nnunet_losses.maps.KINDS`."""
        return self.source and self.source.row

    @property
    def format(self) -> Optional[MapKindSpec]:
        """The kind's row when the maps are precomputed (its stored format and rebuild), else None."""
        return map_format(self.kind) if self.precomputed else None

    @property
    def stored_kind(self) -> Optional[str]:
        """The stored kind read from disk (``boundary_authors`` reads ``boundary``); None when not precomputed."""
        return self.source.stored if self.precomputed else None

    @property
    def on_device(self) -> bool:
        """The map is built on the device from each scale's labels; the loader carries none."""
        return self.made == DEVICE

    @property
    def shipped_channels(self) -> int:
        """Map channels that ride in the batch's target: the stored form's, K for online maps, 0 on the device."""
        if self.on_device:
            return 0
        return self.format.channels(self.num_classes) if self.precomputed else self.num_classes

    def wrap(self, dataset, command: str = "nnunet-losses precompute-maps"):
        """nnU-Net's dataset with the stored maps appended to each case's image (precomputed maps only)."""
        return MapDataset(dataset, self.stored_kind, command) if self.precomputed else dataset

    def add_to(self, transforms):
        """nnU-Net's ``ComposeTransforms`` with the map transforms inserted (first and last, or last)."""
        if self.kind is None or self.on_device:
            return transforms
        if self.precomputed:
            if self.format.interpolation == NEAREST:
                transforms.transforms = [NearestMapsSpatialTransform.of(t) if type(t) is SpatialTransform else t
                                         for t in transforms.transforms]
            transforms.transforms.insert(0, SplitMapChannelsTransform(self.shipped_channels))
            transforms.transforms.append(PrecomputedMapsToTargetTransform(self.kind))
        else:
            transforms.transforms.append(AttachMapsTransform(self.kind, self.num_classes))
        return transforms

    def take(self, batch: dict, device) -> Tuple[Maps, Optional[Maps]]:
        """(target without the maps, the full maps on ``device``), both per scale (lists under deep supervision).

        Precomputed: the stored form rides on the full-resolution target only; each scale's map is resampled from
        it and rebuilt from that scale's labels on ``device``. Online: every scale carries its full map. Made on the
        device: built from each scale's labels there (the kind's rebuild from the one-hot labels).
        """
        if self.kind is None:
            return batch["target"], None
        target = batch["target"]
        if self.on_device:
            scales = target if isinstance(target, list) else [target]
            labels = [t.to(device, non_blocking=True) for t in scales]  # nnU-Net's own .to() is then a no-op
            maps = [self.row.rebuild(None, onehot(t, self.num_classes)) for t in labels]
        elif self.precomputed:
            labels, (stored,) = split_maps(target, self.shipped_channels, maps_per_scale=False)
            # on the device once: the rebuild needs them there, and nnU-Net's own .to() is then a no-op
            labels = [t.to(device, non_blocking=True) for t in labels]
            stored = stored.to(device, non_blocking=True)
            maps = [self._rebuild_on_device(stored, t) for t in labels]
        else:
            labels, maps = split_maps(target, self.shipped_channels, maps_per_scale=True)
            maps = [m.to(device, non_blocking=True) for m in maps]
        if len(labels) > 1:  # deep supervision: nnU-Net's list of scales
            return labels, maps
        return labels[0], maps[0]

    def _rebuild(self, stored: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The full map at the scale of ``labels`` (B, 1, ...): the stored form (B, C, ...) resampled (linear, as
        nnU-Net resamples images, or nearest, as the row says) and, where the row says so, rebuilt from the one-hot
        labels."""
        fmt = self.format
        z = _resize(stored, labels.shape[2:], fmt.interpolation)
        return z if fmt.rebuild is None else fmt.rebuild(z, onehot(labels, self.num_classes, z.dtype))

    def compile_rebuild(self) -> bool:
        """``torch.compile`` the resampling and rebuild on the device (precomputed maps); True if there is one."""
        if not self.precomputed:
            return False
        self._rebuild_on_device = torch.compile(self._rebuild)
        return True
