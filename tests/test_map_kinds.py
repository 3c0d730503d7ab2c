"""The one table of map kinds (maps.KINDS) and what goes by it: every kind of the table from every place it can be
made (precompute-maps and the stored file read back, the loader workers, the training device) to the maps the loss
receives; the trainers' map_source; and a kind added as one row and one compute function (a nearest-interpolated
precomputed kind, a kind made in the loader workers). A new row is picked up by the parametrised tests."""
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.ndimage import label as connected_components

from nnunet_losses import maps as M
from nnunet_losses.catalogue import FAMILIES, MAP_FAMILIES, ONLINE_MAP_FAMILIES, map_source
from nnunet_losses.maps import formats
from nnunet_losses.nnunet.map_pipeline import MapPipeline
from nnunet_losses.nnunet.precompute import check_maps, compute_case_map, map_file, maps_folder, precompute_maps
from nnunet_losses.registry import get_spec
from fake_nnunet import blobs, write_preprocessed_case

K = 3
SHAPE = (2, 20, 18)  # one case: 2 slices of a 2D configuration


class _Dataset:
    """What MapDataset needs of nnU-Net's dataset: the folder and load_case."""

    def __init__(self, folder):
        self.source_folder = folder

    def load_case(self, case):
        import blosc2

        data = blosc2.open(urlpath=os.path.join(self.source_folder, case + ".b2nd"), mode="r")[...]
        seg = blosc2.open(urlpath=os.path.join(self.source_folder, case + "_seg.b2nd"), mode="r")[...]
        return data, seg, None, {}


def _segmentation(seed=3):
    seg = blobs(SHAPE, K, seed)[None]
    seg[0, 0, :3, :4] = -1  # outside the nonzero mask: background
    seg[0, 1, 5:8, 6:9] = K  # the ignore label: no class
    return seg


def _through_the_loader(pipeline, folder, case, z):
    """One sample of slice z as nnU-Net's 2D loader and augmentation hand it to the trainer, collated: the dataset
    (with the stored maps appended when precomputed), the map transforms, nnU-Net's scales (full and half)."""
    dataset = pipeline.wrap(_Dataset(folder))
    image, seg = dataset.load_case(case)[:2]
    image = np.asarray(image[(slice(None), z, slice(None), slice(None))])
    labels = torch.from_numpy(np.asarray(seg)[:, z].astype(np.int16))
    data = {"image": torch.from_numpy(image), "segmentation": [labels, labels[:, ::2, ::2].clone()]}
    for transform in pipeline.add_to(SimpleNamespace(transforms=[])).transforms:
        data = transform.apply(data)
    assert data["image"].shape[0] == 1  # the map channels left the image
    return {"target": [entry[None] for entry in data["segmentation"]]}


def _places():
    return [(kind, place) for kind, row in M.KINDS.items() for place in row.places]


@pytest.mark.parametrize("kind,place", _places())
def test_every_kind_from_every_place_reaches_the_loss(tmp_path, kind, place):
    """precompute-maps writes the stored file, the trainer reads it back and rebuilds the map; the loader workers
    compute it; the device builds it: in every case the loss receives the kind's full map of each scale."""
    row = M.map_kind(kind)
    folder = str(tmp_path / "nnUNetPlans_2d")
    seg = _segmentation()
    write_preprocessed_case(folder, "case", seg)
    pipeline = MapPipeline(kind, K, precomputed=place == M.PRECOMPUTED)
    assert pipeline.made == place and M.MapSource.of(kind, online=place == M.ONLINE).made == place
    tolerance = 1e-6
    if place == M.PRECOMPUTED:
        stored = row.stored.name
        assert M.stored_row(stored).stored == row.stored and M.stored_kind(kind) == stored == pipeline.stored_kind
        summary = precompute_maps(folder, [stored], K, True, None, progress=False)
        assert summary["computed"] == 1
        check_maps(folder, ["case"], stored, "CMD", num_classes=K, is_2d=True)
        assert os.path.exists(map_file(maps_folder(folder), "case", stored))
        made = compute_case_map(seg, stored, K, True, None)
        assert made.shape == (row.channels(K),) + SHAPE == (pipeline.shipped_channels,) + SHAPE
        tolerance += 0.5 / row.scale  # the quantisation step
    labels = np.where(seg[0] < 0, 0, seg[0])
    for z in range(SHAPE[0]):
        (full, half), (z_full, z_half) = pipeline.take(_through_the_loader(pipeline, folder, "case", z), "cpu")
        assert torch.equal(full[0, 0], torch.from_numpy(seg[0, z]))
        expected = row.full(labels[z], K)
        assert expected.shape == (K,) + SHAPE[1:] and expected.dtype == np.float32
        assert z_full.shape == (1, K) + SHAPE[1:] and z_full.dtype == torch.float32
        assert np.abs(z_full[0].numpy() - expected).max() <= tolerance
        assert z_half.shape == (1, K) + tuple(half.shape[2:])
        if place != M.PRECOMPUTED:  # made from the half scale's own labels
            assert np.allclose(z_half[0].numpy(), row.full(half[0, 0].numpy(), K), atol=1e-6)


