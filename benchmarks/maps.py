"""Precomputed RW maps: precompute speed, data loader throughput and disk bytes, as ratios measured in one run.

    python benchmarks/maps.py                 # full run, ~4 minutes on 2 cores (2D: 3 cases (1, 24, 256, 256);
                                              #   3D: 2 cases 128^3)
    python benchmarks/maps.py --quick         # small shapes, a smoke run (< 1 minute)
    python benchmarks/maps.py --json out.json --profile precomputed-boundary

(a) Precompute throughput (cases/s), single process: ours (``compute_case_map``: one multi-label ``edt`` pass for
    RRW, plus one ``edt`` per class for boundary maps) against the RW paper code's method written here (scipy
    ``distance_transform_edt`` per class per case: RRW = -(inside distance of each class / its maximum), +1
    outside; boundary = Kervadec's ``one_hot2dist``, two EDTs per class). Both give the full K-channel map (ours
    rebuilt from the stored form as the loader does); the max absolute difference is printed, for the float32
    maps and for the maps as stored on disk. Per-call EDT times are printed too: they bound the achievable
    speed-up. Goal: ours >= 30x faster.
(b) Data loader throughput (batches/s), single process (``generate_train_batch`` in a loop, torch with 1 thread as
    in nnU-Net's augmentation workers): nnU-Net's stock ``nnUNetDataLoader`` + ``nnUNetTrainer.get_training_transforms``
    (rotation, initial patch size and deep-supervision scales as ``nnUNetTrainer`` computes them) against the same
    with the trainer's ``MapPipeline`` (``nnunet_losses/nnunet/map_pipeline.py``) wrapping the dataset and adding its
    transforms, precomputed (RRW ships the 1-channel stored map, the trainer builds the K-channel map on its device)
    and online. Every variant runs on the same seeds (same cases, crops and augmentation draws), alternating round by round, after a warm-up batch.
    Goal: >= 0.9x of stock.
(c) Bytes of the maps folder as a fraction of the preprocessed image files (``<case>.b2nd``, not ``_seg``), per
    kind, plus the size and error of alternative encodings of the same maps. Goal: <= 15%.

Data: cases written with nnU-Net's own ``nnUNetDatasetBlosc2.save_case`` (chunks/blocks from ``comp_blosc2_params``
for the patch size, ``class_locations`` from ``DefaultPreprocessor._sample_foreground_locations``) and maps written by
``precompute_maps``, in a temporary folder. Labels: 4 classes (background + 3 irregular smooth blobs covering about
25%, 4% and 0.4% of the volume), -1 outside a cylindrical field of view as nnU-Net stores it; one image channel,
float32, per-class intensities + smooth bias + noise, z-scored, 0 outside the field of view.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace

import numpy as np

from nnunet_losses.maps import STORED_KINDS

GOALS = {"precompute_speedup": 30.0, "loader_ratio": 0.9, "bytes_fraction": 0.15}
NUM_CLASSES = 4
KINDS = STORED_KINDS  # what precompute-maps writes

FULL = {
    "2d": {"cases": 3, "shape": (24, 256, 256), "spacing": (5.0, 0.8, 0.8), "patch": (256, 256), "batch": 12,
           "pool": [[1, 1]] + [[2, 2]] * 6, "rounds": 4, "batches_per_round": 5},
    "3d": {"cases": 2, "shape": (128, 128, 128), "spacing": (1.5, 0.8, 0.8), "patch": (128, 128, 128), "batch": 2,
           "pool": [[1, 1, 1]] + [[2, 2, 2]] * 5, "rounds": 4, "batches_per_round": 2},
}
QUICK = {
    "2d": {"cases": 2, "shape": (6, 128, 128), "spacing": (5.0, 0.8, 0.8), "patch": (128, 128), "batch": 4,
           "pool": [[1, 1]] + [[2, 2]] * 5, "rounds": 1, "batches_per_round": 2},
    "3d": {"cases": 1, "shape": (48, 48, 48), "spacing": (1.5, 0.8, 0.8), "patch": (48, 48, 48), "batch": 1,
           "pool": [[1, 1, 1]] + [[2, 2, 2]] * 3, "rounds": 1, "batches_per_round": 2},
}


# ------------------------------------------------------------------------------------------------------ data
def make_case(shape, seed):
    """(image (1, *shape) float32, seg (1, *shape) int16 with -1 outside the field of view)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int16)
    # class: (volume fraction, blob smoothness in voxels); later classes overwrite earlier ones
    for k, (fraction, sigma) in enumerate(((0.25, 12.0), (0.04, 5.0), (0.004, 1.5)), start=1):
        field = gaussian_filter(rng.normal(size=shape).astype(np.float32), sigma)
        labels[field > np.quantile(field, 1 - fraction)] = k
    # cylindrical field of view along axis 0: nnU-Net stores -1 outside the nonzero mask
    yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape[1:]], indexing="ij")
    fov = np.broadcast_to((yy ** 2 + xx ** 2) <= 1.0, shape)
    labels[~fov] = -1
    means = np.array([0.0, 1.0, 2.0, -1.0], np.float32)
    image = means[np.maximum(labels, 0)] + gaussian_filter(rng.normal(size=shape).astype(np.float32), 20.0) * 5
    image += rng.normal(scale=0.3, size=shape).astype(np.float32)
    image = (image - image[fov].mean()) / image[fov].std()
    image[~fov] = 0
    return image[None].astype(np.float32), labels[None]


