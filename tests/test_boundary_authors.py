"""The RW authors' RW-Boundary map (inside -d) next to eq. 3's (inside -(d - 1)): Valverde & Tohka (Pattern
Recognition 2023), eq. 3, and the code of their Fig. 5 and 6."""
import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt, gaussian_filter

from nnunet_losses.maps import boundary_map, boundary_map_authors
from nnunet_losses.nnunet.map_pipeline import AttachMapsTransform, MapPipeline, PrecomputedMapsToTargetTransform
from nnunet_losses.naming import TrainerNameError
from nnunet_losses.nnunet.trainers import trainer_class
from reference import boundary_reference


def _blobs(shape, num_classes, seed):
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=(num_classes,) + shape), 1.5, axes=range(1, len(shape) + 1))
    return np.argmax(field, 0)


@pytest.mark.parametrize("shape,spacing", [((40, 33), None), ((14, 17, 12), (2.5, 0.8, 0.8))])
def test_authors_map_is_eq3_minus_y(shape, spacing):
    labels = _blobs(shape, 4, 3)  # classes 0-3 of a 5-class map: class 4 absent
    labels[0] = 5  # the ignore label: no class
    assert [k for k in range(5) if (labels == k).any()] == [0, 1, 2, 3]
    sp = spacing or (1.0,) * len(shape)
    ours = boundary_map(labels, 5, spacing)
    authors = boundary_map_authors(labels, 5, spacing)
    # what the authors' BoundaryLoss computes per class: dist(neg) * neg - dist(pos) * pos (absent class: 0)
    reference = boundary_reference(np.where(labels >= 5, -99, labels), 5, sp, inside_offset=0)
    assert authors.dtype == np.float32 and authors.shape == (5,) + shape
    assert np.allclose(authors, reference, atol=1e-4)
    onehot = np.stack([labels == k for k in range(5)])
    assert np.allclose(authors, ours - onehot, atol=1e-6)
    assert np.all(authors[4] == 0)  # absent class
    inside = authors[1][labels == 1]
    assert inside.max() == pytest.approx(-min(sp))  # -1 voxel (not 0) on the inner boundary


def test_authors_map_of_a_class_filling_the_array():
    labels = np.zeros((6, 7), int)
    border = distance_transform_edt(np.pad(np.ones((6, 7)), 1))[1:-1, 1:-1]
    assert np.allclose(boundary_map_authors(labels, 2)[0], -border)


def test_authors_variant_through_the_transforms():
    labels = _blobs((32, 32), 3, 4)
    seg = torch.from_numpy(labels[None]).to(torch.int16)
    half = seg[:, ::2, ::2]
    pipeline = MapPipeline("boundary_authors", 3, precomputed=True)
    out = PrecomputedMapsToTargetTransform("boundary_authors").apply(
        {"segmentation": [seg, half], "regression_target": torch.from_numpy(boundary_map(labels, 3))})
    (full_labels, _), (full, small) = pipeline.take({"target": [s[None] for s in out["segmentation"]]}, "cpu")
    assert torch.equal(full_labels[0], seg)
    assert np.allclose(full[0].numpy(), boundary_map_authors(labels, 3), atol=1e-6)
    onehot_half = np.stack([half[0].numpy() == k for k in range(3)])
    assert np.all(small[0].numpy()[onehot_half] < 0)  # -Y inside at every deep-supervision scale
    online = AttachMapsTransform("boundary_authors", 3).apply({"segmentation": [seg]})["segmentation"][1]
    assert np.allclose(online.numpy(), boundary_map_authors(labels, 3), atol=1e-6)


def test_authors_trainer_names():
    for name in ("RWBoundaryTrainer_authors", "DiceBoundaryTrainer_equal_authors_online_ep50_s3",
                 "CEBoundaryTrainer_authors"):
        assert trainer_class(name).parsed.loss_params["boundary_map"] == "authors"
    assert "boundary_map" not in trainer_class("RWBoundaryTrainer").parsed.loss_params
    for bad in ("DiceBoundaryTrainer_authors_equal", "RRWTrainer_authors"):
        with pytest.raises(TrainerNameError):
            trainer_class(bad)
