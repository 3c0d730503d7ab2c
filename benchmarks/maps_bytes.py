"""(c) Bytes: how much disk do the stored maps take beside nnU-Net's preprocessed images?

    python benchmarks/maps_bytes.py [--quick] [--only 2d|3d] [--explore] [--json out.json]

Bytes of the maps folder as a fraction of the preprocessed image files (``<case>.b2nd``, not ``_seg``), per stored
kind. Goal: <= 15%. ``--explore`` also measures alternative encodings of the same maps (size, error, encode and
decode time) that the stored format does not use, with their measured numbers in BENCHMARKS.md, Maps. The
data: ``maps_data.py``.
"""
from __future__ import annotations

import os
import time

import numpy as np

from maps_data import GOALS, KINDS, NUM_CLASSES, main, ok

NAME = "bytes"
NEAR_BOUNDARY = 2.0  # |map value| below this (units of the spacing): where the boundary loss weighs most


def add_arguments(parser):
    parser.add_argument("--explore", action="store_true",
                        help="also measure alternative encodings the stored format does not use (BENCHMARKS.md)")


def folder_bytes(folder, suffix, exclude=None):
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
               if f.endswith(suffix) and not (exclude and f.endswith(exclude)))


def sizes(folder, cases, cfg):
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


def _stepped(steps):
    """int16 with a step that grows with |d|: ``steps`` = [(up to |d|, step), ...], the last step beyond."""
    edges, codes = [0.0], [0.0]
    for upto, step in steps[:-1]:
        codes.append(codes[-1] + (upto - edges[-1]) / step)
        edges.append(upto)
    edges, codes, last = np.array(edges), np.array(codes), steps[-1][1]
    info = np.iinfo(np.int16)

    def encode(m, lab):
        a = np.abs(m).astype(np.float64)
        c = np.where(a > edges[-1], codes[-1] + (a - edges[-1]) / last, np.interp(a, edges, codes))
        return np.clip(np.sign(m) * np.round(c), info.min, info.max).astype(np.int16)

    def decode(a, lab):
        c = np.abs(a).astype(np.float64)
        d = np.where(c > codes[-1], edges[-1] + (c - codes[-1]) * last, np.interp(c, codes, edges))
        return (np.sign(a) * d).astype(np.float32)

    return encode, decode


def _log_companded(a_scale, b_units):
    """int8 of sign(d) round(A ln(1 + |d| / B)): step B / A near the boundary, growing with |d|."""
    def encode(m, lab):
        return np.clip(np.sign(m) * np.round(a_scale * np.log1p(np.abs(m) / b_units)), -127, 127).astype(np.int8)

    def decode(a, lab):
        return (np.sign(a) * b_units * np.expm1(np.abs(a.astype(np.float32)) / a_scale)).astype(np.float32)

    return encode, decode


def _row_differences(scale):
    """Lossless rearrangement of format v2: the int16 steps of 1/scale, stored as differences along each row."""
    info = np.iinfo(np.int16)

    def encode(m, lab):
        q = np.clip(np.round(m * scale), info.min, info.max).astype(np.int32)
        return np.diff(q, axis=-1, prepend=0).astype(np.int16)

    def decode(a, lab):
        return (np.cumsum(a, axis=-1, dtype=np.int32) / np.float32(scale)).astype(np.float32)

    return encode, decode


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


def _outside_only(codec, per_slice):
    """Exact rearrangement: store only the outside distances (0 inside each class), encoded by ``codec`` (encode,
    decode); a voxel's inside value is rebuilt from the other classes' outside distances there:
    -(min_{m != k} d_m - 1). Valid when there is no ignore label and no slice/volume holds a single label (then the
    'own' distance goes to the array border), and only before zero padding (it would read as distance 0)."""
    encode_part, decode_part = codec

    def encode(m, lab):
        return encode_part(np.where(m > 0, m, 0), lab)

    def decode(a, lab):
        d = decode_part(a, lab)
        k = d.shape[0]
        onehot = lab[None] == np.arange(k).reshape((-1,) + (1,) * lab.ndim)
        # absent classes (per slice for 2D maps) are all-zero channels: they must not enter the minimum
        axes = tuple(range(2, onehot.ndim)) if per_slice else tuple(range(1, onehot.ndim))
        present = onehot.any(axis=axes, keepdims=True)
        big = np.where(present, d, np.inf)
        out = d.copy()
        for c in range(k):
            others = np.delete(big, c, axis=0).min(0)
            out[c] = np.where(onehot[c], -(others - 1.0), d[c])
        return out

    return encode, decode


