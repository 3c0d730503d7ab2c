"""``nnunet-losses demo``: nnU-Net's default and one trainer per paper, end to end with nnU-Net's own commands, on a
generated dataset, on a CPU.

The demo is the experiment spec ``configs/demo.toml`` run by the ``reproduce`` runner (:mod:`..experiment.runner`)
with nnU-Net's folders under ROOT: generate the phantom 2D dataset -> ``nnUNetv2_plan_and_preprocess`` ->
``nnunet-losses small-plans`` (8-128 features, batch 8, the same preprocessed data; nnU-Net's own plans with
``full_plans``) -> ``nnunet-losses precompute-maps`` -> per trainer ``nnUNetv2_train -p`` (short CPU run; its
final validation predicts fold 0's held-out cases) and ``nnunet-losses evaluate`` of them, two trainings side by
side on a 2-core machine -> ``nnunet-losses report`` (Dice and HD95 per class, each trainer tested against
nnU-Net's default, box plots) in ROOT/report/, and ROOT/demo_results.json/.md. Every step is skipped when its result is there, so an interrupted demo resumes.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Dict, List, Optional, Sequence

from ._files import atomic_write_text
from .errors import MissingInput, StepFailed

SPEC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "demo.toml")
# `--trainers all`: every family, each with its family defaults
ALL_TRAINERS = ("DiceCETrainer", "DiceTrainer", "DiceNoBGTrainer", "ComboTrainer_b0p7", "RRWTrainer",
                "RWBoundaryTrainer", "RWACTrainer", "DiceBoundaryTrainer", "IoUxyTrainer_a0p5_b1p5", "WCETrainer",
                "TopKDiceTrainer_k50", "TopKCETrainer_k10", "FocalTrainer_g2", "FocalDiceTrainer_g2",
                "DiceTopKCETrainer_k10", "CETrainer")


def demo_experiment(trainers: Optional[Sequence[str]] = None, epochs: Optional[int] = None,
                    iterations: Optional[int] = None, full_plans: bool = False, spec: str = SPEC,
                    fair: bool = False):
    """``configs/demo.toml``, with other trainers (labels = names), another training length or nnU-Net's plans.
    ``fair``: for every optimiser other than nnU-Net's SGD that a trainer uses, Dice+CE with that optimiser is added
    as the reference of the losses that use it (:mod:`..report.optimisers`)."""
    from .experiment.config import check_trainers, load_experiment
    from .naming import check_name

    if not os.path.isfile(spec):
        raise MissingInput(f"the demo's spec {spec} is missing: install nnunet-losses from its repository "
                           "(pip install -e .), which holds configs/")
    exp = load_experiment(spec)
    spec_length = check_name(exp.trainers[exp.reference])  # the spec's epochs and iterations, as nnU-Net reads them
    epochs, iterations = epochs or spec_length.epochs, iterations or spec_length.iterations
    labels = list(trainers) if trainers else list(exp.trainers)
    reference = exp.reference if exp.reference in labels else labels[0]
    references = [reference] + (same_optimiser_references(reference, labels) if fair else [])
    labels = references + [label for label in labels if label not in references]  # the references first
    named = {label: _with_length(label, epochs, iterations) for label in labels}
    plans = "nnUNetPlans" if full_plans else exp.plans
    check_trainers(spec, named, plans, exp.configuration, exp.runs, exp.folds)
    paper = (f"nnunet-losses demo: {epochs} epochs x {iterations} iterations per trainer (CPU, plans {plans})")
    return dataclasses.replace(exp, trainers=named, plans=plans, reference=reference,
                               references=tuple(references) if len(references) > 1 else (), paper=paper)


def _with_length(label: str, epochs: int, iterations: int) -> str:
    """``label`` (a trainer name) with the demo's length, the tokens where the name grammar puts them (before
    _adam/_lr/_s); a name that does not parse is left for the spec's trainer check to refuse with its path."""
    from .naming import check_name, format_name

    try:
        parsed = check_name(label)
    except (ValueError, KeyError):
        return f"{label}_ep{epochs}_it{iterations}"
    return format_name(dataclasses.replace(parsed, epochs=epochs, iterations=iterations))


