"""``nnunet-losses precompute-maps``: RW maps beside nnU-Net's preprocessed data.

Layout: ``nnUNet_preprocessed/<Dataset>/<data_identifier>_maps/`` (a sibling of the data folder: nnU-Net takes any
``*.b2nd`` inside the data folder for a case) holding ``manifest.json`` (the settings of each map kind, see
:func:`map_settings`) and, per case and map kind, ``<case>_<kind>.b2nd`` with a ``<case>_<kind>.json`` record:

* ``settings``: everything that changes a map's values: format version, kind, number of classes, 2D per slice or
  3D, the spacing the distances use (``None``: voxels), quantisation;
* ``seg``: size and SHA-256 of the ``<case>_seg.b2nd`` it was computed from (its content, not its modification
  time: a dataset copied with ``cp -r`` stays up to date, a re-preprocessed one does not);
* ``map``: size and SHA-256 of the map file itself (a truncated, overwritten, bit-flipped or swapped map is found).

(Records of earlier versions also hold ``quick``, a hash of the first and last 64 KiB; it is no longer read.)

Trainings make missing, stale or corrupt maps themselves before their first iteration (:func:`ensure_maps`: the
same code and atomic writes, one training at a time under a lock, the others wait and verify); ``precompute-maps``
prepares them beforehand (CPU nodes of a cluster, a read-only shared dataset), and ``nnUNet_losses_make_maps=f``
makes trainings refuse instead.

Two checks use them, both on every byte. :func:`check_maps` (training start, every rank) compares settings, sizes
and the SHA-256 of each map and its segmentation, the files hashed in a thread pool (hashlib releases the GIL);
training does not start on a map that differs from its record. ``precompute-maps`` does the same and recomputes
whatever differs; when everything is up to date it writes nothing (read-only shared datasets work) except that it
removes the temporary files killed writes left behind.

What is stored (quantised integers, blosc2/zstd-compressed, chunked like the segmentation; the table is
:data:`nnunet_losses.maps.KINDS`, BENCHMARKS.md has the sizes):

* ``rrw``: one channel, the normalised inside distance ``m = d / max_{Omega_c} d`` of every voxel within its own
  class c (eq. 4 without the sign; 1 for a class filling the slice/volume), as uint8 in steps of 1/255 (error
  <= 0.002). :class:`~nnunet_losses.nnunet.map_pipeline.MapPipeline` rebuilds the full map ``z = (1 - Y) - m Y``
  after augmentation, from the augmented labels, so zero padding stays correct.
* ``boundary``: the K-channel signed distance map (eq. 3), as int16 in steps of 1/4 of the distance unit (voxels,
  or the spacing's unit when distances use the spacing; error <= 1/8 unit, distances up to 8191 units). The RW
  authors' variant (inside ``-d``) is this map minus Y, built in the data loader from the augmented labels.

2D configurations get per-slice 2D maps (each slice normalised on its own); 3D configurations get 3D maps with the
configuration's spacing. Writes are atomic (:mod:`nnunet_losses._files`); an interrupted run resumes where it
stopped. Runs on one dataset at once (two folds' jobs on a cluster) both finish: each removes only the temporary
files of writes that are over (their process gone, or untouched for a day), never one another run is writing, and
when both compute a map they write the same bytes.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._args import env_switch
from .._files import atomic_write_bytes, atomic_write_json, remove_partial_files
from ..errors import MissingInput, StepFailed
from ..maps import stored_row
from ..maps.formats import quantise

FORMAT_VERSION = 3
MANIFEST = "manifest.json"
READ_BYTES = 1 << 20  # files are hashed in pieces of this size (hashlib releases the GIL on each)
CHECK_THREADS = min(16, (os.cpu_count() or 1) + 4)  # threads hashing at training start (reads overlap on slow disks)


class MapsNotReady(StepFailed):
    """Maps missing, stale or corrupt: ``precompute-maps`` (or the first training, :func:`ensure_maps`) makes them."""


def maps_folder(preprocessed_dataset_folder: str) -> str:
    """``.../<data_identifier>`` -> ``.../<data_identifier>_maps``."""
    return os.path.normpath(preprocessed_dataset_folder) + "_maps"


def map_file(folder: str, case: str, kind: str) -> str:
    return os.path.join(folder, f"{case}_{kind}.b2nd")


def _record_file(folder: str, case: str, kind: str) -> str:
    return os.path.join(folder, f"{case}_{kind}.json")


def _seg_file(data_folder: str, case: str) -> str:
    return os.path.join(data_folder, case + "_seg.b2nd")


def map_settings(kind: str, num_classes: int, is_2d: bool, spacing: Optional[Sequence[float]]) -> Dict:
    """Everything that changes the values of a ``kind`` map (``spacing=None``: distances in voxels). 2D
    configurations keep only the in-plane spacing, the only part their per-slice maps use."""
    fmt = stored_row(kind)  # ValueError naming the stored kinds
    if spacing is not None:
        spacing = [float(s) for s in spacing]
        spacing = spacing[-2:] if is_2d else spacing
    return {"version": FORMAT_VERSION, "kind": kind, "num_classes": int(num_classes), "per_slice_2d": bool(is_2d),
            "spacing": spacing, "stored": [np.dtype(fmt.dtype).name, fmt.scale]}


def describe_units(settings: Dict) -> str:
    return "voxels" if settings["spacing"] is None else f"the spacing {settings['spacing']}"


def units_flag(settings: Dict) -> str:
    """What ``precompute-maps`` needs to be told to rewrite maps of these settings."""
    return " --voxel-units" if settings["spacing"] is None else ""


# --------------------------------------------------------------------------------------------- fingerprints
def _fingerprint(data: bytes) -> Dict:
    """Size and SHA-256 of a file's bytes."""
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


