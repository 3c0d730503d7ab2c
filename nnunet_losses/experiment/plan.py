"""The commands that reproduce an experiment, in order, each with the files that say it is done.

Stages: ``prepare`` (the synthetic dataset when the spec asks for it, ``nnUNetv2_plan_and_preprocess``, the spec's
split: the paper's half split, or 5 folds by ``split_group`` with ``split = "nnunet"``; ``nnunet-losses
precompute-maps``), ``train`` (one task per training of the matrix: ``nnUNetv2_train --c``,
whose final validation predicts the held-out cases, then ``nnunet-losses evaluate`` on them; with
``evaluate = "test"``, ``nnUNetv2_predict`` on the raw dataset's imagesTs and ``nnunet-losses evaluate`` against its
labelsTs instead), ``report``.
Every command is one a user could type; ``done`` only reads files, so a rerun skips what is finished. A
``splits_final.json`` the spec's trainings must not use (another half split, a group on both sides of a fold) refuses
the split step and every training, with the ``nnunet-losses split ... --force`` command that replaces it.
"""
from __future__ import annotations

import glob
import json
import os
import shlex
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from ..metrics.evaluate import is_current_evaluation
from ..nnunet.small_plans import parse_small_plans_name
from .config import Experiment, Run


TEST_PREDICTIONS = "test_predictions"  # evaluate = "test": nnUNetv2_predict's output folder inside the fold folder


@dataclass
class Step:
    stage: str
    title: str
    command: List[str]
    done: Callable[[], bool] = field(default=lambda: False, repr=False)
    log: str = ""
    # why the step must not run (what is on disk contradicts the spec; the message says how to fix it), or None
    refused: Callable[[], Optional[str]] = field(default=lambda: None, repr=False)

    def shell(self) -> str:
        return shlex.join(self.command)


