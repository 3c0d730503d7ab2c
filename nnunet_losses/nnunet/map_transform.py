"""Maps computed after augmentation, in nnU-Net's loader workers (the ``_online`` trainers; the papers' code).

:class:`AttachMapsTransform` is appended to nnU-Net's training and validation pipelines, after the deep-supervision
downsampling. For every scale it computes the RW map of the augmented label patch and rides it along in the
``segmentation`` entry: a float32 tensor ``[labels; map]`` of shape (1 + K, *spatial). nnU-Net's data loader collates
it like any segmentation, and the trainer splits it again (:func:`split_target`). The class lives in the installed
package so that it pickles under fork, spawn and forkserver.

Normalisation scope of RRW maps computed here: the patch (what the RW paper's code does).
"""
from __future__ import annotations

from typing import List, Tuple, Union

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform

from ..maps import ac_map, boundary_map, boundary_map_authors, rrw_map

# boundary_authors: the RW authors' code's boundary map (inside -d instead of eq. 3's -(d - 1))
MAP_FUNCTIONS = {"rrw": rrw_map, "boundary": boundary_map, "boundary_authors": boundary_map_authors, "ac": ac_map}


class AttachMapsTransform(BasicTransform):
    """Append the ``kind`` map (rrw | boundary | boundary_authors | ac) of every deep-supervision scale to its
    segmentation."""

    def __init__(self, kind: str, num_classes: int):
        super().__init__()
        if kind not in MAP_FUNCTIONS:
            raise ValueError(f"unknown map kind {kind!r}; one of {sorted(MAP_FUNCTIONS)}")
        self.kind = kind
        self.num_classes = int(num_classes)

    def _one(self, seg: torch.Tensor) -> torch.Tensor:
        labels = seg[0].numpy().astype(np.int64)
        z = MAP_FUNCTIONS[self.kind](labels, self.num_classes)
        return torch.cat([seg.float(), torch.from_numpy(z)], 0)

    def apply(self, data_dict, **params):
        seg = data_dict.get("segmentation")
        if seg is None:
            raise RuntimeError("AttachMapsTransform needs the segmentation")
        if isinstance(seg, list):
            data_dict["segmentation"] = [self._one(s) for s in seg]
        else:
            data_dict["segmentation"] = self._one(seg)
        return data_dict

    def __repr__(self):
        return f"{type(self).__name__}(kind={self.kind!r}, num_classes={self.num_classes})"


def split_target(target: Union[torch.Tensor, List[torch.Tensor]], num_map_channels: int
                 ) -> Tuple[Union[torch.Tensor, List[torch.Tensor]], Union[torch.Tensor, List[torch.Tensor]]]:
    """Undo :class:`AttachMapsTransform`: (labels (B, 1, ...) int16, maps (B, C_map, ...) float32), per scale."""

    def one(t: torch.Tensor):
        if t.shape[1] != 1 + num_map_channels:
            raise RuntimeError(
                f"the batch carries no {num_map_channels}-channel map (target has {t.shape[1]} channels): the data "
                f"loader did not attach maps")
        return t[:, :1].round().to(torch.int16), t[:, 1:].float()

    if isinstance(target, list):
        pairs = [one(t) for t in target]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    return one(target)
