"""``nnunet-losses demo``: every trainer family, end to end with nnU-Net's own commands, on a generated dataset.

Steps (each skipped when its result is already there, so an interrupted demo resumes):
generate a small imbalanced 2D dataset in nnU-Net raw format -> ``nnUNetv2_plan_and_preprocess`` ->
``nnunet-losses small-plans`` (nnU-Net's plan with 8-128 features and batch 8, the same preprocessed data; nnU-Net's
own plans with ``full_plans``) -> ``nnunet-losses precompute-maps`` -> ``nnUNetv2_train -p`` for each trainer (short
CPU run) -> ``nnUNetv2_predict`` on
the test images -> ``nnunet-losses evaluate`` against the test labels -> ``nnunet-losses report``: a table of Dice
and HD95 per class (each trainer tested against nnU-Net's default, DiceCETrainer, when it is in the list) and box
plots in ROOT/report/, plus ROOT/demo_results.json/.md.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

from ..metrics.evaluate import evaluate_folder
from ..report import build_report

# nnU-Net's default (the reference) and one trainer per paper, each with its family defaults
DEFAULT_TRAINERS = ("DiceCETrainer", "ComboTrainer_b0p7", "RRWTrainer", "DiceBoundaryTrainer", "IoUxyTrainer_a0p5_b1p5",
                    "TopKDiceTrainer_k50")
# `--trainers all`: every family
ALL_TRAINERS = ("DiceCETrainer", "DiceTrainer", "DiceNoBGTrainer", "ComboTrainer_b0p7", "RRWTrainer",
                "RWBoundaryTrainer", "RWACTrainer", "DiceBoundaryTrainer", "IoUxyTrainer_a0p5_b1p5", "WCETrainer",
                "TopKDiceTrainer_k50", "TopKCETrainer_k10", "FocalTrainer_g2", "FocalDiceTrainer_g2",
                "DiceTopKCETrainer_k10", "CETrainer")
SMALL_PLANS = "nnUNetPlans_small_f8_b8"
DATASET_ID = 901
DATASET_NAME = "SyntheticImbalance"


def _bin(name: str) -> str:
    """An nnU-Net console script next to this Python (works in a venv without activating it)."""
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    return candidate if os.path.exists(candidate) else name


def _run(cmd: List[str], env: Dict[str, str], log_file: str, printer) -> None:
    printer("  $ " + " ".join(cmd))
    with open(log_file, "a") as log:
        log.write("\n$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        with open(log_file) as f:
            tail = "".join(f.readlines()[-30:])
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n--- last lines of {log_file} ---\n"
                           f"{tail}")


def run_demo(root: str = "nnunet_losses_demo", trainers: Sequence[str] = DEFAULT_TRAINERS, epochs: int = 8,
             iterations: int = 100, num_train: int = 24, num_test: int = 8, printer=print,
             json_out: Optional[str] = None, full_plans: bool = False) -> List[Dict]:
    from tqdm import tqdm

    from .synthetic import nnunet_env, write_synthetic_dataset

    root = os.path.abspath(root)
    env = nnunet_env(root)
    from .. import ext_trainers

    env["nnUNet_extTrainer"] = os.path.dirname(os.path.abspath(ext_trainers.__file__))
    log_file = os.path.join(root, "demo.log")
    os.makedirs(root, exist_ok=True)
    printer(f"nnunet-losses demo in {root} (commands' output: {log_file})")
    wall_start = time.perf_counter()

    raw_folder = write_synthetic_dataset(env["nnUNet_raw"], DATASET_ID, DATASET_NAME, num_train=num_train,
                                         num_test=num_test)
    dataset_name = os.path.basename(raw_folder)
    plans = os.path.join(env["nnUNet_preprocessed"], dataset_name, "nnUNetPlans.json")
    data_folder = os.path.join(env["nnUNet_preprocessed"], dataset_name, "nnUNetPlans_2d")
    if not (os.path.isfile(plans) and os.path.isdir(data_folder)):
        printer("[1/4] plan and preprocess")
        _run([_bin("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "2d", "-npfp", "1", "-np", "1"],
             env, log_file, printer)
    plans_name = "nnUNetPlans" if full_plans else SMALL_PLANS
    if not os.path.isfile(os.path.join(env["nnUNet_preprocessed"], dataset_name, plans_name + ".json")):
        _run([_bin("nnunet-losses"), "small-plans", "-d", str(DATASET_ID), "-c", "2d"], env, log_file, printer)
    printer("[2/4] precompute maps")
    _run([_bin("nnunet-losses"), "precompute-maps", "-d", str(DATASET_ID), "-c", "2d", "-p", plans_name,
          "--no-progress"], env, log_file, printer)

    suffix = f"_ep{epochs}_it{iterations}_s0"
    names = [t + suffix for t in trainers]
    results = []
    test_images = os.path.join(raw_folder, "imagesTs")
    test_labels = os.path.join(raw_folder, "labelsTs")
    with open(os.path.join(raw_folder, "dataset.json")) as f:
        labels = {name: int(v) for name, v in json.load(f)["labels"].items() if int(v) > 0}
    printer(f"[3/4] train and predict {len(names)} trainers ({epochs} epochs x {iterations} iterations, CPU, "
            f"plans {plans_name})")
    bar = tqdm(names, desc="trainers", unit="trainer", file=sys.stdout)
    for name in bar:
        bar.set_postfix_str(name)
        start = time.perf_counter()
        out_dir = os.path.join(env["nnUNet_results"], dataset_name, f"{name}__{plans_name}__2d", "fold_0")
        if not os.path.isfile(os.path.join(out_dir, "checkpoint_final.pth")):
            _run([_bin("nnUNetv2_train"), str(DATASET_ID), "2d", "0", "-tr", name, "-p", plans_name, "-device", "cpu"],
                 env, log_file, printer)
        pred_dir = os.path.join(root, "predictions", name)
        done_marker = os.path.join(pred_dir, ".complete")
        if not os.path.isfile(done_marker):
            _run([_bin("nnUNetv2_predict"), "-i", test_images, "-o", pred_dir, "-d", str(DATASET_ID), "-c", "2d",
                  "-f", "0", "-tr", name, "-p", plans_name, "-device", "cpu", "-npp", "1", "-nps", "1",
                  "--disable_progress_bar"],
                 env, log_file, printer)
            open(done_marker, "w").close()
        evaluation = evaluate_folder(pred_dir, test_labels, dataset_json=os.path.join(raw_folder, "dataset.json"),
                                     output=os.path.join(root, "evaluation", name[:-len(suffix)], name, "fold_0.json"),
                                     progress=False, both_empty="exclude", strict=True)
        summary = evaluation["summary"]
        results.append({"trainer": name, "cases": evaluation["num_cases"],
                        "dice": {c: summary[c]["dice"]["mean"] for c in labels},
                        "hd95": {c: summary[c]["hd95"]["mean"] for c in labels},
                        "mean_dice": summary["mean_foreground"]["dice"]["mean"],
                        "seconds": round(time.perf_counter() - start, 1)})
    printer("[4/4] per-class Dice and HD95 on the test images")
    table = format_table(results, list(labels))
    printer(table)
    order = list(trainers)
    report = build_report(os.path.join(root, "evaluation"), os.path.join(root, "report"),
                          reference="DiceCETrainer" if "DiceCETrainer" in order else order[0], order=order,
                          metrics=("dice", "hd95"), plots=("box",), permutations=10000,
                          title=f"nnunet-losses demo: {epochs} epochs x {iterations} iterations per trainer (CPU, "
                                f"plans {plans_name})")
    out = json_out or os.path.join(root, "demo_results.json")
    with open(out + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(out + ".tmp", out)
    with open(os.path.join(root, "demo_results.md"), "w") as f:
        f.write(table + "\n")
    printer(f"report with significance tests and plots: {report}")
    printer(f"results: {out}")
    printer(f"demo wall time: {time.perf_counter() - wall_start:.0f} s (steps already done were skipped)")
    return results


def format_table(results: List[Dict], class_names: List[str]) -> str:
    lines = ["| trainer | " + " | ".join(f"Dice {c}" for c in class_names) + " | mean Dice | "
             + " | ".join(f"HD95 {c}" for c in class_names) + " | s |",
             "|---|" + "---|" * (2 * len(class_names) + 2)]
    for r in results:
        lines.append(f"| {r['trainer']} | " + " | ".join(f"{r['dice'][c]:.3f}" for c in class_names)
                     + f" | {r['mean_dice']:.3f} | " + " | ".join(f"{r['hd95'][c]:.1f}" for c in class_names)
                     + f" | {r['seconds']} |")
    return "\n".join(lines)