def same_optimiser_references(reference: str, labels: Sequence[str]) -> List[str]:
    """The reference trainer ``reference`` (a name) retrained with each other optimiser and lr the ``labels`` use:
    ``DiceCETrainer`` + an Adam 1e-3 family -> ``["DiceCETrainer_adam_lr1em3"]``."""
    from .naming import check_name, format_name

    base = check_name(reference)
    own = (base.resolved_optimizer(), base.resolved_lr())
    wanted = []
    for label in labels:
        parsed = check_name(label)
        optimiser = (parsed.resolved_optimizer(), parsed.resolved_lr())
        if optimiser != own and optimiser not in wanted:
            wanted.append(optimiser)
    return [format_name(dataclasses.replace(base, optimizer=name, lr=lr)) for name, lr in wanted]


def run_demo(root: str = "nnunet_losses_demo", trainers: Optional[Sequence[str]] = None,
             epochs: Optional[int] = None, iterations: Optional[int] = None, printer=print,
             json_out: Optional[str] = None, full_plans: bool = False, dry_run: bool = False,
             jobs: Optional[int] = None, fair: bool = False) -> List[Dict]:
    from .experiment.plan import Paths, evaluation_file
    from .experiment.runner import command_env, describe, run_local, threads_per_job, writable_folder
    from .nnunet.synthetic import nnunet_env

    exp = demo_experiment(trainers, epochs, iterations, full_plans, fair=fair)
    root = writable_folder(os.path.abspath(root), "--root", "demo folder")  # nnU-Net's folders, logs, report
    jobs = jobs or min(2, os.cpu_count() or 1)
    env = command_env(nnunet_env(root))  # run_local shares the cores out between side-by-side trainings
    paths = Paths.from_env(root, env)
    if dry_run:
        printer(describe(exp, paths, "cpu", 1))
        return []
    printer(f"nnunet-losses demo in {root}: {exp.path} with the reproduce runner ({len(exp.matrix)} trainings: "
            f"{exp.paper.split(': ', 1)[1]}; {jobs} at a time with {env.get('OMP_NUM_THREADS') or threads_per_job(jobs)} torch thread(s) each; "
            f"commands' output in {os.path.join(root, 'logs')})")
    wall_start = time.perf_counter()
    status = run_local(exp, paths, jobs=jobs, device="cpu", num_processes=1, env=env)
    if status:
        raise StepFailed(f"the demo stopped: a training failed (logs in {os.path.join(root, 'logs')}); rerun the "
                         "same command to resume")
    results = []
    for run in exp.matrix:
        with open(evaluation_file(exp, paths, run)) as f:
            evaluation = json.load(f)
        summary = evaluation["summary"]
        classes = [c["name"] for c in evaluation["classes"]]
        results.append({"trainer": run.trainer, "cases": evaluation["num_cases"],
                        "dice": {c: summary[c]["dice"]["mean"] for c in classes},
                        "hd95": {c: summary[c]["hd95"]["mean"] for c in classes},
                        "mean_dice": summary["foreground_mean"]["dice"]})
    table = format_table(results, classes)
    printer(f"per-class Dice and HD95 on the {results[0]['cases']} held-out cases (mean over them; {exp.evaluate} "
            "set); mean Dice (per class) = the mean over classes of the class means (nnU-Net's foreground_mean)")
    printer(table)
    out = json_out or os.path.join(root, "demo_results.json")
    atomic_write_text(out, json.dumps(results, indent=2))
    atomic_write_text(os.path.join(root, "demo_results.md"), table + "\n")
    printer(f"report with significance tests and plots: {os.path.join(root, 'report', 'report.md')}")
    printer(f"results: {out}")
    printer(f"demo wall time: {time.perf_counter() - wall_start:.0f} s (steps already done were skipped)")
    return results


def _number(value: Optional[float], digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(results: List[Dict], class_names: List[str]) -> str:
    lines = ["| trainer | " + " | ".join(f"Dice {c}" for c in class_names) + " | mean Dice (per class) | "
             + " | ".join(f"HD95 {c}" for c in class_names) + " |",
             "|---|" + "---|" * (2 * len(class_names) + 1)]
    for r in results:
        lines.append(f"| {r['trainer']} | " + " | ".join(_number(r['dice'][c], 3) for c in class_names)
                     + f" | {_number(r['mean_dice'], 3)} | "
                     + " | ".join(_number(r['hd95'][c], 1) for c in class_names) + " |")
    return "\n".join(lines)