def _half_resolution(scale, per_slice):
    """int16 quantised, every other voxel per axis (in-plane for 2D), linear interpolation back."""
    import torch

    info = np.iinfo(np.int16)

    def encode(m, lab):
        sub = m[:, :, ::2, ::2] if per_slice else m[:, ::2, ::2, ::2]
        return np.clip(np.round(sub * scale), info.min, info.max).astype(np.int16)

    def decode(a, lab):
        t = torch.from_numpy(a.astype(np.float32) / np.float32(scale))
        if per_slice:
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


def _encodings(kind, per_slice):
    """name -> (encode(map, labels), decode(array, labels), filters, codec, clevel, exact)."""
    import blosc2

    S, BD, NF = blosc2.Filter.SHUFFLE, blosc2.Filter.BYTEDELTA, blosc2.Filter.NOFILTER
    Z, L = blosc2.Codec.ZSTD, blosc2.Codec.LZ4HC
    f16 = (lambda m, lab: m.astype(np.float16), lambda a, lab: a.astype(np.float32))
    rows = {"float16, zstd 8, shuffle (format v1)": (*f16, [S], Z, 8)}
    if kind == "rrw":
        rows.update({
            "uint8 steps of 1/255, zstd 8": (*_quant(np.uint8, 255.0), [NF], Z, 8),
            "uint8 steps of 1/255, zstd 3 (what precompute-maps writes)": (*_quant(np.uint8, 255.0), [NF], Z, 3),
            "uint8 steps of 1/255, lz4hc 5 (nnU-Net's codec)": (*_quant(np.uint8, 255.0), [NF], L, 5),
            "uint8 steps of 1/63, zstd 8": (*_quant(np.uint8, 63.0), [NF], Z, 8),
        })
        return rows
    rows.update({
        "int16 1/4 unit, zstd 8, shuffle+bytedelta": (*_quant(np.int16, 4.0), [S, BD], Z, 8),
        "int16 1/4 unit, zstd 8, shuffle": (*_quant(np.int16, 4.0), [S], Z, 8),
        "int16 1/4 unit, zstd 3, shuffle+bytedelta (what precompute-maps writes)":
            (*_quant(np.int16, 4.0), [S, BD], Z, 3),
        "int16 1/4 unit, lz4hc 5, shuffle+bytedelta": (*_quant(np.int16, 4.0), [S, BD], L, 5),
        "int16 1/4 unit, zstd 9, shuffle+bytedelta": (*_quant(np.int16, 4.0), [S, BD], Z, 9),
        "int16 1 unit, zstd 8, shuffle+bytedelta": (*_quant(np.int16, 1.0), [S, BD], Z, 8),
        "int16 1/4 unit, outside parts only (exact rearrangement)":
            (*_outside_only(_quant(np.int16, 4.0), per_slice), [S, BD], Z, 8),
        "int16 1 unit, outside parts only, zstd 8, shuffle+bytedelta":
            (*_outside_only(_quant(np.int16, 1.0), per_slice), [S, BD], Z, 8),
        "int16 1 unit, outside parts only, zstd 3, shuffle":
            (*_outside_only(_quant(np.int16, 1.0), per_slice), [S], Z, 3),
        "int16 steps 1/4 up to 4 units then 1, outside parts only, zstd 3, shuffle":
            (*_outside_only(_stepped([(4, 0.25), (None, 1.0)]), per_slice), [S], Z, 3),
        "int16 steps 1/4 up to 4 units, 1 up to 16, then 4, outside parts only, zstd 3, shuffle":
            (*_outside_only(_stepped([(4, 0.25), (16, 1.0), (None, 4.0)]), per_slice), [S], Z, 3),
        "int16 steps 1/4 up to 8 units then 1, zstd 3, shuffle+bytedelta":
            (*_stepped([(8, 0.25), (None, 1.0)]), [S, BD], Z, 3),
        "int8 log-companded 32 ln(1 + abs(d) / 8) (step 1/4 at the boundary), zstd 3":
            (*_log_companded(32.0, 8.0), [NF], Z, 3),
        "int16 1/4 unit, differences along rows (lossless), zstd 3, shuffle": (*_row_differences(4.0), [S], Z, 3),
        "int8 sqrt-companded (scale per case), zstd 8": (*_sqrt_companded(), [NF], Z, 8),
        "int8 sqrt-companded (scale per case), outside parts only, zstd 8":
            (*_outside_only(_sqrt_companded(), per_slice), [NF], Z, 8),
        "int16 1/4 unit, half resolution, linear upsampling": (*_half_resolution(4.0, per_slice), [S, BD], Z, 8),
    })
    return rows


