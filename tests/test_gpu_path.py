"""The GPU path, checked without a GPU: every registry loss and every map kind on fake CUDA tensors
(``FakeTensorMode``: tensors with a device and a shape but no data) and on the ``meta`` device, under a dispatch
logger that sees every operator with the devices of its inputs and outputs.

What this proves about a real GPU: after the first call no loss reads a value back to the host (``.item()``,
``bool(t)``, data-dependent shapes: each one waits for the device) and none copies data from the CPU to the GPU (each
copy of pageable memory waits too); the forward traces whole under ``torch.compile(fullgraph=True)`` with CUDA
inputs (no graph break); every custom operator has a fake (meta) implementation; backward runs on device tensors
only. What only a real GPU shows: speed, memory, numerical agreement of CUDA kernels, and nnU-Net's own code around
the loss (its ``train_step`` reads the gradient scaler's ``found_inf`` on the host).

New registry losses join these tests automatically.
"""
from __future__ import annotations

from typing import List, Tuple

import pytest
import torch
from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorMode

from nnunet_losses.losses import compile_loss
from nnunet_losses.maps import MAP_KINDS
from nnunet_losses.registry import REGISTRY, build_loss
from device_log import DeviceLog

NUM_CLASSES = 4
SHAPE = (2, NUM_CLASSES, 16, 12)
# nnU-Net's own DC_and_CE_loss and DC_and_topk_loss (label datasets), used unchanged as the baselines: with an
# ignore label their forward guards the CE term with `num_fg > 0`, a read of a device value on the host (nnunetv2
# 2.8.1, training/loss/compound_losses.py). nnU-Net's own nnUNetTrainer pays the same.
NNUNET_HOST_READ_WITH_IGNORE = {"dice_ce", "dice_topk_ce"}
# parameters that take another code path than the defaults
VARIANTS = {"focal": [{}, {"alpha": 0.25}], "focal_dice": [{}, {"alpha": 0.25}]}


def _cases() -> List[Tuple[str, dict, object, bool]]:
    cases = []
    for name, spec in sorted(REGISTRY.items()):
        for params in VARIANTS.get(name, [{}]):
            for regions in ((False, True) if spec.supports_regions else (False,)):
                for ignore in (None, NUM_CLASSES):
                    cases.append((name, params, ignore, regions))
    return cases


CASES = _cases()
IDS = [f"{n}{'-' + '-'.join(f'{k}{v}' for k, v in p.items()) if p else ''}-{'ignore' if i else 'noignore'}-"
       f"{'regions' if r else 'labels'}" for n, p, i, r in CASES]


def _loss(name, params, ignore, regions):
    spec = REGISTRY[name]
    weights = [1.0, 2.0, 3.0, 4.0] if spec.needs_class_weights else None
    return build_loss(name, ignore_label=ignore, regions=regions, class_weights=weights, **params)


def _inputs(name, ignore, regions, device):
    """Logits, nnU-Net's target (labels, or multi-hot regions with the ignore flag as last channel) and a map."""
    logits = torch.randn(SHAPE, device=device, requires_grad=True)
    if regions:
        channels = NUM_CLASSES + (1 if ignore is not None else 0)
        target = (torch.rand((SHAPE[0], channels) + SHAPE[2:], device=device) > 0.5).float()
    else:
        target = torch.randint(0, NUM_CLASSES + (1 if ignore is not None else 0), (SHAPE[0], 1) + SHAPE[2:],
                               device=device)
    args = [logits, target]
    if REGISTRY[name].needs_map:
        args.append(torch.rand(SHAPE, device=device) * 2 - 1)
    return args


def _nnunet_reads_host(name, ignore, regions) -> bool:
    return ignore is not None and not regions and name in NNUNET_HOST_READ_WITH_IGNORE


@pytest.mark.parametrize("name,params,ignore,regions", CASES, ids=IDS)
def test_forward_on_cuda_reads_nothing_back_and_copies_nothing_after_the_first_call(name, params, ignore, regions):
    loss = _loss(name, params, ignore, regions)
    with FakeTensorMode(allow_non_fake_inputs=True):
        args = _inputs(name, ignore, regions, "cuda")
        if _nnunet_reads_host(name, ignore, regions):
            with pytest.raises(DataDependentOutputException):
                loss(*args)
            return
        loss(*args)  # a constant may move to the device here, once
        log = DeviceLog()
        with log:
            value = loss(*args)
    assert value.device.type == "cuda" and value.dim() == 0
    assert log.host_reads == [], f"{name}: host reads {log.host_reads}"
    assert log.copies == [], f"{name}: CPU -> CUDA copies on every call: {log.copies}"