_buffers = threading.local()  # one read buffer per thread


def _file_fingerprint(path: str) -> Dict:
    """Size and SHA-256 of a file, read in pieces of READ_BYTES (the GIL is released while reading and hashing)."""
    digest = hashlib.sha256()
    size = 0
    buffer = getattr(_buffers, "buffer", None)
    if buffer is None:
        buffer = _buffers.buffer = memoryview(bytearray(READ_BYTES))
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buffer)
            if not n:
                break
            digest.update(buffer[:n])
            size += n
    return {"size": size, "sha256": digest.hexdigest()}


# ------------------------------------------------------------------------------------------------ maps
def compute_case_map(seg: np.ndarray, kind: str, num_classes: int, is_2d: bool,
                     spacing: Optional[Sequence[float]]) -> np.ndarray:
    """The stored map of one case: seg (1, Z, Y, X) -> (C_map, Z, Y, X) float32."""
    labels = np.asarray(seg)[0]
    compute = stored_row(kind).compute  # ValueError naming the stored kinds
    if is_2d:
        in_plane = None if spacing is None else tuple(spacing)[-2:]
        slices = [compute(labels[z], num_classes, in_plane) for z in range(labels.shape[0])]
        return np.stack(slices, 1).astype(np.float32)
    return compute(labels, num_classes, spacing).astype(np.float32)


def _encode_b2nd(array: np.ndarray, like) -> bytes:
    """The ``.b2nd`` file of ``array`` (a blosc2 contiguous frame), chunked like ``like`` (the segmentation)."""
    import blosc2

    chunks = blocks = None
    if like is not None and len(getattr(like, "chunks", ())) == array.ndim:
        chunks = (array.shape[0],) + tuple(like.chunks[1:])
        blocks = (array.shape[0],) + tuple(like.blocks[1:])
    filters = [blosc2.Filter.SHUFFLE, blosc2.Filter.BYTEDELTA] if array.itemsize > 1 else [blosc2.Filter.NOFILTER]
    cparams = {"codec": blosc2.Codec.ZSTD, "clevel": 3, "nthreads": 1, "filters": filters}
    return blosc2.asarray(np.ascontiguousarray(array), chunks=chunks, blocks=blocks, cparams=cparams).to_cframe()


def _load_record(folder: str, case: str, kind: str) -> Optional[Dict]:
    try:
        with open(_record_file(folder, case, kind)) as f:
            record = json.load(f)
        return record if isinstance(record, dict) else None
    except (OSError, ValueError):
        return None