def write_dataset(folder, cfg, seed):
    """nnU-Net preprocessed folder (blosc2) with cfg['cases'] cases; returns the case identifiers."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2

    os.makedirs(folder, exist_ok=True)
    cases = []
    for i in range(cfg["cases"]):
        image, seg = make_case(cfg["shape"], seed + i)
        props = {"spacing": list(cfg["spacing"]), "shape_before_cropping": list(cfg["shape"]),
                 "class_locations": DefaultPreprocessor._sample_foreground_locations(seg, list(range(1, NUM_CLASSES)))}
        # as DefaultPreprocessor.run_case_save
        blocks, chunks = comp_blosc2_params(image.shape, tuple(cfg["patch"]), image.itemsize)
        blocks_seg, chunks_seg = comp_blosc2_params(seg.shape, tuple(cfg["patch"]), seg.itemsize)
        name = f"case_{i:03d}"
        nnUNetDatasetBlosc2.save_case(image, seg, props, os.path.join(folder, name), chunks=chunks, blocks=blocks,
                                      chunks_seg=chunks_seg, blocks_seg=blocks_seg)
        cases.append(name)
    return cases


def read_seg(folder, case):
    import blosc2

    return blosc2.open(urlpath=os.path.join(folder, case + "_seg.b2nd"), mode="r")[...]


# ------------------------------------------------------------------------- (a) the RW paper code's method
def _scipy_edt(mask, spacing):
    from scipy.ndimage import distance_transform_edt

    return distance_transform_edt(mask, sampling=spacing)


def ref_rrw(labels, num_classes, spacing):
    """Valverde & Tohka's RRW map, per class: -d / max d inside (scipy EDT of the class mask), +1 outside."""
    out = np.ones((num_classes,) + labels.shape, np.float32)
    for k in range(num_classes):
        mask = labels == k
        if not mask.any():
            continue
        if mask.all():  # scipy returns garbage here; the package's definition is -1
            out[k] = -1.0
            continue
        d = _scipy_edt(mask, spacing)
        out[k][mask] = -(d[mask] / d.max())
    return out


def ref_boundary(labels, num_classes, spacing):
    """Kervadec et al.'s ``one_hot2dist``: dist(neg) * neg - (dist(pos) - 1) * pos per class, 0 for absent."""
    out = np.zeros((num_classes,) + labels.shape, np.float32)
    for k in range(num_classes):
        pos = labels == k
        if not pos.any():
            continue
        if pos.all():  # the package's definition: the outside of the array counts as "not k"
            inner = tuple(slice(1, -1) for _ in range(pos.ndim))
            out[k] = -(_scipy_edt(np.pad(pos, 1), spacing)[inner] - 1.0)
            continue
        neg = ~pos
        out[k] = _scipy_edt(neg, spacing) * neg - (_scipy_edt(pos, spacing) - 1.0) * pos
    return out


def ref_case_map(seg, kind, num_classes, is_2d, spacing):
    labels = np.where(seg[0] < 0, 0, seg[0])
    fn = ref_rrw if kind == "rrw" else ref_boundary
    if is_2d:
        return np.stack([fn(labels[z], num_classes, tuple(spacing)[-2:]) for z in range(labels.shape[0])], 1)
    return fn(labels, num_classes, tuple(spacing))


def full_map_from_stored(stored, seg, kind, num_classes):
    """Our stored form -> the full K-channel map, by the format table's rebuild (as the map pipeline does)."""
    from nnunet_losses.maps import map_format

    rebuild = map_format(kind).rebuild
    if rebuild is None:
        return stored
    labels = np.where(seg[0] < 0, 0, seg[0])
    onehot = (labels[None] == np.arange(num_classes).reshape((-1,) + (1,) * labels.ndim)).astype(np.float32)
    return rebuild(stored, onehot)


def read_stored_map(path, kind):
    """A map file as float32, whatever the package's storage format (dequantised when it is quantised)."""
    import blosc2

    from nnunet_losses.maps.formats import dequantise

    stored = blosc2.open(urlpath=path, mode="r")[...]
    if np.issubdtype(stored.dtype, np.integer):
        return dequantise(stored, kind)
    return stored.astype(np.float32)


