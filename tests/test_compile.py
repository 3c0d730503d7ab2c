"""Every loss of the registry traces whole under ``torch.compile(fullgraph=True)`` and equals eager.

A graph break means Python looked at a tensor's value (``.item()``, ``bool(t)``, data-dependent shapes): on a GPU
that is a host sync that stalls the queue before backward. ``aot_eager`` traces forward and backward exactly as
inductor would receive them, without spending minutes on C++ code generation on 2 cores.
"""
from __future__ import annotations

import math

import pytest
import torch

from nnunet_losses.losses import compile_loss
from nnunet_losses.registry import REGISTRY, build_loss

NUM_CLASSES = 4
# nnU-Net's own DC_and_CE_loss / DC_and_topk_loss, used unchanged as the reference baselines: with an ignore label
# their forward guards CE with `num_fg > 0` on the host (nnunetv2 2.8.1, compound_losses.py); nnU-Net compiles only
# their Dice part. Ours must not do this.
NNUNET_OWN_SYNC_WITH_IGNORE = {"dice_ce", "dice_topk_ce"}


def _inputs(ignore_label, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, NUM_CLASSES, 12, 10, generator=g)
    target = torch.randint(0, NUM_CLASSES, (2, 1, 12, 10), generator=g)
    target[1][target[1] == 2] = 0  # a class absent from one sample
    if ignore_label is not None:
        target[:, :, :3] = ignore_label
    z = torch.rand(2, NUM_CLASSES, 12, 10, generator=g) * 2 - 1
    return logits, target, z


def _value_and_grad(loss, logits, target, z, needs_map):
    logits = logits.clone().requires_grad_(True)
    value = loss(logits, target, z) if needs_map else loss(logits, target)
    value.backward()
    return value.detach(), logits.grad


@pytest.mark.parametrize("ignore_label", [None, NUM_CLASSES])
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_loss_compiles_whole_and_equals_eager(name, ignore_label):
    if ignore_label is not None and name in NNUNET_OWN_SYNC_WITH_IGNORE:
        pytest.skip("nnU-Net's own loss class syncs on the ignore label (see NNUNET_OWN_SYNC_WITH_IGNORE)")
    torch._dynamo.reset()
    spec = REGISTRY[name]
    weights = [1.0, 2.0, 3.0, 4.0] if spec.needs_class_weights else None
    loss = build_loss(name, ignore_label=ignore_label, class_weights=weights)
    logits, target, z = _inputs(ignore_label)
    expected, expected_grad = _value_and_grad(loss, logits, target, z, spec.needs_map)
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    value, grad = _value_and_grad(compiled, logits, target, z, spec.needs_map)
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-7)


def test_all_ignored_batch_is_zero_without_a_sync():
    """The empty-batch guards are tensor arithmetic: an all-ignored batch gives 0 (and a zero gradient), compiled."""
    torch._dynamo.reset()
    for name in ("combo", "focal", "topk_dice", "wce", "rrw"):
        spec = REGISTRY[name]
        loss = build_loss(name, ignore_label=NUM_CLASSES,
                          class_weights=[1.0] * NUM_CLASSES if spec.needs_class_weights else None)
        logits, target, z = _inputs(None)
        target[:] = NUM_CLASSES
        value, grad = _value_and_grad(torch.compile(loss, fullgraph=True, backend="aot_eager"), logits, target, z,
                                      spec.needs_map)
        assert value.item() == 0.0 and torch.count_nonzero(grad) == 0, name


TRAINER_SCRIPT = r"""
import json, sys
import torch
compiled = []
real_compile = torch.compile
def recording_compile(module, **kwargs):  # aot_eager: the same graphs as inductor gets, without C++ codegen
    compiled.append(getattr(module, "__name__", type(module).__name__))  # a module's class, a function's name
    return real_compile(module, backend="aot_eager", **kwargs)
torch.compile = recording_compile
from nnunetv2.run.run_training import get_trainer_from_args
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunet_losses.registry import build_loss
for name in sys.argv[2:]:
    compiled.clear()
    trainer = get_trainer_from_args(sys.argv[1], "2d", 0, name, device=torch.device("cpu"))
    trainer._do_i_compile = lambda: True  # nnU-Net compiles only on CUDA; this is the switch it asks
    loss = trainer._build_loss()
    g = torch.Generator().manual_seed(0)
    shapes = [(2, 4, 64 // 2 ** i, 64 // 2 ** i) for i in range(len(trainer._get_deep_supervision_scales()))]
    outputs = [torch.randn(s, generator=g) for s in shapes]
    targets = [torch.randint(0, 4, (s[0], 1) + s[2:], generator=g) for s in shapes]
    maps = [torch.rand(s, generator=g) * 2 - 1 for s in shapes]
    with_maps = hasattr(loss, "maps")
    if with_maps:
        loss.maps = maps
    got = float(loss(outputs, targets))
    eager = DeepSupervisionWrapper(build_loss(trainer.parsed.family.loss, **trainer.loss_context,
                                              **trainer.loss_params),
                                   (loss.loss if with_maps else loss).weight_factors)
    expected = float(eager(outputs, targets, maps) if with_maps else eager(outputs, targets))
    pipeline = trainer.map_pipeline  # the precomputed map resampled and rebuilt on the device: compiled = eager
    stored = torch.rand((2, pipeline.shipped_channels, 64, 64), generator=g)
    rebuilt_equal = None
    if pipeline.precomputed:
        rebuilt_equal = all(torch.equal(pipeline._rebuild_on_device(stored, t), pipeline._rebuild(stored, t))
                            for t in targets[:2])  # full resolution and the first resampled scale
    print("RESULT " + json.dumps({"trainer": name, "compiled": list(compiled), "got": got, "expected": expected,
                                  "rebuilt_equal": rebuilt_equal}))
"""


