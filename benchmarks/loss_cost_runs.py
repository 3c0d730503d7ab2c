"""The loss-cost goals read over several runs of ``loss_cost.py`` in both allocator regimes: met only if every run is.

    python benchmarks/loss_cost_runs.py                       # 2 runs with glibc's defaults, 2 with --steady-malloc
    python benchmarks/loss_cost_runs.py --runs 3 -- --threads 1 --losses combo,topk_dice --only 2d  # loss_cost.py args

Why: on the CPU, one process's allocation history moves the baseline's own time (with glibc's defaults a freed large
tensor is often returned to the system and the next one faults its pages in again). The baseline (nnU-Net's
DC_and_CE) of one run took 132 ms in 3D and 432 ms in another, and a loss that allocates less can slow the baseline
timed beside it (BENCHMARKS.md, Loss cost, eager). A single run, or a single regime, can make a ratio look better
than it is. Each run is its own process; the table gives every run's ratio and says "yes" only if all meet the goal.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from nnunet_losses._files import atomic_write_json

HERE = os.path.dirname(os.path.abspath(__file__))
REGIMES = {"default": [], "steady": ["--steady-malloc"]}


def run_once(regime: str, extra: list, folder: str, index: int) -> dict:
    path = os.path.join(folder, f"{regime}{index}.json")
    command = [sys.executable, os.path.join(HERE, "loss_cost.py"), "--json", path, *REGIMES[regime], *extra]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    with open(path) as f:
        return json.load(f)


def table(runs: dict) -> str:
    """Markdown: per loss and dimension, every run's ratio by regime, the goal, and met (all runs)."""
    first = next(iter(runs.values()))[0]["results"]
    dims = list(first)
    lines = ["| loss | " + " | ".join(f"{d} {regime}" for d in dims for regime in runs) + " | goal | met (every run) |",
             "|---" * (2 + len(dims) * len(runs) + 1) + "|"]
    for i, row in enumerate(first[dims[0]]):
        cells, ratios = [], []
        for d in dims:
            for regime, results in runs.items():
                values = [r["results"][d][i]["ratio"] for r in results]
                ratios += values
                cells.append(", ".join(f"{v:.2f}x" for v in values))
        goal = row["goal"]
        met = "-" if goal is None else ("yes" if max(ratios) <= goal else "NO")
        lines.append(f"| {row['loss']} | " + " | ".join(cells) + f" | {'-' if goal is None else f'<= {goal}x'} | {met} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--runs", type=int, default=2, help="runs per regime (each its own process)")
    parser.add_argument("--regimes", default="default,steady", help="comma-separated: default, steady")
    parser.add_argument("--json", default=None, help="write every run's rows to this JSON file")
    parser.add_argument("extra", nargs="*", help="after --: arguments for loss_cost.py (default: --threads 1)")
    args = parser.parse_args(argv)
    regimes = args.regimes.split(",")
    unknown = [r for r in regimes if r not in REGIMES]
    if unknown or args.runs < 1:
        parser.error(f"--regimes takes {', '.join(REGIMES)} (got {', '.join(unknown) or args.regimes}); --runs >= 1")
    extra = args.extra or ["--threads", "1"]
    runs = {r: [] for r in regimes}
    with tempfile.TemporaryDirectory() as folder:
        for index in range(args.runs):  # regimes interleaved, so that a drift in machine load hits both
            for regime in regimes:
                runs[regime].append(run_once(regime, extra, folder, index))
                print(f"# {regime} run {index + 1} of {args.runs} done", flush=True)
    print(f"# loss_cost.py {' '.join(extra)}; ratios of each run, in order")
    print(table(runs))
    if args.json:
        atomic_write_json(args.json, runs, indent=2)


if __name__ == "__main__":
    main()