def bench_precompute(dim, folder, cases, cfg, repeats, ref_repeats):
    from nnunet_losses.nnunet.precompute import compute_case_map

    is_2d = dim == "2d"
    segs = [read_seg(folder, c) for c in cases]
    rows = {}
    for kind in KINDS:
        ours_t, ref_t = [], []
        ours_maps = ref_maps = None
        for _ in range(repeats):
            t = time.perf_counter()
            ours_maps = [compute_case_map(s, kind, NUM_CLASSES, is_2d, cfg["spacing"]) for s in segs]
            ours_t.append(time.perf_counter() - t)
        for _ in range(ref_repeats):
            t = time.perf_counter()
            ref_maps = [ref_case_map(s, kind, NUM_CLASSES, is_2d, cfg["spacing"]) for s in segs]
            ref_t.append(time.perf_counter() - t)
        diff = max(float(np.abs(full_map_from_stored(o, s, kind, NUM_CLASSES) - r).max())
                   for o, s, r in zip(ours_maps, segs, ref_maps))
        scale = max(float(np.abs(r).max()) for r in ref_maps)
        ours_s, ref_s = statistics.median(ours_t), statistics.median(ref_t)
        rows[kind] = {"ours_s": ours_s, "ref_s": ref_s, "ours_cases_per_s": len(cases) / ours_s,
                      "ref_cases_per_s": len(cases) / ref_s, "speedup": ref_s / ours_s,
                      "max_abs_diff": diff, "max_abs_value": scale}
    return rows