def explore_encodings(folder, cases, cfg, dim, image_bytes):
    """Compressed size (in-memory blosc2, chunks/blocks as precompute-maps writes them), max error against the
    float32 map and full-case decode time, for alternative encodings of the same maps."""
    import blosc2

    from nnunet_losses.nnunet.precompute import compute_case_map

    out = {}
    for kind in KINDS:
        items = []
        for c in cases:
            seg_nd = blosc2.open(urlpath=os.path.join(folder, c + "_seg.b2nd"), mode="r")
            seg = seg_nd[...]
            items.append((compute_case_map(seg, kind, NUM_CLASSES, dim == "2d", cfg["spacing"]),
                          np.maximum(seg[0], 0), seg_nd))
        rows = {}
        for name, (encode, decode, filters, codec, clevel) in _encodings(kind, dim == "2d").items():
            total, err, err_near, dec_t, enc_t = 0, 0.0, 0.0, 0.0, 0.0
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
                diff = np.abs(back - m)
                err = max(err, float(diff.max()))
                near = np.abs(m) < NEAR_BOUNDARY
                err_near = max(err_near, float(diff[near].max()) if near.any() else 0.0)
            rows[name] = {"bytes": total, "fraction_of_image_files": total / image_bytes, "max_abs_error": err,
                          "max_abs_error_near_boundary": err_near,
                          "decode_ms_per_case": 1000 * dec_t / len(cases),
                          "encode_ms_per_case": 1000 * enc_t / len(cases)}
        out[kind] = rows
    return out


# ----------------------------------------------------------------------------------------------- main


def run(dim, data, args):
    folder, cases, cfg = data["folder"], data["cases"], data["config"]
    out = {"sizes": sizes(folder, cases, cfg)}
    if args.explore:
        out["encodings"] = explore_encodings(folder, cases, cfg, dim, out["sizes"]["image_bytes"])
    return out


def render(results) -> str:
    dims = [d for d in ("2d", "3d") if d in results]
    lines = ["**(c) Disk**: maps folder bytes / preprocessed image files (`<case>.b2nd`, not `_seg`; one image "
              "channel, float32, nnU-Net's blosc2 settings).", "",
              "| data | kind | map bytes | image file bytes | fraction | goal | met | fraction of uncompressed "
              "float32 image |", "|---|---|---|---|---|---|---|---|"]
    for dim in dims:
        d = results[dim]
        b = d["bytes"]["sizes"]
        for kind in KINDS:
            f = b[kind]["fraction_of_image_files"]
            lines.append(f"| {d['label']} | {kind} | {b[kind]['map_bytes']:,} | {b['image_bytes']:,} | {100 * f:.1f}% "
                         f"| <= 15% | {ok(f <= GOALS['bytes_fraction'])} | "
                         f"{100 * b[kind]['fraction_of_uncompressed_image']:.1f}% |")
    if "encodings" not in results[dims[0]]["bytes"]:
        return "\n".join(lines)
    lines += ["", "Alternative encodings of the same maps (in-memory blosc2 with the chunks precompute-maps uses; "
              "fraction of the image files; max abs error against the float32 map, everywhere and where "
              f"|map| < {NEAR_BOUNDARY:g} (near the boundary; RRW maps lie in [-1, 1]); whole-case encode (quantise + "
              "compress, 1 thread) and decode times):", "",
              "| kind | encoding | " + " | ".join(f"{d.upper()} fraction | {d.upper()} max error (near the boundary) | "
                                                 f"{d.upper()} encode / decode ms per case" for d in dims) + " |",
              "|---|---|" + "---|---|---|" * len(dims)]
    for kind in KINDS:
        for name in results[dims[0]]["bytes"]["encodings"][kind]:
            cells = []
            for dim in dims:
                a = results[dim]["bytes"]["encodings"][kind][name]
                cells.append(f"{100 * a['fraction_of_image_files']:.1f}% | {a['max_abs_error']:.3g} "
                             f"({a['max_abs_error_near_boundary']:.3g}) | "
                             f"{a['encode_ms_per_case']:.0f} / {a['decode_ms_per_case']:.0f}")
            lines.append(f"| {kind} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    main([sys.modules[__name__]], __doc__)
