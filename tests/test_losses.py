"""Every loss against its independent numpy reference (tests/reference.py), the papers' golden values, and the
documented behaviour on bad or extreme input."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as nn_f

import reference as R
from nnunet_losses.losses._common import decode_target
from nnunet_losses.losses._fast.topk_selection import lowest_per_row, sorted_rows
from nnunet_losses.losses import (
    AlphaSchedule, CEAndTopKDiceLoss, ComboLoss, DiceBoundaryLoss, FocalLoss, IoUxyLoss, RegionWiseLoss,
    TopKDiceLoss, WeightedCELoss, inverse_frequency_weights, rectified_map_from_inside)

SHAPES = [(2, 4, 7, 6), (2, 3, 4, 5, 3)]  # 2D and 3D


def _data(shape, seed=0, regions=False, scale=2.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, scale, shape)
    if regions:
        labels = (rng.random(shape) > 0.6).astype(np.int64)
    else:
        labels = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    return x, labels


def _t(x, labels, regions=False):
    logits = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    target = torch.tensor(labels) if regions else torch.tensor(labels)[:, None]
    return logits, target


# ------------------------------------------------------------------------------------------ Region-wise loss
def test_region_wise_paper_gradient_example():
    """Section 3.3: softmax [.25]*4, z = [0,0,0,-.6] -> grad [.0375]*3 + [-.1125], loss -0.0375 (after 1/NK);
    z = [1,1,1,-.6] -> grad [.1]*3 + [-.3], loss 0.15."""
    for z, grad, value in (([0, 0, 0, -0.6], [0.0375, 0.0375, 0.0375, -0.1125], -0.0375),
                           ([1, 1, 1, -0.6], [0.1, 0.1, 0.1, -0.3], 0.15)):
        logits = torch.zeros(1, 4, 1, 1, requires_grad=True)
        zt = torch.tensor(z, dtype=torch.float32).view(1, 4, 1, 1)
        loss = RegionWiseLoss()(logits, None, zt)
        loss.backward()
        assert loss.item() == pytest.approx(value, abs=1e-7)
        # the module's loss is eq. 1 / (N K): its gradient times N K is eq. 2 (of the plain sum)
        assert torch.allclose(logits.grad.view(4) * 4, torch.tensor(grad), atol=1e-7)
        assert np.allclose(R.region_wise_grad_eq2(np.zeros((1, 4)), np.array([z], float))[0], grad, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_region_wise_matches_eq1_and_eq2(shape):
    x, labels = _data(shape, 1)
    z = np.random.default_rng(2).uniform(-1, 1, shape)
    logits, target = _t(x, labels)
    loss = RegionWiseLoss()(logits, target, torch.tensor(z, dtype=torch.float32))
    loss.backward()
    assert loss.item() == pytest.approx(R.region_wise(x, z), abs=1e-6)
    n_k = np.prod(shape) / shape[0] * shape[0]
    eq2 = R.region_wise_grad_eq2(x, z) / n_k
    assert np.allclose(logits.grad.numpy(), eq2, atol=1e-7)


def test_region_wise_ignore_and_refusals():
    x, labels = _data((2, 3, 6, 6), 3)
    labels[:, :2] = 7
    z = np.random.default_rng(4).uniform(-1, 1, x.shape)
    logits, target = _t(x, labels)
    loss = RegionWiseLoss(ignore_label=7)(logits, target, torch.tensor(z, dtype=torch.float32))
    loss.backward()
    assert loss.item() == pytest.approx(R.region_wise(x, z, valid=labels != 7), abs=1e-6)
    assert torch.all(logits.grad[:, :, :2] == 0)
    with pytest.raises(ValueError, match="sigmoid"):
        RegionWiseLoss(regions=True)
    with pytest.raises(ValueError, match="shape"):
        RegionWiseLoss()(logits, target, torch.zeros(2, 2, 6, 6))
    with pytest.raises(ValueError, match="target is needed"):
        RegionWiseLoss(ignore_label=7)(logits, None, torch.tensor(z, dtype=torch.float32))


def test_rectified_map_from_inside():
    labels = np.array([[0, 0, 1], [0, 1, 1], [2, 2, 2]])
    inside = np.zeros((3, 3, 3))
    inside[0][labels == 0] = [0.5, 1, 1]
    inside[1][labels == 1] = [1, 0.5, 1]
    inside[2][labels == 2] = 1
    y = R.onehot(labels[None], 3)[0]
    z = rectified_map_from_inside(torch.tensor(inside), torch.tensor(y))
    expected = np.where(y > 0, -inside, 1.0)
    assert np.allclose(z.numpy(), expected)


# ---------------------------------------------------------------------------------------------------- Combo
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("alpha,beta,dice,batch_dice", [(0.5, 0.5, "flattened", False), (0.3, 0.7, "flattened", True),
                                                        (0.5, 0.4, "per_class", False), (1.0, 0.9, "per_class", True),
                                                        (0.0, 0.6, "flattened", False)])
def test_combo_matches_reference(shape, alpha, beta, dice, batch_dice):
    x, labels = _data(shape, 5)
    logits, target = _t(x, labels)
    loss = ComboLoss(alpha, beta, dice=dice, batch_dice=batch_dice)(logits, target)
    assert loss.item() == pytest.approx(R.combo(x, labels, alpha, beta, dice=dice, batch_dice=batch_dice), abs=1e-5)


def test_combo_region_mode_and_ignore():
    x, labels = _data((2, 3, 5, 6), 6, regions=True)
    logits, _ = _t(x, labels, regions=True)
    loss = ComboLoss(0.5, 0.7, regions=True)(logits, torch.tensor(labels))
    assert loss.item() == pytest.approx(R.combo(x, labels, 0.5, 0.7, regions=True), abs=1e-5)
    ignore = np.zeros((2, 1, 5, 6))
    ignore[:, :, :2] = 1
    loss = ComboLoss(0.5, 0.7, regions=True, ignore_label=9)(logits, torch.tensor(np.concatenate([labels, ignore], 1)))
    loss.backward()
    assert loss.item() == pytest.approx(R.combo(x, labels, 0.5, 0.7, regions=True, valid=ignore[:, 0] == 0), abs=1e-5)
    assert torch.all(logits.grad[:, :, :2] == 0)


def test_combo_negative_term_weight_is_one_minus_beta():
    """The paper's (1 - beta), not the authors' code's beta (1 - beta): with alpha = 1 the loss is linear in beta."""
    x, labels = _data((2, 3, 6, 6), 7)
    logits, target = _t(x, labels)
    values = [ComboLoss(1.0, b)(logits, target).item() for b in (0.0, 0.5, 1.0)]
    assert values[1] == pytest.approx((values[0] + values[2]) / 2, abs=1e-6)
    p, t = R.softmax(x)[:, 1:], R.onehot(labels, 3)[:, 1:]
    assert values[0] == pytest.approx(-((1 - t) * np.log(1 - p)).mean(), abs=1e-6)
    assert values[2] == pytest.approx(-(t * np.log(p)).mean(), abs=1e-6)


