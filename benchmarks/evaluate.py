"""Surface-distance metrics per case: ours (``metrics.class_metrics``) against medpy, with equal values.

    python benchmarks/evaluate.py                       # ~4 minutes on 2 cores
    python benchmarks/evaluate.py --only ACDC --cases 5  # the thin volume only
    python benchmarks/evaluate.py --quick               # smaller volumes

Per case = one label volume with three foreground classes (smooth random blobs of about 20%, 5% and 1% of the
volume). Ours computes every metric of ``metrics.case`` per class (counts, Dice, IoU, FPR/FNR, precision/recall,
volumes, HD, HD95 pooled, HD95 max-directed, ASSD, NSD at 1 mm). medpy is timed two ways: its three public calls
(``hd``, ``hd95``, ``assd``: what a user writes, each computing both directions' surface distances again; medpy has
no max-directed HD95 and no NSD) and its cheapest possible use (both directions once, and all five distance metrics,
HD95 max-directed and NSD included, derived from them). The largest relative difference of the five distance
metrics against medpy's directed distances is printed. Goal: ours >= 5x faster than medpy's public calls.
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from medpy.metric import binary as medpy_binary
from scipy import ndimage

from nnunet_losses.metrics import class_metrics

SHAPES = {  # (z, y, x) and spacing, like the papers' data
    "ACDC-like 2D-sliced MRI": ((10, 224, 224), (10.0, 1.5, 1.5)),
    "BraTS-like MRI": ((96, 160, 128), (1.0, 1.0, 1.0)),
    "KiTS19-like CT (256x256 slices)": ((64, 256, 256), (3.0, 1.6, 1.6)),
}


def make_case(shape, seed):
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint8)
    for label, quantile in ((1, 80), (2, 95), (3, 99)):
        field = ndimage.gaussian_filter(rng.random(shape, dtype=np.float32), 4)
        labels[field > np.percentile(field, quantile)] = label
    return labels


def perturb(labels, seed):
    rng = np.random.default_rng(seed)
    shift = tuple(int(s) for s in rng.integers(-2, 3, labels.ndim))
    out = np.roll(labels, shift, axis=tuple(range(labels.ndim)))
    out[ndimage.gaussian_filter(rng.random(labels.shape, dtype=np.float32), 3) > 0.52] = 0
    return out


def medpy_public(pred, ref, spacing):
    return (medpy_binary.hd(pred, ref, spacing), medpy_binary.hd95(pred, ref, spacing),
            medpy_binary.assd(pred, ref, spacing))


def medpy_cheapest(pred, ref, spacing, tolerance=1.0):
    """hd, hd95, hd95_max, assd, nsd from medpy's two directed surface distance sets."""
    surface = getattr(medpy_binary, "__surface_distances")
    forward, backward = surface(pred, ref, spacing, 1), surface(ref, pred, spacing, 1)
    pooled = np.concatenate([forward, backward])
    return (pooled.max(), np.percentile(pooled, 95), max(np.percentile(forward, 95), np.percentile(backward, 95)),
            pooled.mean(), np.mean(pooled <= tolerance))


def timed(repeats, fn, *args):
    """The fastest of ``repeats`` calls (robust to other jobs on a shared machine) and the output."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=3, help="cases per shape (default 3)")
    parser.add_argument("--quick", action="store_true", help="half-size volumes")
    parser.add_argument("--repeats", type=int, default=3, help="time each call this many times, keep the fastest "
                                                                "(default 3)")
    parser.add_argument("--only", default=None, help="only the data whose name starts with this (e.g. ACDC)")
    args = parser.parse_args(argv)
    print(f"{platform.processor() or platform.machine()}, numpy {np.__version__}")
    print("| data | cases | ours s/case | medpy hd+hd95+assd s/case | ratio | medpy cheapest s/case | ratio | "
          "max rel. diff |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (shape, spacing) in SHAPES.items():
        if args.only and not name.startswith(args.only):
            continue
        if args.quick:
            shape = tuple(max(1, s // 2) for s in shape)
        ours_t = public_t = cheap_t = 0.0
        worst = 0.0
        for case in range(args.cases):
            ref = make_case(shape, case)
            pred = perturb(ref, 1000 + case)
            for label in (1, 2, 3):
                p, r = pred == label, ref == label
                t, row = timed(args.repeats, class_metrics, p, r, spacing)
                ours_t += t
                t, public = timed(args.repeats, medpy_public, p, r, spacing)
                public_t += t
                t, cheap = timed(args.repeats, medpy_cheapest, p, r, spacing)
                cheap_t += t
                ours = np.array([row[m] for m in ("hd", "hd95", "hd95_max", "assd", "nsd")])
                cheap = np.array(cheap)
                worst = max(worst, float(np.max(np.abs(ours - cheap) / np.maximum(np.abs(cheap), 1e-12))),
                            float(np.max(np.abs(cheap[[0, 1, 3]] - public) / np.maximum(np.abs(public), 1e-12))))
        n = args.cases
        print(f"| {name} {shape} | {n} | {ours_t / n:.3f} | {public_t / n:.3f} | {public_t / ours_t:.1f}x | "
              f"{cheap_t / n:.3f} | {cheap_t / ours_t:.1f}x | {worst:.1e} |")


if __name__ == "__main__":
    main()