def edt_call_times(folder, case, cfg, dim, repeats=5):
    """ms per call on one slice (2D) / one case (3D): scipy per class vs edt binary per class vs edt multi-label.
    The speed-up of (a) cannot exceed K * scipy / multi-label (RRW) or 2K * scipy / (multi-label + K * binary)."""
    import edt

    seg = read_seg(folder, case)
    labels = np.maximum(seg[0], 0)
    spacing = tuple(cfg["spacing"])
    if dim == "2d":
        labels, spacing = labels[labels.shape[0] // 2], spacing[-2:]
        repeats *= 4

    def ms(fn):
        fn()
        t = time.perf_counter()
        for _ in range(repeats):
            fn()
        return 1000 * (time.perf_counter() - t) / repeats

    multi = (labels + 1).astype(np.uint32)
    out = {"edt_multilabel_ms": ms(lambda: edt.edt(multi, anisotropy=spacing, parallel=1)),
           "edt_binary_ms_per_class": [], "scipy_ms_per_class": []}
    for k in range(NUM_CLASSES):
        pos = labels == k
        neg8 = (~pos).astype(np.uint8)
        out["edt_binary_ms_per_class"].append(ms(lambda: edt.edt(neg8, anisotropy=spacing, parallel=1)))
        out["scipy_ms_per_class"].append(ms(lambda: _scipy_edt(pos, spacing)))
    scipy_sum, bin_sum = sum(out["scipy_ms_per_class"]), sum(out["edt_binary_ms_per_class"])
    out["ceiling_rrw"] = scipy_sum / out["edt_multilabel_ms"]
    out["ceiling_boundary"] = 2 * scipy_sum / (out["edt_multilabel_ms"] + bin_sum)
    out["scipy_over_edt_binary"] = scipy_sum / bin_sum
    out["unit"] = "one 2D slice" if dim == "2d" else "one 3D case"
    return out


def stored_error(dim, folder, cases, cfg):
    """Max abs difference between the stored (dequantised) maps and the scipy reference."""
    from nnunet_losses.nnunet.precompute import map_file, maps_folder

    out = {}
    for kind in KINDS:
        worst = 0.0
        for c in cases:
            seg = read_seg(folder, c)
            stored = read_stored_map(map_file(maps_folder(folder), c, kind), kind)
            ref = ref_case_map(seg, kind, NUM_CLASSES, dim == "2d", cfg["spacing"])
            worst = max(worst, float(np.abs(full_map_from_stored(stored, seg, kind, NUM_CLASSES) - ref).max()))
        out[kind] = worst
    return out


def time_precompute_maps(folder, cfg, dim):
    """Full ``precompute_maps`` (read seg, compute, encode, write), single process, per kind: cases/s."""
    from nnunet_losses.nnunet.precompute import precompute_maps

    out = {}
    for kind in KINDS:
        t = time.perf_counter()
        summary = precompute_maps(folder, [kind], NUM_CLASSES, dim == "2d", cfg["spacing"], num_processes=1,
                                  progress=False)
        out[kind] = summary["computed"] / (time.perf_counter() - t)
    return out


# ---------------------------------------------------------------------------------------- (b) data loader
def make_loader(variant, folder, cases, cfg):
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    from nnunet_losses.nnunet.map_pipeline import MapPipeline

    label_manager = LabelManager({"background": 0, "large": 1, "medium": 2, "small": 3}, None)
    patch = list(cfg["patch"])
    # nnUNetTrainer's own rotation / dummy-2D / initial patch size logic, on a stand-in for the trainer
    fake = SimpleNamespace(configuration_manager=SimpleNamespace(patch_size=patch),
                           print_to_log_file=lambda *a, **k: None)
    rotation, dummy_2d, initial_patch, mirror_axes = \
        nnUNetTrainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size(fake)
    ds_scales = list(list(i) for i in 1 / np.cumprod(np.vstack(cfg["pool"]), axis=0))[:-1]  # as the trainer
    transforms = nnUNetTrainer.get_training_transforms(
        patch, rotation, ds_scales, mirror_axes, dummy_2d, use_mask_for_norm=[False], is_cascaded=False,
        foreground_labels=label_manager.foreground_labels, regions=None, ignore_label=None)
    mode, _, kind = variant.partition("-")
    pipeline = MapPipeline(kind or None, NUM_CLASSES, precomputed=mode == "precomputed")  # as LossTrainer
    dataset = pipeline.wrap(nnUNetDatasetBlosc2(folder, cases))
    pipeline.add_to(transforms)
    loader = nnUNetDataLoader(dataset, cfg["batch"], initial_patch, patch, label_manager,
                              oversample_foreground_percent=0.33, sampling_probabilities=None, pad_sides=None,
                              transforms=transforms, probabilistic_oversampling=False)
    return loader, {"initial_patch_size": [int(x) for x in initial_patch], "deep_supervision_scales": len(ds_scales)}


def _seed(seed):
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_batch(batch, variant, cfg):
    from nnunet_losses.nnunet.map_pipeline import MapPipeline

    target = batch["target"]
    assert isinstance(target, list), "deep supervision targets expected"
    # precomputed RRW ships [labels; m] (the trainer builds the K-channel map on its device)
    mode, _, kind = variant.partition("-")
    pipeline = MapPipeline(kind or None, NUM_CLASSES, precomputed=mode == "precomputed")
    channels = 1 if variant == "stock" else 1 + pipeline.shipped_channels
    assert all(t.shape[1] == channels for t in target), (variant, [tuple(t.shape) for t in target])
    assert tuple(batch["data"].shape) == (cfg["batch"], 1, *cfg["patch"]), tuple(batch["data"].shape)


LOADER_VARIANTS = ("stock", "precomputed-rrw", "precomputed-boundary", "online-rrw", "online-boundary")


def bench_loader(folder, cases, cfg, rounds, per_round):
    loaders = {}
    info = None
    for v in LOADER_VARIANTS:
        loaders[v], info = make_loader(v, folder, cases, cfg)
        _seed(12345)
        check_batch(loaders[v].generate_train_batch(), v, cfg)  # warm-up
    times = {v: [] for v in LOADER_VARIANTS}
    for r in range(rounds):
        order = LOADER_VARIANTS if r % 2 == 0 else LOADER_VARIANTS[::-1]
        for v in order:
            _seed(1000 + r)  # every variant sees the same cases, crops and augmentation draws
            t = time.perf_counter()
            for _ in range(per_round):
                loaders[v].generate_train_batch()
            times[v].append(time.perf_counter() - t)
    n = rounds * per_round
    rows = {}
    for v in LOADER_VARIANTS:
        total = sum(times[v])
        rows[v] = {"batches": n, "seconds": total, "batches_per_s": n / total,
                   "ms_per_sample": 1000 * total / (n * cfg["batch"]),
                   "ratio_to_stock": sum(times["stock"]) / total}
    return rows, info


def profile_loader(folder, cases, cfg, variant, batches, top=25):
    loader, _ = make_loader(variant, folder, cases, cfg)
    _seed(1)
    loader.generate_train_batch()
    prof = cProfile.Profile()
    _seed(2)
    prof.enable()
    for _ in range(batches):
        loader.generate_train_batch()
    prof.disable()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(top)
    return s.getvalue()


# -------------------------------------------------------------------------------------------- (c) bytes
def folder_bytes(folder, suffix, exclude=None):
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
               if f.endswith(suffix) and not (exclude and f.endswith(exclude)))


