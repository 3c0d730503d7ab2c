"""RW maps against scipy's per-class Euclidean distance transform (the RW paper code's method)."""
import functools

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt, gaussian_filter

from nnunet_losses.maps import ac_map, boundary_map, rectified_map_from_inside, rrw_inside_map, rrw_map
from reference import boundary_reference


def _blobs(shape, num_classes, seed):
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=(num_classes,) + shape), 1.5, axes=range(1, len(shape) + 1))
    weights = np.array([1.6] + [1.0] * (num_classes - 1)).reshape((-1,) + (1,) * len(shape))
    return np.argmax(field * weights, 0)


def _scipy_rrw(labels, num_classes, spacing):
    out = np.ones((num_classes,) + labels.shape)
    for k in range(num_classes):
        inside = labels == k
        if not inside.any():
            continue
        d = distance_transform_edt(inside, sampling=spacing)
        out[k][inside] = -d[inside] / d[inside].max()
    return out


_scipy_boundary = functools.partial(boundary_reference, inside_offset=1)  # eq. 3


CASES = [((40, 33), None), ((40, 33), (0.7, 1.3)), ((14, 17, 12), None), ((14, 17, 12), (2.5, 0.8, 0.8))]


@pytest.mark.parametrize("shape,spacing", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_maps_equal_scipy_reference(shape, spacing, seed):
    labels = _blobs(shape, 4, seed)
    assert len(np.unique(labels)) == 4  # every class present, none filling the array
    sp = spacing or (1.0,) * len(shape)
    z = rrw_map(labels, 4, spacing)
    assert z.dtype == np.float32 and z.shape == (4,) + shape
    assert np.allclose(z, _scipy_rrw(labels, 4, sp), atol=1e-5)
    assert np.allclose(boundary_map(labels, 4, spacing), _scipy_boundary(labels, 4, sp), atol=1e-4)
    onehot = np.stack([labels == k for k in range(4)]).astype(np.float32)
    assert np.array_equal(ac_map(labels, 4), 1 - onehot)
    inside = rrw_inside_map(labels, 4, spacing)
    assert np.allclose(z, (1 - onehot) - inside, atol=1e-6)
    assert np.allclose(rectified_map_from_inside(torch.from_numpy(inside), torch.from_numpy(onehot)).numpy(), z,
                       atol=1e-6)
    # RRW: -1 at the deepest voxel of each class, in (-1, 0) inside, +1 outside
    for k in range(4):
        assert z[k][labels == k].min() == pytest.approx(-1.0)
        assert np.all(z[k][labels != k] == 1)


def test_absent_and_full_classes():
    labels = np.zeros((6, 7), int)
    z = rrw_map(labels, 3)
    assert np.all(z[0] == -1) and np.all(z[1:] == 1)
    b = boundary_map(labels, 3)
    assert np.all(b[1:] == 0)
    # full class: the outside of the array counts as "not the class"
    border = distance_transform_edt(np.pad(np.ones((6, 7)), 1))[1:-1, 1:-1]
    assert np.allclose(b[0], -(border - 1))
    assert np.all(rrw_inside_map(labels, 3)[0] == 1)


def test_label_conventions_and_small_inputs():
    labels = np.array([[-1, 0, 1], [5, 1, 1]])  # -1: background (outside nonzero mask); 5: ignore label
    z = rrw_map(labels, 2)
    assert z[0, 0, 0] < 0 and z[0, 0, 1] < 0  # -1 counted as class 0
    assert z[0, 1, 0] == 1 and z[1, 1, 0] == 1  # the ignore voxel belongs to no class
    assert rrw_map(np.array([[1]]), 2).tolist() == [[[1.0]], [[-1.0]]]
    one_d = rrw_map(np.array([0, 0, 0, 1, 1]), 2)
    assert np.allclose(one_d[0], [-1, -2 / 3, -1 / 3, 1, 1])


@pytest.mark.parametrize("bad", [
    dict(labels=np.zeros((2, 2, 2, 2), int), num_classes=2),
    dict(labels=np.array([[0.5, 1.0]]), num_classes=2),
    dict(labels=np.zeros((3, 3), int), num_classes=0),
    dict(labels=np.zeros((3, 3), int), num_classes=2, spacing=(1.0,)),
    dict(labels=np.zeros((3, 3), int), num_classes=2, spacing=(1.0, -1.0)),
])
def test_bad_input(bad):
    for fn in (rrw_map, boundary_map, ac_map, rrw_inside_map):
        with pytest.raises(ValueError):
            fn(**bad)