@dataclass
class Paths:
    """Where nnU-Net and the experiment keep their files (nnU-Net's environment variables)."""
    raw: str
    preprocessed: str
    results: str
    work: str

    @classmethod
    def from_env(cls, work: str, env: Optional[Dict[str, str]] = None) -> "Paths":
        env = os.environ if env is None else env
        missing = [k for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results") if not env.get(k)]
        if missing:
            raise RuntimeError(f"set nnU-Net's environment variables first: {', '.join(missing)} "
                               "(nnU-Net's documentation/set_environment_variables.md)")
        return cls(os.path.abspath(env["nnUNet_raw"]), os.path.abspath(env["nnUNet_preprocessed"]),
                   os.path.abspath(env["nnUNet_results"]), os.path.abspath(work))


def dataset_name(exp: Experiment, paths: Paths) -> str:
    """``DatasetXXX_Name`` as found in nnUNet_raw or nnUNet_preprocessed; a pattern while it does not exist yet."""
    for root in (paths.raw, paths.preprocessed):
        found = sorted(glob.glob(os.path.join(root, f"Dataset{exp.dataset:03d}_*")))
        if found:
            return os.path.basename(found[0])
    return f"Dataset{exp.dataset:03d}_<name>"


def fold_dir(exp: Experiment, paths: Paths, run: Run) -> str:
    return os.path.join(paths.results, dataset_name(exp, paths), f"{run.trainer}__{exp.plans}__{exp.configuration}",
                        f"fold_{run.fold}")


def evaluation_file(exp: Experiment, paths: Paths, run: Run) -> str:
    return os.path.join(paths.work, "evaluation", run.label, run.trainer, f"fold_{run.fold}.json")


def _plans_done(exp: Experiment, paths: Paths, plans: Optional[str] = None) -> bool:
    plans_file = os.path.join(paths.preprocessed, dataset_name(exp, paths), f"{plans or exp.plans}.json")
    if not os.path.isfile(plans_file):
        return False
    with open(plans_file) as f:
        configurations = json.load(f)["configurations"]
    if exp.configuration not in configurations:
        return False
    identifier = configurations[exp.configuration].get("data_identifier")
    data = os.path.join(os.path.dirname(plans_file), identifier or "")
    return bool(identifier) and os.path.isdir(data) and bool(os.listdir(data))


def configuration_problem(exp: Experiment, paths: Paths) -> Optional[str]:
    """Why the spec's configuration cannot be trained with the plans already on disk (checked before any step
    runs, so that plan_and_preprocess never rewrites the plans for nothing); None when it can or no plans exist."""
    small = parse_small_plans_name(exp.plans)
    for plans in dict.fromkeys((small[0] if small else exp.plans, exp.plans)):
        plans_file = os.path.join(paths.preprocessed, dataset_name(exp, paths), f"{plans}.json")
        if not os.path.isfile(plans_file):
            continue
        with open(plans_file) as f:
            configurations = json.load(f).get("configurations", {})
        if exp.configuration not in configurations:
            return (f"{plans_file} has no configuration {exp.configuration!r} (it has "
                    f"{', '.join(configurations) or 'none'}): change configuration in {exp.path}")
    return None


def _raw_datasets(exp: Experiment, paths: Paths, generated: bool) -> List[str]:
    """The raw folders of the spec's dataset id that ``synthetic-dataset`` wrote (``generated``), or the others."""
    folders = sorted(glob.glob(os.path.join(paths.raw, f"Dataset{exp.dataset:03d}_*")))
    return [f for f in folders if os.path.isfile(os.path.join(f, "nnunet_losses_synthetic.json")) == generated]


def split_command(exp: Experiment) -> Optional[List[str]]:
    """The ``nnunet-losses split`` command that writes the spec's split; None for ``split = "nnunet"`` without a
    ``split_group`` (nnU-Net makes its own 5 folds by case at the first training)."""
    from .split import NNUNET_FOLDS

    if exp.split == "nnunet" and not exp.split_group:
        return None
    command = ["nnunet-losses", "split", "-d", str(exp.dataset)]
    if exp.split == "alternate":
        command += ["--alternate", str(exp.split_offset)]
    else:
        command += (["--folds", str(NNUNET_FOLDS)] if exp.split == "nnunet" else []) + ["--seed", str(exp.split_seed)]
    return command + (["--group", exp.split_group] if exp.split_group else [])


def _grouping_problem(exp: Experiment, splits) -> Optional[str]:
    """What in an existing ``splits_final.json`` breaks the spec's grouped folds, or None when the trainings can use
    it (any split that has the spec's folds and keeps every group on one side of each fold, ours or not)."""
    from .split import mixed_group

    if not isinstance(splits, list) or not all(isinstance(fold, dict) for fold in splits):
        return "is not a list of folds"
    if len(splits) <= max(exp.folds):
        return (f"holds {len(splits)} fold(s) and the spec trains folds {list(exp.folds)} (nnU-Net would draw the "
                "missing ones at random, by case)")
    try:
        mixed = mixed_group(splits, exp.split_group)
    except ValueError as err:
        return f"has a case outside the spec's groups ({err})"
    return f"puts {mixed}, against the spec's split_group" if mixed else None


def _split_state(exp: Experiment, paths: Paths) -> Tuple[str, Optional[str]]:
    """``("todo", None)`` without splits_final.json; ``("done", None)`` when it holds the spec's split (grouped folds:
    any split that keeps the groups apart, see :func:`_grouping_problem`); else ``("other", what is wrong)``:
    nnU-Net's 5 folds by case from an earlier training, another seed, a broken file."""
    from .split import dataset_half_split

    path = os.path.join(paths.preprocessed, dataset_name(exp, paths), "splits_final.json")
    if not os.path.isfile(path):
        return "todo", None
    try:
        with open(path) as f:
            splits = json.load(f)
    except (OSError, ValueError):
        return "other", "is not a readable JSON file"
    if exp.split == "nnunet":
        problem = _grouping_problem(exp, splits)
        return ("other", problem) if problem else ("done", None)
    try:
        expected = dataset_half_split(os.path.dirname(path), exp.split_seed, exp.split_group or None,
                                      exp.split_offset if exp.split == "alternate" else None)
    except (OSError, ValueError, KeyError):  # no references yet, or a group pattern the cases miss: the command says
        return "todo", None
    return ("done", None) if splits == expected else ("other", "holds another split than this spec's")


def split_refusal(exp: Experiment, paths: Paths) -> Optional[str]:
    """Why the spec's trainings must not use the existing splits_final.json, with the command that replaces it (one
    line); None when there is none, it holds the spec's split, or nnU-Net makes its own split."""
    command = split_command(exp)
    state, problem = _split_state(exp, paths) if command else ("todo", None)
    if state != "other":
        return None
    path = os.path.join(paths.preprocessed, dataset_name(exp, paths), "splits_final.json")
    return (f"{path} {problem} ({exp.path}): trainings would use it. Replace it with: "
            f"{shlex.join(command + ['--force'])} (trainings already run on it no longer match the new split: "
            "remove their output folders)")


def _map_kinds(exp: Experiment) -> List[str]:
    from ..nnunet.naming import parse_name
    from ..catalogue import FAMILIES, ONLINE_MAP_FAMILIES
    from ..maps import STORED_KINDS
    from ..registry import get_spec

    kinds = set()
    for name in exp.trainers.values():
        parsed = parse_name(name, FAMILIES, ONLINE_MAP_FAMILIES)
        kind = get_spec(parsed.family.loss).needs_map
        if kind in STORED_KINDS and not parsed.online:
            kinds.add(kind)
    return sorted(kinds)


def prepare_steps(exp: Experiment, paths: Paths, num_processes: int = 1) -> List[Step]:
    did = str(exp.dataset)
    steps = []
    if exp.convert == "synthetic":
        steps.append(Step("prepare", "generate the synthetic dataset",
                          ["nnunet-losses", "synthetic-dataset", "-d", did, "--num-train",
                           str(exp.synthetic_cases[0]), "--num-test", str(exp.synthetic_cases[1]),
                           "--kind", exp.synthetic_kind],
                          lambda: bool(_raw_datasets(exp, paths, generated=True)),
                          refused=lambda: next((f"dataset id {exp.dataset} is taken by {other}, not the generated "
                                                f"dataset: choose another dataset id in {exp.path}"
                                                for other in _raw_datasets(exp, paths, generated=False)), None)))
    small = parse_small_plans_name(exp.plans)  # CPU-sized plans: nnU-Net's plans first, then their small copy
    source = small[0] if small else exp.plans
    if source == "nnUNetPlans":
        steps.append(Step("prepare", "plan and preprocess",
                          ["nnUNetv2_plan_and_preprocess", "-d", did, "-c", exp.configuration, "-np",
                           str(num_processes), "-npfp", str(num_processes), "--verify_dataset_integrity"],
                          lambda: _plans_done(exp, paths, source)))
    if small:
        steps.append(Step("prepare", "CPU-sized plans sharing nnU-Net's preprocessed data",
                          ["nnunet-losses", "small-plans", "-d", did, "-c", exp.configuration, "-p", source,
                           "--features", str(small[1]), "--batch-size", str(small[2])],
                          lambda: _plans_done(exp, paths)))
    command = split_command(exp)
    if command:
        title = ("write the grouped 5-fold split (no group on both sides of a fold)" if exp.split == "nnunet"
                 else "write the paper's split (half train, half validation)")
        steps.append(Step("prepare", title, command, lambda: _split_state(exp, paths)[0] == "done",
                          refused=lambda: split_refusal(exp, paths)))
    kinds = _map_kinds(exp)
    if kinds:
        steps.append(Step("prepare", "precompute maps (resumes: up-to-date maps are skipped)",
                          ["nnunet-losses", "precompute-maps", "-d", did, "-c", exp.configuration, "-p", exp.plans,
                           "-np", str(num_processes), "--kinds", ",".join(kinds), "--no-progress"]))
    return steps


def run_steps(exp: Experiment, paths: Paths, run: Run, device: str = "cuda") -> List[Step]:
    """Train (continuing from the latest checkpoint when there is one), then evaluate the validation cases (or, with
    ``evaluate = "test"``, predict the raw dataset's test images and evaluate those)."""
    folder = fold_dir(exp, paths, run)
    pre = os.path.join(paths.preprocessed, dataset_name(exp, paths))
    summary = os.path.join(folder, "validation", "summary.json")
    out = evaluation_file(exp, paths, run)
    train = Step("train", f"train {run.label} seed {run.seed} fold {run.fold}",
                 ["nnUNetv2_train", str(exp.dataset), exp.configuration, str(run.fold), "-tr", run.trainer, "-p",
                  exp.plans, "--c", "-device", device],
                 lambda: os.path.isfile(os.path.join(folder, "checkpoint_final.pth")) and os.path.isfile(summary),
                 refused=lambda: split_refusal(exp, paths))
    if exp.evaluate == "test":
        return [train, *_test_steps(exp, paths, run, device, out)]
    evaluate = Step("train", f"evaluate {run.label} seed {run.seed} fold {run.fold}",
                    ["nnunet-losses", "evaluate", os.path.join(folder, "validation"),
                     os.path.join(pre, "gt_segmentations"), "--dataset-json", os.path.join(pre, "dataset.json"),
                     "-o", out, "--strict", "--split", os.path.join(pre, "splits_final.json"), "--fold",
                     str(run.fold), "--no-progress"],
                    lambda: is_current_evaluation(out) and os.path.isfile(summary)
                    and os.path.getmtime(out) >= os.path.getmtime(summary), refused=lambda: split_refusal(exp, paths))
    return [train, evaluate]


def _test_steps(exp: Experiment, paths: Paths, run: Run, device: str, out: str) -> List[Step]:
    """``nnUNetv2_predict`` of the raw test images with the final checkpoint into FOLD/test_predictions, then their
    evaluation. Both are done
    when the evaluation is current and newer than the checkpoint (a prediction cut short is simply redone)."""
    raw = os.path.join(paths.raw, dataset_name(exp, paths))
    checkpoint = os.path.join(fold_dir(exp, paths, run), "checkpoint_final.pth")
    # in the fold folder, beside nnU-Net's validation/: the report finds the training log next to what was evaluated
    predictions = os.path.join(fold_dir(exp, paths, run), TEST_PREDICTIONS)

    def done() -> bool:
        return (is_current_evaluation(out) and os.path.isfile(checkpoint)
                and os.path.getmtime(out) >= os.path.getmtime(checkpoint))

    def missing() -> Optional[str]:
        folder = os.path.join(paths.raw, dataset_name(exp, paths))
        if not os.path.isdir(folder):  # not converted or generated yet: the prepare stage says so
            return None
        absent = [d for d in ("imagesTs", "labelsTs") if not os.path.isdir(os.path.join(folder, d))]
        return f"evaluate = \"test\" in {exp.path} needs {' and '.join(absent)} in {folder}" if absent else None

    workers = ["-npp", "1", "-nps", "1"] if device == "cpu" else []
    predict = Step("train", f"predict the test images {run.label} seed {run.seed} fold {run.fold}",
                   ["nnUNetv2_predict", "-i", os.path.join(raw, "imagesTs"), "-o", predictions, "-d",
                    str(exp.dataset), "-c", exp.configuration, "-f", str(run.fold), "-tr", run.trainer, "-p",
                    exp.plans, "-device", device, *workers, "--disable_progress_bar"], done, refused=missing)
    evaluate = Step("train", f"evaluate the test images {run.label} seed {run.seed} fold {run.fold}",
                    ["nnunet-losses", "evaluate", predictions, os.path.join(raw, "labelsTs"), "--dataset-json",
                     os.path.join(raw, "dataset.json"), "-o", out, "--strict", "--no-progress"], done,
                    refused=missing)
    return [predict, evaluate]


def report_step(exp: Experiment, paths: Paths) -> Step:
    title = exp.paper or exp.name
    return Step("report", "tables and plots",
                ["nnunet-losses", "report", os.path.join(paths.work, "evaluation"), "-o",
                 os.path.join(paths.work, "report"), "--reference", exp.reference, "--order", *exp.trainers,
                 "--metrics", *exp.metrics, "--plots", *exp.plots, "--permutations", str(exp.permutations),
                 "--mean", exp.mean, "--title", title])


def missing_raw_data_message(exp: Experiment, paths: Paths) -> Optional[str]:
    """Why the matrix cannot start (the raw dataset is not there), with the converter to run; None if it can."""
    if exp.convert == "synthetic" or glob.glob(os.path.join(paths.raw, f"Dataset{exp.dataset:03d}_*",
                                                              "dataset.json")):
        return None
    if glob.glob(os.path.join(paths.preprocessed, f"Dataset{exp.dataset:03d}_*", "dataset.json")):
        return None
    how = (f"nnunet-losses convert {exp.convert} SOURCE_FOLDER -d {exp.dataset}" if exp.convert
           else "convert it yourself (no converter ships for this dataset; see documentation/reproducing.md)")
    return f"dataset {exp.dataset} is not in nnUNet_raw ({paths.raw}): {how}"