def _differs(recorded, path: str, known: Optional[Dict] = None) -> bool:
    """Whether the file at ``path`` (``known``: its fingerprint) is not the one ``recorded`` (size and SHA-256);
    a size that differs is found without reading the file."""
    if not isinstance(recorded, dict):
        return True
    if known is None:
        if recorded.get("size") != os.path.getsize(path):
            return True
        known = _file_fingerprint(path)
    return any(recorded.get(k) != known[k] for k in ("size", "sha256"))


def case_status(data_folder: str, case: str, settings: Dict, seg_fingerprint: Optional[Dict] = None) -> str:
    """'ok', 'missing', 'stale' (other settings or segmentation) or 'corrupt' (the map file is not the one written)
    for the map of ``case`` with ``settings``: sizes and SHA-256 of every byte of the map and its segmentation
    (``seg_fingerprint``: the segmentation's, when known)."""
    folder = maps_folder(data_folder)
    path = map_file(folder, case, settings["kind"])
    record = _load_record(folder, case, settings["kind"])
    if record is None or not os.path.isfile(path):
        return "missing"
    if record.get("settings") != settings or record.get("case") != case:
        return "stale"
    if _differs(record.get("seg"), _seg_file(data_folder, case), seg_fingerprint):
        return "stale"
    if _differs(record.get("map"), path):
        return "corrupt"
    return "ok"


def _status_job(args: Tuple) -> Tuple[str, List[str]]:
    data_folder, case, all_settings = args
    seg = _file_fingerprint(_seg_file(data_folder, case))
    return case, [case_status(data_folder, case, s, seg_fingerprint=seg) for s in all_settings]


def _compute_job(args: Tuple) -> str:
    data_folder, case, all_settings = args
    import blosc2

    seg_file = _seg_file(data_folder, case)
    with open(seg_file, "rb") as f:
        seg_bytes = f.read()
    seg = blosc2.ndarray_from_cframe(seg_bytes)  # the very bytes that are fingerprinted
    labels = seg[...]
    folder = maps_folder(data_folder)
    for settings in all_settings:
        kind = settings["kind"]
        array = compute_case_map(labels, kind, settings["num_classes"], settings["per_slice_2d"],
                                 settings["spacing"])
        data = _encode_b2nd(quantise(array, kind), seg)
        path = map_file(folder, case, kind)
        atomic_write_bytes(path, data)
        record = {"settings": settings, "case": case, "channels": int(array.shape[0]),
                  "seg": _fingerprint(seg_bytes), "map": _fingerprint(data)}
        atomic_write_json(_record_file(folder, case, kind), record)
    return case


def list_cases(data_folder: str) -> List[str]:
    return sorted(f[:-len("_seg.b2nd")] for f in os.listdir(data_folder) if f.endswith("_seg.b2nd"))


def _map(fn, jobs, num_processes: int, bar):
    if num_processes > 1 and len(jobs) > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(min(num_processes, len(jobs))) as pool:
            for result in pool.imap_unordered(fn, jobs):
                bar.update()
                yield result
    else:
        for job in jobs:
            yield fn(job)
            bar.update()


def _cannot_write(folder: str, todo: int) -> Optional[OSError]:
    """Why maps cannot be written into ``folder`` (itself or its nearest existing parent is a file, or is not
    writable), as the one-line error to raise; None when they can. ``todo``: the cases that need maps."""
    path = os.path.abspath(folder)
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        return NotADirectoryError(f"cannot write maps into {folder}: {path} is a file, not a folder ({todo} case(s) "
                                  f"need maps); move or delete it, then run nnunet-losses precompute-maps again")
    if not os.access(path, os.W_OK | os.X_OK):
        return PermissionError(f"cannot write maps into {folder}: {path} is not writable ({todo} case(s) need "
                               f"maps); make it writable, or copy the preprocessed dataset to a writable "
                               f"nnUNet_preprocessed and run again there")
    return None


