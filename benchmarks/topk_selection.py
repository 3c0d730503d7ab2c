"""TopK Dice's selection (``TopKDiceLoss.keep_mask``): the loss's batched path against a per-row loop, in one run.

    python benchmarks/topk_selection.py [--device cpu|cuda] [--k 30]

``per-row``: one ``kthvalue`` per (sample, class) on its foreground voxels (the loss's eager-CPU path until issue
11; it reads the row counts on the host, ``.tolist()``, so it is kept here only as the reference). ``batched``:
one ``topk`` over all rows, what the loss does on every device (no host sync). Both keep the same voxels (checked
here and in tests/test_compile.py). Inputs:
softmax probabilities of 4 channels (background dropped) and random labels, 2D (12, 3, 256, 256) and 3D
(2, 3, 96, 96, 96). Best of 5 calls after a warm-up.
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from nnunet_losses.losses.topk import TopKDiceLoss


def per_row_thresholds(tp, fg, n_keep):
    """(rows, 1): the ``n_keep``-th smallest ``tp`` of each row's foreground, +inf where the row keeps all of it."""
    threshold = torch.full((tp.shape[0], 1), float("inf"), dtype=tp.dtype, device=tp.device)
    for row, (n, k) in enumerate(zip(fg.sum(-1).tolist(), n_keep.tolist())):
        if k < n:
            threshold[row] = tp[row][fg[row]].kthvalue(k).values
    return threshold


def batched_thresholds(tp, fg, n_keep, k):
    candidates = math.ceil(k / 100.0 * fg.shape[-1] - 1e-9)
    lowest = torch.where(fg, tp, torch.full_like(tp, float("inf"))).topk(candidates, -1, largest=False).values
    return lowest.gather(-1, (n_keep.clamp_max(candidates) - 1).unsqueeze(-1))


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
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    print(f"| shape | per-row ms | batched ms | batched / per-row |  (device {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, K = {args.k})")
    print("|---|---|---|---|")
    for shape in [(12, 3, 256, 256), (2, 3, 96, 96, 96)]:
        probs = torch.softmax(torch.randn((shape[0], shape[1] + 1) + shape[2:], generator=g), 1)[:, 1:]
        labels = torch.randint(0, shape[1] + 1, (shape[0],) + shape[2:], generator=g)
        y = torch.nn.functional.one_hot(labels, shape[1] + 1).movedim(-1, 1)[:, 1:].float()
        probs, y = probs.to(device), y.to(device)
        loss = TopKDiceLoss(k=args.k)
        eps = loss.perturbation(shape[2:], device).reshape(-1)
        fg = (y > 0.5).reshape(shape[0] * shape[1], -1)
        tp = probs.reshape(shape[0] * shape[1], -1) + eps
        n_keep = torch.ceil(args.k / 100.0 * fg.sum(-1, dtype=torch.float64) - 1e-9).clamp_min(1.0).long()
        per_row = per_row_thresholds(tp.cpu(), fg.cpu(), n_keep.cpu())
        batched = batched_thresholds(tp, fg, n_keep, args.k)
        assert torch.equal(per_row, batched.cpu()), "the two paths disagree"
        t_row = best_of(lambda: per_row_thresholds(tp, fg, n_keep), device)
        t_batched = best_of(lambda: batched_thresholds(tp, fg, n_keep, args.k), device)
        print(f"| {shape} | {t_row * 1e3:.1f} | {t_batched * 1e3:.1f} | {t_batched / t_row:.1f}x |")


if __name__ == "__main__":
    main()
