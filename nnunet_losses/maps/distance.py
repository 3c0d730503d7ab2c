"""RW maps of Valverde & Tohka, "Region-wise loss for biomedical image segmentation", Pattern Recognition 2023
(doi:10.1016/j.patcog.2022.109208, arXiv:2108.01405): RRW (eq. 4), RW-Boundary (eq. 3, the signed distance of
Kervadec et al., "Boundary loss for highly unbalanced segmentation", Medical Image Analysis 2021,
doi:10.1016/j.media.2020.101851, arXiv:1812.07032, and the variant the RW authors' code computes), RW-AC (1 - Y).

The RRW map has three forms: the full map :func:`rrw_map` (K channels), the K-channel inside map
:func:`rrw_inside_map` (``m Y``) and the one-channel :func:`rrw_own_class_map` (``m``, what is stored); the full map
is rebuilt from either of the other two by :func:`rectified_map_from_inside`.

Label conventions: labels in [0, num_classes) are classes. Negative labels (nnU-Net's -1 outside the nonzero mask)
count as background 0, as nnU-Net's data loader does. Labels >= num_classes (nnU-Net's ignore label) belong to no
class: they are "outside" every class, and the loss masks them anyway.

Distances are Euclidean between voxel centres, in voxels, or in the units of ``spacing`` (one value per axis) when
given. They come from the ``edt`` package: one multi-label pass gives every voxel its distance to the nearest voxel
of another label, i.e. the inside distance of every class at once.
"""
from __future__ import annotations

from typing import Optional, Sequence

import edt
import numpy as np