@pytest.mark.parametrize("name,params,ignore,regions", CASES, ids=IDS)
def test_forward_and_backward_on_meta_stay_on_the_device(name, params, ignore, regions):
    """The meta device takes the non-CPU branches (no fused CPU kernel, no numpy sort) for backward as well; an
    operator without a meta implementation, or a host read, raises here."""
    if _nnunet_reads_host(name, ignore, regions):
        pytest.skip("nnU-Net's own loss reads num_fg > 0 on the host (NNUNET_HOST_READ_WITH_IGNORE)")
    loss = _loss(name, params, ignore, regions)
    args = _inputs(name, ignore, regions, "meta")
    loss(*args).backward()
    args[0].grad = None
    log = DeviceLog()
    with log:
        value = loss(*args)
        value.backward()
    assert args[0].grad is not None and args[0].grad.shape == args[0].shape
    assert log.host_reads == [] and log.copies == [], (log.host_reads, log.copies)


@pytest.mark.parametrize("name,params,ignore,regions", CASES, ids=IDS)
def test_forward_compiles_whole_with_cuda_inputs(name, params, ignore, regions):
    """``torch.compile(fullgraph=True)`` traces the forward with fake CUDA inputs (a graph break raises), once for
    the same shapes; the graph, run on the fake tensors, reads nothing back and copies nothing to the device. The
    loss is on the device and compiled as the trainers put and compile it."""
    if _nnunet_reads_host(name, ignore, regions):
        pytest.skip("nnU-Net's own loss reads num_fg > 0 on the host (NNUNET_HOST_READ_WITH_IGNORE)")
    torch._dynamo.reset()
    mode, log, graphs = FakeTensorMode(allow_non_fake_inputs=True), DeviceLog(), []

    def recording(gm, example_inputs):  # runs the traced graph on the fake tensors, under the logger
        graphs.append(gm)

        def run(*inputs):
            with mode, log:
                return gm.forward(*inputs)
        return run

    with mode:
        loss = _loss(name, params, ignore, regions).to("cuda")
        args = _inputs(name, ignore, regions, "cuda")
        loss(*args)  # eager once: what stays eager around compiled parts (a schedule's weights) is then on the device
    compiled = compile_loss(loss, fullgraph=True, backend=recording)  # as the trainers compile it
    compiled(*args)
    log.host_reads.clear(), log.copies.clear()
    value = compiled(*args)
    assert len(graphs) == 1, f"{name}: recompiled for the same shapes ({len(graphs)} graphs)"
    assert value.device.type == "cuda"
    assert log.host_reads == [] and log.copies == [], (log.host_reads, log.copies)


@pytest.mark.parametrize("kind", MAP_KINDS)
@pytest.mark.parametrize("precomputed", [True, False])
def test_map_pipeline_take_moves_the_batch_once_and_builds_maps_on_the_device(kind, precomputed):
    """``MapPipeline.take`` with nnU-Net's deep-supervision list: the loader's CPU tensors are copied to the device
    once each (what nnU-Net does with its own target), every map is made there, and nothing is read back."""
    from nnunet_losses.nnunet.map_pipeline import MapPipeline

    if kind == "ac" and precomputed:
        pytest.skip("RW-AC's map is not precomputed: it is always built on the device")
    pipeline = MapPipeline(kind, NUM_CLASSES, precomputed=precomputed)
    scales = [(2, 1, 16, 12), (2, 1, 8, 6), (2, 1, 4, 3)]
    g = torch.Generator().manual_seed(0)
    target = [torch.randint(0, NUM_CLASSES, s, generator=g).to(torch.int16) for s in scales]
    # the loader appends the stored form (full resolution) or each scale's map after nnU-Net's scales
    if precomputed:
        target.append(torch.rand((2, pipeline.shipped_channels) + scales[0][2:], generator=g))
    elif not pipeline.on_device:
        target += [torch.rand((2, pipeline.shipped_channels) + s[2:], generator=g) for s in scales]
    with FakeTensorMode(allow_non_fake_inputs=True):
        log = DeviceLog()
        with log:
            out_labels, maps = pipeline.take({"target": target}, torch.device("cuda"))
    assert all(m.device.type == "cuda" for m in maps)  # labels left on the CPU move with nnU-Net's own .to()
    assert [tuple(m.shape) for m in maps] == [(2, NUM_CLASSES) + s[2:] for s in scales]
    assert log.host_reads == []
    assert len(log.copies) <= len(target), log.copies  # at most one copy per tensor the loader ships