def test_the_table_and_what_is_derived_from_it():
    assert M.MAP_KINDS == tuple(M.KINDS) == ("rrw", "boundary", "boundary_authors", "ac")
    assert M.PRECOMPUTED_KINDS == M.kinds_made(M.PRECOMPUTED) == tuple(M.FORMATS)
    assert M.DEVICE_KINDS == ("ac",) and M.kinds_made(M.ONLINE) == ()
    assert M.STORED_KINDS == ("rrw", "boundary") and M.stored_row("boundary").kind == "boundary"
    assert [M.KINDS[k].interpolation for k in M.PRECOMPUTED_KINDS] == [M.LINEAR] * 3
    labels = blobs((12, 10), K, 5)
    y = M.onehot(labels, K)
    assert np.array_equal(M.MAP_FUNCTIONS["ac"](labels, K), M.complement(y))
    assert np.array_equal(M.MAP_FUNCTIONS["rrw"](labels, K), M.rrw_map(labels, K))
    assert np.array_equal(M.MAP_FUNCTIONS["boundary_authors"](labels, K), M.boundary_map(labels, K) - y)
    with pytest.raises(ValueError, match="not precomputed"):
        M.MapSource("ac", M.PRECOMPUTED)
    with pytest.raises(ValueError, match="unknown map kind"):
        M.stored_row("boundary_authors")  # read from the boundary file
    for bad in ({"made": "gpu"}, {"stored": None}, {"interpolation": "cubic"}, {"compute": None}):
        with pytest.raises(ValueError, match="map kind 'x'"):
            M.MapKindSpec(**{**vars(M.KINDS["boundary"]), "kind": "x", **bad})
    with pytest.raises(ValueError, match="share the file 'rrw'"):
        formats._table(M.KINDS["rrw"], M.MapKindSpec(**{**vars(M.KINDS["boundary"]), "stored": M.KINDS["rrw"].stored,
                                                         "kind": "y"}))


def test_map_source_of_every_trainer_family():
    """What the trainers, the experiment plan, the catalogue and the docs go by."""
    from nnunet_losses.experiment.plan import _map_kinds
    from nnunet_losses.naming import parse_name

    for name, family in FAMILIES.items():
        source = map_source(family)
        assert (source is None) == (get_spec(family.loss).needs_map is None) == (name not in MAP_FAMILIES)
        if source is not None:
            assert source.kind in M.KINDS and source == map_source(name)
            assert (name in ONLINE_MAP_FAMILIES) == source.online_option == (source.made == M.PRECOMPUTED)
            assert map_source(family, online=True).made == (M.ONLINE if source.online_option else source.made)
    cases = {"RRWTrainer": ("rrw", M.PRECOMPUTED, "rrw"), "RRWTrainer_online": ("rrw", M.ONLINE, None),
             "RWBoundaryTrainer_authors": ("boundary_authors", M.PRECOMPUTED, "boundary"),
             "DiceBoundaryTrainer_equal_authors_online": ("boundary_authors", M.ONLINE, None),
             "CEBoundaryTrainer": ("boundary", M.PRECOMPUTED, "boundary"), "RWACTrainer": ("ac", M.DEVICE, None)}
    for trainer, (kind, made, stored) in cases.items():
        source = map_source(parse_name(trainer, FAMILIES, ONLINE_MAP_FAMILIES))
        assert (source.kind, source.made, source.stored) == (kind, made, stored), trainer
        pipeline = MapPipeline.from_source(source, K)
        assert (pipeline.kind, pipeline.made, pipeline.stored_kind) == (kind, made, stored)
    assert map_source(parse_name("ComboTrainer", FAMILIES, ONLINE_MAP_FAMILIES)) is None
    assert MapPipeline.from_source(None, K).kind is None
    exp = SimpleNamespace(trainers={str(i): name for i, name in enumerate(cases)})
    assert _map_kinds(exp) == ["boundary", "rrw"]


