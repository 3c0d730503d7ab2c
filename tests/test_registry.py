"""The registry builds every loss, validates parameters, and its baselines are nnU-Net's own classes."""
import numpy as np
import pytest
import torch

from nnunet_losses import maps as M
from nnunet_losses.registry import REGISTRY, build_loss, describe, get_spec


def _inputs(num_classes=4, regions=False, ignore=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, num_classes, 12, 10, generator=g, requires_grad=True)
    if regions:
        target = (torch.rand(2, num_classes, 12, 10, generator=g) > 0.6).float()
        if ignore is not None:
            target = torch.cat([target, (torch.rand(2, 1, 12, 10, generator=g) > 0.8).float()], 1)
    else:
        target = torch.randint(0, num_classes, (2, 1, 12, 10), generator=g)
        if ignore is not None:
            target[:, :, :3] = ignore
    return logits, target


def _map(kind, target, num_classes):
    fn = {"rrw": M.rrw_map, "boundary": M.boundary_map, "ac": M.ac_map}[kind]
    return torch.from_numpy(np.stack([fn(t[0].numpy(), num_classes) for t in target]))


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("ignore", [None, 4])
def test_every_loss_builds_and_trains(name, ignore):
    spec = REGISTRY[name]
    weights = [0.5, 1.0, 1.5, 2.0] if spec.needs_class_weights else None
    loss = build_loss(name, ignore_label=ignore, class_weights=weights)
    logits, target = _inputs(ignore=ignore)
    args = (logits, target)
    if spec.needs_map:
        args += (_map(spec.needs_map, torch.where(target == 4, 0, target), 4),)
    value = loss(*args)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(logits.grad).all()
    if ignore is not None:  # ignored voxels get no gradient
        assert torch.all(logits.grad[:, :, :3] == 0), name


@pytest.mark.parametrize("name", sorted(n for n, s in REGISTRY.items() if s.supports_regions))
def test_region_losses_run(name):
    loss = build_loss(name, regions=True, ignore_label=3)
    logits, target = _inputs(3, regions=True, ignore=3)
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value)


@pytest.mark.parametrize("name", sorted(n for n, s in REGISTRY.items() if not s.supports_regions))
def test_label_only_losses_refuse_regions(name):
    with pytest.raises(ValueError, match="region"):
        build_loss(name, regions=True, class_weights=[1, 1, 1])


def test_parameters_are_validated():
    assert build_loss("combo", alpha=0.3, beta=0.7).beta == 0.7
    with pytest.raises(TypeError, match="no parameter"):
        build_loss("combo", gamma=2)
    with pytest.raises(TypeError, match="must be float"):
        build_loss("combo", alpha="0.5")
    with pytest.raises(ValueError, match="one of"):
        build_loss("combo", dice="both")
    with pytest.raises(ValueError, match="alpha \\+ beta must equal 2"):
        build_loss("iou_xy", alpha=0.5, beta=1.0)
    with pytest.raises(KeyError, match="Did you mean 'combo'"):
        get_spec("combbo")
    with pytest.raises(ValueError, match="class_weights"):
        build_loss("wce")


def test_baselines_are_nnunets_own_classes():
    from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss, DC_and_topk_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
    from nnunetv2.training.loss.robust_ce_loss import TopKLoss

    assert isinstance(build_loss("dice_ce"), DC_and_CE_loss)
    assert isinstance(build_loss("dice_ce", regions=True), DC_and_BCE_loss)
    assert isinstance(build_loss("dice").dice, MemoryEfficientSoftDiceLoss)
    assert isinstance(build_loss("topk_ce", k=20.0), TopKLoss)
    assert isinstance(build_loss("dice_boundary").partner.dice, MemoryEfficientSoftDiceLoss)
    topk_dice = build_loss("dice_topk_ce", k=20.0)
    assert isinstance(topk_dice, DC_and_topk_loss) and topk_dice.ce.k == 20.0


def test_baselines_are_built_by_path_from_the_glue():
    """The registry names nnU-Net's baselines by "module:function" path; each resolves to a function of baselines."""
    from nnunet_losses.nnunet import baselines
    from nnunet_losses.registry import resolve_factory

    paths = {name: spec.factory for name, spec in REGISTRY.items() if isinstance(spec.factory, str)}
    assert sorted(paths) == ["ce", "dice", "dice_ce", "dice_nobg", "dice_topk_ce", "focal_dice", "topk_ce"]
    for name, path in paths.items():
        assert resolve_factory(path) is getattr(baselines, f"build_{name}"), path
    assert type(build_loss("dice_boundary", ignore_label=2).partner) is baselines.SoftDice
    assert type(build_loss("ce_boundary").partner) is baselines.CrossEntropy
    assert type(build_loss("focal_dice")) is baselines.DiceAndFocal


def test_focal_dice_is_dice_plus_focal():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 4, 8, 8), torch.randint(0, 4, (2, 1, 8, 8))
    total = build_loss("focal_dice", gamma=2.0)(logits, target)
    expected = build_loss("dice_nobg")(logits, target) + build_loss("focal", gamma=2.0)(logits, target)
    torch.testing.assert_close(total, expected)