def bench_bytes(folder, cases, cfg):
    from nnunet_losses.nnunet.precompute import maps_folder

    image_bytes = folder_bytes(folder, ".b2nd", exclude="_seg.b2nd")
    raw_image_bytes = len(cases) * int(np.prod(cfg["shape"])) * 4
    out = {"image_bytes": image_bytes, "image_bytes_uncompressed": raw_image_bytes}
    for kind in KINDS:
        b = folder_bytes(maps_folder(folder), f"_{kind}.b2nd")
        out[kind] = {"map_bytes": b, "fraction_of_image_files": b / image_bytes,
                     "fraction_of_uncompressed_image": b / raw_image_bytes}
    return out


def _quant(dtype, scale):
    info = np.iinfo(dtype)
    return (lambda m, lab: np.clip(np.round(m * scale), info.min, info.max).astype(dtype),
            lambda a, lab: a.astype(np.float32) / np.float32(scale))


def _sqrt_companded():
    """int8 of sign(d) sqrt(|d|) * s with s = 127 / sqrt(max |d|) per case (one float kept beside the array):
    the error grows with the distance (about sqrt(|d|) / s)."""
    scales = {}

    def encode(m, lab):
        s = 127.0 / max(float(np.sqrt(np.abs(m).max())), 1e-6)
        a = np.clip(np.round(np.sign(m) * np.sqrt(np.abs(m)) * s), -127, 127).astype(np.int8)
        scales[id(lab)] = s
        return a

    def decode(a, lab):
        s = np.float32(scales[id(lab)])
        return np.sign(a) * (a.astype(np.float32) / s) ** 2

    return encode, decode


def _outside_only(scale):
    """Exact rearrangement: store only the outside distances (0 inside each class); a voxel's inside value is
    rebuilt from the other classes' outside distances there: -(min_{m != k} d_m - 1). Valid when there is no
    ignore label and no slice/volume holds a single label (then the 'own' distance goes to the array border)."""
    info = np.iinfo(np.int16)

    def encode(m, lab):
        q = np.clip(np.round(m * scale), info.min, info.max).astype(np.int16)
        return np.where(q > 0, q, 0).astype(np.int16)

    def decode(a, lab):
        d = a.astype(np.float32) / np.float32(scale)
        k = d.shape[0]
        onehot = lab[None] == np.arange(k).reshape((-1,) + (1,) * lab.ndim)
        # absent classes (per slice for 2D maps) are all-zero channels: they must not enter the minimum
        axes = tuple(range(2, onehot.ndim)) if _PER_SLICE[0] else tuple(range(1, onehot.ndim))
        present = onehot.any(axis=axes, keepdims=True)
        big = np.where(present, d, np.inf)
        out = d.copy()
        for c in range(k):
            others = np.delete(big, c, axis=0).min(0)
            out[c] = np.where(onehot[c], -(others - 1.0), d[c])
        return out

    return encode, decode


_PER_SLICE = [False]  # set per dimensionality by bench_encodings (2D maps are per slice)


def _half_resolution(scale):
    """int16 quantised, every other voxel per axis (in-plane for 2D), linear interpolation back."""
    import torch

    info = np.iinfo(np.int16)

    def encode(m, lab):
        sub = m[:, :, ::2, ::2] if _PER_SLICE[0] else m[:, ::2, ::2, ::2]
        return np.clip(np.round(sub * scale), info.min, info.max).astype(np.int16)

    def decode(a, lab):
        t = torch.from_numpy(a.astype(np.float32) / np.float32(scale))
        if _PER_SLICE[0]:
            x = t.permute(1, 0, 2, 3)
            up = torch.nn.functional.interpolate(x, size=tuple(2 * s - 1 for s in x.shape[2:]), mode="bilinear",
                                                 align_corners=True)
            up = torch.nn.functional.pad(up, (0, 1, 0, 1), mode="replicate").permute(1, 0, 2, 3)
        else:
            up = torch.nn.functional.interpolate(t[None], size=tuple(2 * s - 1 for s in t.shape[1:]),
                                                 mode="trilinear", align_corners=True)
            up = torch.nn.functional.pad(up, (0, 1, 0, 1, 0, 1), mode="replicate")[0]
        full = lab.shape
        return up[(slice(None),) + tuple(slice(0, s) for s in full)].numpy()

    return encode, decode


