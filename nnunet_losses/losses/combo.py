"""Combo loss: Taghanaki et al., "Combo Loss: Handling Input and Output Imbalance in Multi-Organ Segmentation",
Computerized Medical Imaging and Graphics 2019 (nnunet_losses/papers.py has the full reference).

Eq. (5) of the journal version, eq. (3) of the arXiv preprint (arXiv:1805.02798), read as ``t ln p`` (the journal's
``(t - ln p)`` is a typo)::

    L = alpha * WCE - (1 - alpha) * DiceTerm
    WCE = -(1/N) sum_i [beta * t_i ln p_i + (1 - beta) * (1 - t_i) ln(1 - p_i)]
    DiceTerm = (2 sum p t + S) / (sum p + sum t + S)
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ._common import (check_unit_interval, ddp_sum, decode_target, empty_batch_is_zero, float32_forward, masked,
                      sum_by_label, sum_of_products)
from ._fast import combo_cpu


class SoftmaxForegroundSums(torch.autograd.Function):
    """The sums Combo loss needs from a softmax, with a hand-written backward (label mode).

    ``apply(logits (B, C, *spatial), labels (B, 1, *spatial) int64, mask (B, 1, *spatial) or None)`` returns, with
    ``p = softmax(logits)``, ``t`` the one-hot labels and ``m`` the mask, sums over the foreground channels c >= 1:

    * ``pos = sum m t_c ln p_c`` and ``neg = sum m (1 - t_c) ln(1 - p_c)`` (scalars: the two terms of the WCE of
      Taghanaki et al. (CMIG 2019), eq. 5; eq. 3 of the arXiv preprint);
    * ``inter[b, c-1] = sum_i m p_c t_c`` and ``sum_p[b, c-1] = sum_i m p_c`` (the Dice sums per sample and class).

    ``ln(1 - p_c)`` is exact and finite where ``p_c`` rounds to 1: only the maximum channel, when it is unique, can
    have ``p > 1/2``; its ``1 - p = sum_{k != top} e^{x_k} / sum_k e^{x_k}`` is summed relative to the runner-up
    logit r (>= 1, no cancellation, no underflow). Every other channel has ``p < 1/2`` and takes ``ln(1 - p)``.

    Backward, per voxel, with ``a_j = g_pos t_j``, ``b_j = g_neg (1 - t_j)`` (both 0 for the background),
    ``rho_j = p_j / (1 - p_j)`` and ``gamma_j = g_inter t_j + g_sum_p`` (the upstream gradients of the sums)::

        d/dx_j = m [a_j - p_j A - b_j rho_j + p_j sum_{c != j} b_c rho_c + p_j (gamma_j - sum_c p_c gamma_c)]

    with ``A = sum_c a_c``. For the unique top d, ``rho_d`` may overflow: its terms are rewritten as ``b_d p_d``
    (j = d) and ``p_j rho_d = p_d e^{x_j - r} / sum_{k != d} e^{x_k - r}`` (j != d), both bounded.
    Memory passes matter more than flops here: three full-size buffers forward, two backward. On the CPU, eager,
    ``_fast/combo_cpu.py`` computes the same in one C kernel (this class is the reference it is tested against, and
    the path on GPUs and under ``torch.compile``).
    """

    @staticmethod
    def forward(ctx, logits, labels, mask):
        x = logits
        top = x.amax(1, keepdim=True)
        at_top = torch.eq(x, top, out=torch.empty_like(x))  # 1.0 at the maximum (at each of them on a tie)
        n_top = at_top.sum(1, keepdim=True)
        unique = torch.eq(n_top, 1, out=torch.empty_like(n_top))
        # the largest logit below the top where the top is unique; the top itself on a tie
        others = torch.add(x, at_top, alpha=-torch.finfo(x.dtype).max)
        runner_up = torch.lerp(top, others.amax(1, keepdim=True), unique)
        # e^{x_k - r}, 0 at a unique top (e^{x - r} clamped to 1 there, then 1 subtracted: exact)
        torch.sub(x, runner_up, out=others).clamp_max_(0.0).exp_().addcmul_(at_top, unique, value=-1.0)
        w = others.sum(1, keepdim=True)  # >= 1 where the top is unique (the runner-up's own term)
        gap = runner_up - top
        e_r = gap.exp()
        total = torch.addcmul(unique, e_r, w)  # sum_k e^{x_k - top}
        inv_total = total.reciprocal()
        rest_scale = e_r * inv_total  # p = others * rest_scale, except at a unique top
        one_minus = torch.addcmul(x.new_ones(()), others, rest_scale, value=-1.0)  # 1 - p; 1 at a unique top

        fg = labels.to(x.dtype).clamp_max_(1.0)  # labels >= 0
        x_l = x.gather(1, labels)
        label_top = torch.eq(x_l, top, out=torch.empty_like(x_l))
        # 1 where the top is unique and is a foreground class other than the label (its ln(1 - p) counts)
        top_is_negative = torch.addcmul(unique, unique, torch.addcmul(at_top[:, :1], fg, label_top), value=-1.0)
        p = at_top.mul_(unique * inv_total).addcmul_(others, rest_scale)  # e^{x - top} / total
        p_l, v_l = p.gather(1, labels), one_minus.gather(1, labels)
        log_total = total.log()
        log_1mp_top = w.log().add_(gap).sub_(log_total)  # ln(sum_{k != top} e^{x_k} / sum_k e^{x_k})

        m = None if mask is None else mask.to(x.dtype)
        fg_m = fg if m is None else fg * m
        pos = sum_of_products(fg_m, x_l) - sum_of_products(fg_m, top + log_total)
        neg = (sum_of_products(one_minus[:, 1:].prod(1, keepdim=True).log_(), m) - sum_of_products(fg_m, v_l.log())
               + sum_of_products(top_is_negative if m is None else top_is_negative * m, log_1mp_top))
        batch, channels = x.shape[:2]
        inter = sum_by_label(p_l if m is None else m * p_l, labels, channels)[:, 1:]
        spatial = tuple(range(2, x.ndim))
        # torch's float32 sum is pairwise; a batched matrix-vector product with the mask drifted by 7e-4 (relative)
        # over a 2 x 128^3 batch on the CPU
        sum_p = masked(p[:, 1:], m).sum(spatial)
        ctx.save_for_backward(p, one_minus, others, labels, m, fg, p_l, v_l, top_is_negative, inv_total, w)
        return pos, neg, inter, sum_p

    @staticmethod
    def backward(ctx, g_pos, g_neg, g_inter, g_sum_p):
        p, one_minus, others, labels, m, fg, p_l, v_l, top_is_negative, inv_total, w = ctx.saved_tensors
        batch, channels = p.shape[:2]
        rho = p / one_minus  # p / (1 - p); p at the unique top
        rho_l = p_l / v_l
        g_inter_l = nn.functional.pad(g_inter, (1, 0)).gather(1, labels.reshape(batch, -1)).view_as(fg)
        g_sum_p_all = nn.functional.pad(g_sum_p, (1, 0))  # (B, C), 0 for the background
        # per voxel: sum_{c != top} b_c rho_c - A - sum_c p_c gamma_c
        b_rho = rho[:, 1:].sum(1, keepdim=True).sub_(top_is_negative * inv_total).sub_(fg * rho_l).mul_(g_neg)
        p_gamma = torch.bmm(g_sum_p_all.unsqueeze(1), p.reshape(batch, channels, -1)).view_as(fg)
        phi = b_rho.sub_(p_gamma).sub_(fg * (g_pos + p_l * g_inter_l))
        grad = p * phi
        grad.addcmul_(p, g_sum_p_all.reshape((batch, channels) + (1,) * (p.ndim - 2)))
        grad[:, 1:].addcmul_(rho[:, 1:], g_neg, value=-1.0)
        grad.addcmul_(others, (top_is_negative * inv_total / w).mul_(g_neg))  # b_d p_d p_j / (1 - p_d), j != top
        grad.scatter_add_(1, labels, rho_l.mul_(g_neg).add_(g_pos).addcmul_(p_l, g_inter_l).mul_(fg))  # a_l, t_l gamma_l
        if m is not None:
            grad.mul_(m)
        return grad, None, None


class ComboLoss(nn.Module):
    """Combo loss (Taghanaki et al. (CMIG 2019), eq. 5; eq. 3 of the arXiv preprint), foreground channels only.

    Args:
        alpha: weight of the weighted cross-entropy term; ``1 - alpha`` weighs the Dice term (paper: 0.5).
        beta: weight of the false-negative term ``t ln p``; ``1 - beta`` weighs the false-positive term
            ``(1 - t) ln(1 - p)``. beta < 0.5 penalises false positives more, beta > 0.5 false negatives (paper: 0.4
            PET, 0.6 MRI, 0.7 ultrasound, 0.9 in section 5.2).
        smooth: the add-one smoothing S of the Dice term (paper: 1).
        dice: ``"flattened"`` (the default here and in ``build_loss("combo")``: the paper's one Dice over the
            flattened multi-label volume W x H x D x C of each sample, which the largest class dominates) or
            ``"per_class"`` (the mean of one Dice per foreground class). The nnU-Net trainers differ: ``ComboTrainer``
            uses ``"per_class"`` unless its name says ``_flat`` (docs/learning.md); on data with one foreground
            class the two are the same loss.
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

    @property
    def implementation(self) -> str:
        """What computes the sums on the CPU, eager (label mode): ``"fused C kernel (combo_cpu.c)"``, or
        ``"PyTorch ops (...)"`` with the reason (``nnUNet_losses_fused`` off, or the kernel did not build). Region
        mode, other devices and ``torch.compile``: PyTorch ops (``SoftmaxForegroundSums``, ``sigmoid_sums``)."""
        return "PyTorch ops" if self.regions else combo_cpu.description()

    @float32_forward
    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        tgt = decode_target(logits, target, regions=self.regions, ignore_label=self.ignore_label, name="ComboLoss",
                            onehot=self.regions)
        spatial = tuple(range(2, logits.ndim))
        if self.regions:
            pos, neg, intersect, sum_p = sigmoid_sums(logits, tgt.onehot, tgt.mask)
            sum_t = tgt.onehot.sum(spatial)
        else:
            if logits.shape[1] < 2:
                raise ValueError("label mode needs at least 2 channels (background + one foreground class)")
            labels = tgt.labels.unsqueeze(1)
            fused = combo_cpu.sums(logits, labels, tgt.mask)  # the fused CPU kernel; None where it does not apply
            if fused is not None:
                pos, neg, intersect, sum_p, sum_t = fused
            else:
                pos, neg, intersect, sum_p = SoftmaxForegroundSums.apply(logits, labels, tgt.mask)
                sum_t = class_counts(labels, tgt.mask, logits.shape[1])[:, 1:]
        n_valid = tgt.valid_count() * intersect.shape[1]
        wce = -(self.beta * pos + (1.0 - self.beta) * neg) / n_valid.clamp_min(1.0)

        if self.dice == "flattened":  # (B, C) sums -> (B,)
            intersect, sum_p, sum_t = intersect.sum(1), sum_p.sum(1), sum_t.sum(1)
        if self.batch_dice:
            intersect = ddp_sum(intersect.sum(0), self.ddp)
            sum_p = ddp_sum(sum_p.sum(0), self.ddp)
            sum_t = ddp_sum(sum_t.sum(0), self.ddp)
        dice_term = ((2.0 * intersect + self.smooth) / (sum_p + sum_t + self.smooth).clamp_min(1e-8)).mean()
        return empty_batch_is_zero(self.alpha * wce - (1.0 - self.alpha) * dice_term, n_valid, logits)


def sigmoid_sums(logits: torch.Tensor, t: torch.Tensor, mask: Optional[torch.Tensor]):
    """Region mode: the sums of ``SoftmaxForegroundSums`` for sigmoid channels (all foreground), by autograd."""
    log_p, log_1mp = nn.functional.logsigmoid(logits), nn.functional.logsigmoid(-logits)
    # where t = 1 the (1 - t) factor is exactly 0 and ln(1-p) finite, so no 0 * inf can arise
    pos = masked(t * log_p, mask).sum()
    neg = masked((1.0 - t) * log_1mp, mask).sum()
    p = masked(log_p.exp(), mask)
    spatial = tuple(range(2, logits.ndim))
    return pos, neg, (p * t).sum(spatial), p.sum(spatial)


def class_counts(labels: torch.Tensor, mask: Optional[torch.Tensor], num_classes: int) -> torch.Tensor:
    """(B, num_classes) number of valid voxels of each label per sample (float32, no gradient)."""
    ones = torch.ones(labels.shape, dtype=torch.float32, device=labels.device) if mask is None else mask.float()
    return sum_by_label(ones, labels, num_classes)