@pytest.mark.parametrize("ignore_label", [None, 3])
def test_dice_boundary_shares_one_softmax_and_equals_its_two_terms(ignore_label):
    """Dice + Boundary computes one softmax for nnU-Net's soft Dice and the RW term; value and gradient equal the
    weighted sum of the two losses called apart (each with its own softmax), and nnU-Net's Dice is unchanged."""
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
    from nnunetv2.utilities.helpers import softmax_helper_dim1

    torch.manual_seed(1)
    logits = torch.randn(2, 3, 9, 7, requires_grad=True)
    target = torch.randint(0, 3, (2, 1, 9, 7))
    if ignore_label is not None:
        target[0, 0, :3] = ignore_label
    z = torch.randn(2, 3, 9, 7)
    loss = build_loss("dice_boundary", ignore_label=ignore_label)
    for _ in range(30):
        loss.schedule.step()
    calls = []
    real_softmax = torch.softmax
    try:
        torch.softmax = lambda *a, **k: calls.append(1) or real_softmax(*a, **k)
        value = loss(logits, target, z)
    finally:
        torch.softmax = real_softmax
    assert len(calls) == 1
    (grad,) = torch.autograd.grad(value, logits)
    apart = 0.7 * loss.partner(logits, target) + 0.3 * loss.region_wise(logits, target, z)
    (grad_apart,) = torch.autograd.grad(apart, logits)
    torch.testing.assert_close(value, apart, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad, grad_apart, rtol=1e-5, atol=1e-8)
    if ignore_label is None:  # the partner is nnU-Net's Dice with its own softmax
        nnunet = MemoryEfficientSoftDiceLoss(apply_nonlin=softmax_helper_dim1, batch_dice=False, do_bg=False,
                                             smooth=1e-5, ddp=True)
        torch.testing.assert_close(loss.partner(logits, target), nnunet(logits, target))
    with pytest.raises(ValueError, match="the map z must have the logits' shape"):
        loss(logits, target, z[:, :2])


def test_dice_boundary_schedule_parameters():
    loss = build_loss("dice_boundary", schedule="equal")
    assert loss.schedule.weights() == (1.0, 1.0)
    loss = build_loss("ce_boundary", step=0.1, minimum=0.5)
    for _ in range(10):
        loss.schedule.step()
    assert loss.schedule.alpha == 0.5


def test_nobg_dice_matches_manual_soft_dice():
    loss = build_loss("dice_nobg")
    logits, target = _inputs()
    p = torch.softmax(logits, 1)[:, 1:]
    y = torch.nn.functional.one_hot(target[:, 0], 4).permute(0, 3, 1, 2)[:, 1:].float()
    tp = (p * y).sum((2, 3))
    dc = (2 * tp + 1e-5) / (p.sum((2, 3)) + y.sum((2, 3)) + 1e-5)
    assert torch.allclose(loss(logits, target), -dc.mean(), atol=1e-6)


def test_describe_lists_everything():
    text = describe()
    for name, spec in REGISTRY.items():
        assert f"{name}:" in text
        assert f"    class: {spec.implementation}" in text
        for p in spec.params:
            assert p.name in text
    assert "References:" in text and "doi:10.1038/s41592-020-01008-z" in text


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_implementation_names_the_class_built(name):
    """The class column of `nnunet-losses losses` and documentation/losses.md: its first class name is the built
    module's class, a base class of it, or the class of one of its submodules (nnU-Net's, inside an adapter)."""
    import re

    spec = REGISTRY[name]
    loss = build_loss(name, class_weights=[1.0, 2.0, 3.0, 4.0] if spec.needs_class_weights else None)
    first = re.search(r"[A-Za-z_]*[A-Z][A-Za-z_]*", spec.implementation.replace("nnU-Net's ", "")).group()
    assert first in {c.__name__ for module in loss.modules() for c in type(module).__mro__}, (name, first)


@pytest.mark.parametrize("name,params", [
    ("topk_ce", {"k": 0.0}), ("topk_ce", {"k": 101.0}), ("dice_topk_ce", {"k": -1.0}), ("topk_dice", {"k": 0.0}),
    ("combo", {"alpha": 1.5}), ("combo", {"beta": -0.1}), ("combo", {"smooth": -1.0}),
    ("iou_xy", {"alpha": 3.0, "beta": -1.0}), ("focal", {"gamma": -1.0}), ("focal", {"alpha": 1.5}),
    ("focal_dice", {"alpha": -0.5}), ("dice_boundary", {"step": -0.1}), ("ce_boundary", {"minimum": 2.0}),
    ("combo", {"alpha": float("nan")}), ("topk_ce", {"k": float("inf")}),
])
def test_every_parameter_is_range_checked(name, params):
    with pytest.raises(ValueError, match="must"):
        build_loss(name, **params)


@pytest.mark.parametrize("name", ["topk_ce", "dice_topk_ce", "topk_dice"])
def test_topk_below_one_voxel_is_finite(name):
    """k% of this batch (2 x 12 x 10 voxels) is below one voxel: the hardest voxel is kept, not none (NaN)."""
    logits, target = _inputs()
    value = build_loss(name, k=0.1)(logits, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_topk_ce_equals_nnunets_topk_loss():
    from nnunetv2.training.loss.robust_ce_loss import TopKLoss

    logits, target = _inputs()
    torch.testing.assert_close(build_loss("topk_ce", k=20.0)(logits, target), TopKLoss(k=20.0)(logits, target))


def test_every_number_parameter_has_a_range():
    for spec in REGISTRY.values():
        for p in spec.params:
            if p.type is float:
                assert p.interval, (spec.name, p.name)
