"""Speeds up TopK Dice (``losses/topk.py``, Hosseini eq. 3-4): finding the dropped voxels of every (sample, class)
at once, on every device, with no loop over rows and no host sync. Measured in BENCHMARKS.md, "Loss cost, eager"
(the bullets "TopK Dice, label mode" and "TopK Dice's selection alone", ``benchmarks/topk_selection.py``).

What is kept is defined in topk.py: per (sample, class), the ``n_keep`` foreground voxels with the lowest TP, every
voxel tied with the ``n_keep``-th kept too. Both functions below find that set:

* :func:`dropped_by_label` (label targets: each voxel has one class): one sort per sample of integer (class, TP) keys;
* :func:`nth_lowest_in_rows` (multi-hot region targets: a voxel may be in several classes): the lowest values of all
  (sample, class) rows at once.

On the CPU both sort with numpy (:func:`sorted_rows`, a custom operator): its SIMD quicksort (x86-simd-sort with
AVX2 / AVX-512) is 4-30x faster there than torch's sorts, radix or comparison, with the same values (BENCHMARKS.md,
Loss cost, eager: "TopK Dice, label mode"); it is what lets eager CPU TopK Dice meet its cost goal. Elsewhere:
``torch.sort`` and ``topk``.
"""
from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def dropped_by_label(tp: torch.Tensor, labels: torch.Tensor, counted: torch.Tensor, counts: torch.Tensor,
                     n_keep: torch.Tensor, first: int, eps_scale: float) -> torch.Tensor:
    """Label mode: True for the counted voxels above their class's threshold (the ``n_keep``-th smallest TP of the
    class in the sample; ties kept), the same set as ``TopKDiceLoss.keep_mask``.

    ``tp`` (B, N) float32 >= 0: ``P + eps`` of each voxel's own class; ``labels`` (B, N) its class; ``counted``
    (B, N) bool: the voxel counts for its class (False for the background when ``first`` = 1 and for ignored voxels);
    ``counts`` (B, C): counted voxels per class; ``n_keep`` (B, C) int64 >= 1: voxels kept per class. Each voxel
    belongs to one class, so one sort per sample of the integer keys ``(1 + class - first, bits(tp))`` of the counted
    voxels, 0 for the others (the bits of a float >= 0 order as its values), lays out every class's TP in order after
    the others, and the ``n_keep``-th smallest of class c sits at ``uncounted + sum_{first <= c' < c} counts +
    n_keep - 1``: no per-class rows, no host sync. The keys are int32 when at most 3 classes count and TP < 2
    (``eps_scale`` < 1: its bits fit 30), int64 otherwise; they are built by arithmetic (no ``where``: slow on the
    CPU).
    """
    channels = counts.shape[1]
    if channels - first < 4 and eps_scale < 1.0:  # 2 bits of class code above the 30 bits of TP < 2
        code = ((labels.to(torch.int32) + (1 - first)) << 30) | tp.view(torch.int32)
        # 0 for the uncounted; the sign bit flipped, so that int32 order is the order of the unsigned codes
        key = (code * counted) ^ torch.iinfo(torch.int32).min
    else:
        key = (((labels + (1 - first)) << 32) | tp.view(torch.int32).to(torch.int64)) * counted
    uncounted = key.shape[1] - counts.sum(1, keepdim=True)
    position = (uncounted + counts.cumsum(1) - counts + n_keep - 1).clamp_max(key.shape[1] - 1)
    threshold = sorted_rows(key).gather(1, position)  # (B, C); meaningless for a class without counted voxels
    # False for the uncounted: their key is the smallest there is
    return key > threshold.gather(1, labels)


@torch.no_grad()
def nth_lowest_in_rows(tp: torch.Tensor, y: torch.Tensor, n_keep: torch.Tensor, most: int,
                       eps_scale: float) -> torch.Tensor:
    """(R, 1): the ``n_keep``-th smallest ``tp`` of each row's foreground, for (R, N) ``tp`` (``P + eps`` < 1 +
    ``eps_scale``), (R, N) ``y`` (1 on the foreground, else 0) and (R,) ``n_keep``, at most ``most``.

    The ``most`` lowest values of every row, its other voxels ranked after its foreground (``tp + (1 - y) (2 + 2
    eps_scale)``, by arithmetic: ``where`` is slow on CPUs), hold every row's threshold (:func:`lowest_per_row`).
    """
    ranked = torch.add(tp, 1.0 - y, alpha=2.0 + 2.0 * eps_scale)
    return lowest_per_row(ranked, most).gather(-1, (n_keep.clamp_max(most) - 1).unsqueeze(-1))


def lowest_per_row(values: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` lowest values of each row of (B, N) ``values``, in ascending order: from ``sorted_rows`` on the
    CPU, where numpy's full sort costs less than torch's ``topk``, else ``topk``."""
    if values.device.type == "cpu":
        return sorted_rows(values)[:, :count]
    return values.topk(count, -1, largest=False).values


def sorted_rows(key: torch.Tensor) -> torch.Tensor:
    """The rows of a (B, N) ``key`` (integers or floats), each sorted: numpy's sort on the CPU (a CPU tensor and its
    numpy array share memory, so nothing waits on a device), ``torch.sort`` on other devices.

    The custom operator ``nnunet_losses::sorted_rows``: ``torch.compile`` keeps it as one call in the graph (its fake
    implementation gives the shape), so a compiled graph sorts as eager does (numpy on the CPU, tested).
    """
    return torch.ops.nnunet_losses.sorted_rows(key)


@torch.library.custom_op("nnunet_losses::sorted_rows", mutates_args=())
def _sorted_rows(key: torch.Tensor) -> torch.Tensor:
    if key.device.type == "cpu":
        return torch.from_numpy(np.sort(key.numpy(), axis=-1))
    return torch.sort(key, dim=-1).values


@_sorted_rows.register_fake
def _sorted_rows_shape(key: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(key)
