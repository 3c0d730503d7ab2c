"""IoU_xy loss: Furtado, "Investigation of loss functions for improving deep segmentation of abdominal organs from
MRI" (manuscript, University of Coimbra, 2021; no DOI or arXiv identifier; nnunet_losses/papers.py names a related
journal article by the same author), section 2.2::

    L = 1 - (1/C) sum_c TP_c / (TP_c + alpha FP_c + beta FN_c),   alpha + beta = 2, alpha, beta >= 0

on soft counts TP = sum p y, FP = sum p (1 - y), FN = sum (1 - p) y. alpha = beta = 1 is the soft IoU (Jaccard)
loss; the paper's winner is alpha = 0.5, beta = 1.5 (FN weighted more).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ._common import ddp_sum, decode_target, float32_forward, masked


def check_weights_sum_to_two(alpha: float, beta: float, owner: str = "IoUxyLoss") -> None:
    """IoU_xy's rule: alpha + beta = 2 with alpha, beta >= 0 (Furtado, section 2.2); raises ValueError naming
    ``owner``. The one place the rule is written: IoUxyLoss and the registry both call it."""
    if alpha < 0 or beta < 0 or abs(alpha + beta - 2.0) > 1e-6:
        raise ValueError(f"{owner}: alpha + beta must equal 2 with alpha, beta >= 0 (Furtado, section 2.2); "
                         f"got alpha={alpha}, beta={beta} (sum {alpha + beta}). Examples: (1, 1) = soft IoU, "
                         f"(0.5, 1.5) = the paper's best")


class IoUxyLoss(nn.Module):
    """IoU_xy (Furtado (manuscript 2021), section 2.2): soft IoU with false positives weighted by ``alpha`` and false
    negatives by ``beta``.

    Args:
        alpha: weight of FP; beta: weight of FN. ``alpha + beta`` must equal 2 (the paper's constraint), both >= 0.
        include_background: average over all classes, background included (the paper), or foreground only.
        batch_dice: pool the counts over the batch (and DDP ranks); otherwise one IoU per sample and class.
        smooth: added to numerator and denominator (nnU-Net's Dice convention, 1e-5) so that a class absent from
            both prediction and target scores 1 instead of 0/0. The paper states no smoothing.
        regions: sigmoid outputs and multi-hot targets; ``include_background`` is then meaningless (no background
            channel) and every channel is used.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, include_background: bool = True,
                 batch_dice: bool = False, smooth: float = 1e-5, regions: bool = False,
                 ignore_label: Optional[int] = None, ddp: bool = True):
        super().__init__()
        alpha, beta = float(alpha), float(beta)
        check_weights_sum_to_two(alpha, beta)
        self.alpha, self.beta = alpha, beta
        self.include_background = bool(include_background)
        self.batch_dice = bool(batch_dice)
        self.smooth = float(smooth)
        self.regions = bool(regions)
        self.ignore_label = ignore_label
        self.ddp = ddp

    implementation = "PyTorch ops"  # what computes it (ComboLoss and TopK Dice name their faster paths)

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, beta={self.beta}, include_background={self.include_background}, "
                f"batch_dice={self.batch_dice}, smooth={self.smooth}, regions={self.regions}, "
                f"ignore_label={self.ignore_label}")

    @float32_forward
    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        tgt = decode_target(logits, target, regions=self.regions, ignore_label=self.ignore_label, name="IoUxyLoss")
        probs = torch.sigmoid(logits) if self.regions else torch.softmax(logits, 1)
        y = tgt.onehot
        if not self.regions and not self.include_background:
            probs, y = probs[:, 1:], y[:, 1:]
        probs = masked(probs, tgt.mask)
        axes = tuple(range(2, logits.ndim))
        tp = (probs * y).sum(axes)
        sum_p = probs.sum(axes)
        sum_y = y.sum(axes)
        if self.batch_dice:
            tp = ddp_sum(tp.sum(0), self.ddp)
            sum_p = ddp_sum(sum_p.sum(0), self.ddp)
            sum_y = ddp_sum(sum_y.sum(0), self.ddp)
        fp = sum_p - tp
        fn = sum_y - tp
        iou = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth).clamp_min(1e-8)
        return 1.0 - iou.mean()