def _encodings(kind):
    """name -> (encode(map, labels), decode(array, labels), filters, codec, clevel, exact)."""
    import blosc2

    S, BD, NF = blosc2.Filter.SHUFFLE, blosc2.Filter.BYTEDELTA, blosc2.Filter.NOFILTER
    Z, L = blosc2.Codec.ZSTD, blosc2.Codec.LZ4HC
    f16 = (lambda m, lab: m.astype(np.float16), lambda a, lab: a.astype(np.float32))
    rows = {"float16, zstd 8, shuffle (format v1)": (*f16, [S], Z, 8)}
    if kind == "rrw":
        rows.update({
            "uint8 steps of 1/255, zstd 8 (format v2)": (*_quant(np.uint8, 255.0), [NF], Z, 8),
            "uint8 steps of 1/255, zstd 3": (*_quant(np.uint8, 255.0), [NF], Z, 3),
            "uint8 steps of 1/255, lz4hc 5 (nnU-Net's codec)": (*_quant(np.uint8, 255.0), [NF], L, 5),
            "uint8 steps of 1/63, zstd 8": (*_quant(np.uint8, 63.0), [NF], Z, 8),
        })
        return rows
    rows.update({
        "int16 1/4 unit, zstd 8, shuffle+bytedelta (format v2)": (*_quant(np.int16, 4.0), [S, BD], Z, 8),
        "int16 1/4 unit, zstd 8, shuffle": (*_quant(np.int16, 4.0), [S], Z, 8),
        "int16 1/4 unit, zstd 3, shuffle+bytedelta": (*_quant(np.int16, 4.0), [S, BD], Z, 3),
        "int16 1/4 unit, lz4hc 5, shuffle+bytedelta": (*_quant(np.int16, 4.0), [S, BD], L, 5),
        "int16 1/4 unit, zstd 9, shuffle+bytedelta": (*_quant(np.int16, 4.0), [S, BD], Z, 9),
        "int16 1 unit, zstd 8, shuffle+bytedelta": (*_quant(np.int16, 1.0), [S, BD], Z, 8),
        "int16 1/4 unit, outside parts only (exact rearrangement)": (*_outside_only(4.0), [S, BD], Z, 8),
        "int16 1 unit, outside parts only, zstd 8, shuffle+bytedelta": (*_outside_only(1.0), [S, BD], Z, 8),
        "int8 sqrt-companded (scale per case), zstd 8": (*_sqrt_companded(), [NF], Z, 8),
        "int16 1/4 unit, half resolution, linear upsampling": (*_half_resolution(4.0), [S, BD], Z, 8),
    })
    return rows


def bench_encodings(folder, cases, cfg, dim, image_bytes):
    """Compressed size (in-memory blosc2, chunks/blocks as precompute-maps writes them), max error against the
    float32 map and full-case decode time, for alternative encodings of the same maps."""
    import blosc2

    from nnunet_losses.nnunet.precompute import compute_case_map

    _PER_SLICE[0] = dim == "2d"
    out = {}
    for kind in KINDS:
        items = []
        for c in cases:
            seg_nd = blosc2.open(urlpath=os.path.join(folder, c + "_seg.b2nd"), mode="r")
            seg = seg_nd[...]
            items.append((compute_case_map(seg, kind, NUM_CLASSES, dim == "2d", cfg["spacing"]),
                          np.maximum(seg[0], 0), seg_nd))
        rows = {}
        for name, (encode, decode, filters, codec, clevel) in _encodings(kind).items():
            total, err, dec_t, enc_t = 0, 0.0, 0.0, 0.0
            for m, lab, seg_nd in items:
                t = time.perf_counter()
                arr = np.ascontiguousarray(encode(m, lab))
                chunks = (arr.shape[0],) + tuple(min(c, s) for c, s in zip(seg_nd.chunks[1:], arr.shape[1:]))
                blocks = (arr.shape[0],) + tuple(min(b, c) for b, c in zip(seg_nd.blocks[1:], chunks[1:]))
                nd = blosc2.asarray(arr, chunks=chunks, blocks=blocks,
                                    cparams={"codec": codec, "clevel": clevel, "nthreads": 1, "filters": filters,
                                             "filters_meta": [0] * len(filters)})
                enc_t += time.perf_counter() - t
                total += nd.schunk.cbytes
                t = time.perf_counter()
                back = decode(nd[...], lab)
                dec_t += time.perf_counter() - t
                err = max(err, float(np.abs(back - m).max()))
            rows[name] = {"bytes": total, "fraction_of_image_files": total / image_bytes, "max_abs_error": err,
                          "decode_ms_per_case": 1000 * dec_t / len(cases),
                          "encode_ms_per_case": 1000 * enc_t / len(cases)}
        out[kind] = rows
    return out


# ----------------------------------------------------------------------------------------------- main
def _ok(met):
    return "yes" if met else "**NO**"


