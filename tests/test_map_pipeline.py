"""MapPipeline on hand-made batches (no nnU-Net loader): what rides in the target, what the loss receives, the one
format table (channels, quantisation, rebuild)."""
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from nnunet_losses.maps import (
    FORMATS, MAP_KINDS, PRECOMPUTED_KINDS, STORED_KINDS, ac_map, boundary_map, boundary_map_authors, map_format,
    rrw_map, stored_kind)
from nnunet_losses.nnunet.map_pipeline import MapPipeline


def _labels(shape, num_classes, seed):
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=(num_classes,) + shape), 1.5, axes=range(1, len(shape) + 1))
    return np.argmax(field, 0)


def _collate(samples):
    """What nnU-Net's loader does with a list per sample: one batch tensor per list entry."""
    return [torch.stack(entries) for entries in zip(*samples)]


def test_table():
    assert set(MAP_KINDS) == {"rrw", "boundary", "boundary_authors", "ac"}
    assert set(STORED_KINDS) == {stored_kind(k) for k in PRECOMPUTED_KINDS} == {"rrw", "boundary"}
    assert [FORMATS[k].channels(5) for k in PRECOMPUTED_KINDS] == [1, 5, 5]
    assert map_format("rrw").dtype is np.uint8 and map_format("boundary").dtype is np.int16
    values = np.linspace(-3, 3, 25, dtype=np.float32)
    assert np.abs(map_format("boundary").dequantise(map_format("boundary").quantise(values)) - values).max() <= 0.125
    with pytest.raises(ValueError, match="unknown map kind"):
        map_format("ac")
    with pytest.raises(ValueError, match="not precomputed"):
        MapPipeline("ac", 3, precomputed=True)
    with pytest.raises(ValueError, match="unknown map kind"):
        MapPipeline("rw", 3, precomputed=False)


@pytest.mark.parametrize("kind", ["rrw", "boundary", "boundary_authors"])
def test_precomputed_take_gives_the_full_map(kind):
    labels = np.stack([_labels((20, 18), 4, s) for s in range(3)])
    pipeline = MapPipeline(kind, 4, precomputed=True)
    fmt = map_format(kind)
    stored = np.stack([fmt.compute(lab, 4, None) for lab in labels])
    assert stored.shape[1] == pipeline.shipped_channels
    # the worker side: the last transform appends the stored form (full resolution only) to nnU-Net's scales,
    # which stay as they are (int16 labels, no copy)
    transform = pipeline.add_to(type("Compose", (), {"transforms": []})()).transforms[-1]
    seg = torch.from_numpy(labels[:, None].astype(np.int16))
    half = seg[:, :, ::2, ::2].clone()  # a deep-supervision scale
    out = [transform.apply({"segmentation": [s, h], "regression_target": torch.from_numpy(m)})["segmentation"]
           for s, m, h in zip(seg, stored, half)]
    assert all(len(o) == 3 and o[0].data_ptr() == s.data_ptr() and o[1].data_ptr() == h.data_ptr()
               for o, s, h in zip(out, seg, half))
    assert all(o[2].dtype == torch.float32 and o[2].shape == (pipeline.shipped_channels, 20, 18) for o in out)
    assert np.array_equal(np.stack([o[2].numpy() for o in out]), stored)
    batch = {"target": _collate(out)}
    (target, target_half), (maps, maps_half) = pipeline.take(batch, "cpu")
    assert target.dtype == torch.int16 and torch.equal(target, seg) and torch.equal(target_half, half)
    full = {"rrw": rrw_map, "boundary": boundary_map, "boundary_authors": boundary_map_authors}[kind]
    expected = np.stack([full(lab, 4) for lab in labels])
    assert maps.shape == (3, 4, 20, 18) and np.allclose(maps.numpy(), expected, atol=1e-5)
    # the half scale: the stored form resampled as nnU-Net resamples images, rebuilt from that scale's labels
    resampled = torch.nn.functional.interpolate(torch.from_numpy(stored), size=(10, 9), mode="bilinear",
                                                align_corners=False)
    y_half = torch.nn.functional.one_hot(half[:, 0].long(), 4).movedim(-1, 1).float()
    rebuilt = resampled if fmt.rebuild is None else fmt.rebuild(resampled, y_half)
    assert maps_half.shape == (3, 4, 10, 9) and torch.allclose(maps_half, rebuilt, atol=1e-6)
    with pytest.raises(RuntimeError, match="does not match the segmentation"):
        transform.apply({"segmentation": [half[0]], "regression_target": torch.from_numpy(stored[0])})
    # a batch from a loader without the map transforms: one clear error, not a shape error in the loss
    with pytest.raises(RuntimeError, match="did not attach maps"):
        pipeline.take({"target": [seg, half]}, "cpu")


