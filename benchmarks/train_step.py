"""A whole nnU-Net ``train_step`` per trainer, as a ratio to nnU-Net's own ``nnUNetTrainer`` on the same batches.

    python benchmarks/train_step.py                  # 2D, 128x128 generated images, every paper family
    python benchmarks/train_step.py --quick          # 64x64, three trainers, a smoke run
    python benchmarks/train_step.py --trainers TopKDiceTrainer,ComboTrainer_b0p7   # only these (and the baseline)
    python benchmarks/train_step.py --device cuda    # on a GPU (nnUNet_compile decides compilation, as in nnU-Net)

What is timed is nnU-Net's ``train_step`` (to device, forward, loss with deep supervision, backward, clipping, SGD
step) plus, for map-based trainers, the map hand-over (``_take_maps``: separate the maps from the labels, rebuild
the RRW map on the device). Every trainer gets the same network weights (same seed before ``initialize``) and
batches drawn from its own nnU-Net loader under the same seeds (same cases, crops and augmentation; the map
trainers' batches carry their maps too). Trainers are timed round-robin, so drifts in machine load hit all of
them; the ratio is the median step time over the median of ``nnUNetTrainer`` in the same run. Goal:
<= 1.05x on CPU.

The dataset is the project's generated one (``nnunet-losses synthetic-dataset``), planned and preprocessed by nnU-Net
in a temporary folder, with maps precomputed by ``nnunet-losses precompute-maps``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from nnunet_losses._files import atomic_write_json

BASELINE = "nnUNetTrainer"
# every paper family at its default; the families whose default is Adam also with nnU-Net's SGD (_sgd), which
# separates the loss's cost from the optimiser's
TRAINERS = ("DiceCETrainer", "ComboTrainer_b0p7", "RRWTrainer", "RRWTrainer_sgd", "RWBoundaryTrainer", "RWACTrainer",
            "DiceBoundaryTrainer", "DiceBoundaryTrainer_sgd", "CEBoundaryTrainer", "IoUxyTrainer_a0p5_b1p5",
            "IoUxyTrainer_a0p5_b1p5_sgd", "DiceNoBGTrainer", "WCETrainer", "TopKDiceTrainer", "FocalTrainer",
            "FocalDiceTrainer")
QUICK_TRAINERS = ("ComboTrainer_b0p7", "RRWTrainer", "TopKDiceTrainer")
GOAL = 1.05


def _bin(name: str) -> str:
    return os.path.join(os.path.dirname(sys.executable), name)


def prepare(root: str, size: int, num_train: int) -> dict:
    """Generated dataset, nnU-Net's 2D plan and preprocessing, precomputed maps; returns the environment."""
    from nnunet_losses import ext_trainers
    from nnunet_losses.nnunet.synthetic import nnunet_env, write_synthetic_dataset

    env = nnunet_env(root)
    env["nnUNet_extTrainer"] = os.path.dirname(ext_trainers.__file__)
    write_synthetic_dataset(env["nnUNet_raw"], 941, "TrainStep941", num_train=num_train, num_test=1, size=size)
    for cmd in ([_bin("nnUNetv2_plan_and_preprocess"), "-d", "941", "-c", "2d", "-npfp", "1", "-np", "1"],
                [_bin("nnunet-losses"), "precompute-maps", "-d", "941", "-c", "2d", "--no-progress"]):
        subprocess.run(cmd, env=env, check=True, capture_output=True)
    return env


def measure(trainers, device: str, rounds: int, batches: int) -> dict:
    """Runs in a process whose environment points nnU-Net at the prepared folders (nnunetv2.paths reads it once)."""
    import random

    import numpy as np
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    def seeded(seed):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    built = {}
    for name in (BASELINE,) + tuple(trainers):
        seeded(0)
        trainer = get_trainer_from_args("941", "2d", 0, name, device=torch.device(device))
        trainer.disable_checkpointing = True
        trainer.on_train_start()  # initialise (same weights under the same seed), loaders, map checks
        seeded(1)
        drawn = [next(trainer.dataloader_train) for _ in range(batches)]
        built[name] = (trainer, drawn)
    times = {name: [] for name in built}
    for _ in range(rounds):
        for name, (trainer, drawn) in built.items():
            trainer.network.train()
            for batch in drawn:
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                trainer.train_step(batch)  # ours passes the maps to the loss inside train_step
                if device == "cuda":
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times[BASELINE][batches:])  # first round: warm-up (allocator, compilation)
    rows = []
    for name, ts in times.items():
        t = statistics.median(ts[batches:])
        rows.append({"trainer": name, "ms": t * 1e3, "ratio": t / base})
    patch = built[BASELINE][0].configuration_manager.patch_size
    batch_size = built[BASELINE][0].configuration_manager.batch_size
    return {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads(), "patch": list(patch),
            "batch_size": batch_size, "rounds": rounds, "batches": batches, "rows": rows,
            "compiled": bool(built[BASELINE][0]._do_i_compile())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--quick", action="store_true", help="64x64 images, three trainers")
    parser.add_argument("--rounds", type=int, default=4, help="round-robin rounds (the first is a warm-up)")
    parser.add_argument("--batches", type=int, default=3, help="batches per trainer and round")
    parser.add_argument("--trainers", default=None,
                        help="comma-separated trainers to time against nnUNetTrainer (default: every paper family)")
    parser.add_argument("--json", default=None, help="write the result to this JSON file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    trainers = tuple(args.trainers.split(",")) if args.trainers else QUICK_TRAINERS if args.quick else TRAINERS
    if args.worker:
        print("RESULT " + json.dumps(measure(trainers, args.device, args.rounds, args.batches)))
        return 0
    with tempfile.TemporaryDirectory() as root:
        env = prepare(root, 64 if args.quick else 128, 6 if args.quick else 12)
        env["nnUNet_n_proc_DA"] = "0"  # batches drawn in the worker process: same seeds, same batches for all
        # compilation as nnU-Net decides it (its default: on CUDA only), unless this process's environment says
        env.pop("nnUNet_compile")
        if "nnUNet_compile" in os.environ:
            env["nnUNet_compile"] = os.environ["nnUNet_compile"]
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", "1", "--device", args.device,
                               "--rounds", str(args.rounds), "--batches", str(args.batches)]
                              + (["--quick"] if args.quick else [])
                              + (["--trainers", args.trainers] if args.trainers else []),
                              env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
            return proc.returncode
        result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    print(f"# train_step on {result['device']}, torch {result['torch']}, {result['threads']} threads, patch "
          f"{result['patch']}, batch {result['batch_size']}, {'compiled' if result['compiled'] else 'eager'} "
          f"(nnUNet_compile); median of {result['rounds'] - 1} rounds x {result['batches']} batches after a warm-up "
          f"round")
    print("| trainer | ms per step | ratio to nnUNetTrainer | goal | met |")
    print("|---|---|---|---|---|")
    for row in result["rows"]:
        baseline = row["trainer"] == BASELINE
        met = "-" if baseline else ("yes" if row["ratio"] <= GOAL else "NO")
        print(f"| {row['trainer']} | {row['ms']:.1f} | {row['ratio']:.2f}x | {'-' if baseline else f'<= {GOAL}x'} "
              f"| {met} |")
    if args.json:
        atomic_write_json(args.json, result, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