def read_manifest(data_folder: str) -> Dict:
    """``{"version", "kinds": {kind: settings}}`` of the maps folder; {} when absent, unreadable or of another format."""
    try:
        with open(os.path.join(maps_folder(data_folder), MANIFEST)) as f:
            manifest = json.load(f)
        valid = isinstance(manifest, dict) and manifest.get("version") == FORMAT_VERSION and \
            isinstance(manifest.get("kinds"), dict)
        return manifest if valid else {}
    except (OSError, ValueError):
        return {}


def precompute_maps(data_folder: str, kinds: Sequence[str], num_classes: int, is_2d: bool,
                    spacing: Optional[Sequence[float]], num_processes: int = 1, progress: bool = True) -> Dict:
    """Compute the missing, stale or corrupt maps of every case in ``data_folder``; returns counts per status.

    Up-to-date maps are verified by their full SHA-256 and nothing is written when all are up to date.
    """
    from tqdm import tqdm

    all_settings = [map_settings(kind, num_classes, is_2d, spacing) for kind in kinds]
    if not os.path.isdir(data_folder):
        raise MissingInput(f"no preprocessed data folder {data_folder}: run nnUNetv2_plan_and_preprocess first")
    cases = list_cases(data_folder)
    if not cases:
        raise MissingInput(f"no preprocessed cases (*_seg.b2nd) in {data_folder}")
    folder = maps_folder(data_folder)
    bar = tqdm(total=len(cases), desc="precompute-maps: verify", unit="case", disable=not progress)
    before = dict(_map(_status_job, [(data_folder, c, all_settings) for c in cases], num_processes, bar))
    bar.close()
    todo = [(data_folder, c, [s for s, st in zip(all_settings, before[c]) if st != "ok"])
            for c in cases if any(st != "ok" for st in before[c])]
    manifest = read_manifest(data_folder) or {"version": FORMAT_VERSION, "kinds": {}}
    new_manifest = {**manifest, "kinds": {**manifest["kinds"], **{s["kind"]: s for s in all_settings}}}
    writes = bool(todo) or new_manifest != manifest
    if writes:
        blocker = _cannot_write(folder, len(todo))
        if blocker is not None:
            raise blocker
        os.makedirs(folder, exist_ok=True)
    # temporary files of killed writes (maps, records, manifest), not those of a run writing now
    leftovers = remove_partial_files(os.path.join(glob.escape(folder), "*")) \
        if os.path.isdir(folder) and _cannot_write(folder, 0) is None else []
    if writes:
        # the manifest first: it names the settings the maps must have, even if this run is interrupted
        atomic_write_json(os.path.join(folder, MANIFEST), new_manifest, indent=1)
    bar = tqdm(total=len(todo), desc="precompute-maps", unit="case", disable=not progress)
    for _ in _map(_compute_job, todo, num_processes, bar):
        pass
    bar.close()
    counts = {status: sum(st == status for c in cases for st in before[c]) for status in ("stale", "corrupt")}
    return {"cases": len(cases), "computed": len(todo), "up_to_date": len(cases) - len(todo),
            "stale_before": counts["stale"], "corrupt_before": counts["corrupt"], "folder": folder,
            "kinds": list(kinds), "leftovers_removed": len(leftovers)}