def test_online_and_no_map():
    labels = np.stack([_labels((16, 16), 3, s) for s in range(2)])
    pipeline = MapPipeline("rrw", 3, precomputed=False)
    transform = pipeline.add_to(type("Compose", (), {"transforms": []})()).transforms[-1]
    seg = torch.from_numpy(labels[:, None].astype(np.int16))
    half = seg[:, :, ::2, ::2].clone()
    # deep supervision: every scale's map from that scale's labels, appended after nnU-Net's scales
    out = [transform.apply({"segmentation": [s, h]})["segmentation"] for s, h in zip(seg, half)]
    assert all(len(o) == 4 and o[0].data_ptr() == s.data_ptr() and o[1].data_ptr() == h.data_ptr()
               for o, s, h in zip(out, seg, half))
    target, maps = pipeline.take({"target": _collate(out)}, "cpu")
    assert torch.equal(target[0], seg) and torch.equal(target[1], half)
    assert np.allclose(maps[0].numpy(), np.stack([rrw_map(x, 3) for x in labels]))
    assert np.allclose(maps[1].numpy(), np.stack([rrw_map(x[0].numpy(), 3) for x in half]))
    # no deep supervision: one tensor in, one tensor each out
    out = [transform.apply({"segmentation": s})["segmentation"] for s in seg]
    target, z = pipeline.take({"target": _collate(out)}, "cpu")
    assert torch.equal(target, seg) and np.allclose(z.numpy(), np.stack([rrw_map(x, 3) for x in labels]))
    with pytest.raises(RuntimeError, match="did not attach maps"):
        pipeline.take({"target": [seg, half]}, "cpu")
    assert pipeline.wrap("dataset") == "dataset"
    none = MapPipeline(None, 3, precomputed=False)
    assert none.take({"target": "t"}, "cpu") == ("t", None)


def test_ac_maps_are_built_on_the_device_and_the_loader_carries_none():
    """RW-AC's 1 - Y is arithmetic on the labels: no transform, no map channel in the batch; each deep-supervision
    scale's map comes from that scale's labels, equal to maps.ac_map (negative labels as background, the ignore
    label as no class: 1 in every channel)."""
    pipeline = MapPipeline("ac", 3, precomputed=False)
    assert pipeline.on_device and pipeline.shipped_channels == 0
    compose = type("Compose", (), {"transforms": ["nnU-Net's own"]})()
    assert pipeline.add_to(compose).transforms == ["nnU-Net's own"]
    full = np.stack([_labels((16, 12), 3, s) for s in range(2)]).astype(np.int16)
    full[0, 0, :4] = -1  # outside the nonzero mask, as nnU-Net stores it
    full[1, 5, 5:9] = 3  # an ignore label (K)
    half = full[:, ::2, ::2].copy()
    scales = [torch.from_numpy(x[:, None]) for x in (full, half)]
    target, maps = pipeline.take({"target": scales}, "cpu")
    assert [t.dtype for t in target] == [torch.int16] * 2 and all(torch.equal(a, b) for a, b in zip(target, scales))
    for labels, z in zip((full, half), maps):
        assert z.shape == (2, 3) + labels.shape[1:] and z.dtype == torch.float32
        assert np.array_equal(z.numpy(), np.stack([ac_map(lab, 3) for lab in labels]))
    target, z = pipeline.take({"target": scales[0]}, "cpu")  # no deep supervision: one tensor, not a list
    assert torch.equal(target, scales[0]) and np.array_equal(z.numpy(), np.stack([ac_map(lab, 3) for lab in full]))