def test_combo_stable_for_huge_logits_and_bad_parameters():
    logits = torch.tensor([[[[1e4, -1e4]], [[-1e4, 1e4]], [[0.0, 0.0]]]], requires_grad=True)
    target = torch.tensor([[[[0, 1]]]])
    loss = ComboLoss()(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    for kwargs in ({"alpha": 1.5}, {"beta": -0.1}, {"dice": "both"}, {"smooth": -1}):
        with pytest.raises(ValueError):
            ComboLoss(**kwargs)


def _combo_reference64(x, target, alpha, beta, dice, batch_dice, ignore_label=None):
    """The plain Combo formula in float64 by autograd: ln(1 - p_c) = logsumexp_{k != c} x_k - logsumexp x."""
    labels = target[:, 0].clone()
    valid = torch.ones_like(labels, dtype=torch.float64) if ignore_label is None else (labels != ignore_label).double()
    labels[labels == ignore_label] = 0
    lse = torch.logsumexp(x, 1)
    log_p = x - lse[:, None]
    others = [torch.logsumexp(torch.cat([x[:, :c], x[:, c + 1:]], 1), 1) - lse for c in range(x.shape[1])]
    log_1mp = torch.stack(others, 1)[:, 1:]
    t = nn_f.one_hot(labels, x.shape[1]).movedim(-1, 1)[:, 1:].double() * valid[:, None]
    m = valid[:, None]
    wce = -(m * (beta * t * log_p[:, 1:] + (1 - beta) * (1 - t) * log_1mp)).sum() / (valid.sum() * t.shape[1])
    p = log_p[:, 1:].exp() * m
    axes = tuple(range(1 if dice == "flattened" else 2, x.ndim))
    inter, sum_p, sum_t = (p * t).sum(axes), p.sum(axes), t.sum(axes)
    if batch_dice:
        inter, sum_p, sum_t = inter.sum(0), sum_p.sum(0), sum_t.sum(0)
    return alpha * wce - (1 - alpha) * ((2 * inter + 1) / (sum_p + sum_t + 1)).mean()


COMBO_VARIANTS = [("flattened", False), ("flattened", True), ("per_class", False), ("per_class", True)]


@pytest.mark.parametrize("ignore_label", [None, 4])
@pytest.mark.parametrize("dice,batch_dice", COMBO_VARIANTS)
def test_combo_hand_written_backward_gradcheck(dice, batch_dice, ignore_label):
    """The loss's hand-written backward (SoftmaxForegroundSums) against finite differences, in float64."""
    g = torch.Generator().manual_seed(31)
    x = (torch.randn(2, 4, 5, 3, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    with torch.no_grad():
        x[0, :, 0, 0] = torch.tensor([1.0, 2.0, 2.0, -1.0], dtype=torch.float64)  # a tie at the top
        x[1, :, 0, 0] = torch.tensor([0.0, 40.0, -3.0, 1.0], dtype=torch.float64)  # a top with p ~ 1 - 1e-17
    target = torch.randint(0, 4, (2, 1, 5, 3), generator=g)
    target[1, 0, 0, 0] = 2  # the near-certain top is a false positive
    if ignore_label is not None:
        target[:, :, 4] = ignore_label
    loss = ComboLoss(0.4, 0.7, dice=dice, batch_dice=batch_dice, ignore_label=ignore_label)
    unwrapped = type(loss).forward.__wrapped__  # the float32 wrapper would round the float64 input
    assert torch.autograd.gradcheck(lambda logits: unwrapped(loss, logits, target), (x,))


@pytest.mark.parametrize("fused", ["t", "f"])
@pytest.mark.parametrize("ignore_label", [None, 4])
@pytest.mark.parametrize("dice,batch_dice", COMBO_VARIANTS)
@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_combo_value_and_gradient_match_a_float64_reference(dice, batch_dice, ignore_label, scale, fused,
                                                            monkeypatch):
    """The float32 loss and its hand-written gradient against autograd of the plain formula in float64, from
    ordinary logits to gaps of 1e4 (p_c rounds to 1 in float32, ln(1 - p_c) ~ -1e4) and ties (rounded logits); on
    the CPU both through the fused C kernel (where a compiler built it) and through the PyTorch path."""
    monkeypatch.setenv("nnUNet_losses_fused", fused)
    g = torch.Generator().manual_seed(32)
    x64 = (torch.randn(3, 4, 6, 5, generator=g, dtype=torch.float64) * scale)
    if scale == 30.0:
        x64 = x64.round()  # many ties
    target = torch.randint(0, 4, (3, 1, 6, 5), generator=g)
    if ignore_label is not None:
        target[:, :, :2] = ignore_label
    x64.requires_grad_(True)
    expected = _combo_reference64(x64, target, 0.5, 0.3, dice, batch_dice, ignore_label)
    (expected_grad,) = torch.autograd.grad(expected, x64)
    x = x64.detach().float().requires_grad_(True)
    value = ComboLoss(0.5, 0.3, dice=dice, batch_dice=batch_dice, ignore_label=ignore_label)(x, target)
    value.backward()
    assert value.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    scale_grad = expected_grad.abs().max().item()
    torch.testing.assert_close(x.grad.double(), expected_grad, rtol=1e-4, atol=1e-5 * scale_grad)


# ---------------------------------------------------------------------------------------------------- IoU_xy
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("alpha,beta,bg", [(1, 1, True), (1.5, 0.5, True), (0.5, 1.5, False), (2, 0, True)])
def test_iou_xy_matches_reference(shape, alpha, beta, bg):
    x, labels = _data(shape, 8)
    logits, target = _t(x, labels)
    loss = IoUxyLoss(alpha, beta, include_background=bg)(logits, target)
    assert loss.item() == pytest.approx(R.iou_xy(x, labels, alpha, beta, bg), abs=1e-5)


def test_iou_xy_soft_iou_and_constraint():
    x, labels = _data((2, 3, 6, 6), 9)
    logits, target = _t(x, labels)
    p, y = R.softmax(x), R.onehot(labels, 3)
    soft_iou = np.mean([((p[b, c] * y[b, c]).sum() + 1e-5) /
                        ((p[b, c] + y[b, c] - p[b, c] * y[b, c]).sum() + 1e-5) for b in range(2) for c in range(3)])
    assert IoUxyLoss()(logits, target).item() == pytest.approx(1 - soft_iou, abs=1e-5)
    with pytest.raises(ValueError, match="alpha \\+ beta must equal 2"):
        IoUxyLoss(0.5, 1.0)
    with pytest.raises(ValueError, match="alpha \\+ beta must equal 2"):
        IoUxyLoss(-0.5, 2.5)
    x, labels = _data((2, 3, 6, 6), 10, regions=True)
    logits, _ = _t(x, labels, regions=True)
    assert IoUxyLoss(0.5, 1.5, regions=True)(logits, torch.tensor(labels)).item() == pytest.approx(
        R.iou_xy(x, labels, 0.5, 1.5, regions=True), abs=1e-5)


# ------------------------------------------------------------------------------------------------- TopK Dice
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k", [100, 50, 30, 10])
def test_topk_dice_matches_reference(shape, k):
    x, labels = _data(shape, 11)
    logits, target = _t(x, labels)
    loss_fn = TopKDiceLoss(k=k)
    loss = loss_fn(logits, target)
    eps = loss_fn.perturbation(shape[2:], torch.device("cpu")).double().numpy()
    expected, kept = R.topk_dice(x, labels, k, eps)
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    assert all(n_keep == max(1, math.ceil(k * n / 100 - 1e-9)) for n_keep, n in kept)
    # the module keeps exactly that many voxels per class
    probs = torch.softmax(logits, 1)[:, 1:].detach()
    y = torch.tensor(R.onehot(labels, shape[1])[:, 1:], dtype=torch.float32)
    keep = loss_fn.keep_mask(probs, y)
    kept_fg = (keep * y).flatten(2).sum(-1)
    n_fg = y.flatten(2).sum(-1)
    assert torch.equal(kept_fg, torch.where(n_fg > 0, torch.clamp(torch.ceil(k * n_fg / 100 - 1e-9), min=1), 0))


@pytest.mark.parametrize("k", [50.0, 30.0, 1.0, 100.0])
@pytest.mark.parametrize("include_background", [False, True])
@pytest.mark.parametrize("ignore_label", [None, 3])
def test_topk_dice_label_path_equals_the_multi_hot_path(k, include_background, ignore_label):
    """Label mode sorts (class, TP) keys per sample instead of one topk per (sample, class) row, and differentiates
    by hand (``LabelTopKDiceSums``): same kept set (ties at the threshold included), same sums and the same gradient
    as the one-hot path by autograd on the same softmax; CE + TopK Dice's shared CE as well."""
    g = torch.Generator().manual_seed(int(k) + 7 * include_background)
    x = (torch.randn(3, 4, 17, 13, generator=g) * 4).round() / 4  # coarse logits: many equal probabilities
    labels = torch.randint(0, 4, (3, 1, 17, 13), generator=g)
    labels[1][labels[1] == 2] = 0  # a class absent from one sample
    if ignore_label is not None:
        labels[:, :, :3] = ignore_label
    loss = TopKDiceLoss(k=k, include_background=include_background, ignore_label=ignore_label)
    grads = []
    def label_sums(logits, target):
        tgt = decode_target(logits, target, regions=False, ignore_label=ignore_label, onehot=False)
        return loss._label_sums(logits, tgt)

    for sums in (label_sums, loss._multi_hot_sums):
        logits = x.clone().requires_grad_(True)
        numerator, denominator, present = sums(logits, labels)
        grads.append(torch.autograd.grad((numerator + 3 * denominator).sum(), logits)[0])
        grads.append(torch.stack([numerator, denominator, present.float()]))
    assert torch.allclose(grads[1], grads[3], atol=1e-5)
    assert torch.allclose(grads[0], grads[2], atol=1e-6)

    compound = CEAndTopKDiceLoss(k=k, include_background=include_background, ignore_label=ignore_label)
    weights = torch.tensor([0.7, 1.3, 0.4])  # a different weight per sample's Dice, so every sum's gradient counts
    values, grads = [], []
    for reference in (False, True):
        logits = x.clone().requires_grad_(True)
        if reference:
            flat = labels[:, 0] if ignore_label is None else torch.where(labels[:, 0] == ignore_label, -100, labels[:, 0])
            n_valid = (flat != -100).sum().clamp_min(1)
            ce = nn_f.cross_entropy(logits, flat, ignore_index=-100, reduction="sum") / n_valid
            numerator, denominator, present = loss._multi_hot_sums(logits, labels)
        else:
            tgt = decode_target(logits, labels, regions=False, ignore_label=ignore_label, onehot=False)
            numerator, denominator, present, nll = compound.topk_dice._label_sums(logits, tgt, with_ce=True)
            ce = nll / tgt.valid_count().clamp_min(1.0)
        value = 2 * ce + (weights[:, None] * numerator / denominator.clamp_min(1e-6) * present).sum()
        values.append(value.detach())
        grads.append(torch.autograd.grad(value, logits)[0])
    assert torch.allclose(values[0], values[1], atol=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


@pytest.mark.parametrize("channels, include_background, eps_scale", [
    (4, False, 1e-5),  # 3 foreground classes + the rest: int32 keys
    (4, True, 1e-5),  # 4 classes + the rest: int64 keys
    (3, True, 1e-5),  # 3 classes with the background + the rest: int32 keys
    (4, False, 2.0),  # TP may reach 2, its bits need 31: int64 keys
    (7, False, 1e-5),  # many classes: int64 keys
])
@pytest.mark.parametrize("batch, spatial", [(2, (192, 192)), (3, (128, 96))])
def test_topk_dice_label_selection_equals_per_class_topk_on_large_samples(channels, include_background, eps_scale,
                                                                          batch, spatial):
    """Batches large enough for torch's radix sort of 1-D integer keys (a sort per sample of >= 32768 voxels, or one
    sort of all samples' keys), with both key widths: the label path drops exactly the voxels the per-(sample,
    class) ``topk`` of ``keep_mask`` drops."""
    g = torch.Generator().manual_seed(channels + 10 * include_background)
    probs = torch.softmax((torch.randn(batch, channels, *spatial, generator=g) * 3).round() / 3, 1)  # ties
    labels = torch.randint(0, channels, (batch, *spatial), generator=g)
    labels[0, :100] = 0  # unequal class sizes
    loss = TopKDiceLoss(k=30, include_background=include_background, eps_scale=eps_scale)
    first = 0 if include_background else 1
    labels[:, -3:] = 0  # ignored voxels: label 0 (as decode_target leaves them), counted for no class
    ignored = torch.zeros_like(labels, dtype=torch.bool)
    ignored[:, -3:] = True
    flat = labels.reshape(batch, -1)
    counted = (flat >= first) & ~ignored.reshape(batch, -1)
    counts = torch.zeros(batch, channels, dtype=torch.int64).scatter_add_(1, flat, counted.long())
    eps = loss.perturbation(spatial, probs.device).reshape(1, -1)
    # TP of every voxel, the ignored ones included (the loss masks them to eps; any value must do)
    tp_own = probs.reshape(batch, channels, -1).gather(1, flat.unsqueeze(1))[:, 0] + eps
    dropped = loss.dropped_by_label(tp_own, flat, counted, counts)

    y = (nn_f.one_hot(labels, channels).movedim(-1, 1).float() * ~ignored.unsqueeze(1))[:, first:]
    keep = loss.keep_mask(probs[:, first:], y)
    expected = ((1 - keep) * y).sum(1).reshape(batch, -1) > 0
    assert dropped.sum() > 0
    assert torch.equal(dropped, expected)


@pytest.mark.parametrize("rows, n", [(2, 40000), (5, 10000), (3, 50)])
@pytest.mark.parametrize("dtype, high", [(torch.int32, 2 ** 31), (torch.int64, 2 ** 35)])
def test_sorted_rows_equals_torch_sort(rows, n, dtype, high):
    """numpy's sort on the CPU gives torch.sort's values, repeated keys, negative keys and strided rows included."""
    g = torch.Generator().manual_seed(rows)
    key = torch.randint(-high, high, (rows, 2 * n), generator=g, dtype=torch.int64).to(dtype)
    key[0, : n // 2] = key[0, 0]  # repeated keys
    for rows_of in (key, key[:, ::2]):  # contiguous, strided
        got = sorted_rows(rows_of)
        assert got.dtype == dtype and torch.equal(got, torch.sort(rows_of, dim=-1).values)
    with torch.inference_mode():
        assert torch.equal(sorted_rows(key), torch.sort(key, dim=-1).values)


def test_lowest_per_row_equals_topk():
    """The CPU path (numpy's sort) gives the values of torch's topk, ties included."""
    g = torch.Generator().manual_seed(5)
    values = (torch.rand(6, 5000, generator=g) * 50).round() / 50  # many ties
    for count in (1, 2500, 5000):
        assert torch.equal(lowest_per_row(values, count), values.topk(count, -1, largest=False).values)


def test_topk_dice_k100_is_squared_dice_over_present_classes():
    x, labels = _data((3, 4, 8, 8), 12)
    labels[1][labels[1] == 2] = 0  # class 2 absent from sample 1
    logits, target = _t(x, labels)
    assert TopKDiceLoss(k=100)(logits, target).item() == pytest.approx(R.squared_dice_present(x, labels), abs=1e-6)


def test_topk_dice_empty_samples_and_compound():
    x, labels = _data((2, 3, 6, 6), 13)
    labels[0] = 0  # sample 0 has no foreground class: left out of the mean
    logits, target = _t(x, labels)
    loss_fn = TopKDiceLoss(k=50)
    eps = loss_fn.perturbation((6, 6), torch.device("cpu")).double().numpy()
    assert loss_fn(logits, target).item() == pytest.approx(R.topk_dice(x, labels, 50, eps)[0], abs=1e-6)
    empty = torch.zeros_like(target)
    loss = loss_fn(logits, empty)
    loss.backward()
    assert loss.item() == 0.0
    compound = CEAndTopKDiceLoss(k=50)(logits, target)
    ce = torch.nn.functional.cross_entropy(logits, target[:, 0])
    assert compound.item() == pytest.approx(ce.item() + loss_fn(logits, target).item(), abs=1e-6)
    for k in (0, -1, 101):
        with pytest.raises(ValueError):
            TopKDiceLoss(k=k)


def test_topk_dice_eps_is_fixed_and_shared():
    a, b = TopKDiceLoss(seed=3), TopKDiceLoss(seed=3)
    e1 = a.perturbation((5, 4), torch.device("cpu"))
    assert torch.equal(e1, b.perturbation((5, 4), torch.device("cpu")))
    assert a.perturbation((5, 4), torch.device("cpu")) is e1
    assert 0 <= e1.min() and e1.max() < 1e-5


def test_topk_dice_region_mode():
    x, labels = _data((2, 3, 6, 6), 14, regions=True)
    logits, _ = _t(x, labels, regions=True)
    loss_fn = TopKDiceLoss(k=30, regions=True)
    eps = loss_fn.perturbation((6, 6), torch.device("cpu")).double().numpy()
    assert loss_fn(logits, torch.tensor(labels)).item() == pytest.approx(
        R.topk_dice(x, labels, 30, eps, regions=True)[0], abs=1e-5)


# ---------------------------------------------------------------------------------------------------- Focal
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("gamma,alpha", [(2.0, None), (2.0, 0.25), (1.0, [0.1, 0.2, 0.3, 0.4, 0.5][:4]), (0.0, None)])
def test_focal_matches_reference(shape, gamma, alpha):
    x, labels = _data(shape, 15)
    if isinstance(alpha, list):
        alpha = (alpha + [0.5])[: shape[1]]
    logits, target = _t(x, labels)
    loss = FocalLoss(gamma, alpha)(logits, target)
    assert loss.item() == pytest.approx(R.focal(x, labels, gamma, alpha), abs=1e-5)


def test_focal_gamma0_is_cross_entropy_and_sigmoid_mode():
    x, labels = _data((2, 4, 6, 6), 16)
    logits, target = _t(x, labels)
    ce = torch.nn.functional.cross_entropy(logits, target[:, 0])
    assert FocalLoss(0.0)(logits, target).item() == pytest.approx(ce.item(), abs=1e-6)
    x, labels = _data((2, 3, 6, 6), 17, regions=True)
    logits, _ = _t(x, labels, regions=True)
    assert FocalLoss(2.0, 0.25, regions=True)(logits, torch.tensor(labels)).item() == pytest.approx(
        R.focal(x, labels, 2.0, 0.25, regions=True), abs=1e-6)
    with pytest.raises(ValueError):
        FocalLoss(-1.0)
    with pytest.raises(ValueError):
        FocalLoss(2.0, 1.5)


# ----------------------------------------------------------------------------------------------- Weighted CE
def test_weighted_ce_and_inverse_frequency():
    x, labels = _data((2, 3, 6, 6), 18)
    labels[0, 0, :3] = 5
    weights = [0.5, 1.0, 2.5]
    logits, target = _t(x, labels)
    loss = WeightedCELoss(weights, ignore_label=5)(logits, target)
    assert loss.item() == pytest.approx(R.weighted_ce(x, labels, weights, valid=labels != 5), abs=1e-6)
    w = inverse_frequency_weights([900, 90, 10, 0])
    assert np.mean(w) == pytest.approx(1.0)
    inv = np.array([1 / 900, 1 / 90, 1 / 10, 1.0])
    assert np.allclose(w, inv / inv.mean())
    with pytest.raises(ValueError):
        inverse_frequency_weights([1.0])
    with pytest.raises(ValueError):
        WeightedCELoss([1.0, float("nan")])


# ------------------------------------------------------------------------------------- Dice + Boundary schedule
def test_gradual_schedule_without_drift():
    s = AlphaSchedule()
    seen = []
    for _ in range(150):
        seen.append(s.alpha)
        s.step()
    assert seen[0] == 1.0 and seen[1] == 0.99 and seen[99] == 0.01 and seen[149] == 0.01
    assert all(a >= b for a, b in zip(seen, seen[1:]))
    restored = AlphaSchedule()
    restored.load_state_dict(s.state_dict())
    assert restored.alpha == s.alpha and restored.epochs_done == 150
    with pytest.raises(ValueError, match="kind"):
        AlphaSchedule("equal").load_state_dict(AlphaSchedule().state_dict())
    assert AlphaSchedule("equal").weights() == (1.0, 1.0)


class _SoftDice(torch.nn.Module):
    def forward(self, logits, target):
        p = torch.softmax(logits, 1)
        y = torch.zeros_like(p).scatter_(1, target.long(), 1)
        return 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)


def test_dice_boundary_is_the_weighted_sum():
    x, labels = _data((2, 3, 6, 6), 19)
    z = np.random.default_rng(20).normal(0, 3, x.shape)
    logits, target = _t(x, labels)
    zt = torch.tensor(z, dtype=torch.float32)
    loss = DiceBoundaryLoss(_SoftDice())
    for _ in range(30):
        loss.schedule.step()
    a = 0.7
    expected = a * _SoftDice()(logits, target).item() + (1 - a) * R.region_wise(x, z)
    assert loss(logits, target, zt).item() == pytest.approx(expected, abs=1e-6)
    equal = DiceBoundaryLoss(_SoftDice(), AlphaSchedule("equal"))
    assert equal(logits, target, zt).item() == pytest.approx(_SoftDice()(logits, target).item() + R.region_wise(x, z),
                                                             abs=1e-6)


# ------------------------------------------------------------------------------------- every loss: edge cases
def _losses(num_classes, ignore=None):
    z = None
    return [ComboLoss(ignore_label=ignore), IoUxyLoss(ignore_label=ignore), TopKDiceLoss(ignore_label=ignore),
            CEAndTopKDiceLoss(ignore_label=ignore), FocalLoss(ignore_label=ignore),
            WeightedCELoss([1.0] * num_classes, ignore_label=ignore), ("rw", RegionWiseLoss(ignore_label=ignore)),
            ("db", DiceBoundaryLoss(_SoftDice(), ignore_label=ignore))] if z is None else []


def _call(loss, logits, target):
    if isinstance(loss, tuple):
        z = torch.linspace(-1, 1, logits.numel()).view(logits.shape)
        if loss[0] == "db":
            return loss[1](logits, torch.where(target > logits.shape[1] - 1, 0, target), z)
        return loss[1](logits, target, z)
    return loss(logits, target)


@pytest.mark.parametrize("case", ["empty_class", "full_class", "one_voxel", "3d"])
def test_every_loss_edge_cases(case):
    if case == "one_voxel":
        x, labels = _data((1, 3, 1, 1), 21)
    elif case == "3d":
        x, labels = _data((1, 3, 3, 4, 2), 22)
    else:
        x, labels = _data((2, 3, 5, 5), 23)
        labels[:] = 0 if case == "full_class" else np.where(labels == 2, 1, labels)
    for loss in _losses(3):
        logits, target = _t(x, labels)
        value = _call(loss, logits, target)
        value.backward()
        assert value.dtype == torch.float32 and value.ndim == 0
        assert torch.isfinite(value) and torch.isfinite(logits.grad).all(), (case, loss)


def test_every_loss_ignore_label():
    x, labels = _data((2, 3, 6, 6), 24)
    labels[:, :2] = 3
    # (Dice + Boundary: its partner applies the ignore label itself; tests/test_registry.py checks the built one)
    for loss in [loss for loss in _losses(3, ignore=3) if not (isinstance(loss, tuple) and loss[0] == "db")]:
        logits, target = _t(x, labels)
        value = _call(loss, logits, target)
        value.backward()
        assert torch.all(logits.grad[:, :, :2] == 0), loss
        # changing logits at ignored voxels changes nothing
        x2 = x.copy()
        x2[:, :, :2] = 50.0
        logits2, _ = _t(x2, labels)
        assert _call(loss, logits2, target).item() == pytest.approx(value.item(), abs=1e-5), loss
        # an all-ignored batch gives 0 and backward works
        logits3, target3 = _t(x, np.full_like(labels, 3))
        v = _call(loss, logits3, target3)
        v.backward()
        assert v.item() == 0.0, loss


def test_every_loss_nan_propagates_and_bad_targets():
    x, labels = _data((2, 3, 4, 4), 25)
    x[0, 0, 0, 0] = np.nan
    for loss in _losses(3):
        logits, target = _t(x, labels)
        assert torch.isnan(_call(loss, logits, target)), loss
    x, labels = _data((2, 3, 4, 4), 26)
    for loss in _losses(3):
        if isinstance(loss, tuple):
            continue
        logits, _ = _t(x, labels)
        with pytest.raises(RuntimeError, match="labels must lie in"):  # torch._assert_async: no host read
            loss(logits, torch.full((2, 1, 4, 4), 5))
        with pytest.raises(RuntimeError, match="labels must lie in"):
            loss(logits, torch.full((2, 1, 4, 4), -1))
        with pytest.raises(ValueError):
            loss(logits, torch.zeros(2, 1, 3, 4, dtype=torch.long))
        with pytest.raises(ValueError):
            loss(logits, torch.zeros(2, 2, 4, 4, dtype=torch.long))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_every_loss_under_autocast_with_huge_logits(dtype):
    rng = np.random.default_rng(27)
    x = rng.choice([-1e4, 1e4], (2, 3, 6, 6))
    labels = rng.integers(0, 3, (2, 6, 6))
    for loss in _losses(3):
        logits, target = _t(x, labels)
        with torch.autocast("cpu", dtype=dtype):
            value = _call(loss, logits.to(dtype), target)  # what a network under autocast outputs
        value.backward()
        assert value.dtype == torch.float32 and torch.isfinite(value), loss
        assert torch.isfinite(logits.grad).all(), loss


@pytest.mark.parametrize("n", [7, 4096, 3 * 4096 + 5, 128 ** 3 + 17])
def test_sum_by_label_is_exact_to_float32_and_counts_exactly(n):
    """Per-label sums (Combo's and TopK Dice's Dice sums): rows of 4096 voxels, then a pairwise sum, plus the tail."""
    from nnunet_losses.losses._common import sum_by_label

    g = torch.Generator().manual_seed(n)
    values = torch.rand(2, n, generator=g)
    labels = torch.randint(0, 3, (2, 1, n), generator=g)
    expected = torch.zeros(2, 3, dtype=torch.float64).scatter_add_(1, labels.view(2, -1), values.double())
    torch.testing.assert_close(sum_by_label(values, labels, 3).double(), expected, rtol=1e-6, atol=0)
    counts = sum_by_label(torch.ones(2, n, dtype=torch.int64), labels, 3)
    assert counts.dtype == torch.int64 and counts.tolist() == [torch.bincount(r, minlength=3).tolist()
                                                               for r in labels.view(2, -1)]
