"""What does the training-start check of the precomputed maps cost, now that it hashes every byte?

    python benchmarks/maps_verify.py [--cases 40] [--shape 96,160,160] [--json out.json]
    python benchmarks/maps_verify.py --folder $nnUNet_preprocessed/Dataset001_X/nnUNetPlans_3d_fullres

:func:`~nnunet_losses.nnunet.precompute.check_maps` (what every trainer runs on every rank before the first
iteration) hashes each map and the segmentation it was computed from (SHA-256, files in a thread pool). Timed per
kind (a trainer checks one kind) with the files in the page cache (best of ``--repeats``) and cold (the files
fsynced and dropped from the page cache with ``posix_fadvise(DONTNEED)``, no root needed; on a virtual machine the
host may still cache them), with the default threads and with one thread. For comparison, the check of earlier
versions: sizes and the SHA-256 of the first and last 64 KiB of each file.

Data (without ``--folder``): ``--cases`` 3D cases of ``--shape`` written as nnU-Net writes them (``maps_data.py``:
4 classes, irregular blobs, a cylindrical field of view, spacing (1.5, 0.8, 0.8)), maps of both kinds from
``precompute_maps``, in a temporary folder.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import tempfile
import time

from maps_data import KINDS, NUM_CLASSES, environment, write_dataset


def _files(folder, cases, kind):
    from nnunet_losses.nnunet.precompute import map_file, maps_folder

    return [p for case in cases for p in (os.path.join(folder, case + "_seg.b2nd"),
                                          map_file(maps_folder(folder), case, kind))]


def _drop_from_page_cache(paths):
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # written pages must be clean to be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _quick_check(paths):
    """The check of earlier versions: size and SHA-256 of the first and last 64 KiB of each file."""
    for path in paths:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            ends = f.read(1 << 16)
            if size > 1 << 17:
                f.seek(size - (1 << 16))
            ends += f.read()
        hashlib.sha256(ends).hexdigest()


def _time(fn, repeats, before=None):
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def measure(folder, cases, repeats):
    from nnunet_losses.nnunet import precompute

    rows = []
    for kind in precompute.read_manifest(folder).get("kinds", {}):
        paths = _files(folder, cases, kind)
        mb = sum(os.path.getsize(p) for p in paths) / 1e6
        maps_mb = sum(os.path.getsize(p) for p in paths[1::2]) / 1e6
        default_threads = precompute.CHECK_THREADS
        for threads in (default_threads, 1):
            precompute.CHECK_THREADS = threads

            def check():
                precompute.check_maps(folder, cases, kind, "CMD")

            check()  # in the page cache
            warm, warm_median = _time(check, repeats)
            cold, cold_median = _time(check, max(1, repeats // 2), lambda: _drop_from_page_cache(paths))
            rows.append({"kind": kind, "cases": len(cases), "MB": round(mb, 1), "maps_MB": round(maps_mb, 1),
                         "threads": threads, "warm_s": warm, "warm_median_s": warm_median, "cold_s": cold,
                         "cold_median_s": cold_median})
        precompute.CHECK_THREADS = default_threads
        quick, _ = _time(lambda: _quick_check(paths), repeats)
        rows.append({"kind": kind, "cases": len(cases), "MB": round(mb, 1), "maps_MB": round(maps_mb, 1),
                     "threads": "quick (earlier versions)", "warm_s": quick})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", help="an nnU-Net data folder whose maps precompute-maps wrote (default: make one)")
    parser.add_argument("--keep", help="write the data into this folder and keep it (for --folder later)")
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--shape", default="96,160,160")
    parser.add_argument("--np", type=int, default=os.cpu_count() or 1, help="processes computing the maps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    from nnunet_losses.nnunet.precompute import list_cases, precompute_maps

    root = None
    t0 = time.perf_counter()
    try:
        if args.folder:
            folder = args.folder
        else:
            root = tempfile.mkdtemp(prefix="maps_verify_") if not args.keep else None
            folder = os.path.join(root or args.keep, "nnUNetPlans_3d_fullres")
            shape = tuple(int(s) for s in args.shape.split(","))
            cfg = {"cases": args.cases, "shape": shape, "spacing": (1.5, 0.8, 0.8), "patch": (128, 128, 128)}
            write_dataset(folder, cfg, seed=0)
            precompute_maps(folder, list(KINDS), NUM_CLASSES, False, cfg["spacing"], num_processes=args.np,
                            progress=False)
        prepared = time.perf_counter() - t0
        rows = measure(folder, list_cases(folder), args.repeats)
    finally:
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    env = environment()
    print(f"# {env['machine']}, {env['cpus']} CPU cores, Python {env['python']}, blosc2 {env['blosc2']}; data "
          f"{args.folder or f'{args.cases} x {args.shape}'} (prepared in {prepared:.0f} s)")
    print("| kind | cases | MB hashed (maps) | threads | in page cache s | cold s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        cold = f"{r['cold_s']:.3f}" if "cold_s" in r else "-"
        print(f"| {r['kind']} | {r['cases']} | {r['MB']} ({r['maps_MB']}) | {r['threads']} | {r['warm_s']:.3f} | "
              f"{cold} |")
    if args.json:
        from nnunet_losses._files import atomic_write_json

        atomic_write_json(args.json, {"environment": env, "args": vars(args), "rows": rows}, indent=1)


if __name__ == "__main__":
    main()
