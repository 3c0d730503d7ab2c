"""Cost of the RW maps, each figure a ratio measured in the same run:

(a) precompute throughput of `precompute-maps` (edt, one multi-label pass) against the RW paper code's method
    (scipy's Euclidean distance transform per class per case), 2D per-slice and 3D;  goal >= 30x
(b) data loader batches per second with maps (precomputed; online) as a ratio to nnU-Net's stock loader with the
    same augmentation, 2D and 3D, single process;  goal >= 0.9x
(c) bytes of the stored maps as a fraction of the preprocessed images;  goal <= 15%

    python benchmarks/maps.py            # full sizes (a few minutes on 2 CPU cores)
    python benchmarks/maps.py --quick    # small sizes, a smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt, gaussian_filter

from nnunet_losses.nnunet.precompute import (
    QUANTISATION, compute_case_map, dequantise, map_file, maps_folder, precompute_maps)

NUM_CLASSES = 4


def blobs(shape, seed, smooth=4.0):
    """Irregular classes of very different sizes (background largest)."""
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=(NUM_CLASSES,) + shape), (0,) + (smooth,) * len(shape))
    field /= field.std()
    field += np.array([1.0, 0.0, -0.3, -0.6]).reshape((-1,) + (1,) * len(shape))
    return np.argmax(field, 0).astype(np.int16)


def image_for(labels, seed):
    rng = np.random.default_rng(seed)
    return (labels * 40.0 + rng.normal(0, 30, labels.shape)).astype(np.float32)


# ------------------------------------------------------------------------------------------- (a) precompute
def scipy_rrw(labels, spacing):
    out = np.zeros(labels.shape, np.float32)
    for k in range(NUM_CLASSES):
        inside = labels == k
        if inside.any():
            d = distance_transform_edt(inside, sampling=spacing)
            out[inside] = d[inside] / d[inside].max()
    return out[None]


def scipy_boundary(labels, spacing):
    out = np.zeros((NUM_CLASSES,) + labels.shape, np.float32)
    for k in range(NUM_CLASSES):
        pos = labels == k
        if pos.any():
            neg = ~pos
            out[k] = distance_transform_edt(neg, sampling=spacing) * neg - (
                distance_transform_edt(pos, sampling=spacing) - 1) * pos
    return out


def reference(seg, kind, is_2d, spacing):
    fn = scipy_rrw if kind == "rrw" else scipy_boundary
    labels = seg[0]
    if is_2d:
        return np.stack([fn(labels[z], spacing[-2:]) for z in range(labels.shape[0])], 1)
    return fn(labels, spacing)


def bench_precompute(seg, is_2d, spacing, repeats):
    rows = []
    for kind in ("rrw", "boundary"):
        compute_case_map(seg, kind, NUM_CLASSES, is_2d, spacing)
        t0 = time.perf_counter()
        for _ in range(repeats):
            ours = compute_case_map(seg, kind, NUM_CLASSES, is_2d, spacing)
        t_ours = (time.perf_counter() - t0) / repeats
        t0 = time.perf_counter()
        ref = reference(seg, kind, is_2d, spacing)
        t_ref = time.perf_counter() - t0
        rows.append({"kind": kind, "ours_s": t_ours, "scipy_s": t_ref, "speedup": t_ref / t_ours,
                     "max_abs_diff": float(np.abs(ours - ref).max())})
    return rows


# ----------------------------------------------------------------------------------------------- (b) loader
def write_cases(folder, cases, patch):
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2

    os.makedirs(folder, exist_ok=True)
    for name, (image, seg) in cases.items():
        props = {"class_locations": DefaultPreprocessor._sample_foreground_locations(seg, [1, 2, 3], seed=1),
                 "spacing": [1.0] * (seg.ndim - 1), "shape_before_cropping": seg.shape[1:],
                 "bbox_used_for_cropping": [[0, s] for s in seg.shape[1:]],
                 "shape_after_cropping_and_before_resampling": seg.shape[1:]}
        blocks, chunks = comp_blosc2_params(image.shape, tuple(patch), image.itemsize)
        blocks_s, chunks_s = comp_blosc2_params(seg.shape, tuple(patch), seg.itemsize)
        nnUNetDatasetBlosc2.save_case(image, seg, props, os.path.join(folder, name), chunks=chunks, blocks=blocks,
                                      chunks_seg=chunks_s, blocks_seg=blocks_s)


def loader(folder, patch, batch_size, mode, kind="rrw"):
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    from nnunet_losses.nnunet.map_transform import AttachMapsTransform
    from nnunet_losses.nnunet.precomputed_loading import (
        MapDataset, PrecomputedMapsToTargetTransform, SplitMapChannelsTransform)

    lm = LabelManager({"background": 0, "a": 1, "b": 2, "c": 3}, None)
    dim = len(patch)
    scales = [[1.0 / 2 ** i] * dim for i in range(4)]
    transforms = nnUNetTrainer.get_training_transforms(
        tuple(patch), (-np.pi / 6, np.pi / 6), scales, tuple(range(dim)), False, foreground_labels=[1, 2, 3])
    data = nnUNetDatasetBlosc2(folder)
    if mode == "precomputed":
        data = MapDataset(data, kind)
        transforms.transforms.insert(0, SplitMapChannelsTransform(1 if kind == "rrw" else NUM_CLASSES))
        transforms.transforms.append(PrecomputedMapsToTargetTransform(kind, NUM_CLASSES))
    elif mode == "online":
        transforms.transforms.append(AttachMapsTransform(kind, NUM_CLASSES))
    return nnUNetDataLoader(data, batch_size, tuple(patch), tuple(patch), lm, 0.33, transforms=transforms)


def bench_loader(folder, patch, batch_size, batches):
    rows = {}
    torch.set_num_threads(1)  # nnU-Net's workers run single-threaded
    for mode in ("stock", "precomputed", "online"):
        dl = loader(folder, patch, batch_size, mode)
        np.random.seed(0)
        torch.manual_seed(0)
        dl.generate_train_batch()  # warm-up
        t0 = time.perf_counter()
        for _ in range(batches):
            dl.generate_train_batch()
        rows[mode] = batches / (time.perf_counter() - t0)
    torch.set_num_threads(os.cpu_count() or 1)
    return {mode: {"batches_per_s": v, "ratio": v / rows["stock"]} for mode, v in rows.items()}


# ------------------------------------------------------------------------------------------------ (c) bytes
def bytes_fraction(folder):
    images = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
                 if f.endswith(".b2nd") and not f.endswith("_seg.b2nd"))
    mf = maps_folder(folder)
    out = {}
    for kind in QUANTISATION:
        size = sum(os.path.getsize(os.path.join(mf, f)) for f in os.listdir(mf) if f.endswith(f"_{kind}.b2nd"))
        out[kind] = size / images
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per loader (default 20)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        setups = {"2d": dict(case_shape=(12, 96, 96), cases=3, patch=(96, 96), batch=4, spacing=(3.0, 1.0, 1.0)),
                  "3d": dict(case_shape=(40, 48, 48), cases=2, patch=(32, 32, 32), batch=2, spacing=(2.0, 1.0, 1.0))}
        batches = min(args.batches, 5)
    else:
        setups = {"2d": dict(case_shape=(24, 256, 256), cases=4, patch=(256, 256), batch=12,
                             spacing=(5.0, 1.0, 1.0)),
                  "3d": dict(case_shape=(96, 160, 160), cases=3, patch=(96, 128, 128), batch=2,
                             spacing=(2.0, 1.0, 1.0))}
        batches = args.batches
    results = {}
    root = tempfile.mkdtemp(prefix="nnunet_losses_maps_bench_")
    try:
        for dim, st in setups.items():
            is_2d = dim == "2d"
            cases = {}
            for i in range(st["cases"]):
                seg = blobs(st["case_shape"], i, smooth=6.0 if not is_2d else 8.0)[None]
                cases[f"case_{i}"] = (image_for(seg, i), seg)
            spacing = st["spacing"]
            folder = os.path.join(root, dim, "nnUNetPlans_" + dim)
            write_cases(folder, cases, st["patch"])
            print(f"# {dim}: {st['cases']} cases of {st['case_shape']}, spacing {spacing}, "
                  f"{'per-slice 2D' if is_2d else '3D'} maps", flush=True)
            pre = bench_precompute(next(iter(cases.values()))[1], is_2d, spacing, 2)
            for row in pre:
                print(f"  (a) {row['kind']:8s}: ours {row['ours_s'] * 1e3:8.1f} ms/case, scipy per class "
                      f"{row['scipy_s'] * 1e3:8.1f} ms/case -> {row['speedup']:.1f}x (goal >= 30x); "
                      f"max |diff| {row['max_abs_diff']:.2e}", flush=True)
            precompute_maps(folder, ["rrw", "boundary"], NUM_CLASSES, is_2d, spacing, progress=False)
            stored = dequantise(np.asarray(__import__("blosc2").open(
                urlpath=map_file(maps_folder(folder), "case_0", "rrw"))[...]), "rrw")
            exact = compute_case_map(cases["case_0"][1], "rrw", NUM_CLASSES, is_2d, spacing)
            sizes = bytes_fraction(folder)
            for kind, frac in sizes.items():
                print(f"  (c) {kind:8s}: maps = {100 * frac:.1f}% of the preprocessed images (goal <= 15%)")
            print(f"      rrw quantisation error: max {np.abs(stored - exact).max():.4f}")
            ld = bench_loader(folder, st["patch"], st["batch"], batches)
            for mode, row in ld.items():
                print(f"  (b) loader {mode:11s}: {row['batches_per_s']:.2f} batches/s -> {row['ratio']:.2f}x "
                      f"of stock (goal >= 0.9x) [batch {st['batch']}, patch {st['patch']}]", flush=True)
            results[dim] = {"precompute": pre, "bytes": sizes, "loader": ld, "setup": {k: str(v) for k, v in st.items()}}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
