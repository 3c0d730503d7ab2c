"""The baselines the papers compare against, built from nnU-Net v2's own loss classes (nothing rewritten).

* ``dice_ce``: nnU-Net's default, ``DC_and_CE_loss`` (``DC_and_BCE_loss`` for region datasets), exactly as
  ``nnUNetTrainer._build_loss`` configures it.
* ``dice`` / ``dice_nobg``: nnU-Net's ``MemoryEfficientSoftDiceLoss`` with / without the background channel
  (Furtado's "dice" and "diceBK"), behind an adapter that applies the ignore label as ``DC_and_CE_loss`` does.
* ``ce``: nnU-Net's ``RobustCrossEntropyLoss``; ``topk_ce``: nnU-Net's ``TopKLoss``, keeping at least one voxel.
* ``dice_topk_ce``: nnU-Net's ``DC_and_topk_loss`` (TopK CE + Dice, the DiceTopK baseline of Hosseini (manuscript
  2023)).
* ``focal_dice``: nnU-Net's soft Dice (as in ``DC_and_CE_loss``) + our focal loss (the DiceFocal baseline of Hosseini
  (manuscript 2023)).

nnU-Net's soft Dice returns ``-Dice`` (not ``1 - Dice``): same gradients, values offset by 1. We keep it.

The ``build_*`` factories at the end are the ones the registry names by path ("nnunet_losses.nnunet.baselines:
build_dice_ce"): the registry stays free of nnunetv2, and this module is imported only when a baseline is built.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss, DC_and_topk_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.loss.robust_ce_loss import RobustCrossEntropyLoss, TopKLoss
from nnunetv2.utilities.helpers import softmax_helper_dim1
from torch import nn

from ..errors import InvalidInput
from ..losses import FocalLoss
from ..registry import LossContext


def nnunet_dice_ce(batch_dice: bool, ddp: bool, ignore_label: Optional[int], regions: bool) -> nn.Module:
    """nnU-Net's default loss, configured as nnUNetTrainer._build_loss does."""
    if regions:
        return DC_and_BCE_loss({}, {"batch_dice": batch_dice, "do_bg": True, "smooth": 1e-5, "ddp": ddp},
                               use_ignore_label=ignore_label is not None, dice_class=MemoryEfficientSoftDiceLoss)
    return DC_and_CE_loss({"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": ddp}, {},
                          weight_ce=1, weight_dice=1, ignore_label=ignore_label,
                          dice_class=MemoryEfficientSoftDiceLoss)