def _check(labels: np.ndarray, num_classes: int, spacing: Optional[Sequence[float]]):
    labels = np.asarray(labels)
    if labels.ndim not in (1, 2, 3):
        raise ValueError(f"maps: labels must have 1, 2 or 3 dimensions, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) and not np.issubdtype(labels.dtype, np.bool_):
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError("maps: labels must be integers (got non-integer values)")
    if int(num_classes) < 1:
        raise ValueError(f"maps: num_classes must be >= 1, got {num_classes}")
    if spacing is None:
        spacing = (1.0,) * labels.ndim
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != labels.ndim or any(not np.isfinite(s) or s <= 0 for s in spacing):
        raise ValueError(f"maps: spacing needs {labels.ndim} positive values, got {spacing}")
    lab = labels.astype(np.int64)
    lab[lab < 0] = 0
    lab[lab >= num_classes] = num_classes  # one shared "no class" label
    return lab, int(num_classes), spacing


def _label_image(lab: np.ndarray, num_classes: int) -> np.ndarray:
    """Labels shifted to >= 1 (every voxel is "foreground" for edt's multi-label pass), in the smallest dtype."""
    return (lab + 1).astype(np.uint8 if num_classes < 255 else np.uint32)


def onehot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """float32 one-hot labels ``Y`` (num_classes, *spatial) of labels (*spatial), by the label conventions above
    (negative labels: background 0; labels >= num_classes: no class, all-zero ``Y``). The one-hot of the data
    loader's batches on the training device is :func:`nnunet_losses.nnunet.map_pipeline.onehot`."""
    lab, k_classes, _ = _check(labels, num_classes, None)
    return (lab[None] == np.arange(k_classes).reshape((-1,) + (1,) * lab.ndim)).astype(np.float32)


def complement(onehot_labels):
    """``1 - Y`` of the float one-hot labels (numpy arrays or torch tensors): RW-AC's map (section 3.2) and the
    outside part of the RRW map."""
    return 1.0 - onehot_labels


def _edt(data: np.ndarray, spacing, black_border: bool = False) -> np.ndarray:
    data = np.ascontiguousarray(data)
    aniso = spacing[0] if data.ndim == 1 else spacing
    return edt.edt(data, anisotropy=aniso, black_border=black_border, parallel=1).astype(np.float32)


def rrw_own_class_map(labels: np.ndarray, num_classes: int, spacing: Optional[Sequence[float]] = None) -> np.ndarray:
    """One channel: each voxel's distance to the nearest voxel outside its own class, divided by the largest such
    distance in that class (1 for a class filling the array; 0 for labels that are no class). *spatial -> float32.
    """
    lab, k_classes, spacing = _check(labels, num_classes, spacing)
    dist = _edt(_label_image(lab, k_classes), spacing)
    out = np.zeros(lab.shape, dtype=np.float32)
    for k in range(k_classes):
        inside = lab == k
        if not inside.any():
            continue
        d = dist[inside]
        largest = d.max()
        out[inside] = 1.0 if not np.isfinite(largest) else d / largest
    return out


def rrw_inside_map(labels: np.ndarray, num_classes: int, spacing: Optional[Sequence[float]] = None) -> np.ndarray:
    """``m_k = d / max_{Omega_k} d`` inside class k, 0 outside: the part of the RRW map that survives zero padding.

    The full RRW map is ``z = (1 - Y) - m`` (:func:`rectified_map_from_inside`). A class that fills the array gets
    m = 1.
    """
    return onehot(labels, num_classes) * rrw_own_class_map(labels, num_classes, spacing)[None]


def rectified_map_from_inside(inside, onehot):
    """Full RRW map ``z = (1 - Y) - m Y`` from the normalised inside distance ``m`` and the float one-hot labels
    ``Y`` (numpy arrays or torch tensors): +1 outside each class, ``-m`` inside.

    ``m`` is the K-channel inside map (:func:`rrw_inside_map`) or the one-channel own-class map
    (:func:`rrw_own_class_map`), broadcast over the K channels of ``Y``: what survives zero padding in nnU-Net's
    augmentation, so the full map is rebuilt afterwards from the augmented labels. Absent class: +1 everywhere;
    class filling the patch: m = 1 there, so -1. Labels that are no class (all-zero ``Y``): +1 in every channel.
    """
    if len(inside.shape) != len(onehot.shape) or any(
            a != b and a != 1 for a, b in zip(inside.shape, onehot.shape)):
        raise ValueError(f"inside map {tuple(inside.shape)} and one-hot target {tuple(onehot.shape)} differ in shape")
    return complement(onehot) - inside * onehot


def rrw_map(labels: np.ndarray, num_classes: int, spacing: Optional[Sequence[float]] = None) -> np.ndarray:
    """Rectified RW map (eq. 4): ``-d / max_{Omega_k} d`` inside class k, +1 outside.

    Absent class: +1 everywhere. Class filling the whole array: -1 everywhere (its distance to another label is
    undefined; ``edt`` returns inf and scipy garbage there, so we define it).
    """
    own = rrw_own_class_map(labels, num_classes, spacing)
    return rectified_map_from_inside(own[None], onehot(labels, num_classes))


def boundary_map(labels: np.ndarray, num_classes: int, spacing: Optional[Sequence[float]] = None) -> np.ndarray:
    """RW-Boundary map (eq. 3), Kervadec et al.'s signed distance, per class k::

        outside k: distance to the nearest voxel of k          (> 0)
        inside k:  -(distance to the nearest voxel not in k - 1)   (0 on the inner boundary, < 0 deeper)

    Not normalised. Absent class: 0 everywhere (Kervadec's code). Class filling the array: the outside of the array
    counts as "not k", so the inside values are -(distance to the array border - 1). The RW authors' code uses
    ``-distance`` inside (this map minus Y): :func:`boundary_map_authors`.
    """
    lab, k_classes, spacing = _check(labels, num_classes, spacing)
    dist_in = _edt(_label_image(lab, k_classes), spacing)
    out = np.zeros((k_classes,) + lab.shape, dtype=np.float32)
    for k in range(k_classes):
        inside = lab == k
        if not inside.any():
            continue
        if inside.all():
            out[k] = -(_edt(inside.astype(np.uint8), spacing, black_border=True) - 1.0)
            continue
        dist_out = _edt((~inside).astype(np.uint8), spacing)
        out[k] = np.where(inside, -(dist_in - 1.0), dist_out)
    return out


def boundary_map_authors(labels: np.ndarray, num_classes: int,
                         spacing: Optional[Sequence[float]] = None) -> np.ndarray:
    """RW-Boundary map as the RW authors' code computes it (``BoundaryLoss`` in their nnU-Net fork,
    github.com/jmlipman/RegionWiseLoss), which Fig. 5 and 6 of Valverde & Tohka (Pattern Recognition 2023) come from::

        outside k: distance to the nearest voxel of k          (> 0, as eq. 3)
        inside k:  -(distance to the nearest voxel not in k)   (-1 on the inner boundary)

    i.e. :func:`boundary_map` minus the one-hot labels Y: eq. 3 and Kervadec et al. subtract 1 inside, the
    code does not. The constant -Y changes the loss by -mean(Y * softmax) and its gradient. Absent class: 0
    everywhere (the code reuses the previous class's map there, a bug we do not copy). Class filling the array: the
    outside of the array counts as "not k" (the code's scipy call is undefined there).
    """
    return boundary_map(labels, num_classes, spacing) - onehot(labels, num_classes)


def ac_map(labels: np.ndarray, num_classes: int, spacing: Optional[Sequence[float]] = None) -> np.ndarray:
    """RW-AC map: ``Z = 1 - Y`` (the region term of the active-contour loss, section 3.2). ``spacing`` is unused."""
    _check(labels, num_classes, spacing)
    return complement(onehot(labels, num_classes))