# ------------------------------------------------------------------------- a kind added: one row, one function
def components(labels, num_classes, spacing=None):
    """One channel: the connected component (1, 2, ...) of each voxel within its own class; 0 for no class."""
    lab = np.where(np.asarray(labels) < 0, 0, np.asarray(labels))
    out = np.zeros(lab.shape, np.float32)
    for k in range(num_classes):
        out += connected_components(lab == k)[0]
    return out[None]


def _inside(made, onehot):
    return made * onehot


COMPONENTS = M.MapKindSpec("components", M.PRECOMPUTED, components, True, M.NEAREST,
                           M.StoredFormat("components", np.uint16, 1.0), _inside)


def test_a_precomputed_kind_resampled_by_nearest_neighbour(tmp_path, monkeypatch):
    """One row: precompute-maps writes it, the trainer reads it back, nnU-Net's spatial transform and the
    deep-supervision resampling sample it by nearest neighbour (component numbers stay whole)."""
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform

    from nnunet_losses.nnunet.map_pipeline import NearestMapsSpatialTransform

    monkeypatch.setitem(formats.KINDS, "components", COMPONENTS)
    test_every_kind_from_every_place_reaches_the_loss(tmp_path / "p", "components", M.PRECOMPUTED)
    test_every_kind_from_every_place_reaches_the_loss(tmp_path / "o", "components", M.ONLINE)
    pipeline = MapPipeline("components", K, precomputed=True)
    folder = str(tmp_path / "p" / "nnUNetPlans_2d")
    _, (_, half) = pipeline.take(_through_the_loader(pipeline, folder, "case", 0), "cpu")
    assert torch.equal(half, half.round()) and half.max() >= 2

    spatial = SpatialTransform((16, 16), 0, random_crop=False, p_elastic_deform=0, p_rotation=1,
                               rotation=(0.6, 0.6), p_scaling=0)
    compose = pipeline.add_to(SimpleNamespace(transforms=[spatial]))
    nearest = compose.transforms[1]
    assert type(nearest) is NearestMapsSpatialTransform and nearest.mode_image == spatial.mode_image == "bilinear"
    stored = torch.from_numpy(components(_segmentation()[0, 0], K))
    image = torch.rand((1,) + stored.shape[1:])
    out = nearest(image=image.clone(), segmentation=torch.zeros(stored.shape, dtype=torch.int16),
                  regression_target=stored.clone())
    assert set(out["regression_target"].unique().tolist()) <= set(stored.unique().tolist()) | {0.0}
    assert not set(out["image"].unique().tolist()) <= set(image.unique().tolist())  # the image: still linear
    linear = spatial(image=image, regression_target=stored.clone())["regression_target"]
    assert not torch.equal(linear, linear.round())


def test_a_kind_made_in_the_loader_workers(monkeypatch):
    """One row made online: the loader workers attach it whatever the name says, nothing is precomputed."""
    row = M.MapKindSpec("inside", M.ONLINE, lambda labels, k, spacing: M.onehot(labels, k) * 2.0)
    monkeypatch.setitem(formats.KINDS, "inside", row)
    assert M.MapSource.of("inside").made == M.MapSource.of("inside", online=True).made == M.ONLINE
    with pytest.raises(ValueError, match="not precomputed"):
        MapPipeline("inside", K, precomputed=True)
    pipeline = MapPipeline("inside", K, precomputed=False)
    assert pipeline.made == M.ONLINE and pipeline.shipped_channels == K and pipeline.format is None
    seg = torch.from_numpy(blobs((1, 8, 6), K, 2))
    out = pipeline.add_to(SimpleNamespace(transforms=[])).transforms[-1].apply({"segmentation": seg})
    target, maps = pipeline.take({"target": [entry[None] for entry in out["segmentation"]]}, "cpu")
    assert torch.equal(target, seg[None]) and np.array_equal(maps[0].numpy(), 2.0 * M.onehot(seg[0].numpy(), K))


def test_documentation_shows_the_table_as_it_reads_in_code():
    """documentation/maps.md, "Adding a map kind", quotes the table verbatim."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "documentation", "maps.md")) as f:
        page = f.read()
    quoted = page.split("## Adding a map kind", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert quoted.startswith("KINDS") and quoted in open(formats.__file__).read()
    assert all(f'MapKindSpec("{kind}"' in quoted for kind in M.KINDS)
