"""A quick comparison of every loss on a generated, imbalanced 2D dataset (no download, CPU, a few minutes).

Each loss trains the same small U-Net (nnU-Net's ``PlainConvUNet`` with deep supervision, wrapped by nnU-Net's
``DeepSupervisionWrapper``) from the same seed, then per-class Dice on held-out images is printed as a table.
Maps for the region-wise losses are computed per scale from each batch's labels with :mod:`nnunet_losses.maps`.
"""
from __future__ import annotations

import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from . import maps as M
from ._files import atomic_write_json
from .errors import UnknownName
from .registry import REGISTRY, build_loss
from .synthetic_images import make_discs as make_dataset  # noqa: F401 (the generated 3-class images)

DEFAULT_LOSSES = ("dice_ce", "combo", "rrw", "rw_boundary", "rw_ac", "dice_boundary", "iou_xy", "dice_nobg", "wce",
                  "topk_dice", "topk_ce", "focal")
CLASS_NAMES = ("background", "large", "medium", "small")


def make_network(num_classes: int, deep_supervision: bool = True) -> nn.Module:
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    return PlainConvUNet(1, 4, (8, 16, 32, 32), nn.Conv2d, 3, (1, 2, 2, 2), 2, num_classes, 1, conv_bias=True,
                         norm_op=nn.InstanceNorm2d, norm_op_kwargs={"eps": 1e-5, "affine": True},
                         nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=deep_supervision)


def downsample_labels(labels: np.ndarray, num_scales: int) -> List[np.ndarray]:
    """Nearest-neighbour label pyramids (factor 2 per scale), like nnU-Net's DownsampleSegForDSTransform."""
    return [labels[:, :: 2 ** s, :: 2 ** s] for s in range(num_scales)]


def dice_per_class(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> List[float]:
    out = []
    for c in range(1, num_classes):
        p, r = pred == c, ref == c
        denom = p.sum() + r.sum()
        out.append(float(2 * (p & r).sum() / denom) if denom else float("nan"))
    return out


def class_voxel_counts(labels: np.ndarray, num_classes: int) -> List[float]:
    return np.bincount(labels.ravel(), minlength=num_classes)[:num_classes].astype(float).tolist()


def train_one(loss_name: str, images, labels, test_images, test_labels, steps: int, batch_size: int,
              seed: int, log_every: int, printer=print) -> Dict:
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    from .losses import inverse_frequency_weights

    num_classes = len(CLASS_NAMES)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = make_network(num_classes)
    spec = REGISTRY[loss_name]
    class_weights = inverse_frequency_weights(class_voxel_counts(labels, num_classes)) \
        if spec.needs_class_weights else None
    loss = build_loss(loss_name, batch_dice=True, class_weights=class_weights)
    num_scales = 3  # a 4-stage U-Net with deep supervision has 3 outputs
    weights = np.array([1 / (2 ** i) for i in range(num_scales)])
    weights = weights / weights.sum()
    ds_loss = DeepSupervisionWrapper(loss, weights)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    steps_per_epoch = max(1, steps // 10)
    start = time.perf_counter()
    history = []
    for step in range(steps):
        idx = rng.choice(len(images), batch_size, replace=False)
        x = torch.from_numpy(images[idx])
        pyramid = downsample_labels(labels[idx], num_scales)
        targets = [torch.from_numpy(t[:, None]) for t in pyramid]
        outputs = net(x)
        if len(outputs) != num_scales:  # DeepSupervisionWrapper would silently truncate
            raise RuntimeError(f"network returned {len(outputs)} outputs, expected {num_scales}")
        if spec.needs_map:
            fn = M.MAP_FUNCTIONS[spec.needs_map]
            maps = [torch.from_numpy(np.stack([fn(lab, num_classes) for lab in t])) for t in pyramid]
            value = ds_loss(outputs, targets, maps)
        else:
            value = ds_loss(outputs, targets)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        history.append(value.item())
        if hasattr(loss, "schedule") and (step + 1) % steps_per_epoch == 0:
            loss.schedule.step()
        if log_every and (step + 1) % log_every == 0:
            printer(f"  {loss_name:>14s} step {step + 1:4d}/{steps}  loss {history[-1]:+.4f}")
    net.eval()
    with torch.no_grad():
        logits = net(torch.from_numpy(test_images))[0]
    pred = logits.argmax(1).numpy()
    return {"loss": loss_name, "dice": dice_per_class(pred, test_labels, num_classes),
            "final_loss": history[-1], "seconds": time.perf_counter() - start, "params": repr(loss)}


def run_demo(losses: Sequence[str] = DEFAULT_LOSSES, steps: int = 60, batch_size: int = 8, seed: int = 0,
             json_out: Optional[str] = None, log_every: int = 20, printer=print) -> List[Dict]:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    images, labels = make_dataset(96, seed=seed)
    test_images, test_labels = make_dataset(24, seed=seed + 1000)
    counts = class_voxel_counts(labels, len(CLASS_NAMES))
    total = sum(counts)
    printer("generated dataset: 96 training + 24 test images of 64x64; class shares: " +
            ", ".join(f"{n} {100 * c / total:.2f}%" for n, c in zip(CLASS_NAMES, counts)))
    results = []
    for name in losses:
        if name not in REGISTRY:
            raise UnknownName(f"unknown loss {name!r}; known: {', '.join(REGISTRY)}")
        printer(f"training with {name} ({REGISTRY[name].summary}) for {steps} steps")
        results.append(train_one(name, images, labels, test_images, test_labels, steps, batch_size, seed,
                                 log_every, printer))
    printer("")
    printer(format_table(results))
    if json_out:
        atomic_write_json(json_out, results, indent=2)
    return results


def format_table(results: List[Dict]) -> str:
    header = "| loss | " + " | ".join(f"Dice {n}" for n in CLASS_NAMES[1:]) + " | mean | final loss | s |"
    lines = [header, "|" + "---|" * (len(CLASS_NAMES) + 3)]
    for r in results:
        d = r["dice"]
        mean = float(np.nanmean(d)) if not all(np.isnan(d)) else float("nan")
        lines.append(f"| {r['loss']} | " + " | ".join(f"{v:.3f}" for v in d) +
                     f" | {mean:.3f} | {r['final_loss']:+.4f} | {r['seconds']:.1f} |")
    return "\n".join(lines)
