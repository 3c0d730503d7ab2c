"""TopK Dice loss: Hosseini, "TopK Dice Loss for Medical Image Segmentation" (004), eq. (1)-(7).

Per sample and per class c present in the sample::

    TP^c = Y^c * (P^c + eps)                            (2)  eps: fixed random perturbation, shared by all classes
    keep the K% foreground voxels of c with the lowest TP^c (the hardest), drop the rest    (3)-(4)
    Yk^c = Y^c * keep,  Pk^c = P^c * (1 - ignore^c)     (5)-(6)  (P^c outside the foreground is kept)
    L = 1 - (1/C) sum_c 2 sum Yk Pk / (sum Yk^2 + sum Pk^2)   (7), C = classes present in the sample
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from ._common import DecodedTarget, _numel, decode_target, float32_forward, masked


class TopKDiceLoss(nn.Module):
    """TopK Dice (Hosseini, eq. 7): squared-denominator Dice on the K% hardest foreground voxels of each class.

    Choices where the paper is silent (documented in the README):

    * classes: the foreground classes present in the sample (``include_background=False``, default); background
      can be included. A sample with no present class adds nothing; the loss is the mean over the samples that have
      at least one present class (0, still differentiable, when none has).
    * count kept: ``ceil(K/100 * n_c)`` of the n_c foreground voxels (at least one), the ones with the lowest
      ``TP^c``; the paper ignores ``TP^c > t^c`` with ``t^c`` the D^c-th highest value, D^c = (1 - K/100) n_c.
    * eps: uniform in [0, ``eps_scale``) from a seeded counter-based hash of the voxel index (``perturbation``),
      the same for every class, sample and device (the paper: "generated once, not changed during training, the
      same for all classes"); the selection is done without gradient.
    * selection, on every device with no host sync and no Python loop: in label mode one sort per sample of
      (class, TP) keys (``dropped_by_label``: each voxel has one class); with multi-hot region targets one batched
      ``topk`` over all (sample, class) rows (``keep_mask``). Both keep the same set.
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

        Each (sample, class) row drops its foreground voxels above the row's threshold, the ``n_keep``-th smallest
        TP^c of its foreground (ties at the threshold are all kept). One batched ``topk`` over all rows, the other
        voxels at +inf, gives the thresholds: ``ceil(K/100 * voxels)`` candidates suffice (no row keeps more). No
        host sync and no Python loop on any device; on the CPU about 2x slower than a per-row ``kthvalue`` on the
        gathered foreground, which needs the row counts on the host (BENCHMARKS.md).
        """
        if self.k >= 100.0:
            return torch.ones_like(y, dtype=probs.dtype)
        batch, channels = y.shape[:2]
        eps = self.perturbation(probs.shape[2:], probs.device).reshape(-1)
        fg = (y > 0.5).reshape(batch * channels, -1)
        tp = probs.reshape(batch * channels, -1) + eps  # TP^c = Y^c (P^c + eps) on the class's voxels
        n_keep = torch.ceil(self.k / 100.0 * fg.sum(-1, dtype=torch.float64) - 1e-9).clamp_min(1.0).long()
        candidates = math.ceil(self.k / 100.0 * fg.shape[-1] - 1e-9)
        lowest = torch.where(fg, tp, torch.full_like(tp, float("inf"))).topk(candidates, -1, largest=False)
        threshold = lowest.values.gather(-1, (n_keep.clamp_max(candidates) - 1).unsqueeze(-1))
        keep = ~(fg & (tp > threshold))
        return keep.reshape(y.shape).to(probs.dtype)

    @torch.no_grad()
    def dropped_by_label(self, tp: torch.Tensor, bucket: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Label mode: True for the foreground voxels eq. (3)-(4) drop, the same set as ``keep_mask`` (ties kept).

        ``tp`` (B, N): ``P + eps`` of each voxel's own class; ``bucket`` (B, N): its class, or ``C`` where it counts
        for no class (background without ``include_background``, ignored); ``counts`` (B, C + 1): voxels per bucket.
        Each voxel belongs to one class, so one sort per sample of the int64 keys ``bucket << 32 | bits(tp)`` (the
        bits of a float >= 0 order as its values; one key for all of bucket C) lays out every class's TP in order,
        and the ``n_keep``-th smallest of class c sits at its offset ``sum_{c' < c} counts + n_keep - 1``: no
        per-class rows, no host sync.
        """
        no_class = counts.shape[1] - 1
        key = (bucket << 32) | tp.view(torch.int32).to(torch.int64)
        key = torch.where(bucket < no_class, key, no_class << 32)  # one value for the rest: a much cheaper sort
        ordered = torch.sort(key, dim=-1).values
        n_keep = torch.ceil(self.k / 100.0 * counts.to(torch.float64) - 1e-9).clamp_min(1.0).long()
        position = (counts.cumsum(1) - counts + n_keep - 1).clamp_max(key.shape[1] - 1)
        threshold = ordered.gather(1, position)  # (B, C + 1); meaningless for an empty bucket, which has no voxel
        return key > threshold.gather(1, bucket)  # False for the rest: their key is their bucket's threshold

    def _label_sums(self, probs: torch.Tensor, tgt: DecodedTarget):
        """Eq. (5)-(7)'s sums per (sample, class) from the softmax and the labels, without a one-hot."""
        batch, channels = probs.shape[:2]
        p = masked(probs, tgt.mask).reshape(batch, channels, -1)
        labels = tgt.labels.reshape(batch, -1)
        p_own = p.gather(1, labels.unsqueeze(1))[:, 0]  # P^c at the voxels of class c
        first = 0 if self.include_background else 1
        counted = labels >= first
        if tgt.mask is not None:
            counted = counted & (tgt.mask.reshape(batch, -1) > 0)
        bucket = torch.where(counted, labels, channels)
        counts = torch.zeros(batch, channels + 1, dtype=torch.int64, device=labels.device).scatter_add_(
            1, bucket, torch.ones_like(bucket))
        if self.k >= 100.0:
            dropped = torch.zeros_like(counted)
        else:
            eps = self.perturbation(probs.shape[2:], probs.device).reshape(1, -1)
            dropped = self.dropped_by_label(p_own.detach() + eps, bucket, counts)
        kept = (counted & ~dropped).to(p.dtype)

        def per_class(values):  # sum over the voxels of each class, (B, C) without the non-class bucket
            return torch.zeros(batch, channels + 1, dtype=p.dtype, device=p.device).scatter_add(
                1, bucket, values)[:, first:channels]

        numerator = 2.0 * per_class(kept * p_own)  # sum Yk Pk
        # sum Yk^2 + sum Pk^2: Pk = P except at the dropped voxels of the class
        denominator = per_class(kept) + (p * p).sum(-1)[:, first:] - per_class(dropped.to(p.dtype) * p_own * p_own)
        return numerator, denominator, counts[:, first:channels] > 0

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
        return self.from_sums(*self._label_sums(torch.softmax(logits, 1), tgt))

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
        """Label mode: both terms from one decoding and one log-softmax (TopK Dice's P = exp(ln P))."""
        tgt = decode_target(logits, target, regions=False, ignore_label=self.ignore_label, name="CE + TopK Dice",
                            onehot=False)
        log_p = torch.log_softmax(logits, 1)
        labels = tgt.labels if tgt.mask is None else torch.where(tgt.mask[:, 0] > 0, tgt.labels, -100)
        n_valid = tgt.valid_count().clamp_min(1.0)  # all ignored: the sums are 0, and so is the loss
        ce = nn.functional.nll_loss(log_p, labels, ignore_index=-100, reduction="sum") / n_valid
        dice = self.topk_dice.from_sums(*self.topk_dice._label_sums(log_p.exp(), tgt))
        return self.weight_ce * ce + self.weight_dice * dice