TRAINER_LOSS_STEP = r"""
import contextlib, json, sys
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from nnunetv2.run.run_training import get_trainer_from_args
sys.path.insert(0, sys.argv[1])
from device_log import DeviceLog

for name in sys.argv[3:]:
    result = {"trainer": name}
    # fake CUDA runs the forward (autograd's engine needs a real CUDA context); meta runs forward and backward
    for device, mode in (("cuda", FakeTensorMode(allow_non_fake_inputs=True)), ("meta", contextlib.nullcontext())):
        trainer = get_trainer_from_args(sys.argv[2], "2d", 0, name, device=torch.device("cpu"))
        trainer.device = torch.device(device)  # the training device: nnU-Net builds the loss for it
        pipeline = trainer.map_pipeline
        scales = [(2, 1, 32 // 2 ** i, 32 // 2 ** i) for i in range(len(trainer._get_deep_supervision_scales()))]
        g = torch.Generator().manual_seed(0)

        def batch():  # what nnU-Net's loader hands train_step: CPU tensors, the maps after nnU-Net's scales
            target = [torch.randint(0, 4, s, generator=g).to(torch.int16) for s in scales]
            if pipeline.kind is not None and pipeline.precomputed:
                target.append(torch.rand((2, pipeline.shipped_channels) + scales[0][2:], generator=g))
            elif pipeline.kind is not None and not pipeline.on_device:
                target += [torch.rand((2, pipeline.shipped_channels) + s[2:], generator=g) for s in scales]
            return {"target": target}

        with mode:
            trainer.loss = trainer._build_loss()
            outputs = [torch.randn((2, 4) + s[2:], device=device, requires_grad=True) for s in scales]

            def loss_half_of_train_step():  # nnU-Net's train_step without its network and optimiser
                b = trainer._take_maps(batch())
                target = [t.to(trainer.device, non_blocking=True) for t in b["target"]]
                value = trainer.loss(outputs, target)
                if device == "meta":
                    value.backward()

            loss_half_of_train_step()
            log = DeviceLog()
            with log:
                loss_half_of_train_step()
        result[device] = {"host_reads": log.host_reads, "copies": len(log.copies),
                          "batch_tensors": len(batch()["target"])}
    print("RESULT " + json.dumps(result))
"""


@pytest.fixture(scope="module")
def preprocessed(prepared_dataset):
    ds = prepared_dataset(901, maps="all")
    ds["env"]["nnUNet_compile"] = "f"
    return ds


@pytest.mark.nnunet
def test_each_family_s_loss_step_reads_nothing_back_and_copies_only_the_batch(preprocessed):
    """Per trainer family, the loss half of nnU-Net's ``train_step``: the loss the trainer builds for its device (deep
    supervision, maps taken from the batch), forward on fake CUDA and forward + backward on ``meta``. The loader's
    CPU batch is copied to the device once per tensor and nothing else crosses; nothing is read back. (The other
    half, nnU-Net's network, gradient scaler and ``loss.cpu().numpy()``, is nnU-Net's own.)"""
    import json
    import os
    import subprocess
    import sys

    from nnunet_losses.catalogue import FAMILIES

    proc = subprocess.run([sys.executable, "-c", TRAINER_LOSS_STEP, os.path.dirname(__file__), preprocessed["id"],
                           *FAMILIES], env=preprocessed["env"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert [r["trainer"] for r in results] == list(FAMILIES)
    for r in results:
        for device in ("cuda", "meta"):
            assert r[device]["host_reads"] == [], r
            assert r[device]["copies"] <= r[device]["batch_tensors"], r
