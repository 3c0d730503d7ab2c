"""Forward + backward cost of every loss as a ratio to nnU-Net's DC_and_CE_loss, with deep supervision.

    python benchmarks/loss_cost.py            # 2D (12, 4, 256, 256) and 3D (2, 4, 128, 128, 128), 5 scales
    python benchmarks/loss_cost.py --quick    # smaller shapes, a smoke run
    python benchmarks/loss_cost.py --compile  # nnU-Net's loss and ours both under torch.compile (goal 1.1x)
    python benchmarks/loss_cost.py --threads 1  # one torch thread: steadier on a machine shared with other work
    python benchmarks/loss_cost.py --steady-malloc  # glibc keeps freed memory: no page faults per new tensor

Both the baseline and each loss run on the same tensors in the same process, timed in alternating pairs; the ratio
is the loss's median time / the baseline's median over its pairs. On the CPU, eager, Combo is timed twice: with its
fused C kernel (``combo``, the default) and with its PyTorch path (``combo [PyTorch path]``). Goals: every
loss <= 1.25x, TopK Dice (and CE + TopK Dice) <= 1.5x, RegionWiseLoss given the map <= 1.1x; compiled,
every loss <= 1.1x.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

from nnunet_losses._files import atomic_write_json
from nnunet_losses.losses._fast import combo_cpu
from nnunet_losses.registry import build_loss

# glibc: serve every allocation from the heap and never give it back (read at process start, hence the re-exec)
STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(2 ** 32), "MALLOC_TRIM_THRESHOLD_": str(2 ** 36)}
GOALS = {"topk_dice": 1.5, "topk_dice_only": 1.5, "rrw": 1.1}
LOSSES = ("combo", "rrw", "dice_boundary", "iou_xy", "focal", "topk_dice_only", "topk_dice", "wce", "topk_ce")


def random_labels(shape, channels, generator, background=None):
    """Integer labels of ``shape``: uniform over the channels, or background with probability ``background`` and a
    uniform foreground class otherwise."""
    labels = torch.randint(0, channels, shape, generator=generator)
    if background is None:
        return labels
    return torch.where(torch.rand(shape, generator=generator) < background, 0,
                       torch.randint(1, channels, shape, generator=generator))


def make_inputs(shape, scales, device, seed=0, background=None):
    """Random logits, labels and maps per scale; ``background``: the share of background labels (default: labels
    uniform over the channels)."""
    g = torch.Generator().manual_seed(seed)
    batch, channels, *spatial = shape
    outputs, targets, maps = [], [], []
    for s in range(scales):
        sp = [max(1, d // 2 ** s) for d in spatial]
        outputs.append(torch.randn(batch, channels, *sp, generator=g).to(device).requires_grad_(True))
        targets.append(random_labels((batch, 1, *sp), channels, g, background).to(device))
        maps.append((torch.rand(batch, channels, *sp, generator=g) * 2 - 1).to(device))
    return outputs, targets, maps


def time_loss(loss, outputs, targets, maps, needs_map, repeats, device, warmup=1):
    def once():
        for o in outputs:
            o.grad = None
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        value = loss(outputs, targets, maps) if needs_map else loss(outputs, targets)
        value.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(warmup):  # compiled: the first calls trace, the dynamic-shape graph and its backward follow
        once()
    return statistics.median(once() for _ in range(repeats))


def run(shape, scales, repeats, device, losses=LOSSES, compile=False, background=None):
    """Each loss is timed alternately with the baseline (same tensors), so drifts in machine load hit both.

    ``compile``: both nnU-Net's loss and ours under ``torch.compile`` (each per-scale loss compiled whole, the
    deep-supervision sum eager, as the trainers wire it); the warm-up call pays the compilation.
    """
    from nnunet_losses.losses import compile_loss
    from nnunet_losses.registry import get_spec

    maybe_compiled = compile_loss if compile else (lambda loss: loss)

    weights = np.array([1 / 2 ** i for i in range(scales)])
    weights = weights / weights.sum()
    outputs, targets, maps = make_inputs(shape, scales, device, background=background)
    base = DeepSupervisionWrapper(maybe_compiled(build_loss("dice_ce", batch_dice=True)), weights).to(device)
    rows, base_times = [], []
    variants = []
    for name in losses:
        variants.append((name, name, "t"))
        if name == "combo" and device.type == "cpu" and not compile:  # the fused kernel's own baseline
            variants.append(("combo [PyTorch path]", name, "f"))
    for label, name, fused in variants:
        os.environ[combo_cpu.SWITCH] = fused
        if compile:
            # a fresh start per loss, as in a trainer: the losses share their forward's code object (the float32
            # decorator), and dynamo's recompile limit per code object (8) would otherwise leave later losses eager
            import torch._dynamo

            torch._dynamo.reset()
        spec = get_spec(name)
        loss = build_loss(name, batch_dice=True, class_weights=[1.0] * shape[1] if spec.needs_class_weights else None)
        wrapped = DeepSupervisionWrapper(maybe_compiled(loss), weights).to(device)
        warmup = 3 if compile else 1
        pairs = [(time_loss(base, outputs, targets, maps, False, 1, device, warmup),
                  time_loss(wrapped, outputs, targets, maps, spec.needs_map is not None, 1, device, warmup))
                 for _ in range(repeats)]
        b = statistics.median(p[0] for p in pairs)
        t = statistics.median(p[1] for p in pairs)
        base_times.append(b)
        goal = None if name == "topk_ce" or fused == "f" else (1.1 if compile else GOALS.get(name, 1.25))
        rows.append({"loss": label, "ms": t * 1e3, "ratio": t / b, "goal": goal})
    os.environ.pop(combo_cpu.SWITCH, None)
    rows.insert(0, {"loss": "dice_ce (baseline)", "ms": statistics.median(base_times) * 1e3, "ratio": 1.0,
                    "goal": None})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions per loss (median)")
    parser.add_argument("--only", choices=("2d", "3d"), default=None)
    parser.add_argument("--quick", action="store_true", help="small shapes (smoke run)")
    parser.add_argument("--json", default=None, help="write the rows to this JSON file")
    parser.add_argument("--compile", action="store_true", help="torch.compile nnU-Net's loss and ours (goal 1.1x)")
    parser.add_argument("--losses", default=",".join(LOSSES), help="comma-separated registry names")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--background", type=float, default=None,
                        help="share of background voxels in the labels (default: labels uniform over the classes)")
    parser.add_argument("--steady-malloc", action="store_true",
                        help="rerun under glibc settings that keep freed memory (MALLOC_MMAP_THRESHOLD_, "
                             "MALLOC_TRIM_THRESHOLD_): a new tensor reuses pages instead of faulting fresh ones in, "
                             "as torch's CUDA caching allocator does on a GPU; steadier timings")
    args = parser.parse_args(argv)
    if args.steady_malloc and os.environ.get("MALLOC_MMAP_THRESHOLD_") != STEADY_MALLOC["MALLOC_MMAP_THRESHOLD_"]:
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + list(sys.argv[1:] if argv is None
                                                                                     else argv),
                  {**os.environ, **STEADY_MALLOC})
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shapes = {"2d": (12, 4, 256, 256), "3d": (2, 4, 128, 128, 128)}
    if args.quick:
        shapes = {"2d": (4, 4, 64, 64), "3d": (1, 4, 32, 32, 32)}
    results = {}
    for dim, shape in shapes.items():
        if args.only and dim != args.only:
            continue
        print(f"# {dim}: batch {shape}, 5 deep-supervision scales, device {device}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, {'compiled' if args.compile else 'eager'}, "
              f"{'steady malloc, ' if os.environ.get('MALLOC_MMAP_THRESHOLD_') else ''}background "
              f"{'uniform' if args.background is None else args.background}", flush=True)
        results[dim] = run(shape, 5, args.repeats, device, tuple(args.losses.split(",")), args.compile,
                           args.background)
    names = [r["loss"] for r in next(iter(results.values()))]
    header = "| loss | " + " | ".join(f"{d} ms | {d} ratio" for d in results) + " | goal | met |"
    print(header)
    print("|---" * (2 + 2 * len(results) + 1) + "|")
    for i, name in enumerate(names):
        cells = []
        met = True
        goal = None
        for d in results:
            row = results[d][i]
            goal = row["goal"]
            cells.append(f"{row['ms']:.1f} | {row['ratio']:.2f}x")
            met = met and (goal is None or row["ratio"] <= goal)
        goal_text = "-" if goal is None else f"<= {goal}x"
        print(f"| {name} | " + " | ".join(cells) + f" | {goal_text} | {'-' if goal is None else ('yes' if met else 'NO')} |")
    if args.json:
        atomic_write_json(args.json, {"device": str(device), "torch": torch.__version__, "compiled": args.compile,
                                      "results": results}, indent=2)


if __name__ == "__main__":
    main()
