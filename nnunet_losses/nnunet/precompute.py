"""``nnunet-losses precompute-maps``: RW maps beside nnU-Net's preprocessed data.

Layout: ``nnUNet_preprocessed/<Dataset>/<data_identifier>_maps/`` (a sibling of the data folder: nnU-Net takes any
``*.b2nd`` inside the data folder for a case) holding, per case and map kind, ``<case>_<kind>.b2nd`` and a small
``<case>_<kind>.json`` record of the segmentation it was computed from (file size and modification time of
``<case>_seg.b2nd``): re-preprocessing rewrites the segmentation, so a stale map is detected at training start.

What is stored (quantised integers, blosc2/zstd-compressed, chunked like the segmentation; see BENCHMARKS.md for
the sizes):

* ``rrw``: one channel, the normalised inside distance ``m = d / max_{Omega_c} d`` of every voxel within its own
  class c (eq. 4 without the sign; 1 for a class filling the slice/volume), as uint8 in steps of 1/255 (error
  <= 0.002). The trainer rebuilds the full map ``z_k = (1 - Y_k) - m * Y_k`` after augmentation, from the augmented
  labels, so zero padding stays correct.
* ``boundary``: the K-channel signed distance map (eq. 3), as int16 in steps of 1/4 of the distance unit (voxels,
  or the spacing's unit when distances use the spacing; error <= 1/8 unit, distances up to 8191 units).

2D configurations get per-slice 2D maps (each slice normalised on its own); 3D configurations get 3D maps with the
configuration's spacing. Writes are atomic (temporary file, then rename); an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..maps import boundary_map, rrw_own_class_map

MAP_KINDS = ("rrw", "boundary")
FORMAT_VERSION = 2
# kind -> (stored dtype, scale): stored = round(value * scale)
QUANTISATION = {"rrw": (np.uint8, 255.0), "boundary": (np.int16, 4.0)}


def maps_folder(preprocessed_dataset_folder: str) -> str:
    """``.../<data_identifier>`` -> ``.../<data_identifier>_maps``."""
    return os.path.normpath(preprocessed_dataset_folder) + "_maps"


def map_file(folder: str, case: str, kind: str) -> str:
    return os.path.join(folder, f"{case}_{kind}.b2nd")


def _seg_stamp(seg_file: str) -> Dict[str, int]:
    st = os.stat(seg_file)
    return {"seg_size": int(st.st_size), "seg_mtime_ns": int(st.st_mtime_ns)}


def compute_case_map(seg: np.ndarray, kind: str, num_classes: int, is_2d: bool,
                     spacing: Optional[Sequence[float]]) -> np.ndarray:
    """The stored map of one case: seg (1, Z, Y, X) -> (C_map, Z, Y, X) float32."""
    labels = np.asarray(seg)[0]
    if kind == "rrw":
        fn = lambda lab, sp: rrw_own_class_map(lab, num_classes, sp)[None]  # noqa: E731
    elif kind == "boundary":
        fn = lambda lab, sp: boundary_map(lab, num_classes, sp)  # noqa: E731
    else:
        raise ValueError(f"unknown map kind {kind!r}; precomputed kinds: {MAP_KINDS}")
    if is_2d:
        in_plane = None if spacing is None else tuple(spacing)[-2:]
        slices = [fn(labels[z], in_plane) for z in range(labels.shape[0])]
        return np.stack(slices, 1).astype(np.float32)
    return fn(labels, spacing).astype(np.float32)


def quantise(array: np.ndarray, kind: str) -> np.ndarray:
    dtype, scale = QUANTISATION[kind]
    info = np.iinfo(dtype)
    return np.clip(np.round(array * scale), info.min, info.max).astype(dtype)


def dequantise(stored: np.ndarray, kind: str) -> np.ndarray:
    return stored.astype(np.float32) / np.float32(QUANTISATION[kind][1])


def _write_b2nd(array: np.ndarray, path: str, like) -> None:
    import blosc2

    tmp = path + ".tmp"
    if os.path.exists(tmp):
        os.remove(tmp)
    chunks = blocks = None
    if like is not None and len(getattr(like, "chunks", ())) == array.ndim:
        chunks = (array.shape[0],) + tuple(like.chunks[1:])
        blocks = (array.shape[0],) + tuple(like.blocks[1:])
    filters = [blosc2.Filter.SHUFFLE, blosc2.Filter.BYTEDELTA] if array.itemsize > 1 else [blosc2.Filter.NOFILTER]
    cparams = {"codec": blosc2.Codec.ZSTD, "clevel": 3, "nthreads": 1, "filters": filters}
    blosc2.asarray(np.ascontiguousarray(array), urlpath=tmp, mode="w", chunks=chunks,
                   blocks=blocks, cparams=cparams)
    os.replace(tmp, path)


def _write_json(obj: dict, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def case_status(data_folder: str, case: str, kind: str) -> str:
    """'ok', 'missing' or 'stale' for the ``kind`` map of ``case``."""
    folder = maps_folder(data_folder)
    record_file = map_file(folder, case, kind)[:-5] + ".json"
    if not (os.path.isfile(map_file(folder, case, kind)) and os.path.isfile(record_file)):
        return "missing"
    with open(record_file) as f:
        record = json.load(f)
    seg_file = os.path.join(data_folder, case + "_seg.b2nd")
    if record.get("version") != FORMAT_VERSION or record.get("kind") != kind or \
            {k: record.get(k) for k in ("seg_size", "seg_mtime_ns")} != _seg_stamp(seg_file):
        return "stale"
    return "ok"


def _work(args: Tuple) -> Tuple[str, str]:
    data_folder, case, kinds, num_classes, is_2d, spacing = args
    import blosc2

    seg_file = os.path.join(data_folder, case + "_seg.b2nd")
    seg = blosc2.open(urlpath=seg_file, mode="r")
    labels = seg[...]
    folder = maps_folder(data_folder)
    for kind in kinds:
        if case_status(data_folder, case, kind) == "ok":
            continue
        stamp = _seg_stamp(seg_file)
        array = compute_case_map(labels, kind, num_classes, is_2d, spacing)
        _write_b2nd(quantise(array, kind), map_file(folder, case, kind), seg)
        _write_json({"version": FORMAT_VERSION, "kind": kind, "case": case, "num_classes": num_classes,
                     "per_slice_2d": is_2d, "spacing": list(spacing) if spacing is not None else None,
                     "channels": int(array.shape[0]), **stamp}, map_file(folder, case, kind)[:-5] + ".json")
    return case, "done"


def list_cases(data_folder: str) -> List[str]:
    return sorted(f[:-len("_seg.b2nd")] for f in os.listdir(data_folder) if f.endswith("_seg.b2nd"))


def precompute_maps(data_folder: str, kinds: Sequence[str], num_classes: int, is_2d: bool,
                    spacing: Optional[Sequence[float]], num_processes: int = 1, progress: bool = True) -> Dict:
    """Compute the missing or stale maps of every case in ``data_folder``; returns counts per status."""
    from tqdm import tqdm

    for kind in kinds:
        if kind not in MAP_KINDS:
            raise ValueError(f"unknown map kind {kind!r}; precomputed kinds: {', '.join(MAP_KINDS)}")
    if not os.path.isdir(data_folder):
        raise FileNotFoundError(f"no preprocessed data folder {data_folder}: run nnUNetv2_plan_and_preprocess first")
    cases = list_cases(data_folder)
    if not cases:
        raise FileNotFoundError(f"no preprocessed cases (*_seg.b2nd) in {data_folder}")
    os.makedirs(maps_folder(data_folder), exist_ok=True)
    before = {kind: [case_status(data_folder, c, kind) for c in cases] for kind in kinds}
    todo = [c for i, c in enumerate(cases) if any(before[k][i] != "ok" for k in kinds)]
    jobs = [(data_folder, c, tuple(kinds), num_classes, is_2d, spacing) for c in todo]
    bar = tqdm(total=len(jobs), desc="precompute-maps", unit="case", disable=not progress)
    if num_processes > 1 and len(jobs) > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(num_processes) as pool:
            for _ in pool.imap_unordered(_work, jobs):
                bar.update()
    else:
        for job in jobs:
            _work(job)
            bar.update()
    bar.close()
    summary = {"cases": len(cases), "computed": len(todo), "up_to_date": len(cases) - len(todo),
               "stale_before": sum(s == "stale" for k in kinds for s in before[k]), "folder": maps_folder(data_folder),
               "kinds": list(kinds)}
    _write_json({"version": FORMAT_VERSION, "kinds": list(kinds), "num_classes": num_classes,
                 "per_slice_2d": is_2d, "spacing": list(spacing) if spacing is not None else None,
                 "cases": cases}, os.path.join(maps_folder(data_folder), "manifest.json"))
    return summary


def check_maps(data_folder: str, cases: Sequence[str], kind: str, command: str) -> None:
    """Raise with the command to run when any map of ``cases`` is missing or stale."""
    bad = {}
    for case in cases:
        status = case_status(data_folder, case, kind)
        if status != "ok":
            bad.setdefault(status, []).append(case)
    if bad:
        details = "; ".join(f"{status}: {len(v)} case(s), e.g. {v[0]}" for status, v in bad.items())
        raise RuntimeError(f"precomputed {kind!r} maps in {maps_folder(data_folder)} are not usable ({details}). "
                           f"Run: {command}")


def resolve_dataset_folder(dataset: str) -> str:
    """``nnUNet_preprocessed/DatasetXXX_Name`` of a dataset id or name."""
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    if not nnUNet_preprocessed.is_set():
        raise RuntimeError("nnUNet_preprocessed is not set (nnU-Net's environment variable)")
    return os.path.join(str(nnUNet_preprocessed.get()), maybe_convert_to_dataset_name(dataset))


def resolve_dataset(dataset: str, configuration: str, plans: str = "nnUNetPlans"):
    """(data folder, num_classes, is_2d, spacing, ignore/regions info) of a dataset id or name and configuration."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    base = resolve_dataset_folder(dataset)
    plans_manager = PlansManager(os.path.join(base, plans + ".json"))
    config = plans_manager.get_configuration(configuration)
    label_manager = plans_manager.get_label_manager(load_json(os.path.join(base, "dataset.json")))
    data_folder = os.path.join(base, config.data_identifier)
    is_2d = len(config.patch_size) == 2
    return data_folder, label_manager, is_2d, tuple(float(s) for s in config.spacing)
