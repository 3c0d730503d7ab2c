"""Precomputed maps through nnU-Net's own data loader, augmentation and deep supervision.

:class:`MapDataset` wraps nnU-Net's dataset: ``load_case`` returns the image with the map channels appended (a lazy
view, so only the patch is read), and nnU-Net's loader crops and zero-pads both with the same box.
:class:`SplitMapChannelsTransform`, first in the pipeline, moves those channels to ``regression_target``, which
batchgeneratorsv2 carries through the spatial transform (linear interpolation, zero padding) and mirroring while the
intensity transforms leave it alone. :class:`PrecomputedMapsToTargetTransform`, last, resamples it to every
deep-supervision scale (the shapes of the downsampled targets), rebuilds the full RW map from the augmented labels
(RRW: ``z = (1 - Y) - m Y``; the RW authors' boundary variant: the stored boundary map minus Y) and attaches it to
the segmentation as :class:`AttachMapsTransform` does.

A map that cannot be read (damaged after the start check) stops the worker with the file and the command to run.
"""
from __future__ import annotations

import os
from typing import List

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform

from .precompute import dequantise, map_file, maps_folder


class MapReadError(RuntimeError):
    """A precomputed map that cannot be read (plain message argument: pickles between processes)."""


def _read_error(path: str, command: str, reason) -> MapReadError:
    return MapReadError(f"cannot read the precomputed map {path} ({reason}); the file is damaged or was changed "
                        f"after the start check. Run: {command}")


class _ImageWithMaps:
    """Read-only lazy concatenation of image channels and map channels; slicing reads only the slice."""

    def __init__(self, image, maps, kind: str, path: str, command: str):
        if tuple(image.shape[1:]) != tuple(maps.shape[1:]):
            raise _read_error(path, command, f"map shape {tuple(maps.shape)}, image shape {tuple(image.shape)}")
        self.image, self.maps, self.kind, self.path, self.command = image, maps, kind, path, command
        self.shape = (image.shape[0] + maps.shape[0],) + tuple(image.shape[1:])
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, index):
        if not isinstance(index, tuple) or index[0] != slice(None):
            raise IndexError("_ImageWithMaps supports crops over all channels only")
        image = np.asarray(self.image[index], dtype=np.float32)
        try:
            stored = np.asarray(self.maps[index])
        except Exception as err:  # blosc2 raises RuntimeError/ValueError on damaged chunks
            raise _read_error(self.path, self.command, err) from None
        return np.concatenate([image, dequantise(stored, self.kind)], 0)


class MapDataset:
    """nnU-Net dataset whose cases carry the precomputed ``kind`` maps as extra image channels; ``command``: what
    to run when a map cannot be read."""

    def __init__(self, dataset, kind: str, command: str = "nnunet-losses precompute-maps"):
        self.dataset = dataset
        self.kind = kind
        self.command = command
        self.folder = maps_folder(dataset.source_folder)

    def __getattr__(self, name):  # identifiers, source_folder, ... of the wrapped dataset
        if name in ("dataset", "kind", "folder", "command"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, identifier):
        return self.load_case(identifier)

    def load_case(self, identifier):
        import blosc2

        data, seg, seg_prev, properties = self.dataset.load_case(identifier)
        path = map_file(self.folder, identifier, self.kind)
        kwargs = {} if os.name == "nt" else {"mmap_mode": "r"}
        try:
            maps = blosc2.open(urlpath=path, mode="r", dparams={"nthreads": 1}, **kwargs)
        except Exception as err:
            raise _read_error(path, self.command, err) from None
        return _ImageWithMaps(data, maps, self.kind, path, self.command), seg, seg_prev, properties


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


def _resize(maps: torch.Tensor, shape) -> torch.Tensor:
    if tuple(maps.shape[1:]) == tuple(shape):
        return maps
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return torch.nn.functional.interpolate(maps[None], size=tuple(shape), mode=mode, align_corners=False)[0]


class PrecomputedMapsToTargetTransform(BasicTransform):
    """Last in the pipeline: ``regression_target`` resampled to every deep-supervision scale (the shapes of the
    downsampled targets) and attached to the segmentation as ``[labels; map]``.

    RRW ships the one-channel stored map ``m``; the trainer builds ``z = (1 - Y) - m Y`` on its device
    (:func:`rrw_from_own_class_map`), which keeps the workers' work and the collated batch small. Boundary maps ship
    as they are (K channels); ``boundary_authors`` (the RW authors' code, inside ``-d``) ships the stored eq. 3 map
    minus the one-hot augmented labels of each scale.
    """

    def __init__(self, kind: str, num_classes: int):
        super().__init__()
        if kind not in ("rrw", "boundary", "boundary_authors"):
            raise ValueError(f"no precomputed map kind {kind!r}")
        self.kind = kind
        self.num_classes = int(num_classes)

    def _map(self, stored: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        z = _resize(stored.float(), seg.shape[1:])
        if self.kind == "boundary_authors":
            classes = torch.arange(self.num_classes).view((-1,) + (1,) * (seg.ndim - 1))
            z = z - (seg.long().clamp(min=0) == classes).float()  # labels < 0 are background, as in the maps
        return z

    def apply(self, data_dict, **params):
        stored = data_dict.pop("regression_target", None)
        if stored is None:
            raise RuntimeError("the precomputed maps were lost in augmentation (regression_target is None)")
        seg = data_dict["segmentation"]
        segs: List[torch.Tensor] = seg if isinstance(seg, list) else [seg]
        out = [torch.cat([s.float(), self._map(stored, s)], 0) for s in segs]
        data_dict["segmentation"] = out if isinstance(seg, list) else out[0]
        return data_dict


def rrw_from_own_class_map(labels: torch.Tensor, own: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Full RRW map (B, K, ...) from labels (B, 1, ...) and the one-channel map (B, 1, ...): ``(1 - Y) - m Y``.

    Labels outside [0, K) (the ignore label) belong to no class: +1 in every channel.
    """
    classes = torch.arange(num_classes, device=labels.device).view((1, -1) + (1,) * (labels.ndim - 2))
    onehot = (labels.long() == classes).to(own.dtype)
    return (1.0 - onehot) - own * onehot
