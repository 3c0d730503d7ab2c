"""Region-wise (RW) loss: Valverde & Tohka, "Region-wise loss for biomedical image segmentation", Pattern
Recognition 136, 2023, doi:10.1016/j.patcog.2022.109208 (arXiv:2108.01405).

Eq. (1): ``L_RW = sum_i softmax(phi_i)^T z_i``; we divide by N * K (mean over voxels and channels) so that the value
does not depend on the patch size. Its gradient is eq. (2):
``dL/dphi_ik = p_ik * sum_{l != k} p_il (z_ik - z_il)`` (divided by N * K here). The map Z decides the loss:
RRW (eq. 4), RW-Boundary (eq. 3) or RW-AC (Z = 1 - Y); see :mod:`nnunet_losses.maps`.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..maps.distance import rectified_map_from_inside  # noqa: F401  (the map the loss takes, rebuilt; re-exported)
from ._common import decode_target, float32_forward, masked, sum_of_products


class RegionWiseLoss(nn.Module):
    """Region-wise loss (Valverde & Tohka, eq. 1), called as ``loss(logits, target, z)``.

    ``z`` is the full RW map (B, K, *spatial), K = number of softmax channels (background included). The loss is
    the mean over the valid voxels and the K channels of ``softmax(logits) * z``. ``target`` is used only for the
    ignore label (ignored voxels contribute nothing); it may be None when there is no ignore label.

    Region (sigmoid) datasets are refused: the RW loss and its gradient analysis are defined for softmax outputs.
    """

    def __init__(self, ignore_label: Optional[int] = None, regions: bool = False):
        super().__init__()
        if regions:
            raise ValueError("RegionWiseLoss is defined for softmax outputs (eq. 1-2 of Valverde & Tohka); "
                             "region-based (sigmoid) datasets are not supported")
        self.ignore_label = ignore_label

    implementation = "PyTorch ops"  # what computes it (ComboLoss and TopK Dice name their faster paths)

    def extra_repr(self) -> str:
        return f"ignore_label={self.ignore_label}"

    @float32_forward
    def forward(self, logits: torch.Tensor, target: Optional[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        check_map_shape(z, logits)
        return self.from_probabilities(torch.softmax(logits, 1), target, z)

    def from_probabilities(self, probs: torch.Tensor, target: Optional[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """The loss from ``softmax(logits)`` (float32): a partner that needs the same softmax shares it.

        The sum of ``probs * z`` is one dot product: no product tensor forward, one full-size buffer backward."""
        num_channels = probs.shape[1]
        if self.ignore_label is None:
            return sum_of_products(probs, z) / probs.numel()
        if target is None:
            raise ValueError("RegionWiseLoss: a target is needed to apply the ignore label")
        tgt = decode_target(probs, target, regions=False, ignore_label=self.ignore_label, name="RegionWiseLoss",
                            onehot=False)
        n_valid = tgt.valid_count().clamp_min(1.0)  # all ignored: the masked sum is 0, and so is the loss
        return sum_of_products(probs, masked(z, tgt.mask)) / (n_valid * num_channels)


def check_map_shape(z: torch.Tensor, logits: torch.Tensor) -> None:
    """The RW map must have the logits' shape (B, K, *spatial)."""
    if z.shape != logits.shape:
        raise ValueError(f"RegionWiseLoss: the map z must have the logits' shape {tuple(logits.shape)}, "
                         f"got {tuple(z.shape)}")
