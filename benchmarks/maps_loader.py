"""(b) Loader: what do the maps cost nnU-Net's data loader?

    python benchmarks/maps_loader.py [--quick] [--only 2d|3d] [--profile VARIANT] [--json out.json]

Batches/s, single process (``generate_train_batch`` in a loop, torch with 1 thread as in nnU-Net's augmentation
workers): nnU-Net's stock ``nnUNetDataLoader`` + ``nnUNetTrainer.get_training_transforms`` (rotation, initial patch
size and deep-supervision scales as ``nnUNetTrainer`` computes them) against the same with the trainer's
``MapPipeline`` (``nnunet_losses/nnunet/map_pipeline.py``) wrapping the dataset and adding its transforms,
precomputed (the stored form rides on the full-resolution target only; the trainer resamples it to each scale and
rebuilds the full map on its device) and online (computed in the workers); ``device-ac``: RW-AC, whose ``1 - Y`` the
trainer builds on its device (the loader carries nothing).
Every variant runs on the same seeds (same cases, crops and augmentation draws), alternating round by round, after a
warm-up batch. Goals: precomputed RRW >= 0.95x of stock, precomputed boundary >= 0.8x; online maps: the
workers they need. The data: ``maps_data.py``.
"""
from __future__ import annotations

import cProfile
import io
import math
import os
import pstats
import random
import time
from types import SimpleNamespace

import numpy as np

from maps_data import GOALS, NUM_CLASSES, main, ok, save_case

NAME = "loader"
LOADER_VARIANTS = ("stock", "stock+1ch", f"stock+{NUM_CLASSES}ch", "precomputed-rrw", "precomputed-boundary",
                   "online-rrw", "online-boundary", "device-ac")
# the reference points: nnU-Net's stock loader on a copy of the data whose images carry 1 (RRW's stored channel) or
# K (boundary's) more float32 channels, no map code: what one more image channel costs nnU-Net itself
EXTRA_CHANNELS = {"stock+1ch": 1, f"stock+{NUM_CLASSES}ch": NUM_CLASSES}


def add_arguments(parser):
    parser.add_argument("--rounds", type=int, help="loader rounds; each variant runs batches_per_round batches per "
                                                   "round (default: 4 rounds of 5 batches in 2D, of 2 in 3D)")
    parser.add_argument("--batches", type=int, help="timed batches per loader variant (spread over the rounds; "
                                                    "default 20 in 2D, 8 in 3D)")
    parser.add_argument("--variants", metavar="LIST",
                        help="comma-separated variants to time besides stock (default: all of "
                             f"{', '.join(LOADER_VARIANTS[1:])})")
    parser.add_argument("--profile", metavar="VARIANT", choices=LOADER_VARIANTS,
                        help="also print a cProfile of the loader for this variant (4 batches per dimensionality)")


def pipeline(variant):
    """The trainer's map pipeline of a variant (``stock``, ``stock+Nch``: no map)."""
    from nnunet_losses.nnunet.map_pipeline import MapPipeline

    if variant.startswith("stock"):
        return MapPipeline(None, NUM_CLASSES, precomputed=False)
    # online-*: computed in the loader workers; device-ac: built on the device, nothing in the batch
    mode, _, kind = variant.partition("-")
    return MapPipeline(kind or None, NUM_CLASSES, precomputed=mode == "precomputed")


def extra_channel_folder(folder, extra):
    return f"{folder}_plus{extra}ch"


def write_extra_channel_copies(folder, cases, cfg):
    """The dataset again, each image with 1 and K more channels (copies of its own channel), written by nnU-Net's
    ``save_case`` with its chunking for the new shape: the stock reference variants read these."""
    import pickle

    import blosc2

    for extra in sorted(set(EXTRA_CHANNELS.values())):
        out = extra_channel_folder(folder, extra)
        os.makedirs(out, exist_ok=True)
        for case in cases:
            image = blosc2.open(urlpath=os.path.join(folder, case + ".b2nd"), mode="r")[...]
            seg = blosc2.open(urlpath=os.path.join(folder, case + "_seg.b2nd"), mode="r")[...]
            with open(os.path.join(folder, case + ".pkl"), "rb") as f:
                props = pickle.load(f)
            save_case(os.path.join(out, case), np.concatenate([image] * (1 + extra), 0), seg, props, cfg)


def make_loader(variant, folder, cases, cfg):
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

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
    maps = pipeline(variant)  # as LossTrainer wires it
    if variant in EXTRA_CHANNELS:
        folder = extra_channel_folder(folder, EXTRA_CHANNELS[variant])
    dataset = maps.wrap(nnUNetDatasetBlosc2(folder, cases))
    maps.add_to(transforms)
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
    from nnunet_losses.nnunet.map_pipeline import split_maps

    target = batch["target"]
    assert isinstance(target, list), "deep supervision targets expected"
    maps = pipeline(variant)
    if maps.kind is None or maps.on_device:  # stock and device maps: nnU-Net's label scales only
        assert all(t.shape[1] == 1 and not t.is_floating_point() for t in target), \
            (variant, [tuple(t.shape) for t in target])
    else:  # the label scales, then the stored form (precomputed) or every scale's map (online); raises otherwise
        split_maps(target, maps.shipped_channels, maps_per_scale=not maps.precomputed)
    image_channels = 1 + EXTRA_CHANNELS.get(variant, 0)
    assert tuple(batch["data"].shape) == (cfg["batch"], image_channels, *cfg["patch"]), tuple(batch["data"].shape)


