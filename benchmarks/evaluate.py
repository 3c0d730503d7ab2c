"""Surface-distance metrics per case: ours (``metrics.class_metrics``) against medpy, with equal values.

    python benchmarks/evaluate.py            # ~1 minute on 2 cores
    python benchmarks/evaluate.py --quick    # smaller volumes

Per case = one label volume with three foreground classes (smooth random blobs of about 20%, 5% and 1% of the
volume). For every class both tools compute HD, HD95 and ASSD; medpy is timed two ways: the three public calls
(``hd``, ``hd95``, ``assd``: what a user writes, each computing both directions' surface distances again) and its
cheapest possible use (both directions once, all three metrics derived from them). Ours computes every metric of
``metrics.case`` (counts, Dice, IoU, FPR/FNR, precision/recall, volumes, HD, HD95, ASSD). The largest relative
difference of the three distances is printed. Goal: ours >= 5x faster than medpy's public calls.
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


def medpy_cheapest(pred, ref, spacing):
    surface = getattr(medpy_binary, "__surface_distances")
    forward, backward = surface(pred, ref, spacing, 1), surface(ref, pred, spacing, 1)
    pooled = np.concatenate([forward, backward])
    return max(forward.max(), backward.max()), np.percentile(pooled, 95), pooled.mean()


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=3, help="cases per shape (default 3)")
    parser.add_argument("--quick", action="store_true", help="half-size volumes")
    args = parser.parse_args(argv)
    print(f"{platform.processor() or platform.machine()}, numpy {np.__version__}")
    print("| data | cases | ours s/case | medpy hd+hd95+assd s/case | ratio | medpy cheapest s/case | ratio | "
          "max rel. diff |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (shape, spacing) in SHAPES.items():
        if args.quick:
            shape = tuple(max(1, s // 2) for s in shape)
        ours_t = public_t = cheap_t = 0.0
        worst = 0.0
        for case in range(args.cases):
            ref = make_case(shape, case)
            pred = perturb(ref, 1000 + case)
            for label in (1, 2, 3):
                p, r = pred == label, ref == label
                t, row = timed(class_metrics, p, r, spacing)
                ours_t += t
                t, public = timed(medpy_public, p, r, spacing)
                public_t += t
                t, cheap = timed(medpy_cheapest, p, r, spacing)
                cheap_t += t
                ours = np.array([row["hd"], row["hd95"], row["assd"]])
                worst = max(worst, float(np.max(np.abs(ours - public) / np.maximum(np.abs(public), 1e-12))),
                            float(np.max(np.abs(np.array(cheap) - public) / np.maximum(np.abs(public), 1e-12))))
        n = args.cases
        print(f"| {name} {shape} | {n} | {ours_t / n:.3f} | {public_t / n:.3f} | {public_t / ours_t:.1f}x | "
              f"{cheap_t / n:.3f} | {cheap_t / ours_t:.1f}x | {worst:.1e} |")


if __name__ == "__main__":
    main()