@pytest.fixture(scope="module")
def preprocessed(prepared_dataset):
    return prepared_dataset(901)


@pytest.mark.nnunet
def test_trainer_compiles_the_loss_when_nnunet_compiles(preprocessed):
    """Under nnU-Net's compile switch the trainer compiles the loss (Dice+Boundary: its weighted terms, so the per-epoch
    alpha does not recompile) and the precomputed maps' resampling and rebuild on the device, logs both as nnU-Net
    does, and the compiled deep-supervised loss and maps equal eager."""
    import json
    import subprocess
    import sys

    expected_parts = {"ComboTrainer_b0p7": ["ComboLoss"],
                      "DiceBoundaryTrainer": ["WeightedPartnerAndBoundary", "_rebuild"],
                      "RRWTrainer": ["RegionWiseLoss", "_rebuild"]}
    proc = subprocess.run([sys.executable, "-c", TRAINER_SCRIPT, preprocessed["id"], *expected_parts],
                          env=preprocessed["env"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("nnunet-losses: Using torch.compile for the loss...") == 3
    assert proc.stdout.count("nnunet-losses: Using torch.compile for the map rebuilt on the device...") == 2
    results = [json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert {r["trainer"]: r["compiled"] for r in results} == expected_parts
    for r in results:
        assert r["got"] == pytest.approx(r["expected"], rel=1e-5, abs=1e-6), r
        assert r["rebuilt_equal"] is (None if r["trainer"] == "ComboTrainer_b0p7" else True), r


@pytest.mark.parametrize("k", [50.0, 30.0, 1.0])
def test_topk_dice_selection_is_the_same_eager_and_compiled(k):
    """TopK Dice's batched topk selection keeps the same voxels eager and compiled, ties included, and exactly the
    set of its definition: per row, the foreground voxels up to the n_keep-th smallest TP (a per-row kthvalue)."""
    from nnunet_losses.losses import TopKDiceLoss

    torch._dynamo.reset()
    g = torch.Generator().manual_seed(3)
    probs = (torch.rand(3, 3, 17, 13, generator=g) * 20).round() / 20  # many ties
    y = (torch.rand(3, 3, 17, 13, generator=g) < torch.tensor([0.5, 0.05, 0.0]).view(1, 3, 1, 1)).float()
    y[1, 0, 0, 0] = 1.0  # a row with one foreground voxel
    loss = TopKDiceLoss(k=k)
    eager = loss.keep_mask(probs, y)
    compiled = torch.compile(loss.keep_mask, fullgraph=True, backend="aot_eager")(probs, y)
    assert torch.equal(eager, compiled)
    assert torch.all(eager[y == 0] == 1)
    eps = loss.perturbation(probs.shape[2:], probs.device).reshape(-1)
    for b in range(y.shape[0]):  # the definition, one row at a time
        for c in range(y.shape[1]):
            fg = y[b, c].reshape(-1) > 0.5
            tp = probs[b, c].reshape(-1) + eps
            n_keep = max(1, math.ceil(k / 100.0 * int(fg.sum()) - 1e-9))
            threshold = tp[fg].kthvalue(n_keep).values if n_keep < int(fg.sum()) else float("inf")
            expected = ~(fg & (tp > threshold))
            assert torch.equal(eager[b, c].reshape(-1) > 0.5, expected), (b, c)


def test_dice_boundary_compiles_once_across_epochs():
    """Dice+Boundary compiles its two weighted terms as one graph whose weights are a tensor input: the epochs'
    new alpha values give no recompilation, and the compiled loss follows the schedule as eager does."""
    from torch._dynamo.testing import CompileCounterWithBackend

    from nnunet_losses.losses import compile_loss

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    real_compile = torch.compile
    eager = build_loss("dice_boundary")
    compiled = build_loss("dice_boundary")
    try:
        torch.compile = lambda module, **kw: real_compile(module, backend=counter, **kw)
        compiled = compile_loss(compiled)
    finally:
        torch.compile = real_compile
    logits, target, z = _inputs(None)
    values = []
    for epoch in range(3):
        for loss in (eager, compiled):
            loss.schedule.epochs_done = epoch * 40
        got, expected = compiled(logits, target, z), eager(logits, target, z)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        values.append(got.item())
    assert len(set(values)) == 3  # the weights moved (alpha 1.0, 0.6, 0.2)
    assert counter.frame_count == 1


def test_per_label_sums_compile_with_inductor_and_dynamic_shapes():
    """The loss tests above trace with aot_eager; inductor lowers further and once refused ``sum_by_label``'s
    reshape of a slice with symbolic sizes (a failure only a real compiled run showed): lengths with and without a
    remainder of the 4096-voxel rows."""
    from nnunet_losses.losses._common import sum_by_label

    torch._dynamo.reset()
    compiled = torch.compile(sum_by_label, dynamic=True)
    for n in (5000, 8192, 777):
        g = torch.Generator().manual_seed(n)
        values, labels = torch.rand(2, n, generator=g), torch.randint(0, 3, (2, n), generator=g)
        expected = torch.zeros(2, 3, dtype=torch.float64).scatter_add_(1, labels, values.double())
        torch.testing.assert_close(compiled(values, labels, 3).double(), expected, rtol=1e-6, atol=0)


def test_topk_dice_sorts_with_numpy_when_compiled_on_the_cpu(monkeypatch):
    """``sorted_rows`` is a custom operator: a compiled graph calls numpy's sort on the CPU (torch's sort there is
    4-30x slower), whole, and with torch.sort's values."""
    import numpy as np

    from nnunet_losses.losses._fast import topk_selection as topk

    calls = []
    real_sort = np.sort
    monkeypatch.setattr(topk.np, "sort", lambda *a, **k: calls.append(1) or real_sort(*a, **k))
    torch._dynamo.reset()
    key = torch.randint(-1000, 1000, (3, 5000), dtype=torch.int64)
    expected = torch.sort(key * 3, dim=-1).values
    compiled = torch.compile(lambda key: topk.sorted_rows(key * 3), fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(key), expected)
    assert len(calls) == 1


@pytest.mark.parametrize("shape", [(2, 4, 7), (3, 5)])
def test_pick_is_a_gather_eager_and_compiled(shape):
    """TopK Dice's ``pick``: a gather, eager and compiled; the same values, for a (B, C, N) tensor and for a (B, C)
    table."""
    from nnunet_losses.losses.topk import pick

    g = torch.Generator().manual_seed(1)
    values = torch.randn(*shape, generator=g)
    labels = torch.randint(0, shape[1], (shape[0], 7), generator=g)
    expected = torch.stack([values[b, labels[b], torch.arange(7)] if values.ndim == 3 else values[b, labels[b]]
                            for b in range(shape[0])])
    torch._dynamo.reset()
    compiled = torch.compile(pick, fullgraph=True, backend="aot_eager")
    assert torch.equal(pick(values, labels), expected) and torch.equal(compiled(values, labels), expected)


@pytest.mark.parametrize("ignore_label", [None, 3])
@pytest.mark.parametrize("name", ["topk_dice", "combo"])
def test_label_losses_compile_with_inductor_and_equal_eager(name, ignore_label):
    """CE + TopK Dice and Combo's PyTorch path (label mode) through inductor itself, not only ``aot_eager`` (TopK's
    gathers, the backward's ``scatter_add_``, the custom operator ``sorted_rows``): eager's value and gradient, at
    two shapes (a static graph, then a dynamic one, as with deep supervision)."""
    torch._dynamo.reset()
    loss = build_loss(name, ignore_label=ignore_label)
    compiled = compile_loss(loss)
    for size in (24, 12):
        g = torch.Generator().manual_seed(size)
        logits = torch.randn(2, NUM_CLASSES, size, size + 3, generator=g)
        target = torch.randint(0, NUM_CLASSES, (2, 1, size, size + 3), generator=g)
        if ignore_label is not None:
            target[:, :, :2] = ignore_label
        expected, expected_grad = _value_and_grad(loss, logits, target, None, False)
        value, grad = _value_and_grad(compiled, logits, target, None, False)
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-7)
