"""Focal loss: Lin et al., "Focal loss for dense object detection", ICCV 2017 (arXiv:1708.02002); the baseline of
the RW paper (Valverde & Tohka, Pattern Recognition 2023, arXiv:2108.01405: gamma = 2, alpha = 1) and of Combo
(Taghanaki et al., Computerized Medical Imaging and Graphics 2019, arXiv:1805.02798: gamma = 2, alpha = 0.25).
nnU-Net v2 has no focal loss.

``FL = -alpha_t (1 - p_t)^gamma ln p_t``, averaged over the valid voxels (and channels in region mode). In label mode
that is C times MONAI's ``FocalLoss(use_softmax=True, to_onehot_y=True)``, which averages its one-hot per-channel
terms over voxels and the C channels; in region mode both average over voxels and channels.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

from ._common import buffer_on, decode_target, float32_forward, masked


class FocalLoss(nn.Module):
    """Focal loss, softmax multi-class (label mode) or sigmoid per channel (region mode).

    Args:
        gamma: focusing parameter (>= 0; 0 gives cross-entropy).
        alpha: None (no balancing, alpha_t = 1: the RW paper), a float in [0, 1] (Lin et al.'s alpha: weight of the
            foreground, ``1 - alpha`` for the background class in label mode / the negatives in region mode), or one
            weight per class (label mode).
    """

    def __init__(self, gamma: float = 2.0, alpha: Optional[Union[float, Sequence[float]]] = None,
                 regions: bool = False, ignore_label: Optional[int] = None):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"FocalLoss: gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        if alpha is not None and not isinstance(alpha, (int, float)):
            alpha = [float(a) for a in alpha]
            if regions:
                raise ValueError("FocalLoss: per-class alpha is for label mode; region mode takes one float")
            if any(a < 0 for a in alpha):
                raise ValueError(f"FocalLoss: class weights must be >= 0, got {alpha}")
        elif alpha is not None:
            alpha = float(alpha)
            if not 0.0 <= alpha <= 1.0:
                raise ValueError(f"FocalLoss: alpha must lie in [0, 1], got {alpha}")
        self.alpha = alpha
        if isinstance(alpha, list):  # a buffer: it moves with the module (see buffer_on)
            self.register_buffer("class_alpha", torch.tensor(alpha, dtype=torch.float32), persistent=False)
        self.regions = bool(regions)
        self.ignore_label = ignore_label

    implementation = "PyTorch ops"  # what computes it (ComboLoss and TopK Dice name their faster paths)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, regions={self.regions}, ignore_label={self.ignore_label}"

    def _alpha_weights(self, labels: torch.Tensor, num_classes: int) -> Optional[torch.Tensor]:
        """Each voxel's alpha weight in label mode: ``1 - alpha`` for background and ``alpha`` for the others (a
        float), or its class's weight (a list); arithmetic on the labels, no tensor made from Python per call."""
        if self.alpha is None:
            return None
        if isinstance(self.alpha, float):
            return torch.where(labels == 0, 1.0 - self.alpha, self.alpha)
        if len(self.alpha) != num_classes:
            raise ValueError(f"FocalLoss: {len(self.alpha)} class weights for {num_classes} channels")
        return buffer_on(self, "class_alpha", labels.device)[labels]

    @float32_forward
    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        tgt = decode_target(logits, target, regions=self.regions, ignore_label=self.ignore_label, name="FocalLoss",
                            onehot=self.regions)
        n_valid = tgt.valid_count().clamp_min(1.0)  # all ignored: the masked sum is 0, and so is the loss
        if self.regions:
            y = tgt.onehot
            # ln p_t = logsigmoid(x) where y = 1, logsigmoid(-x) where y = 0 (stable for large |x|)
            log_pt = nn.functional.logsigmoid(torch.where(y > 0.5, logits, -logits))
            loss = -((1.0 - log_pt.exp()) ** self.gamma) * log_pt
            if self.alpha is not None:
                loss = loss * torch.where(y > 0.5, self.alpha, 1.0 - self.alpha)
            return masked(loss, tgt.mask).sum() / (n_valid * logits.shape[1])
        log_pt = torch.log_softmax(logits, 1).gather(1, tgt.labels.unsqueeze(1))
        loss = -((1.0 - log_pt.exp()) ** self.gamma) * log_pt
        alpha = self._alpha_weights(tgt.labels, logits.shape[1])
        if alpha is not None:
            loss = loss * alpha.unsqueeze(1)
        return masked(loss, tgt.mask).sum() / n_valid