def check_maps(data_folder: str, cases: Sequence[str], kind: str, command: str, num_classes: Optional[int] = None,
               is_2d: Optional[bool] = None, spacing: Optional[Sequence[float]] = None) -> Dict:
    """Training start: raise with the command to run when any map of ``cases`` is missing, stale or corrupt.

    The settings are those of ``manifest.json`` (the last ``precompute-maps`` run: voxels or spacing); with
    ``num_classes``/``is_2d``/``spacing`` (the trainer's configuration) they must also match it. Every byte of the
    maps and their segmentations is hashed (SHA-256, files in a thread pool; ``benchmarks/maps_verify.py`` measures
    it). Returns the settings.
    """
    folder = maps_folder(data_folder)
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise StepFailed(f"{folder} is a file, not the folder of precomputed maps: move or delete it. Run: "
                         f"{command}")
    settings = read_manifest(data_folder).get("kinds", {}).get(kind)
    if settings is None:
        raise MapsNotReady(f"no precomputed {kind!r} maps in {folder} (its {MANIFEST} of format {FORMAT_VERSION} "
                           f"lists none). Run: {command}")
    command += units_flag(settings)
    if num_classes is not None:
        units = None if settings["spacing"] is None else spacing
        expected = map_settings(kind, num_classes, settings["per_slice_2d"] if is_2d is None else is_2d, units)
        if expected != settings:
            differs = ", ".join(f"{k} {settings.get(k)} (configuration: {expected[k]})" for k in expected
                                if settings.get(k) != expected[k])
            raise MapsNotReady(f"precomputed {kind!r} maps in {folder} are stale: {differs}. Run: {command}")
    bad: Dict[str, List[str]] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(len(cases), CHECK_THREADS))) as pool:
        for case, status in zip(cases, pool.map(lambda c: case_status(data_folder, c, settings), cases)):
            if status != "ok":
                bad.setdefault(status, []).append(case)
    if bad:
        details = "; ".join(f"{status}: {len(v)} case(s), e.g. {v[0]}" for status, v in bad.items())
        raise MapsNotReady(f"precomputed {kind!r} maps in {folder} are not usable ({details}). Run: {command}")
    return settings


# ------------------------------------------------------------------------------------ made on first training
MAKE_MAPS = "nnUNet_losses_make_maps"  # a false value: trainings refuse missing maps instead of making them
LOCK = ".lock"  # in the maps folder: one training makes the maps, the others wait, then verify


@contextmanager
def _exclusive(folder: str, waiting: Callable[[], None]):
    """Hold an exclusive lock on ``folder``'s lock file (released by the kernel when the process dies, so a killed
    training leaves none behind); ``waiting()`` is called once when another process holds it. Without ``fcntl``
    (Windows) there is no lock: concurrent makers then both compute, and write the same bytes."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(os.path.join(folder, LOCK), "a") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            waiting()
            fcntl.lockf(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN)


def ensure_maps(data_folder: str, cases: Sequence[str], kind: str, command: str, num_classes: int, is_2d: bool,
                spacing: Optional[Sequence[float]], log: Callable[[str], None] = print,
                num_processes: int = 1) -> Dict:
    """Training start: :func:`check_maps`, and when maps are missing, stale or corrupt, make them as
    ``precompute-maps`` does (every case of the data folder, atomic writes, resumable), then check again.

    Several trainings starting at once (folds, DDP ranks) take turns on a lock in the maps folder: the first makes
    the maps, the others wait and then find them up to date. Distances use the units of the manifest's maps of
    ``kind`` when there are any (``--voxel-units`` stays voxels), else the configuration's spacing, as
    ``precompute-maps``' default. Refuses (the check's one-line message) when :data:`MAKE_MAPS` is false or the
    folder is not writable. Returns the settings.
    """
    try:
        return check_maps(data_folder, cases, kind, command, num_classes, is_2d, spacing)
    except MapsNotReady as err:
        if not env_switch(MAKE_MAPS):
            raise MapsNotReady(f"{err} ({MAKE_MAPS} is off: trainings do not make maps themselves)") from None
        folder = maps_folder(data_folder)
        blocker = _cannot_write(folder, len(cases))
        if blocker is not None:
            raise MapsNotReady(f"{err} (the training cannot make them itself: {blocker})") from None
        log(f"nnunet-losses: {str(err).split('. Run:')[0]}: making them now, as `{command}` would")
    recorded = read_manifest(data_folder).get("kinds", {}).get(kind)
    units = spacing if recorded is None or recorded["spacing"] is not None else None
    os.makedirs(folder, exist_ok=True)
    with _exclusive(folder, lambda: log(f"nnunet-losses: another process is making the maps in {folder}: "
                                        "waiting for it")):
        start = time.monotonic()
        summary = precompute_maps(data_folder, [kind], num_classes, is_2d, units, num_processes=num_processes,
                                  progress=False)
    log(f"nnunet-losses: {kind!r} maps of {summary['computed']} case(s) made, {summary['up_to_date']} up to date, "
        f"in {folder} ({time.monotonic() - start:.1f} s, {num_processes} process(es))")
    return check_maps(data_folder, cases, kind, command, num_classes, is_2d, spacing)