class SoftDice(nn.Module):
    """nnU-Net's MemoryEfficientSoftDiceLoss with the ignore label applied (as DC_and_CE_loss applies it).

    The nonlinearity nnU-Net's class applies first (softmax, sigmoid for regions) is applied here instead, so that
    :meth:`from_probabilities` can take probabilities computed once for several terms (Dice + Boundary)."""

    def __init__(self, do_bg: bool, batch_dice: bool, ddp: bool, ignore_label: Optional[int], regions: bool,
                 smooth: float = 1e-5):
        super().__init__()
        self.nonlin = torch.sigmoid if regions else softmax_helper_dim1
        self.dice = MemoryEfficientSoftDiceLoss(apply_nonlin=None, batch_dice=batch_dice,
                                                do_bg=True if regions else do_bg, smooth=smooth, ddp=ddp)
        self.ignore_label = ignore_label
        self.regions = regions

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.from_probabilities(self.nonlin(logits), target)

    def from_probabilities(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss from the nonlinearity's output (what MemoryEfficientSoftDiceLoss computes after its own)."""
        if self.ignore_label is None:
            return self.dice(probs, target)
        if self.regions:
            mask = (1 - target[:, -1:]).bool()
            return self.dice(probs, target[:, :-1], loss_mask=mask)
        mask = target != self.ignore_label
        return self.dice(probs, torch.where(mask, target, 0), loss_mask=mask)


class CrossEntropy(nn.Module):
    """nnU-Net's RobustCrossEntropyLoss (BCE-with-logits for regions), ignore label applied."""

    def __init__(self, ignore_label: Optional[int], regions: bool):
        super().__init__()
        self.regions = regions
        self.ignore_label = ignore_label
        if regions:
            self.ce = nn.BCEWithLogitsLoss(reduction="none")
        else:
            # with an ignore label: summed, then divided by the valid count in forward (0 when none is valid)
            self.ce = RobustCrossEntropyLoss(ignore_index=ignore_label if ignore_label is not None else -100,
                                             reduction="mean" if ignore_label is None else "sum")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not self.regions:
            if self.ignore_label is None:
                return self.ce(logits, target)
            # the mean over the valid voxels, 0 when none is valid: tensor arithmetic, no host sync
            n_valid = (target != self.ignore_label).sum().clamp_min(1)
            return self.ce(logits, target) / n_valid
        if self.ignore_label is None:
            return self.ce(logits, target.float()).mean()
        mask = 1 - target[:, -1:].float()
        loss = self.ce(logits, target[:, :-1].float()) * mask
        return loss.sum() / (mask.sum() * logits.shape[1]).clamp_min(1e-8)


class AtLeastOneVoxelTopKLoss(TopKLoss):
    """nnU-Net's TopKLoss, except that it keeps at least one voxel: nnU-Net's keeps ``int(k% of the voxels)``, none
    (and the mean of nothing, NaN) when k% of the batch is below one voxel, e.g. at the coarsest deep-supervision
    scale. Otherwise identical (a test compares the two)."""

    def forward(self, inp: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        res = RobustCrossEntropyLoss.forward(self, inp, target[:, 0].long()).reshape(-1)
        res, _ = torch.topk(res, max(1, int(res.numel() * self.k / 100)), sorted=False)
        return res.mean()


def nnunet_topk_ce(k: float, ignore_label: Optional[int], regions: bool) -> nn.Module:
    """nnU-Net's TopKLoss (the k% voxels with the highest CE; at least one).

    With an ignore label, nnU-Net takes k% of all voxels, ignored ones included (their CE is 0, no gradient): with
    a share f of ignored voxels it keeps k/(1-f)% of the valid ones, and past 100% it averages every valid voxel
    with zeros over k% of all voxels. So ignored voxels add nothing to the sum but do count in the k% and the mean.
    """
    if regions:
        raise InvalidInput("topk_ce: nnU-Net's TopKLoss is softmax cross-entropy; region datasets are not supported")
    return AtLeastOneVoxelTopKLoss(ignore_index=ignore_label if ignore_label is not None else -100, k=k)


def nnunet_dice_topk_ce(k: float, batch_dice: bool, ddp: bool, ignore_label: Optional[int],
                        regions: bool) -> nn.Module:
    """nnU-Net's DC_and_topk_loss: TopK CE + soft Dice without background, weights 1 and 1."""
    if regions:
        raise InvalidInput("dice_topk_ce: nnU-Net's DC_and_topk_loss is softmax-only; region datasets are not "
                           "supported")
    loss = DC_and_topk_loss({"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": ddp}, {"k": k},
                            weight_ce=1, weight_dice=1, ignore_label=ignore_label)
    loss.ce = AtLeastOneVoxelTopKLoss(ignore_index=ignore_label if ignore_label is not None else -100, k=k)
    return loss


class DiceAndFocal(nn.Module):
    """Soft Dice (nnU-Net's, as in DC_and_CE_loss) + focal loss, weights 1 and 1: the "Focal-CE + Dice" of Hosseini
    (manuscript 2023)."""

    def __init__(self, focal: nn.Module, batch_dice: bool, ddp: bool, ignore_label: Optional[int], regions: bool):
        super().__init__()
        self.dice = SoftDice(False, batch_dice, ddp, ignore_label, regions)
        self.focal = focal

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.dice(logits, target) + self.focal(logits, target)


# The registry's factories, (validated parameters, dataset context) -> loss, named in its specs by path.

def build_dice_ce(p: Dict[str, Any], ctx: LossContext) -> nn.Module:
    return nnunet_dice_ce(ctx.batch_dice, ctx.ddp, ctx.ignore_label, ctx.regions)


def build_dice(p: Dict[str, Any], ctx: LossContext) -> nn.Module:
    return SoftDice(True, ctx.batch_dice, ctx.ddp, ctx.ignore_label, ctx.regions)


def build_dice_nobg(p: Dict[str, Any], ctx: LossContext) -> nn.Module:
    return SoftDice(False, ctx.batch_dice, ctx.ddp, ctx.ignore_label, ctx.regions)


def build_ce(p: Dict[str, Any], ctx: LossContext) -> nn.Module:
    return CrossEntropy(ctx.ignore_label, ctx.regions)


def build_topk_ce(p: Dict[str, Any], ctx: LossContext) -> nn.Module:
    return nnunet_topk_ce(p["k"], ctx.ignore_label, ctx.regions)


def build_dice_topk_ce(p: Dict[str, Any], ctx: LossContext) -> nn.Module:
    return nnunet_dice_topk_ce(p["k"], ctx.batch_dice, ctx.ddp, ctx.ignore_label, ctx.regions)


def build_focal_dice(p: Dict[str, Any], ctx: LossContext) -> nn.Module:
    focal = FocalLoss(gamma=p["gamma"], alpha=p["alpha"], regions=ctx.regions, ignore_label=ctx.ignore_label)
    return DiceAndFocal(focal, ctx.batch_dice, ctx.ddp, ctx.ignore_label, ctx.regions)


def build_boundary_dice_partner(p: Dict[str, Any], ctx: LossContext) -> nn.Module:
    """The Dice of dice_boundary: soft Dice without background, labels only."""
    return SoftDice(do_bg=False, batch_dice=ctx.batch_dice, ddp=ctx.ddp, ignore_label=ctx.ignore_label,
                    regions=False)


def build_boundary_ce_partner(p: Dict[str, Any], ctx: LossContext) -> nn.Module:
    """The CE of ce_boundary, labels only."""
    return CrossEntropy(ignore_label=ctx.ignore_label, regions=False)
