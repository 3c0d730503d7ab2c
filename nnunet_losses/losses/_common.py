"""Shared plumbing for every loss: target decoding, ignore masks, float32 maths, DDP sums.

Conventions (the same as nnU-Net v2's own losses):

* label mode: ``target`` is (B, 1, *spatial) (or (B, *spatial)) of integer labels; the ignore label, when set,
  marks voxels that contribute nothing.
* region mode (sigmoid outputs, ``regions`` in dataset.json): ``target`` is multi-hot (B, C, *spatial); with an
  ignore label nnU-Net appends one more channel, ``target[:, -1]``, that is 1 where the voxel is ignored.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn


@dataclass
class DecodedTarget:
    """A target turned into what the losses compute with."""

    onehot: Optional[torch.Tensor]  # float32 (B, C, *spatial), 0 at ignored voxels; None if not asked for
    mask: Optional[torch.Tensor]  # float32 (B, 1, *spatial), 1 = voxel counts; None = all count
    labels: Optional[torch.Tensor]  # int64 (B, *spatial) in label mode (ignored voxels set to 0), else None

    def valid_count(self) -> torch.Tensor:
        """Number of voxels that count (per batch, summed), as float32."""
        if self.mask is None:  # known from the shape: a fill on the device, no host-to-device copy
            ref = self.onehot if self.onehot is not None else self.labels.unsqueeze(1)
            return torch.full((), float(ref.shape[0] * _numel(ref.shape[2:])), device=ref.device)
        return self.mask.sum(dtype=torch.float32)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def float32_forward(forward):
    """Run a loss's forward pass in float32 with autocast disabled (no fp16/bf16 overflow in sums or logs)."""

    @functools.wraps(forward)
    def wrapper(self, logits: torch.Tensor, *args, **kwargs):
        if not torch.is_tensor(logits) or logits.ndim < 3:
            raise ValueError(
                f"{type(self).__name__}: logits must be a tensor (B, C, *spatial) with 1-3 spatial dims, "
                f"got {tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__}")
        # the meta device (shape-only runs of the device path, tests/test_gpu_path.py) has no autocast to disable
        no_autocast = (contextlib.nullcontext() if logits.device.type == "meta"
                       else torch.autocast(device_type=logits.device.type, enabled=False))
        with no_autocast:
            args = [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
            return forward(self, logits.float(), *args, **kwargs)

    return wrapper


def decode_target(logits: torch.Tensor, target: torch.Tensor, *, regions: bool,
                  ignore_label: Optional[int], name: str = "loss", onehot: bool = True) -> DecodedTarget:
    """Turn an nnU-Net target into a float one-hot (B, C, *spatial) plus an optional validity mask.

    ``onehot=False`` (label mode) skips the one-hot, for a loss that works from ``labels`` directly."""
    num_channels = logits.shape[1]
    spatial = tuple(logits.shape[2:])
    if regions:
        expected = num_channels + (1 if ignore_label is not None else 0)
        if target.ndim != logits.ndim or target.shape[1] != expected or tuple(target.shape[2:]) != spatial:
            raise ValueError(
                f"{name}: region mode expects a multi-hot target of shape (B, {expected}, {', '.join(map(str, spatial))})"
                f"{' (last channel = ignore flag)' if ignore_label is not None else ''}, got {tuple(target.shape)}")
        target = target.float()
        if ignore_label is not None:
            mask = 1.0 - target[:, -1:]
            onehot = target[:, :-1] * mask
        else:
            mask = None
            onehot = target
        return DecodedTarget(onehot=onehot, mask=mask, labels=None)

    if target.ndim == logits.ndim:
        if target.shape[1] != 1:
            raise ValueError(
                f"{name}: label mode expects a target of shape (B, 1, *spatial) with integer labels, got "
                f"{tuple(target.shape)}; multi-hot region targets need regions=True")
        target = target[:, 0]
    if target.shape[0] != logits.shape[0] or tuple(target.shape[1:]) != spatial:
        raise ValueError(f"{name}: target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}")
    labels = target.long()
    if ignore_label is not None:
        valid = labels != int(ignore_label)
        labels = torch.where(valid, labels, torch.zeros_like(labels))
        mask = valid.unsqueeze(1).float()
    else:
        mask = None
    check_labels(labels, num_channels, ignore_label, name)
    if not onehot:
        return DecodedTarget(onehot=None, mask=mask, labels=labels)
    onehot = torch.zeros_like(logits, dtype=torch.float32)
    onehot.scatter_(1, labels.unsqueeze(1), 1.0)
    if mask is not None:
        onehot = onehot * mask
    return DecodedTarget(onehot=onehot, mask=mask, labels=labels)


def check_labels(labels: torch.Tensor, num_channels: int, ignore_label: Optional[int], name: str) -> None:
    """Refuse labels outside [0, num_channels - 1] without reading the device from Python.

    ``torch._assert_async`` checks on the device, so a training step on a GPU never waits for it and
    ``torch.compile(fullgraph=True)`` traces it. On the CPU it raises at once (a ``RuntimeError``); on CUDA a failure is
    a device-side assert. Both carry the message below, which names the allowed range.
    """
    allowed = f"[0, {num_channels - 1}] (the logits have {num_channels} channels)" + (
        "" if ignore_label is None else f" or equal the ignore label {ignore_label}")
    if labels.numel() == 0:  # a static shape: nothing to check, and min/max refuse an empty tensor
        return
    # two reductions read the labels twice; a range test and all() write two masks and read three times
    in_range = (labels.min() >= 0) & (labels.max() < num_channels)
    torch._assert_async(in_range, f"{name}: target labels must lie in {allowed}")


def empty_batch_is_zero(loss: torch.Tensor, n_valid: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``loss``, or a graph-connected 0 when no voxel counts (all ignored): tensor arithmetic, no host sync."""
    return torch.where(n_valid > 0, loss, zero_like_graph(logits))


def buffer_on(module: nn.Module, name: str, device: torch.device) -> torch.Tensor:
    """Buffer ``name`` of ``module`` on ``device``: the buffer itself where the module was moved to (the trainers move
    their loss to the training device), else a copy made on the first call there and kept, so that no call after the
    first copies a constant to the GPU (each such copy waits for the device). Constant buffers only."""
    tensor = getattr(module, name)
    if tensor.device == device:
        return tensor
    copies = module.__dict__.setdefault("_buffer_copies", {})
    copy = copies.get((name, device))
    if copy is None:
        copy = copies[(name, device)] = tensor.to(device)
    return copy


def compile_loss(loss: nn.Module, **options) -> nn.Module:
    """``torch.compile`` a loss for training (every loss here traces whole: no graph break, no host sync);
    ``options`` go to ``torch.compile`` (e.g. ``fullgraph=True``, a ``backend``).

    A loss whose Python state changes between epochs lists its stateless parts in ``compiled_parts``; only those are
    compiled, so a new epoch's weights do not trigger a recompilation (``DiceBoundaryLoss``'s alpha schedule).
    """
    parts = getattr(loss, "compiled_parts", ())
    if not parts:
        return torch.compile(loss, **options)
    for name in parts:
        setattr(loss, name, torch.compile(getattr(loss, name), **options))
    return loss


def sum_of_products(a: torch.Tensor, b: Optional[torch.Tensor]) -> torch.Tensor:
    """sum(a * b) without the product tensor; sum(a) when b is None."""
    return a.sum() if b is None else torch.dot(a.reshape(-1), b.reshape(-1))


SUM_ROW = 4096  # voxels summed one after another by sum_by_label before a pairwise sum of the rows


def sum_by_label(values: torch.Tensor, labels: torch.Tensor, channels: int) -> torch.Tensor:
    """(B, channels): the sum of ``values`` (B, *spatial) over the voxels of each label (B, *spatial) per sample.

    ``scatter_add`` adds one voxel at a time: over a whole 2 x 128^3 batch in float32 it drifted by 4e-4 (relative)
    and stops counting at 2^24 voxels of a label. Here it runs over rows of ``SUM_ROW`` voxels, whose partial sums are
    then summed pairwise: within 3e-7 of float64, and 4x faster than one row per sample on the CPU (more rows to share
    among threads; BENCHMARKS.md). Compiles with dynamic shapes (a slice then a view did not, under inductor).
    """
    batch = values.shape[0]
    values, labels = values.reshape(batch, -1), labels.reshape(batch, -1)
    pad = -values.shape[1] % SUM_ROW
    if pad:  # zeros in label 0's sum (a copy; nnU-Net's full-resolution patches need none)
        values, labels = nn.functional.pad(values, (0, pad)), nn.functional.pad(labels, (0, pad))
    rows = torch.zeros(batch, values.shape[1] // SUM_ROW, channels, dtype=values.dtype, device=values.device)
    return rows.scatter_add_(2, labels.reshape(batch, -1, SUM_ROW), values.reshape(batch, -1, SUM_ROW)).sum(1)


def masked(t: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """t * mask, or t itself when there is no mask."""
    return t if mask is None else t * mask


def ddp_sum(t: torch.Tensor, enabled: bool) -> torch.Tensor:
    """Sum ``t`` over all DDP ranks with gradients flowing back (batch Dice under ``-num_gpus``).

    A no-op when DDP is off or not initialised, so the same loss object works in one process.
    """
    if not enabled:
        return t
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    from torch.distributed.nn.functional import all_gather

    return torch.stack(all_gather(t), 0).sum(0)


def zero_like_graph(logits: torch.Tensor) -> torch.Tensor:
    """A scalar 0 that is still connected to the graph (so backward() works on an all-ignored batch)."""
    return logits.sum() * 0.0


def check_unit_interval(name: str, value: float, param: str) -> float:
    value = float(value)
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name}: {param} must lie in [0, 1], got {value}")
    return value
