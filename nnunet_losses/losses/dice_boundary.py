"""Dice (or CE) + Boundary with its alpha schedule: Valverde & Tohka, "Region-wise loss for biomedical image
segmentation", Pattern Recognition 136, 2023, doi:10.1016/j.patcog.2022.109208 (arXiv:2108.01405), sections 4.1
and 4.3, after Kervadec et al., "Boundary loss for highly unbalanced segmentation", Medical Image Analysis 2021,
doi:10.1016/j.media.2020.101851 (arXiv:1812.07032; first at MIDL 2019).

``L = alpha * L_partner + (1 - alpha) * L_RW(boundary map)`` with alpha going from 1 down to 0.01 by 0.01 per epoch
(the *gradual* strategy), or ``L_partner + L_RW`` (the *equal* strategy). The partner is the Dice loss (Boundary
loss as published) or cross-entropy (the paper's third variant, section 4.3).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ._common import float32_forward
from .region_wise import RegionWiseLoss, check_map_shape


class AlphaSchedule:
    """The weight schedule of Dice + Boundary; training state that a trainer saves and restores.

    ``kind="gradual"``: alpha = max(start - step * epochs_done, minimum), weights (alpha, 1 - alpha).
    ``kind="equal"``: weights (1, 1) at every epoch.
    Call :meth:`step` once at the end of every epoch. alpha is derived from the integer epoch counter, so it has no
    floating-point drift and restoring ``epochs_done`` restores it exactly.
    """

    def __init__(self, kind: str = "gradual", start: float = 1.0, step: float = 0.01, minimum: float = 0.01):
        if kind not in ("gradual", "equal"):
            raise ValueError(f"AlphaSchedule: kind must be 'gradual' or 'equal', got {kind!r}")
        if not (0.0 <= minimum <= start <= 1.0) or step < 0:
            raise ValueError(f"AlphaSchedule: need 0 <= minimum <= start <= 1 and step >= 0, got start={start}, "
                             f"step={step}, minimum={minimum}")
        self.kind = kind
        self.start = float(start)
        self.step_size = float(step)
        self.minimum = float(minimum)
        self.epochs_done = 0

    @property
    def alpha(self) -> float:
        if self.kind == "equal":
            return 1.0
        return round(max(self.start - self.step_size * self.epochs_done, self.minimum), 10)

    def weights(self) -> tuple:
        """(weight of the partner loss, weight of the RW-Boundary loss)."""
        if self.kind == "equal":
            return 1.0, 1.0
        return self.alpha, 1.0 - self.alpha

    def step(self) -> None:
        self.epochs_done += 1

    def state_dict(self) -> dict:
        return {"kind": self.kind, "start": self.start, "step": self.step_size, "minimum": self.minimum,
                "epochs_done": self.epochs_done, "alpha": self.alpha}

    def load_state_dict(self, state: dict) -> None:
        for key, mine in (("kind", self.kind), ("start", self.start), ("step", self.step_size),
                          ("minimum", self.minimum)):
            if key in state and state[key] != mine:
                raise ValueError(f"AlphaSchedule: checkpoint has {key}={state[key]!r} but this run uses {mine!r}")
        self.epochs_done = int(state["epochs_done"])

    def __repr__(self) -> str:
        return (f"AlphaSchedule(kind={self.kind!r}, start={self.start}, step={self.step_size}, "
                f"minimum={self.minimum}, epochs_done={self.epochs_done}, alpha={self.alpha})")


class WeightedPartnerAndBoundary(nn.Module):
    """``w[0] * partner(logits, target) + w[1] * region_wise(logits, target, boundary)`` with the weights a tensor
    ``w`` (2,): stateless, so it compiles into one graph and a new epoch's weights are new values of an input, not a
    recompilation. A partner with ``from_probabilities(probs, target)`` (the soft Dice) shares the RW term's softmax,
    eager too: one softmax forward and one backward instead of two."""

    def __init__(self, partner: nn.Module, region_wise: nn.Module):
        super().__init__()
        self.partner = partner
        self.region_wise = region_wise

    def forward(self, logits, target, boundary, weights):
        if hasattr(self.partner, "from_probabilities"):
            return self._shared_softmax(logits, target, boundary, weights)
        return weights[0] * self.partner(logits, target) + weights[1] * self.region_wise(logits, target, boundary)

    @float32_forward
    def _shared_softmax(self, logits, target, boundary, weights):
        check_map_shape(boundary, logits)
        probs = torch.softmax(logits, 1)
        return (weights[0] * self.partner.from_probabilities(probs, target)
                + weights[1] * self.region_wise.from_probabilities(probs, target, boundary))


class DiceBoundaryLoss(nn.Module):
    """``w_partner * partner(logits, target) + w_rw * RegionWiseLoss(logits, target, boundary_map)``.

    ``partner`` is any loss called as ``partner(logits, target)``: the registry passes nnU-Net's own soft Dice
    (``dice_boundary``) or cross-entropy (``ce_boundary``). The weights come from ``schedule``; they enter
    :class:`WeightedPartnerAndBoundary` as a tensor kept on the logits' device and replaced only when the schedule
    moves (once per epoch), so no host-to-device copy per call. Both terms are always computed (a weight of 0
    multiplies a finite loss).
    """

    compiled_parts = ("terms",)  # the weights (Python floats, new each epoch) are made into a tensor outside

    def __init__(self, partner: nn.Module, schedule: Optional[AlphaSchedule] = None,
                 ignore_label: Optional[int] = None):
        super().__init__()
        self.schedule = schedule if schedule is not None else AlphaSchedule()
        self.terms = WeightedPartnerAndBoundary(partner, RegionWiseLoss(ignore_label=ignore_label))
        self._weights = None  # (values, tensor)

    @property
    def partner(self) -> nn.Module:
        return self.terms.partner

    @property
    def region_wise(self) -> nn.Module:
        return self.terms.region_wise

    implementation = "PyTorch ops"  # what computes it (ComboLoss and TopK Dice name their faster paths)

    def extra_repr(self) -> str:
        return repr(self.schedule)

    def _weights_on(self, device) -> torch.Tensor:
        values = tuple(float(w) for w in self.schedule.weights())
        if self._weights is None or self._weights[0] != values or self._weights[1].device != device:
            self._weights = (values, torch.tensor(values, dtype=torch.float32).to(device, non_blocking=True))
        return self._weights[1]

    def forward(self, logits: torch.Tensor, target: torch.Tensor, boundary: torch.Tensor) -> torch.Tensor:
        return self.terms(logits, target, boundary, self._weights_on(logits.device))
