"""Cross-entropy weighted by inverse class frequency: Furtado, "Investigation of loss functions for improving deep
segmentation of abdominal organs from MRI" (manuscript, University of Coimbra, 2021; nnunet_losses/papers.py),
section 2.2 ("crossE", class-weighted)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from ._common import buffer_on, decode_target, empty_batch_is_zero, float32_forward, masked


def inverse_frequency_weights(voxel_counts: Sequence[float]) -> list:
    """Class weights ``w_c = (1 / f_c)`` normalised to mean 1, from voxel counts per class over the training cases.

    A class with no voxel at all would get an infinite weight; it is counted as one voxel instead (its weight is
    then the largest, and finite).
    """
    counts = np.asarray(voxel_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size < 2 or np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise ValueError(f"inverse_frequency_weights: need >= 2 finite non-negative counts, got {voxel_counts!r}")
    counts = np.maximum(counts, 1.0)
    inv = counts.sum() / counts
    return [float(w) for w in inv / inv.mean()]


class WeightedCELoss(nn.Module):
    """Softmax cross-entropy with per-class weights (inverse class frequency in Furtado's "crossE").

    The mean is weighted as in ``torch.nn.CrossEntropyLoss``: ``sum_i w_{y_i} CE_i / sum_i w_{y_i}`` over the valid
    voxels. Region datasets are refused (the weighting is defined for mutually exclusive classes).
    """

    def __init__(self, class_weights: Sequence[float], ignore_label: Optional[int] = None, regions: bool = False):
        super().__init__()
        if regions:
            raise ValueError("WeightedCELoss is defined for softmax label datasets; region-based datasets are not "
                             "supported")
        weights = np.asarray(list(class_weights), dtype=np.float64)  # checked on the host, before any tensor
        if weights.ndim != 1 or not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError(f"WeightedCELoss: class_weights must be finite and >= 0, got {list(class_weights)}")
        self._weights_text = [round(float(w), 4) for w in weights]
        self.register_buffer("class_weights", torch.as_tensor(weights, dtype=torch.float32))
        self.ignore_label = ignore_label

    implementation = "PyTorch ops"  # what computes it (ComboLoss and TopK Dice name their faster paths)

    def extra_repr(self) -> str:
        return f"class_weights={self._weights_text}, ignore_label={self.ignore_label}"

    @float32_forward
    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] != self.class_weights.numel():
            raise ValueError(f"WeightedCELoss: {self.class_weights.numel()} class weights for {logits.shape[1]} "
                             f"channels")
        tgt = decode_target(logits, target, regions=False, ignore_label=self.ignore_label, name="WeightedCELoss",
                            onehot=False)
        weights = buffer_on(self, "class_weights", logits.device)
        labels = tgt.labels if tgt.mask is None else torch.where(tgt.mask[:, 0] > 0, tgt.labels, -100)
        weighted = nn.functional.cross_entropy(logits, labels, weight=weights, ignore_index=-100, reduction="sum")
        total_weight = masked(weights[tgt.labels].unsqueeze(1), tgt.mask).sum()
        # sum_i w_{y_i} CE_i / sum_i w_{y_i}; 0 (in the graph) when no voxel counts, with no host sync
        return empty_batch_is_zero(weighted / total_weight.clamp_min(1e-12), total_weight, logits)