def render(results) -> str:
    dims = [d for d in ("2d", "3d") if d in results]
    env = results["environment"]
    lines = [f"Machine: {env['machine']}, {env['cpus']} CPU cores, no GPU used; Python {env['python']}, torch "
             f"{env['torch']} (1 thread), nnunetv2 {env['nnunetv2']}, blosc2 {env['blosc2']}, scipy {env['scipy']}. "
             f"Mode: {results['mode']}; whole run {results['total_seconds']:.0f} s.", ""]
    lines += ["**(a) Precompute**, single process, compute only (ours: median of "
              f"{results['repeats']} runs; reference: {results['ref_repeats']} run). Max abs diff: the full K-channel "
              "map against the scipy reference, float32 and as stored on disk (values in units of the spacing).", "",
              "| data | kind | ours cases/s | scipy per-class cases/s | speed-up | goal | met | max abs diff float32 "
              "| max abs diff stored | max abs value | precompute_maps cases/s (read, compute, encode, write) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for dim in dims:
        d = results[dim]
        for kind in KINDS:
            p = d["precompute"][kind]
            sp = p["speedup"]
            lines.append(f"| {d['label']} | {kind} | {p['ours_cases_per_s']:.2f} | {p['ref_cases_per_s']:.3f} | "
                         f"{sp:.1f}x | >= 30x | {_ok(sp >= GOALS['precompute_speedup'])} | "
                         f"{p['max_abs_diff']:.1e} | {d['stored_error'][kind]:.1e} | {p['max_abs_value']:.1f} | "
                         f"{d['precompute_maps_cases_per_s'][kind]:.2f} |")
    lines += ["", "EDT cost per call (what bounds the speed-up):", "",
              "| data | unit | scipy per class (ms, k=0..3) | edt binary per class (ms) | edt multi-label (ms) | "
              "scipy / edt binary | ceiling RRW (K scipy / 1 multi-label) | ceiling boundary (2K scipy / "
              "(multi-label + K binary)) |", "|---|---|---|---|---|---|---|---|"]
    for dim in dims:
        e = results[dim]["edt_calls"]
        lines.append(f"| {dim.upper()} | {e['unit']} | {', '.join(f'{x:.1f}' for x in e['scipy_ms_per_class'])} | "
                     f"{', '.join(f'{x:.1f}' for x in e['edt_binary_ms_per_class'])} | {e['edt_multilabel_ms']:.1f} | "
                     f"{e['scipy_over_edt_binary']:.1f}x | {e['ceiling_rrw']:.1f}x | {e['ceiling_boundary']:.1f}x |")
    lines += ["", "**(b) Data loader**, single process, same seeds for every variant; ratio = stock time / variant "
              "time.",
              "", "| data | variant | batches/s | ms/sample | ratio to stock | goal | met |",
              "|---|---|---|---|---|---|---|"]
    for dim in dims:
        d = results[dim]
        for v, row in d["loader"].items():
            goal = "-" if v == "stock" else ">= 0.9x"
            met = "-" if goal == "-" else _ok(row["ratio_to_stock"] >= GOALS["loader_ratio"])
            lines.append(f"| {d['loader_label']} | {v} | {row['batches_per_s']:.2f} | {row['ms_per_sample']:.1f} | "
                         f"{row['ratio_to_stock']:.2f}x | {goal} | {met} |")
    lines += ["", "**(c) Disk**: maps folder bytes / preprocessed image files (`<case>.b2nd`, not `_seg`; one image "
              "channel, float32, nnU-Net's blosc2 settings).", "",
              "| data | kind | map bytes | image file bytes | fraction | goal | met | fraction of uncompressed "
              "float32 image |", "|---|---|---|---|---|---|---|---|"]
    for dim in dims:
        d = results[dim]
        b = d["bytes"]
        for kind in KINDS:
            f = b[kind]["fraction_of_image_files"]
            lines.append(f"| {d['label']} | {kind} | {b[kind]['map_bytes']:,} | {b['image_bytes']:,} | {100 * f:.1f}% "
                         f"| <= 15% | {_ok(f <= GOALS['bytes_fraction'])} | "
                         f"{100 * b[kind]['fraction_of_uncompressed_image']:.1f}% |")
    lines += ["", "Alternative encodings of the same maps (in-memory blosc2 with the chunks precompute-maps uses; "
              "fraction of the image files; max abs error against the float32 map; whole-case encode (quantise + "
              "compress, 1 thread) and decode times):", "",
              "| kind | encoding | " + " | ".join(f"{d.upper()} fraction | {d.upper()} max error | {d.upper()} encode / "
                                                 f"decode ms per case" for d in dims) + " |",
              "|---|---|" + "---|---|---|" * len(dims)]
    for kind in KINDS:
        for name in results[dims[0]]["encodings"][kind]:
            cells = []
            for dim in dims:
                a = results[dim]["encodings"][kind][name]
                cells.append(f"{100 * a['fraction_of_image_files']:.1f}% | {a['max_abs_error']:.3g} | "
                             f"{a['encode_ms_per_case']:.0f} / {a['decode_ms_per_case']:.0f}")
            lines.append(f"| {kind} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[2:]))
    parser.add_argument("--quick", action="store_true", help="small shapes and few batches (a smoke run)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of our precompute (median; default 3)")
    parser.add_argument("--ref-repeats", type=int, default=1, help="timed runs of the scipy reference (default 1)")
    parser.add_argument("--rounds", type=int, help="loader rounds; each variant runs batches_per_round batches per "
                                                   "round (default: 4 rounds of 5 batches in 2D, of 2 in 3D)")
    parser.add_argument("--batches", type=int, help="timed batches per loader variant (spread over the rounds; "
                                                    "default 20 in 2D, 8 in 3D)")
    parser.add_argument("--only", choices=("2d", "3d"), help="run one dimensionality only")
    parser.add_argument("--profile", metavar="VARIANT", choices=LOADER_VARIANTS,
                        help="also print a cProfile of the loader for this variant (4 batches per dimensionality)")
    parser.add_argument("--keep", metavar="DIR", help="write the data here and keep it (default: a temp folder)")
    args = parser.parse_args(argv)

    from importlib.metadata import version

    import blosc2
    import scipy
    import torch

    torch.set_num_threads(1)  # as nnU-Net's augmentation workers (NonDetMultiThreadedAugmenter)
    configs = QUICK if args.quick else FULL
    dims = [args.only] if args.only else ["2d", "3d"]
    start = time.perf_counter()
    root = args.keep or tempfile.mkdtemp(prefix="nnunet_losses_maps_bench_")
    results = {"mode": "quick" if args.quick else "full", "repeats": args.repeats, "ref_repeats": args.ref_repeats,
               "goals": GOALS,
               "environment": {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                               "torch": torch.__version__, "nnunetv2": version("nnunetv2"),
                               "blosc2": blosc2.__version__, "scipy": scipy.__version__,
                               "python": sys.version.split()[0]}}
    try:
        for dim in dims:
            cfg = configs[dim]
            folder = os.path.join(root, f"Dataset999_Bench{dim.upper()}", f"nnUNetPlans_{dim}")
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(folder + "_maps", ignore_errors=True)
            t0 = time.perf_counter()
            cases = write_dataset(folder, cfg, seed=0 if dim == "2d" else 100)
            shape = "x".join(map(str, cfg["shape"]))
            label = (f"2D {cfg['cases']} x (1, {shape}), per-slice maps" if dim == "2d"
                     else f"3D {cfg['cases']} x {shape}, spacing {cfg['spacing']}")
            d = {"label": label, "config": dict(cfg)}
            print(f"[{dim}] wrote {len(cases)} cases in {time.perf_counter() - t0:.1f} s", flush=True)
            d["precompute_maps_cases_per_s"] = time_precompute_maps(folder, cfg, dim)
            d["precompute"] = bench_precompute(dim, folder, cases, cfg, args.repeats, args.ref_repeats)
            d["edt_calls"] = edt_call_times(folder, cases[0], cfg, dim)
            d["stored_error"] = stored_error(dim, folder, cases, cfg)
            print(f"[{dim}] precompute done at {time.perf_counter() - start:.0f} s: "
                  + ", ".join(f"{k} {v['speedup']:.1f}x" for k, v in d["precompute"].items()), flush=True)
            d["bytes"] = bench_bytes(folder, cases, cfg)
            d["encodings"] = bench_encodings(folder, cases, cfg, dim, d["bytes"]["image_bytes"])
            print(f"[{dim}] bytes done at {time.perf_counter() - start:.0f} s: "
                  + ", ".join(f"{k} {100 * d['bytes'][k]['fraction_of_image_files']:.1f}%" for k in KINDS),
                  flush=True)
            rounds = args.rounds or cfg["rounds"]
            per_round = -(-args.batches // rounds) if args.batches else cfg["batches_per_round"]
            d["loader"], info = bench_loader(folder, cases, cfg, rounds, per_round)
            d["loader_label"] = (f"{dim.upper()} batch {cfg['batch']}, patch {'x'.join(map(str, cfg['patch']))} "
                                 f"(initial {'x'.join(map(str, info['initial_patch_size']))}), "
                                 f"{info['deep_supervision_scales']} DS scales, {rounds * per_round} batches")
            print(f"[{dim}] loader done at {time.perf_counter() - start:.0f} s: "
                  + ", ".join(f"{k} {v['ratio_to_stock']:.2f}x" for k, v in d["loader"].items()), flush=True)
            if args.profile:
                d["profile"] = profile_loader(folder, cases, cfg, args.profile, 4)
                print(f"[{dim}] cProfile of {args.profile}:\n{d['profile']}", flush=True)
            results[dim] = d
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    results["total_seconds"] = time.perf_counter() - start
    print()
    print(render(results))
    if args.json:
        from nnunet_losses._files import atomic_write_json

        atomic_write_json(args.json, results, indent=2, default=str)
    return results


if __name__ == "__main__":
    main()
