"""Does a loss learn every class? In-process training on a generated dataset (default: many classes).

nnU-Net's network of the small plans (``PlainConvUNet``, 5 stages, features 8-128, deep supervision with nnU-Net's
weights through nnU-Net's ``DeepSupervisionWrapper``), nnU-Net's optimiser (SGD, Nesterov momentum 0.99, weight
decay 3e-5, poly schedule from lr 1e-2) or Adam, batch 8 of 64x64 images with random flips; RW maps computed per
deep-supervision scale from the batch's labels (:mod:`nnunet_losses.maps`, the patch is the whole image, so slice
and patch normalisation coincide). Prints per-class Dice on 24 held-out images. No nnU-Net data loader: this
isolates the loss and the optimiser; ``docs/learning.md`` has the nnU-Net runs.

    python benchmarks/learning.py rrw --optimizer sgd --steps 500
    python benchmarks/learning.py combo --optimizer sgd --param dice=per_class
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def network(num_classes: int):
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    from torch import nn

    return PlainConvUNet(1, 5, (8, 16, 32, 64, 128), nn.Conv2d, 3, (1, 2, 2, 2, 2), 2, num_classes, 2,
                         conv_bias=True, norm_op=nn.InstanceNorm2d, norm_op_kwargs={"eps": 1e-5, "affine": True},
                         nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=True)


def run(loss_name: str, optimizer: str = "sgd", lr: float = None, steps: int = 500, batch_size: int = 8,
        seed: int = 0, ds: str = "nnunet", params: dict = None, data: str = "many", momentum: float = 0.99) -> dict:
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

    from nnunet_losses import maps as M
    from nnunet_losses.losses import inverse_frequency_weights
    from nnunet_losses.synthetic_images import GENERATORS
    from nnunet_losses.registry import REGISTRY, build_loss

    generator = GENERATORS[data]
    k = len(generator.labels)
    images, labels = generator.make(96, seed=seed)
    test_images, test_labels = generator.make(24, seed=seed + 1000)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = network(k)
    spec = REGISTRY[loss_name]
    weights_cw = inverse_frequency_weights(np.bincount(labels.ravel(), minlength=k)) \
        if spec.needs_class_weights else None
    loss = build_loss(loss_name, batch_dice=True, class_weights=weights_cw, **(params or {}))
    scales = 4  # 5 stages -> 4 outputs
    w = np.array([1 / 2 ** i for i in range(scales)])
    w[-1] = 0  # nnU-Net: the lowest resolution gets weight 0
    if ds == "fullres":
        w = np.array([1.0] + [0.0] * (scales - 1))
    ds_loss = DeepSupervisionWrapper(loss, w / w.sum())
    if optimizer == "sgd":
        lr = 1e-2 if lr is None else lr
        opt = torch.optim.SGD(net.parameters(), lr, weight_decay=3e-5, momentum=momentum, nesterov=True)
    else:
        lr = 1e-4 if lr is None else lr
        opt = torch.optim.Adam(net.parameters(), lr, weight_decay=3e-5)
    epochs = max(1, steps // 50)
    sched = PolyLRScheduler(opt, lr, epochs)
    start = time.perf_counter()
    fn = M.MAP_FUNCTIONS.get(spec.needs_map)  # the full map of the loss's kind (maps.formats)
    for step in range(steps):
        if step % 50 == 0:
            sched.step(step // 50)
        idx = rng.choice(len(images), batch_size, replace=False)
        x, y = images[idx].copy(), labels[idx].copy()
        for axis in (2, 3):  # mirroring, as nnU-Net's augmentation
            if rng.random() < 0.5:
                x, y = np.flip(x, axis).copy(), np.flip(y, axis - 1).copy()
        pyramid = [y[:, :: 2 ** s, :: 2 ** s] for s in range(scales)]
        targets = [torch.from_numpy(t[:, None].copy()) for t in pyramid]
        out = net(torch.from_numpy(x))
        if spec.needs_map:
            z = [torch.from_numpy(np.stack([fn(t, k) for t in p])) for p in pyramid]
            value = ds_loss(out, targets, z)
        else:
            value = ds_loss(out, targets)
        opt.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12)  # nnU-Net's train_step
        opt.step()
    net.eval()
    with torch.no_grad():
        pred = net(torch.from_numpy(test_images))[0].argmax(1).numpy()
    dice = []
    for c in range(1, k):
        p, r = pred == c, test_labels == c
        dice.append(round(float(2 * (p & r).sum() / max(p.sum() + r.sum(), 1)), 3))
    return {"loss": loss_name, "params": params or {}, "optimizer": optimizer, "lr": lr, "steps": steps,
            "momentum": momentum if optimizer == "sgd" else None, "ds": ds, "seed": seed, "data": data, "dice": dice, "mean": round(float(np.mean(dice)), 3),
            "final_loss": round(value.item(), 5), "seconds": round(time.perf_counter() - start, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("loss")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    parser.add_argument("--lr", type=float, default=None, help="default: 1e-2 (SGD), 1e-4 (Adam)")
    parser.add_argument("--momentum", type=float, default=0.99, help="SGD's (Nesterov) momentum, default nnU-Net's")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ds", choices=("nnunet", "fullres"), default="nnunet",
                        help="deep-supervision weights: nnU-Net's (1, 1/2, 1/4, 0) or the full resolution only")
    parser.add_argument("--data", choices=("many", "discs", "phantom"), default="many",
                        help="the generated images (nnunet_losses.synthetic_images.GENERATORS; default many)")
    parser.add_argument("--param", action="append", default=[], help="loss parameter NAME=VALUE (JSON value)")
    args = parser.parse_args()
    params = {}
    for item in args.param:
        name, value = item.split("=", 1)
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value
    torch.set_num_threads(1)
    print(json.dumps(run(args.loss, args.optimizer, args.lr, args.steps, seed=args.seed, ds=args.ds,
                         params=params, data=args.data, momentum=args.momentum)))


if __name__ == "__main__":
    main()
