"""The commands that reproduce an experiment, in order, each with the files that say it is done.

Stages: ``prepare`` (the synthetic dataset, or the INIA19 conversion, when the spec asks for it,
``nnUNetv2_plan_and_preprocess``, the spec's
split: the paper's half split, or 5 folds by ``split_group`` with ``split = "nnunet"``; ``nnunet-losses
precompute-maps``), ``train`` (one task per training of the matrix: ``nnUNetv2_train --c``,
whose final validation predicts the held-out cases, then ``nnunet-losses evaluate`` on them; with
``evaluate = "test"``, ``nnUNetv2_predict`` on the raw dataset's imagesTs and ``nnunet-losses evaluate`` against its
labelsTs instead), ``report``.
Every command is one a user could type; ``done`` only reads files, so a rerun skips what is finished. A
``splits_final.json`` the spec's trainings must not use (another half split, a group on both sides of a fold) refuses
the split step and every training, with the ``nnunet-losses split ... --force`` command that replaces it.

An evaluation (``WORK/evaluation/<label>/<trainer>/fold_<f>.json``) is keyed by what produced it, as the JSON of
``nnunet-losses evaluate`` records it: the prediction folder (nnU-Net's ``<trainer>__<plans>__<configuration>/
fold_<f>/validation`` or ``test_predictions``: dataset, trainer with its settings and seed, plans, configuration,
fold), the references, the dataset.json and the evaluation conventions (empty masks, metrics, NSD tolerance). The
evaluate step is done only when all of them are the step's and the evaluation is newer than the training's result
(:func:`evaluation_mismatch`); else it is redone. Before the report, evaluations under the spec's labels that are not
of the spec's matrix (another trainer, seed or fold: an earlier version of the spec, ``demo --epochs 1``) or not of
its settings are moved to ``WORK/evaluation_superseded/<time>/`` (:func:`set_aside_evaluations`): the report never
averages them as runs of one loss.
"""
from __future__ import annotations

import glob
import json
import os
import shlex
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from ..errors import StepFailed
from ..metrics.case import DEFAULT_NSD_TOLERANCE, METRICS
from ..nnunet.small_plans import parse_small_plans_name
from .config import Experiment, Run


