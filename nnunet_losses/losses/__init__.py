"""The papers' losses as PyTorch modules (nothing here imports nnunetv2).

One file per paper holds its equation, its documented choices and its autograd function; every loss is PyTorch ops.
Two of them call ``_fast/`` for speed, and name the path that ran in ``loss.implementation``: Combo's fused C kernel
on the CPU (``_fast/combo_cpu.py``) and TopK Dice's selection (``_fast/topk_selection.py``).

Every loss takes logits (B, C, *spatial) and nnU-Net's target (B, 1, *spatial) of integer labels, or multi-hot
region channels with ``regions=True``; map-based losses take the map as a third argument. Every loss honours
nnU-Net's ignore label and computes in float32 under autocast.
"""
from ._common import compile_loss
from .combo import ComboLoss
from .focal import FocalLoss
from .iou_xy import IoUxyLoss
from .region_wise import RegionWiseLoss, rectified_map_from_inside
from .dice_boundary import AlphaSchedule, DiceBoundaryLoss
from .topk import CEAndTopKDiceLoss, TopKDiceLoss
from .weighted_ce import WeightedCELoss, inverse_frequency_weights

__all__ = [
    "ComboLoss", "RegionWiseLoss", "rectified_map_from_inside", "AlphaSchedule", "DiceBoundaryLoss", "IoUxyLoss",
    "WeightedCELoss", "inverse_frequency_weights", "TopKDiceLoss", "CEAndTopKDiceLoss", "FocalLoss",
    "compile_loss",
]
