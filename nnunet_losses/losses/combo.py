"""Combo loss: Taghanaki et al., "Combo Loss: Handling Input and Output Imbalance in Multi-Organ Segmentation".

Eq. (5) of the journal text (000), eq. (3) of the preprint (002), read as ``t ln p`` (the journal's ``(t - ln p)`` is a
typo)::

    L = alpha * WCE - (1 - alpha) * DiceTerm
    WCE = -(1/N) sum_i [beta * t_i ln p_i + (1 - beta) * (1 - t_i) ln(1 - p_i)]
    DiceTerm = (2 sum p t + S) / (sum p + sum t + S)
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ._common import check_unit_interval, ddp_sum, decode_target, empty_batch_is_zero, float32_forward, masked


def foreground_log_probs(logits: torch.Tensor, regions: bool):
    """ln p and ln(1 - p) of the foreground channels, computed stably from the logits.

    Region mode: every channel is a sigmoid foreground channel. Label mode: softmax over all channels, foreground =
    channels 1..C-1, and ``ln(1 - p_c) = ln sum_{j != c} exp(x_j) - logsumexp(x)``. The sum over the other channels
    is taken relative to their own maximum (the overall maximum, or the runner-up for the winning channel), so it is
    >= 1 and never cancels: the result stays exact and finite where p_c rounds to 1 in float32, and
    ``(1 - t) ln(1 - p)`` never becomes 0 * inf.
    """
    if regions:
        return nn.functional.logsigmoid(logits), nn.functional.logsigmoid(-logits)
    if logits.shape[1] < 2:
        raise ValueError("label mode needs at least 2 channels (background + one foreground class)")
    top, top_idx = logits.max(1, keepdim=True)
    is_top = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, top_idx, True)
    without_top = logits.masked_fill(is_top, float("-inf"))
    runner_up = without_top.amax(1, keepdim=True)
    e = torch.exp(logits - top)
    total = e.sum(1, keepdim=True)  # >= 1
    log_total = torch.log(total)
    log_p = logits - top - log_total
    # channels that are not the maximum: the others include the maximum, so total - e_c >= 1 - (rounding)
    log_1mp_rest = torch.log((total - e).clamp_min(1e-30)) - log_total
    # the maximum channel: sum of the others relative to the runner-up (the runner-up's own term is 1)
    others = torch.exp(without_top - runner_up).sum(1, keepdim=True)
    log_1mp_top = runner_up + torch.log(others) - top - log_total
    log_1mp = torch.where(is_top, log_1mp_top, log_1mp_rest)
    return log_p[:, 1:], log_1mp[:, 1:]


class ComboLoss(nn.Module):
    """Combo loss (Taghanaki et al., eq. 5 of 000 / eq. 3 of 002), foreground channels only.

    Args:
        alpha: weight of the weighted cross-entropy term; ``1 - alpha`` weighs the Dice term (paper: 0.5).
        beta: weight of the false-negative term ``t ln p``; ``1 - beta`` weighs the false-positive term
            ``(1 - t) ln(1 - p)``. beta < 0.5 penalises false positives more, beta > 0.5 false negatives (paper: 0.4
            PET, 0.6 MRI, 0.7 ultrasound, 0.9 in section 5.2).
        smooth: the add-one smoothing S of the Dice term (paper: 1).
        dice: ``"flattened"`` (the paper: one Dice over the flattened multi-label volume W x H x D x C of each
            sample) or ``"per_class"`` (mean of one Dice per foreground class).
        batch_dice: pool the Dice sums over the batch (and over DDP ranks) as nnU-Net's batch Dice does.
        regions: sigmoid outputs and multi-hot targets (nnU-Net region datasets); otherwise softmax outputs whose
            foreground channels 1..C-1 are used (the paper's sigmoid has no background channel).
        ignore_label: nnU-Net's ignore label; ignored voxels contribute to neither term.

    The WCE mean runs over valid voxels x foreground channels x samples (paper: N = classes x samples).
    We follow the paper's equation, ``(1 - beta)`` on the negative term. The authors' public Keras code
    (github.com/asgsaeid/ComboLoss, ``combo_loss.py``; ``ce_w`` = beta, ``ce_d_w`` = alpha; one Dice and one mean
    over the flattened batch, ``p`` clipped to [1e-7, 1 - 1e-7] in the CE) differs by revision: June 2019
    (17f1bb7..070e7e4) weights the negative term by ``beta * (1 - beta)`` with ``- (1 - alpha) Dice``; October 2019
    (66f83c7) weights it by ``(1 - beta)`` but with the opposite sign (``+ (1 - beta)(1 - t) ln(1 - p)``, which
    rewards foreground on background) and subtracts ``(1 - alpha)(1 - Dice)`` (the loss grows with Dice); August
    2020 (84da219: ``+ (1 - alpha)(1 - Dice)``; 86d6247, the head: ``- (1 - alpha) Dice``) fixes the Dice term and
    keeps the sign-flipped negative term.
    """

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, smooth: float = 1.0, dice: str = "flattened",
                 batch_dice: bool = False, regions: bool = False, ignore_label: Optional[int] = None,
                 ddp: bool = True):
        super().__init__()
        self.alpha = check_unit_interval("ComboLoss", alpha, "alpha")
        self.beta = check_unit_interval("ComboLoss", beta, "beta")
        if dice not in ("flattened", "per_class"):
            raise ValueError(f"ComboLoss: dice must be 'flattened' or 'per_class', got {dice!r}")
        if smooth < 0:
            raise ValueError(f"ComboLoss: smooth must be >= 0, got {smooth}")
        self.smooth = float(smooth)
        self.dice = dice
        self.batch_dice = bool(batch_dice)
        self.regions = bool(regions)
        self.ignore_label = ignore_label
        self.ddp = ddp

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, beta={self.beta}, smooth={self.smooth}, dice={self.dice!r}, "
                f"batch_dice={self.batch_dice}, regions={self.regions}, ignore_label={self.ignore_label}")

    @float32_forward
    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        tgt = decode_target(logits, target, regions=self.regions, ignore_label=self.ignore_label, name="ComboLoss")
        log_p, log_1mp = foreground_log_probs(logits, self.regions)
        t = tgt.onehot if self.regions else tgt.onehot[:, 1:]
        mask = tgt.mask
        num_fg = t.shape[1]

        n_valid = tgt.valid_count() * num_fg
        # where t = 1 the (1 - t) factor is exactly 0 and ln(1-p) finite, so no 0 * inf can arise
        bce = self.beta * t * log_p + (1.0 - self.beta) * (1.0 - t) * log_1mp
        wce = -masked(bce, mask).sum() / n_valid.clamp_min(1.0)

        p = masked(log_p.exp(), mask)
        spatial = tuple(range(2, logits.ndim))
        if self.dice == "flattened":
            axes = (1,) + spatial
        else:
            axes = spatial
        intersect = (p * t).sum(axes)
        sum_p = p.sum(axes)
        sum_t = t.sum(axes)
        if self.batch_dice:
            intersect = ddp_sum(intersect.sum(0), self.ddp)
            sum_p = ddp_sum(sum_p.sum(0), self.ddp)
            sum_t = ddp_sum(sum_t.sum(0), self.ddp)
        dice_term = ((2.0 * intersect + self.smooth) / (sum_p + sum_t + self.smooth).clamp_min(1e-8)).mean()
        return empty_batch_is_zero(self.alpha * wce - (1.0 - self.alpha) * dice_term, n_valid, logits)