TEST_PREDICTIONS = "test_predictions"  # evaluate = "test": nnUNetv2_predict's output folder inside the fold folder
EVALUATION = "evaluation"  # WORK/evaluation/<label>/<trainer>/fold_<f>.json: what the report reads
SUPERSEDED = "evaluation_superseded"  # WORK/evaluation_superseded/<time>/<label>/<trainer>/: set aside, never reported
BOTH_EMPTY = "exclude"  # the evaluate step's empty-mask convention (nnunet-losses evaluate's default)


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
            raise StepFailed(f"set nnU-Net's environment variables first: {', '.join(missing)} "
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
    return os.path.join(paths.work, EVALUATION, run.label, run.trainer, f"fold_{run.fold}.json")


def evaluation_inputs(exp: Experiment, paths: Paths, run: Run) -> Tuple[str, str, str]:
    """What the evaluate step of ``run`` evaluates: (prediction folder, reference folder, dataset.json). The
    prediction folder is nnU-Net's ``<trainer>__<plans>__<configuration>/fold_<f>/validation`` (or
    ``test_predictions``): it names everything the training was run with."""
    if exp.evaluate == "test":
        raw = os.path.join(paths.raw, dataset_name(exp, paths))
        return (os.path.join(fold_dir(exp, paths, run), TEST_PREDICTIONS), os.path.join(raw, "labelsTs"),
                os.path.join(raw, "dataset.json"))
    pre = os.path.join(paths.preprocessed, dataset_name(exp, paths))
    return (os.path.join(fold_dir(exp, paths, run), "validation"), os.path.join(pre, "gt_segmentations"),
            os.path.join(pre, "dataset.json"))


def _same_path(recorded, expected: str) -> bool:
    return isinstance(recorded, str) and os.path.realpath(recorded) == os.path.realpath(expected)


def _prediction_settings(folder: str) -> str:
    """``plans P, configuration C, trainer T, fold F, <set>`` of an nnU-Net prediction folder, else ''."""
    from ..naming import parse_output_folder_name

    fold = os.path.dirname(os.path.normpath(folder))
    named = parse_output_folder_name(os.path.basename(os.path.dirname(fold)))
    return (f"plans {named[1]}, configuration {named[2]}, trainer {named[0]}, {os.path.basename(fold)}, "
            f"{os.path.basename(os.path.normpath(folder))}" if named else "")


def evaluation_mismatch(path: str, predictions: str, references: str, dataset_json: str) -> Optional[str]:
    """Why the evaluation JSON at ``path`` is not the one the evaluate step of these inputs writes, or None when it
    is: missing or incomplete, of another prediction folder (another trainer, seed, plans, configuration, fold or
    evaluation set), other references or dataset.json, other conventions (empty masks, metrics, NSD tolerance)."""
    try:
        with open(path) as f:
            evaluation = json.load(f)
    except OSError:
        return "no evaluation yet"
    except ValueError:
        return "not a complete evaluation JSON"
    if not isinstance(evaluation, dict):
        return "not an evaluation JSON"
    both_empty = (evaluation.get("aggregation") or {}).get("both_empty")
    if both_empty != BOTH_EMPTY:
        return (f"written with the empty-mask convention {both_empty!r} (before conventions were recorded, if None); "
                f"the evaluate step's is {BOTH_EMPTY!r}")
    recorded = evaluation.get("pred_dir")
    if not _same_path(recorded, predictions):
        if not isinstance(recorded, str):
            return "its prediction folder is not recorded (pred_dir)"
        ours = _prediction_settings(predictions)
        return (f"an evaluation of {recorded}" + (f" ({_prediction_settings(recorded)})" if ours else "")
                + "; the evaluate step's: " + (ours or predictions))
    for key, expected in (("ref_dir", references), ("dataset_json", dataset_json)):
        if not _same_path(evaluation.get(key), expected):
            return f"{key} {evaluation.get(key)!r}; the evaluate step's: {expected}"
    lacking = [m for m in METRICS if m not in (evaluation.get("metrics") or [])]
    if lacking:
        return f"lacks the metrics {', '.join(lacking)} (an older nnunet-losses evaluate)"
    tolerances = evaluation.get("nsd_tolerance_mm")
    if not isinstance(tolerances, dict) or any(t != DEFAULT_NSD_TOLERANCE for t in tolerances.values()):
        return f"NSD tolerance {tolerances!r} mm; the evaluate step's: {DEFAULT_NSD_TOLERANCE:g} mm for every class"
    return None


def _evaluation_done(path: str, inputs: Tuple[str, str, str], result: str) -> bool:
    """The evaluation at ``path`` is of ``inputs`` with the step's conventions, and newer than ``result`` (the
    training's summary.json or final checkpoint: a training run again makes its evaluation stale)."""
    return (evaluation_mismatch(path, *inputs) is None and os.path.isfile(result)
            and os.path.getmtime(path) >= os.path.getmtime(result))


def evaluations_to_set_aside(exp: Experiment, paths: Paths) -> List[Tuple[str, str]]:
    """``(path, why)`` of every evaluation under the spec's labels (WORK/evaluation/<label>/) that the report must
    not average with the spec's runs: of a trainer, seed or fold outside the matrix (an earlier version of the spec,
    another `demo --epochs`), or at a matrix run's path but of other settings (:func:`evaluation_mismatch`).
    Evaluations of the matrix's settings older than a training run again are kept (the next run redoes them)."""
    expected = {evaluation_file(exp, paths, run): run for run in exp.matrix}
    found = []
    for label, trainer in exp.trainers.items():
        for path in sorted(glob.glob(os.path.join(paths.work, EVALUATION, glob.escape(label), "*", "fold_*.json"))):
            run = expected.get(path)
            why = (evaluation_mismatch(path, *evaluation_inputs(exp, paths, run)) if run else
                   f"not a training of {exp.path} ({label} = {trainer}, runs {exp.runs}, folds "
                   f"{', '.join(map(str, exp.folds))}, plans {exp.plans}, configuration {exp.configuration})")
            if why:
                found.append((path, why))
    return found


def set_aside_evaluations(exp: Experiment, paths: Paths) -> List[Tuple[str, str, str]]:
    """Move :func:`evaluations_to_set_aside` (with the CSV beside each) to WORK/evaluation_superseded/<time>/<label>/
    <trainer>/; returns ``(path, new path, why)`` of each."""
    found = evaluations_to_set_aside(exp, paths)
    if not found:
        return []
    stamp = time.strftime("%Y%m%d_%H%M%S")
    target, n = os.path.join(paths.work, SUPERSEDED, stamp), 1
    while os.path.exists(target):
        n += 1
        target = os.path.join(paths.work, SUPERSEDED, f"{stamp}_{n}")
    moved = []
    for path, why in found:
        new = os.path.join(target, os.path.relpath(path, os.path.join(paths.work, EVALUATION)))
        os.makedirs(os.path.dirname(new), exist_ok=True)
        os.replace(path, new)
        csv = path[:-len(".json")] + ".csv"
        if os.path.isfile(csv):
            os.replace(csv, new[:-len(".json")] + ".csv")
        moved.append((path, new, why))
    return moved


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
    """The stored map kinds the trainers read (``precompute-maps --kinds``), from their :func:`map_source`."""
    from ..naming import parse_name
    from ..catalogue import FAMILIES, ONLINE_MAP_FAMILIES, map_source

    sources = [map_source(parse_name(name, FAMILIES, ONLINE_MAP_FAMILIES)) for name in exp.trainers.values()]
    return sorted({source.stored for source in sources if source is not None and source.precomputed})


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
    if exp.convert == "inia19":  # its source is Debian's mricron-data: the converter needs no download
        steps.append(Step("prepare", "convert the INIA19 template into 2D coronal slices",
                          ["nnunet-losses", "convert", "inia19", "-d", did],
                          lambda: os.path.isfile(os.path.join(paths.raw, f"Dataset{exp.dataset:03d}_INIA19",
                                                              "dataset.json"))))
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
    summary = os.path.join(folder, "validation", "summary.json")
    out = evaluation_file(exp, paths, run)
    inputs = evaluation_inputs(exp, paths, run)
    predictions, references, dataset_json = inputs
    splits = os.path.join(paths.preprocessed, dataset_name(exp, paths), "splits_final.json")
    train = Step("train", f"train {run.label} seed {run.seed} fold {run.fold}",
                 ["nnUNetv2_train", str(exp.dataset), exp.configuration, str(run.fold), "-tr", run.trainer, "-p",
                  exp.plans, "--c", "-device", device],
                 lambda: os.path.isfile(os.path.join(folder, "checkpoint_final.pth")) and os.path.isfile(summary),
                 refused=lambda: split_refusal(exp, paths))
    if exp.evaluate == "test":
        return [train, *_test_steps(exp, paths, run, device, out)]
    evaluate = Step("train", f"evaluate {run.label} seed {run.seed} fold {run.fold}",
                    ["nnunet-losses", "evaluate", predictions, references, "--dataset-json", dataset_json, "-o", out,
                     "--strict", "--split", splits, "--fold", str(run.fold), "--no-progress"],
                    lambda: _evaluation_done(out, inputs, summary), refused=lambda: split_refusal(exp, paths))
    return [train, evaluate]


def _test_steps(exp: Experiment, paths: Paths, run: Run, device: str, out: str) -> List[Step]:
    """``nnUNetv2_predict`` of the raw test images with the final checkpoint into FOLD/test_predictions, then their
    evaluation. Both are done when the evaluation is of these predictions with the step's conventions and newer than
    the checkpoint (a prediction cut short is simply redone)."""
    raw = os.path.join(paths.raw, dataset_name(exp, paths))
    checkpoint = os.path.join(fold_dir(exp, paths, run), "checkpoint_final.pth")
    # in the fold folder, beside nnU-Net's validation/: the report finds the training log next to what was evaluated
    inputs = evaluation_inputs(exp, paths, run)
    predictions, references, dataset_json = inputs

    def done() -> bool:
        return _evaluation_done(out, inputs, checkpoint)

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
                    ["nnunet-losses", "evaluate", predictions, references, "--dataset-json", dataset_json, "-o", out,
                     "--strict", "--no-progress"], done, refused=missing)
    return [predict, evaluate]


