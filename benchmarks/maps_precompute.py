"""(a) Precompute: how fast are the stored maps computed, and how close are they to the RW paper code's maps?

    python benchmarks/maps_precompute.py [--quick] [--only 2d|3d] [--json out.json]

Throughput (cases/s), single process: ours (``compute_case_map``: one multi-label ``edt`` pass for RRW, plus one
``edt`` per class for boundary maps) against the RW paper code's method written here (scipy
``distance_transform_edt`` per class per case: RRW = -(inside distance of each class / its maximum), +1 outside;
boundary = Kervadec's ``one_hot2dist``, two EDTs per class). Both give the full K-channel map (ours rebuilt from
the stored form by the format table's rebuild, :data:`nnunet_losses.maps.formats.FORMATS`, as the map pipeline
does); the max absolute difference is printed, for the float32 maps and for the maps as stored on disk. Per-call
EDT times bound the achievable speed-up. Goal: ours >= 30x faster. The data: ``maps_data.py``.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from maps_data import GOALS, KINDS, NUM_CLASSES, main, ok, read_seg

NAME = "precompute"


def add_arguments(parser):
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of our precompute (median; default 3)")
    parser.add_argument("--ref-repeats", type=int, default=1, help="timed runs of the scipy reference (default 1)")


# ------------------------------------------------------------------------- the RW paper code's method
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


def compare(dim, folder, cases, cfg, repeats, ref_repeats):
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




def run(dim, data, args):
    folder, cases, cfg = data["folder"], data["cases"], data["config"]
    return {"rows": compare(dim, folder, cases, cfg, args.repeats, args.ref_repeats),
            "edt_calls": edt_call_times(folder, cases[0], cfg, dim),
            "stored_error": stored_error(dim, folder, cases, cfg),
            "repeats": args.repeats, "ref_repeats": args.ref_repeats}


def render(results) -> str:
    dims = [d for d in ("2d", "3d") if d in results]
    first = results[dims[0]]["precompute"]
    lines = []
    lines += ["**(a) Precompute**, single process, compute only (ours: median of "
              f"{first['repeats']} runs; reference: {first['ref_repeats']} run). Max abs diff: the full K-channel "
              "map against the scipy reference, float32 and as stored on disk (values in units of the spacing).", "",
              "| data | kind | ours cases/s | scipy per-class cases/s | speed-up | goal | met | max abs diff float32 "
              "| max abs diff stored | max abs value | precompute_maps cases/s (read, compute, encode, write) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for dim in dims:
        d = results[dim]
        for kind in KINDS:
            p = d["precompute"]["rows"][kind]
            sp = p["speedup"]
            lines.append(f"| {d['label']} | {kind} | {p['ours_cases_per_s']:.2f} | {p['ref_cases_per_s']:.3f} | "
                         f"{sp:.1f}x | >= 30x | {ok(sp >= GOALS['precompute_speedup'])} | "
                         f"{p['max_abs_diff']:.1e} | {d['precompute']['stored_error'][kind]:.1e} | "
                         f"{p['max_abs_value']:.1f} | "
                         f"{d['precompute_maps_cases_per_s'][kind]:.2f} |")
    lines += ["", "EDT cost per call (what bounds the speed-up):", "",
              "| data | unit | scipy per class (ms, k=0..3) | edt binary per class (ms) | edt multi-label (ms) | "
              "scipy / edt binary | ceiling RRW (K scipy / 1 multi-label) | ceiling boundary (2K scipy / "
              "(multi-label + K binary)) |", "|---|---|---|---|---|---|---|---|"]
    for dim in dims:
        e = results[dim]["precompute"]["edt_calls"]
        lines.append(f"| {dim.upper()} | {e['unit']} | {', '.join(f'{x:.1f}' for x in e['scipy_ms_per_class'])} | "
                     f"{', '.join(f'{x:.1f}' for x in e['edt_binary_ms_per_class'])} | {e['edt_multilabel_ms']:.1f} | "
                     f"{e['scipy_over_edt_binary']:.1f}x | {e['ceiling_rrw']:.1f}x | {e['ceiling_boundary']:.1f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    main([sys.modules[__name__]], __doc__)
