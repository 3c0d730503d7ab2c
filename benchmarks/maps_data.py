"""The data and the command line shared by the map benchmarks (``maps_precompute.py``, ``maps_loader.py``,
``maps_bytes.py``; ``maps.py`` runs the three on one dataset).

Data: cases written with nnU-Net's own ``nnUNetDatasetBlosc2.save_case`` (chunks/blocks from ``comp_blosc2_params``
for the patch size, ``class_locations`` from ``DefaultPreprocessor._sample_foreground_locations``) and maps written
by ``precompute_maps``, in a temporary folder. Labels: 4 classes (background + 3 irregular smooth blobs covering
about 25%, 4% and 0.4% of the volume), -1 outside a cylindrical field of view as nnU-Net stores it; one image
channel, float32, per-class intensities + smooth bias + noise, z-scored, 0 outside the field of view. 2D: 3 cases
(1, 24, 256, 256), per-slice maps; 3D: 2 cases 128^3 (``--quick``: small shapes, a smoke run).
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

from nnunet_losses.maps import STORED_KINDS

KINDS = STORED_KINDS  # what precompute-maps writes
NUM_CLASSES = 4
# loader: the ratio to the stock loader each precomputed variant should reach; online maps have none,
# the loader table reports the nnU-Net workers they need instead
GOALS = {"precompute_speedup": 30.0, "loader_ratio": {"precomputed-rrw": 0.95, "precomputed-boundary": 0.8},
         "bytes_fraction": 0.15}

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

    os.makedirs(folder, exist_ok=True)
    cases = []
    for i in range(cfg["cases"]):
        image, seg = make_case(cfg["shape"], seed + i)
        props = {"spacing": list(cfg["spacing"]), "shape_before_cropping": list(cfg["shape"]),
                 "class_locations": DefaultPreprocessor._sample_foreground_locations(seg, list(range(1, NUM_CLASSES)))}
        # as DefaultPreprocessor.run_case_save
        name = f"case_{i:03d}"
        save_case(os.path.join(folder, name), image, seg, props, cfg)
        cases.append(name)
    return cases


def save_case(path, image, seg, props, cfg):
    """nnU-Net's ``save_case`` with the chunks/blocks ``comp_blosc2_params`` gives for the patch size, as
    ``DefaultPreprocessor.run_case_save`` writes a case."""
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2

    blocks, chunks = comp_blosc2_params(image.shape, tuple(cfg["patch"]), image.itemsize)
    blocks_seg, chunks_seg = comp_blosc2_params(seg.shape, tuple(cfg["patch"]), seg.itemsize)
    nnUNetDatasetBlosc2.save_case(image, seg, props, path, chunks=chunks, blocks=blocks, chunks_seg=chunks_seg,
                                  blocks_seg=blocks_seg)


def read_seg(folder, case):
    import blosc2

    return blosc2.open(urlpath=os.path.join(folder, case + "_seg.b2nd"), mode="r")[...]


def precompute(folder, cfg, dim, kinds=KINDS):
    """``precompute_maps`` (read seg, compute, encode, write), single process, one kind at a time: cases/s."""
    from nnunet_losses.nnunet.precompute import precompute_maps

    out = {}
    for kind in kinds:
        t = time.perf_counter()
        summary = precompute_maps(folder, [kind], NUM_CLASSES, dim == "2d", cfg["spacing"], num_processes=1,
                                  progress=False)
        out[kind] = summary["computed"] / (time.perf_counter() - t)
    return out


def ok(met):
    return "yes" if met else "**NO**"


def environment():
    from importlib.metadata import version

    import blosc2
    import scipy
    import torch

    return {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "nnunetv2": version("nnunetv2"), "blosc2": blosc2.__version__,
            "scipy": scipy.__version__, "python": sys.version.split()[0]}


def render_environment(results) -> str:
    env = results["environment"]
    return (f"Machine: {env['machine']}, {env['cpus']} CPU cores, no GPU used; Python {env['python']}, torch "
            f"{env['torch']} (1 thread), nnunetv2 {env['nnunetv2']}, blosc2 {env['blosc2']}, scipy {env['scipy']}. "
            f"Mode: {results['mode']}; whole run {results['total_seconds']:.0f} s.")


def main(questions, doc: str, argv=None):
    """Write the data, precompute its maps, run each question module's ``run(dim, data, args) -> dict`` (stored
    under its ``NAME``) and print the environment and each ``render(results)``; ``--json`` writes the results."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(doc.split("\n\n")[1:]))
    parser.add_argument("--quick", action="store_true", help="small shapes and few batches (a smoke run)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--only", choices=("2d", "3d"), help="run one dimensionality only")
    parser.add_argument("--keep", metavar="DIR", help="write the data here and keep it (default: a temp folder)")
    for question in questions:
        question.add_arguments(parser)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # as nnU-Net's augmentation workers (NonDetMultiThreadedAugmenter)
    configs = QUICK if args.quick else FULL
    dims = [args.only] if args.only else ["2d", "3d"]
    start = time.perf_counter()
    root = args.keep or tempfile.mkdtemp(prefix="nnunet_losses_maps_bench_")
    results = {"mode": "quick" if args.quick else "full", "goals": GOALS, "environment": environment()}
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
            data = {"label": label, "config": dict(cfg), "folder": folder, "cases": cases}
            data["precompute_maps_cases_per_s"] = precompute(folder, cfg, dim)
            print(f"[{dim}] wrote {len(cases)} cases and their maps in {time.perf_counter() - t0:.1f} s", flush=True)
            for question in questions:
                data[question.NAME] = question.run(dim, data, args)
                print(f"[{dim}] {question.NAME} done at {time.perf_counter() - start:.0f} s", flush=True)
            results[dim] = {k: v for k, v in data.items() if k not in ("folder", "cases")}
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    results["total_seconds"] = time.perf_counter() - start
    print()
    print("\n\n".join([render_environment(results)] + [q.render(results) for q in questions]))
    if args.json:
        from nnunet_losses._files import atomic_write_json

        atomic_write_json(args.json, results, indent=2, default=str)
    return results