def report_step(exp: Experiment, paths: Paths) -> Step:
    """``nnunet-losses report`` of the spec's labels; ``--reference`` lists every reference label, comma-separated,
    when the spec has one per optimiser."""
    title = exp.paper or exp.name
    return Step("report", "tables and plots",
                ["nnunet-losses", "report", os.path.join(paths.work, EVALUATION), "-o",
                 os.path.join(paths.work, "report"), "--reference", ",".join(report_references(exp)), "--order",
                 *exp.trainers,
                 "--metrics", *exp.metrics, "--plots", *exp.plots, "--permutations", str(exp.permutations),
                 "--mean", exp.mean, "--title", title])


def report_references(exp: Experiment) -> List[str]:
    """``exp.reference`` first, then the spec's other reference labels that are among its trainers."""
    return list(dict.fromkeys([exp.reference, *(r for r in exp.references if r in exp.trainers)]))


def missing_raw_data_message(exp: Experiment, paths: Paths) -> Optional[str]:
    """Why the matrix cannot start (the raw dataset is not there), with the converter to run; None if it can."""
    if exp.convert == "synthetic" or glob.glob(os.path.join(paths.raw, f"Dataset{exp.dataset:03d}_*",
                                                              "dataset.json")):
        return None
    if glob.glob(os.path.join(paths.preprocessed, f"Dataset{exp.dataset:03d}_*", "dataset.json")):
        return None
    if exp.convert == "inia19":  # not converted yet: the prepare stage converts Debian's files if they are there
        from ..convert.inia19 import source_files

        try:
            source_files(None)
        except ValueError as err:
            return f"dataset {exp.dataset} is not in nnUNet_raw ({paths.raw}) and cannot be converted: {err}"
        return None
    how = (f"nnunet-losses convert {exp.convert} SOURCE_FOLDER -d {exp.dataset}" if exp.convert
           else "convert it yourself (no converter ships for this dataset; see documentation/reproducing.md)")
    return f"dataset {exp.dataset} is not in nnUNet_raw ({paths.raw}): {how}"
