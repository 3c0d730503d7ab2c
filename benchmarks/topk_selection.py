"""TopK Dice's selection: the loss's two paths against a per-row loop, in one run.

    python benchmarks/topk_selection.py [--device cpu|cuda] [--k 30]

``per-row``: one ``kthvalue`` per (sample, class) on its foreground voxels (it reads the row counts on the host,
``.tolist()``, so the loss does not use it; it is kept here as the reference). ``region path``:
the K% lowest of all (sample, class) rows at once (``TopKDiceLoss.keep_mask``: numpy's sort on the CPU, ``topk``
elsewhere). ``label sort``: one sort per sample of (class, TP) keys (``TopKDiceLoss.dropped_by_label``, the
label-mode path). All three keep the same voxels (checked here and in the tests). Inputs: softmax probabilities of 4 channels (background dropped) and random
labels (``--background`` sets the background share; default: uniform, 25%), 2D (12, 3, 256, 256) and 3D
(2, 3, 96, 96, 96). Best of 5 calls after a warm-up.
"""
from __future__ import annotations

import argparse
import time

import torch

from loss_cost import random_labels
from nnunet_losses.losses.topk import TopKDiceLoss


def per_row_thresholds(tp, fg, n_keep):
    """(rows, 1): the ``n_keep``-th smallest ``tp`` of each row's foreground, +inf where the row keeps all of it."""
    threshold = torch.full((tp.shape[0], 1), float("inf"), dtype=tp.dtype, device=tp.device)
    for row, (n, k) in enumerate(zip(fg.sum(-1).tolist(), n_keep.tolist())):
        if k < n:
            threshold[row] = tp[row][fg[row]].kthvalue(k).values
    return threshold


def best_of(fn, device, repeats=5):
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--k", type=float, default=30.0)
    parser.add_argument("--background", type=float, default=None,
                        help="share of background voxels (default: labels uniform over the 4 classes)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    print(f"| shape | background | per-row ms | region path ms | label sort ms | region / per-row | sort / per-row |  "
          f"(device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, K = {args.k})")
    print("|---|---|---|---|---|---|---|")
    for shape in [(12, 3, 256, 256), (2, 3, 96, 96, 96)]:
        batch, channels, spatial = shape[0], shape[1] + 1, shape[2:]
        probs = torch.softmax(torch.randn((batch, channels) + spatial, generator=g), 1)
        labels = random_labels((batch,) + spatial, channels, g, args.background)
        y = torch.nn.functional.one_hot(labels, channels).movedim(-1, 1)[:, 1:].float()
        probs, y, labels = probs.to(device), y.to(device), labels.to(device)
        loss = TopKDiceLoss(k=args.k)
        eps = loss.perturbation(spatial, device).reshape(-1)
        fg = (y > 0.5).reshape(batch * shape[1], -1)
        tp = probs[:, 1:].reshape(batch * shape[1], -1) + eps
        n_keep = torch.ceil(args.k / 100.0 * fg.sum(-1, dtype=torch.float64) - 1e-9).clamp_min(1.0).long()
        # the label path's inputs: each voxel's own-class TP, whether it counts (not the background), class counts
        flat = labels.reshape(batch, -1)
        counted = flat > 0
        tp_own = probs.reshape(batch, channels, -1).gather(1, flat.unsqueeze(1))[:, 0] + eps
        counts = torch.zeros(batch, channels, dtype=torch.int64, device=device).scatter_add_(
            1, flat, counted.long())
        per_row = per_row_thresholds(tp.cpu(), fg.cpu(), n_keep.cpu())
        dropped_rows = (fg & (tp > per_row.to(device))).reshape(batch, shape[1], -1)
        kept = loss.keep_mask(probs[:, 1:], y)
        assert torch.equal(kept.reshape(dropped_rows.shape) < 0.5, dropped_rows), \
            "the region path disagrees with the per-row reference"
        dropped_sort = loss.dropped_by_label(tp_own, flat, counted, counts)
        assert torch.equal(dropped_rows.any(1), dropped_sort), "the label sort disagrees with the per-row reference"
        t_row = best_of(lambda: per_row_thresholds(tp, fg, n_keep), device)
        t_batched = best_of(lambda: loss.keep_mask(probs[:, 1:], y), device)
        t_sort = best_of(lambda: loss.dropped_by_label(tp_own, flat, counted, counts), device)
        share = float((labels == 0).float().mean())
        print(f"| {shape} | {share:.0%} | {t_row * 1e3:.1f} | {t_batched * 1e3:.1f} | {t_sort * 1e3:.1f} | "
              f"{t_batched / t_row:.1f}x | {t_sort / t_row:.1f}x |")


if __name__ == "__main__":
    main()