def bench_loader(folder, cases, cfg, rounds, per_round, variants=LOADER_VARIANTS):
    loaders = {}
    info = None
    for v in variants:
        loaders[v], info = make_loader(v, folder, cases, cfg)
        _seed(12345)
        check_batch(loaders[v].generate_train_batch(), v, cfg)  # warm-up
    times = {v: [] for v in variants}
    for r in range(rounds):
        order = variants if r % 2 == 0 else variants[::-1]
        for v in order:
            _seed(1000 + r)  # every variant sees the same cases, crops and augmentation draws
            t = time.perf_counter()
            for _ in range(per_round):
                loaders[v].generate_train_batch()
            times[v].append(time.perf_counter() - t)
    n = rounds * per_round
    rows = {}
    for v in variants:
        total = sum(times[v])
        rows[v] = {"batches": n, "seconds": total, "batches_per_s": n / total,
                   "ms_per_sample": 1000 * total / (n * cfg["batch"]),
                   "ratio_to_stock": sum(times["stock"]) / total,
                   # the same ratio per round (stock and the variant ran back to back): the scatter of the figure
                   "round_ratios": [a / b for a, b in zip(times["stock"], times[v])]}
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


def run(dim, data, args):
    folder, cases, cfg = data["folder"], data["cases"], data["config"]
    write_extra_channel_copies(folder, cases, cfg)
    rounds = args.rounds or cfg["rounds"]
    per_round = -(-args.batches // rounds) if args.batches else cfg["batches_per_round"]
    variants = LOADER_VARIANTS
    if args.variants:
        chosen = [v.strip() for v in args.variants.split(",") if v.strip() and v.strip() != "stock"]
        unknown = [v for v in chosen if v not in LOADER_VARIANTS]
        if unknown:
            raise SystemExit(f"unknown loader variant(s) {', '.join(unknown)}; one of {', '.join(LOADER_VARIANTS)}")
        variants = ("stock", *chosen)
    rows, info = bench_loader(folder, cases, cfg, rounds, per_round, variants)
    out = {"rows": rows, "label": (f"{dim.upper()} batch {cfg['batch']}, patch {'x'.join(map(str, cfg['patch']))} "
                                   f"(initial {'x'.join(map(str, info['initial_patch_size']))}), "
                                   f"{info['deep_supervision_scales']} DS scales, {rounds * per_round} batches")}
    if args.profile:
        out["profile"] = profile_loader(folder, cases, cfg, args.profile, 4)
        print(f"[{dim}] cProfile of {args.profile}:\n{out['profile']}", flush=True)
    return out


WORKERS = 12  # nnU-Net's default nnUNet_n_proc_DA


def render(results) -> str:
    dims = [d for d in ("2d", "3d") if d in results]
    goals = GOALS["loader_ratio"]
    lines = ["**(b) Data loader**, single process, same seeds for every variant; ratio = stock time / variant "
             f"time. The last two columns assume throughput grows linearly with nnU-Net's workers (one core each): "
             f"the workers a variant needs to deliver what the stock loader delivers with {WORKERS} "
             f"(ceil({WORKERS} / ratio)), and the shortest training step {WORKERS} workers keep up with (ms per "
             f"batch / {WORKERS}); a map stops mattering once a step takes longer than that. Per-round ratios: "
             "the lowest and highest of the rounds (stock and the variant back to back in each): the scatter; a goal "
             "counts as met when every round meets it.",
             "", "| data | variant | batches/s | ms/sample | ratio to stock | per-round ratios | goal | met | "
             f"workers to match stock's {WORKERS} | step {WORKERS} workers keep up with (ms) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for dim in dims:
        d = results[dim]
        for v, row in d["loader"]["rows"].items():
            goal = goals.get(v)
            met = "-" if goal is None else ok(min(row["round_ratios"]) >= goal)  # in every round
            workers = math.ceil(WORKERS / row["ratio_to_stock"] - 1e-9)
            step_ms = 1000.0 / row["batches_per_s"] / WORKERS
            spread = f"{min(row['round_ratios']):.2f}-{max(row['round_ratios']):.2f}x"
            goal_text = "-" if goal is None else f">= {goal}x"
            lines.append(f"| {d['loader']['label']} | {v} | {row['batches_per_s']:.2f} | {row['ms_per_sample']:.1f} | "
                         f"{row['ratio_to_stock']:.2f}x | {spread} | {goal_text} | {met} | {workers} | {step_ms:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    main([sys.modules[__name__]], __doc__)
