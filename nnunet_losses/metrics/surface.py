"""Surface distances between two binary masks: HD, both HD95s, ASSD and the normalised surface distance (NSD).

Every metric comes from one pair of directed distance sets on the same surface voxels:

* the surface of a mask is the mask minus its binary erosion with connectivity 1 (voxels outside the array count
  as background, so a mask touching the border has a surface there): medpy's (and MONAI's ``get_mask_edges``);
* ``d(A -> B)``: for every surface voxel of A, the Euclidean distance (in mm, with the voxel spacing) to the
  nearest surface voxel of B.

From ``forward = d(pred -> ref)`` and ``backward = d(ref -> pred)``:

* ``hd``: the larger maximum of the two;
* ``hd95`` (pooled): the 95th percentile of both directions' distances together: ``medpy.metric.binary.hd95``,
  which nnU-Net v1 and the RW paper's evaluator used;
* ``hd95_max`` (max-directed): the larger of the two directed 95th percentiles: Metrics Reloaded
  (Maier-Hein et al. 2024) and MONAI's ``compute_hausdorff_distance(percentile=95)``;
* ``assd``: the mean of both directions' distances pooled (medpy >= 0.5; medpy 0.4 averaged the two directions'
  means, which weighs the smaller surface more);
* ``nsd`` at tolerance tau (mm): ``(#{forward <= tau} + #{backward <= tau}) / (#forward + #backward)``, Metrics
  Reloaded's NSD and MONAI's ``compute_surface_dice(use_subvoxels=False)`` on these surface voxels (each surface
  voxel counts once; DeepMind's surface Dice weighs surfels by their area instead). A distance counts as within tau
  up to a relative 1e-6, so that a distance equal to tau counts whichever path below computed it.

Exact and faster than medpy: the masks are cropped to the bounding box of their union (Euclidean distances between
surface voxels do not depend on anything outside it, and the erosion treats the outside as background either way);
distances come from a k-d tree of the surface voxels (float64) when the surfaces are small next to the box, else
from ``edt``'s squared distance transform (float32; its input as uint8, which ``edt`` processes 2-3x faster than
bool), square-rooted only at the surface voxels.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

import edt
import numpy as np
from scipy.spatial import cKDTree

KDTREE_VOXELS_PER_POINT = 16  # measured in benchmarks/evaluate.py: with fewer voxels per surface point, edt wins
NSD_RELATIVE_SLACK = 1e-6


class SurfaceDistances(NamedTuple):
    hd: float
    hd95: float
    hd95_max: float
    assd: float
    nsd: float


def _crop_to_union(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    union = a | b
    box = []
    for axis in range(union.ndim):
        hit = np.flatnonzero(union.any(axis=tuple(i for i in range(union.ndim) if i != axis)))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return a[tuple(box)], b[tuple(box)]


def surface(mask: np.ndarray) -> np.ndarray:
    """The mask minus its erosion with connectivity 1, outside the array counting as background (equal to
    ``mask & ~scipy.ndimage.binary_erosion(mask, border_value=0)``, by slicing)."""
    interior = mask.copy()
    for axis in range(mask.ndim):
        if mask.shape[axis] < 3:
            interior[:] = False
            break
        lead = [slice(None)] * mask.ndim
        lead[axis] = slice(1, -1)
        before, after = list(lead), list(lead)
        before[axis], after[axis] = slice(None, -2), slice(2, None)
        edge_low, edge_high = [slice(None)] * mask.ndim, [slice(None)] * mask.ndim
        edge_low[axis], edge_high[axis] = 0, -1
        interior[tuple(edge_low)] = False
        interior[tuple(edge_high)] = False
        interior[tuple(lead)] &= mask[tuple(before)] & mask[tuple(after)]
    return mask & ~interior


def _distances_to(surface_from: np.ndarray, surface_to: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distance from every voxel of ``surface_from`` to the nearest voxel of ``surface_to``."""
    num_points = int(np.count_nonzero(surface_from)) + int(np.count_nonzero(surface_to))
    if num_points * KDTREE_VOXELS_PER_POINT < surface_from.size:
        scale = np.asarray(spacing, dtype=np.float64)
        tree = cKDTree(np.argwhere(surface_to) * scale)
        return tree.query(np.argwhere(surface_from) * scale)[0]
    anisotropy = tuple(float(s) for s in spacing)
    squared = edt.edtsq(np.ascontiguousarray(~surface_to).view(np.uint8),
                        anisotropy=anisotropy[0] if len(anisotropy) == 1 else anisotropy,
                        black_border=False, parallel=1)
    return np.sqrt(squared[surface_from].astype(np.float64))


def directed_distances(pred: np.ndarray, ref: np.ndarray,
                       spacing: Optional[Sequence[float]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """``(d(pred -> ref), d(ref -> pred))`` over the surface voxels of two non-empty binary masks (float64, mm).

    ``spacing`` is the voxel size per array axis (default 1). Masks of 1 to 3 dimensions (``edt``'s limit).
    """
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {ref.shape}")
    if not pred.any() or not ref.any():
        raise ValueError("surface distances need two non-empty masks (see metrics.case for the empty cases)")
    spacing = (1.0,) * pred.ndim if spacing is None else tuple(float(s) for s in spacing)
    if len(spacing) != pred.ndim:
        raise ValueError(f"{len(spacing)} spacing values for a {pred.ndim}-d mask")
    pred, ref = _crop_to_union(pred, ref)
    pred_surface, ref_surface = surface(pred), surface(ref)
    return _distances_to(pred_surface, ref_surface, spacing), _distances_to(ref_surface, pred_surface, spacing)


def _percentile95(values: np.ndarray) -> float:
    return float(np.percentile(values, 95))  # linear interpolation, as medpy and MONAI


def from_directed(forward: np.ndarray, backward: np.ndarray, tolerance: float = 1.0) -> SurfaceDistances:
    """Every surface metric from the two directed distance sets (see the module docstring); ``tolerance`` in mm
    for the NSD."""
    if tolerance < 0 or not np.isfinite(tolerance):
        raise ValueError(f"NSD tolerance must be a finite number >= 0 (mm), got {tolerance}")
    pooled = np.concatenate([forward, backward])
    within = tolerance * (1 + NSD_RELATIVE_SLACK)
    return SurfaceDistances(hd=float(pooled.max()), hd95=_percentile95(pooled),
                            hd95_max=max(_percentile95(forward), _percentile95(backward)),
                            assd=float(pooled.mean()),
                            nsd=float(np.count_nonzero(pooled <= within)) / pooled.size)


def surface_distances(pred: np.ndarray, ref: np.ndarray, spacing: Optional[Sequence[float]] = None,
                      tolerance: float = 1.0) -> SurfaceDistances:
    """HD, HD95 (pooled), HD95 (max-directed), ASSD and NSD at ``tolerance`` mm between two non-empty binary
    masks, from one pair of distance computations."""
    return from_directed(*directed_distances(pred, ref, spacing), tolerance=tolerance)
