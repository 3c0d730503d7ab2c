"""TopK Dice loss: Hosseini, "TopK Dice Loss for Medical Image Segmentation" (manuscript, University of Tehran, 2023;
nnunet_losses/papers.py), eq. (1)-(7).

Per sample and per class c present in the sample::

    TP^c = Y^c * (P^c + eps)                            (2)  eps: fixed random perturbation, shared by all classes
    keep the K% foreground voxels of c with the lowest TP^c (the hardest), drop the rest    (3)-(4)
    Yk^c = Y^c * keep,  Pk^c = P^c * (1 - ignore^c)     (5)-(6)  (P^c outside the foreground is kept)
    L = 1 - (1/C) sum_c 2 sum Yk Pk / (sum Yk^2 + sum Pk^2)   (7), C = classes present in the sample

How (3)-(4)'s voxels are found fast, on every device and compiled, is in ``_fast/topk_selection.py``; what is kept is
defined here (``kept_count``, ``keep_mask``, ``dropped_by_label``).
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple, Union

import torch
from torch import nn

from ._common import DecodedTarget, _numel, decode_target, float32_forward, masked, sum_by_label, sum_of_products
from ._fast import topk_selection


class TopKDiceLoss(nn.Module):
    """TopK Dice (Hosseini, eq. 7): squared-denominator Dice on the K% hardest foreground voxels of each class.

    Choices where the paper is silent (documentation/design_choices.md):

    * classes: the foreground classes present in the sample (``include_background=False``, default); background
      can be included. A sample with no present class adds nothing; the loss is the mean over the samples that have
      at least one present class (0, still differentiable, when none has).
    * count kept: ``ceil(K/100 * n_c)`` of the n_c foreground voxels (at least one), the ones with the lowest
      ``TP^c``; the paper ignores ``TP^c > t^c`` with ``t^c`` the D^c-th highest value, D^c = (1 - K/100) n_c.
    * eps: uniform in [0, ``eps_scale``) from a seeded counter-based hash of the voxel index (``perturbation``),
      the same for every class, sample and device (the paper: "generated once, not changed during training, the
      same for all classes"); the selection is done without gradient.
    * selection, on every device with no host sync and no loop over (sample, class) rows (``_fast/topk_selection.py``):
      in label mode one sort per sample of (class, TP) keys (``dropped_by_label``: each voxel has one class; on the
      CPU numpy's sort); with multi-hot region targets the lowest values of all (sample, class) rows at once
      (``keep_mask``). Both keep the same set.
    * no smoothing (the denominator of a present class is > 0).
    """

    def __init__(self, k: float = 50.0, include_background: bool = False, eps_scale: float = 1e-5, seed: int = 0,
                 regions: bool = False, ignore_label: Optional[int] = None):
        super().__init__()
        k = float(k)
        if not (0.0 < k <= 100.0):
            raise ValueError(f"TopKDiceLoss: k is a percentage in (0, 100], got {k}")
        if eps_scale < 0:
            raise ValueError(f"TopKDiceLoss: eps_scale must be >= 0, got {eps_scale}")
        self.k = k
        self.include_background = bool(include_background)
        self.eps_scale = float(eps_scale)
        self.seed = int(seed)
        self.regions = bool(regions)
        self.ignore_label = ignore_label
        self._eps_cache: Dict[Tuple, torch.Tensor] = {}

    implementation = "PyTorch ops (selection: numpy's sort on the CPU, torch's sort or topk elsewhere)"

    def extra_repr(self) -> str:
        return (f"k={self.k}, include_background={self.include_background}, eps_scale={self.eps_scale}, "
                f"seed={self.seed}, regions={self.regions}, ignore_label={self.ignore_label}")

    def perturbation(self, spatial: tuple, device: torch.device) -> torch.Tensor:
        """The fixed eps of eq. (2) for one spatial shape: the same on every call, device and sample.

        Uniform in [0, ``eps_scale``) from a counter-based integer hash of (voxel index, ``seed``): exact int64
        arithmetic, so the values do not depend on the device, and ``torch.compile`` traces it (a
        ``torch.Generator`` would break the graph). Eager calls reuse one tensor per (shape, device).
        """
        key = (tuple(spatial), str(device))
        if not torch.compiler.is_compiling() and key in self._eps_cache:
            return self._eps_cache[key]
        mask32 = 0xFFFFFFFF
        x = (torch.arange(_numel(spatial), device=device, dtype=torch.int64) + self.seed * 0x9E3779B9) & mask32
        for _ in range(2):  # a 32-bit avalanche mix (two rounds of xor-shift-multiply)
            x = ((x ^ (x >> 16)) * 0x45D9F3B) & mask32
        x = x ^ (x >> 16)
        eps = ((x >> 8).to(torch.float32) * (self.eps_scale / 2.0 ** 24)).reshape(tuple(spatial))
        if not torch.compiler.is_compiling():
            self._eps_cache[key] = eps
        return eps

    @torch.no_grad()
    def keep_mask(self, probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """1 for the voxels kept in eq. (5)-(6): the K% lowest TP^c of each class's foreground, and all background.

        Each (sample, class) row drops its foreground voxels above the row's threshold t, the ``n_keep``-th smallest
        TP^c of its foreground (eq. 3-4; ties at t are all kept); ``y`` is 0 or 1. The thresholds of all rows at once:
        ``topk_selection.nth_lowest_in_rows``.
        """
        if self.k >= 100.0:
            return torch.ones_like(y, dtype=probs.dtype)
        batch, channels = y.shape[:2]
        eps = self.perturbation(probs.shape[2:], probs.device).reshape(-1)
        y_rows = y.reshape(batch * channels, -1)
        fg = y_rows > 0.5
        tp = probs.reshape(batch * channels, -1) + eps  # TP^c = Y^c (P^c + eps) on the class's voxels
        n_keep = kept_count(fg.sum(-1, dtype=torch.float64), self.k)
        threshold = topk_selection.nth_lowest_in_rows(tp, y_rows, n_keep, kept_count(fg.shape[-1], self.k),
                                                      self.eps_scale)
        keep = ~(fg & (tp > threshold))
        return keep.reshape(y.shape).to(probs.dtype)

    def dropped_by_label(self, tp: torch.Tensor, labels: torch.Tensor, counted: torch.Tensor,
                         counts: torch.Tensor) -> torch.Tensor:
        """Label mode: True for the foreground voxels eq. (3)-(4) drop: of each class c of each sample, the counted
        voxels whose ``tp`` (B, N), ``P + eps`` of the voxel's own class, lies above the ``n_keep``-th smallest
        (``topk_selection.dropped_by_label``); ``labels`` (B, N), ``counted`` (B, N) bool, ``counts`` (B, C)."""
        return topk_selection.dropped_by_label(tp, labels, counted, counts, kept_count(counts, self.k),
                                               0 if self.include_background else 1, self.eps_scale)

    def _label_sums(self, logits: torch.Tensor, tgt: DecodedTarget, with_ce: bool = False):
        """Eq. (5)-(7)'s sums per (sample, class) from the logits and the labels (:class:`LabelTopKDiceSums`):
        (numerator, denominator, present), and CE's sum ``-sum ln p_label`` over the valid voxels with ``with_ce``."""
        batch, channels = logits.shape[:2]
        labels = tgt.labels.reshape(batch, -1)
        first = 0 if self.include_background else 1
        counted = labels >= first
        if tgt.mask is not None:
            counted = counted & (tgt.mask.reshape(batch, -1) > 0)
        counts = sum_by_label(counted.long(), labels, channels)  # voxels of each class that count
        eps = self.perturbation(logits.shape[2:], logits.device).reshape(1, -1)
        mask = None if tgt.mask is None else tgt.mask.reshape(batch, 1, -1)
        numerator, denominator, nll = LabelTopKDiceSums.apply(
            logits.reshape(batch, channels, -1), labels.unsqueeze(1), mask, counted, counts, eps, self.k, first,
            self.eps_scale, with_ce)
        present = counts[:, first:] > 0
        return (numerator, denominator, present, nll) if with_ce else (numerator, denominator, present)

    def _multi_hot_sums(self, logits: torch.Tensor, target: torch.Tensor):
        """Eq. (5)-(7)'s sums from a one-hot or multi-hot target (region datasets: a voxel may be in several)."""
        tgt = decode_target(logits, target, regions=self.regions, ignore_label=self.ignore_label,
                            name="TopKDiceLoss")
        probs = torch.sigmoid(logits) if self.regions else torch.softmax(logits, 1)
        y = tgt.onehot
        if not self.regions and not self.include_background:
            probs, y = probs[:, 1:], y[:, 1:]
        probs = masked(probs, tgt.mask)
        keep = self.keep_mask(probs.detach(), y)
        yk, pk = y * keep, probs * keep
        axes = tuple(range(2, logits.ndim))
        numerator = 2.0 * (yk * probs).sum(axes)  # Yk Pk = Y keep P (keep is 0/1)
        denominator = yk.sum(axes) + (pk * pk).sum(axes)  # Yk^2 = Yk (binary)
        return numerator, denominator, y.sum(axes) > 0

    @float32_forward
    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.regions:
            return self.from_sums(*self._multi_hot_sums(logits, target))
        tgt = decode_target(logits, target, regions=False, ignore_label=self.ignore_label, name="TopKDiceLoss",
                            onehot=False)
        return self.from_sums(*self._label_sums(logits, tgt))

    @staticmethod
    def from_sums(numerator: torch.Tensor, denominator: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Eq. (7) from the (B, C) sums: 1 - mean Dice over the present classes, averaged over the samples."""
        present = present.to(numerator.dtype)
        n_present = present.sum(1)
        dice = torch.where(present > 0, numerator / denominator.clamp_min(1e-12), torch.zeros_like(numerator))
        has_class = (n_present > 0).to(numerator.dtype)
        per_sample = 1.0 - dice.sum(1) / n_present.clamp_min(1.0)
        # mean over the samples with a present class; 0 (still in the graph) when none has one
        return (per_sample * has_class).sum() / has_class.sum().clamp_min(1.0)


class CEAndTopKDiceLoss(nn.Module):
    """The TopK Dice paper's training loss: ``weight_ce * CE + weight_dice * TopKDice`` (K = 50 or 30).

    CE is softmax cross-entropy in label mode (computed with TopK Dice's softmax from one log-softmax), BCE-with-logits
    in region mode, averaged over the valid voxels.
    """

    def __init__(self, k: float = 50.0, weight_ce: float = 1.0, weight_dice: float = 1.0,
                 regions: bool = False, ignore_label: Optional[int] = None, **topk_kwargs):
        super().__init__()
        self.topk_dice = TopKDiceLoss(k=k, regions=regions, ignore_label=ignore_label, **topk_kwargs)
        self.weight_ce = float(weight_ce)
        self.weight_dice = float(weight_dice)
        self.regions = bool(regions)
        self.ignore_label = ignore_label

    implementation = TopKDiceLoss.implementation

    def extra_repr(self) -> str:
        return f"weight_ce={self.weight_ce}, weight_dice={self.weight_dice}"

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._region_forward(logits, target) if self.regions else self._label_forward(logits, target)

    @float32_forward
    def _region_forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Region mode: BCE-with-logits over the valid voxels and channels, plus TopK Dice on the sigmoids."""
        tgt = decode_target(logits, target, regions=True, ignore_label=self.ignore_label, name="CE")
        n_valid = tgt.valid_count().clamp_min(1.0)  # all ignored: the sums are 0, and so is the loss
        bce = nn.functional.binary_cross_entropy_with_logits(logits, tgt.onehot, reduction="none")
        ce = masked(bce, tgt.mask).sum() / (n_valid * logits.shape[1])
        return self.weight_ce * ce + self.weight_dice * self.topk_dice(logits, target)

    @float32_forward
    def _label_forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Label mode: both terms from one decoding and one log-softmax (:class:`LabelTopKDiceSums`)."""
        tgt = decode_target(logits, target, regions=False, ignore_label=self.ignore_label, name="CE + TopK Dice",
                            onehot=False)
        numerator, denominator, present, nll = self.topk_dice._label_sums(logits, tgt, with_ce=True)
        ce = nll / tgt.valid_count().clamp_min(1.0)  # all ignored: the sums are 0, and so is the loss
        dice = self.topk_dice.from_sums(numerator, denominator, present)
        return self.weight_ce * ce + self.weight_dice * dice


def kept_count(n: Union[torch.Tensor, int], k: float) -> Union[torch.Tensor, int]:
    """Eq. (3)-(4): of ``n`` foreground voxels, ``ceil(K/100 * n)`` are kept, at least one (int64 for a tensor of
    counts; an int for an int)."""
    if torch.is_tensor(n):
        return torch.ceil(k / 100.0 * n.to(torch.float64) - 1e-9).clamp_min(1.0).long()
    return max(1, math.ceil(k / 100.0 * n - 1e-9))


class LabelTopKDiceSums(torch.autograd.Function):
    """TopK Dice's sums in label mode (Hosseini, eq. 5-7), and CE's, from the logits, with a hand-written backward.

    ``apply(logits (B, C, N), labels (B, 1, N), mask (B, 1, N) or None, counted (B, N), counts (B, C), eps (1, N),
    k, first, eps_scale, with_ce)`` returns, with ``p = m softmax(logits)`` (m the mask), ``l`` each voxel's label
    and ``kept`` / ``dropped`` the selection of ``dropped_by_label`` on ``TP = p_l + eps``, per sample and class
    c >= ``first``::

        numerator[b, c] = 2 sum_{l = c} kept p_c                          (2 sum Yk Pk)
        denominator[b, c] = sum_{l = c} kept + sum p_c^2 - sum_{l = c} dropped p_c^2   (sum Yk^2 + sum Pk^2)
        nll = -sum m ln p_l                                               (with_ce; else 0)

    Backward, per voxel, with upstream ``g_num``, ``g_den``, ``g_nll`` and ``a = 2 (kept g_num[l] - dropped
    g_den[l] p_l)`` (0 outside the counted voxels)::

        d/dx_j = p_j (2 g_den[j] p_j - S + g_nll) + [j = l] (p_l a - m g_nll),   S = 2 sum_c g_den[c] p_c^2 + p_l a

    (the softmax Jacobian ``p_j (G_j - sum_c p_c G_c)`` of ``G_c = 2 g_den[c] p_c + [c = l] a``, plus CE's
    ``m (p_j - [j = l])``; m is 0 or 1). Memory passes matter more than flops on the CPU: one full-size buffer
    forward (the softmax, kept for the backward; the log-softmax of CE turned into it in place) and one backward
    (the gradient, built in place); the per-voxel terms are (B, N).
    """

    @staticmethod
    def forward(ctx, logits, labels, mask, counted, counts, eps, k, first, eps_scale, with_ce):
        batch, channels, _ = logits.shape
        if with_ce:
            log_p = torch.log_softmax(logits, 1)
            log_p_own = pick(log_p, labels[:, 0])
            nll = -sum_of_products(log_p_own, mask)
            p, p_own = log_p.exp_(), log_p_own.exp_()  # P^c at the voxels of class c: the same exp, no 2nd gather
        else:
            p = torch.softmax(logits, 1)
            p_own, nll = pick(p, labels[:, 0]), logits.new_zeros(())
        if mask is not None:
            p.mul_(mask)
            p_own.mul_(mask[:, 0])
        if k >= 100.0:
            dropped = torch.zeros_like(counted)
        else:
            dropped = topk_selection.dropped_by_label((p_own + eps).float(), labels[:, 0], counted, counts,
                                                      kept_count(counts, k), first, eps_scale)
        kept = (counted & ~dropped).to(p.dtype)
        dropped = dropped.to(p.dtype)

        def per_class(values):  # sum over the voxels of each counted class, (B, C - first); values 0 if uncounted
            return sum_by_label(values, labels[:, 0], channels)[:, first:]

        numerator = 2.0 * per_class(kept * p_own)
        # sum Yk^2 + sum Pk^2 = kept + sum P^2 - dropped P^2, with kept = counts - dropped: one sum over the dropped
        denominator = (counts[:, first:].to(p.dtype) + torch.linalg.vecdot(p, p)[:, first:]
                       - per_class(p_own.square().add_(1.0).mul_(dropped)))
        ctx.save_for_backward(p, labels, mask, kept, dropped, p_own)
        ctx.first = first
        return numerator, denominator, nll

    @staticmethod
    def backward(ctx, g_num, g_den, g_nll):
        p, labels, mask, kept, dropped, p_own = ctx.saved_tensors
        channels = p.shape[1]
        pad = (ctx.first, channels - ctx.first - g_num.shape[1])
        g_num, g_den = nn.functional.pad(g_num, pad), nn.functional.pad(g_den, pad)  # (B, C), 0 for uncounted
        own = labels[:, 0]
        a = 2.0 * (kept * pick(g_num, own) - dropped * pick(g_den, own) * p_own)
        grad = p * (2.0 * g_den).unsqueeze(-1)
        grad.mul_(p)  # 2 g_den[j] p_j^2
        s = grad.sum(1).addcmul_(p_own, a)
        grad.addcmul_(p, (g_nll - s).unsqueeze(1))
        own_term = p_own * a - (g_nll if mask is None else g_nll * mask[:, 0])
        grad.scatter_add_(1, labels, own_term.unsqueeze(1))
        return grad, None, None, None, None, None, None, None, None, None


def pick(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, N): each voxel's entry of its own label, ``values[b, labels[b, n], n]`` from (B, C, N) ``values``, or
    ``values[b, labels[b, n]]`` from a small (B, C) table; ``labels`` (B, N). A ``gather``."""
    return values.gather(1, labels) if values.ndim == 2 else values.gather(1, labels.unsqueeze(1))[:, 0]
