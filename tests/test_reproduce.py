"""Experiment specs, the paper's split, the reproduce command (dry run, SLURM scripts, a real local run of
configs/tiny_synthetic.toml with resume) and the report it ends with."""
import csv
import functools
import glob
import json
import os
import subprocess

import numpy as np
import pytest

from nnunet_losses.experiment import load_experiment
from nnunet_losses.experiment.split import half_split
from nnunet_losses.nnunet.synthetic import nnunet_env
from fake_nnunet import fake_preprocessed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs", "tiny_synthetic.toml")


@pytest.fixture(scope="session")
def cli(run_cli):
    """``cli(*args, env=None, cwd=None, check=True)``: ``nnunet-losses ARGS``; with ``check``, exit status 0."""
    return functools.partial(run_cli, check=True)


def _spec(tmp_path, experiment, trainers='RRW = "RRWTrainer"\nDice = "DiceTrainer"\n'):
    path = tmp_path / "spec.toml"
    path.write_text(f"[experiment]\n{experiment}\n[trainers]\n{trainers}")
    return str(path)


BASE = 'name = "t"\ndataset = 901\nconfiguration = "2d"\n'


@pytest.mark.parametrize("extra,trainers,message", [
    ("", 'RRW = "RRWTrainer_s1"\n', "leave out the seed"),
    ("", 'X = "RRWTrainer_a0p5"\n', "RRWTrainer_a0p5"),
    ("", 'X = "NoSuchTrainer"\n', "NoSuchTrainer"),
    ('reference = "Focal"\n', 'RRW = "RRWTrainer"\n', "reference"),
    ('split = "half"\nfolds = [0, 1]\n', 'RRW = "RRWTrainer"\n', "one fold"),
    ('metrics = ["dice", "hausdorff"]\n', 'RRW = "RRWTrainer"\n', "hausdorff"),
    ('split_group = "patient"\n', 'RRW = "RRWTrainer"\n', "capture group"),
    ('epochs = 3\n', 'RRW = "RRWTrainer"\n', "unknown"),
    ('convert = "chaos"\n', 'RRW = "RRWTrainer"\n', "convert"),
    ('evaluate = "train"\n', 'RRW = "RRWTrainer"\n', "evaluate"),
    ('synthetic_test = 10\n', 'RRW = "RRWTrainer"\n', "need convert"),
    ('convert = "synthetic"\nsynthetic_train = 1\n', 'RRW = "RRWTrainer"\n', "synthetic_train must be"),
    ('synthetic_kind = "phantom"\n', 'RRW = "RRWTrainer"\n', "need convert"),
    ('convert = "synthetic"\nsynthetic_kind = "mri"\n', 'RRW = "RRWTrainer"\n', "synthetic_kind = 'mri'.*phantom"),
    ('mean = "per-voxel"\n', 'RRW = "RRWTrainer"\n', "mean = 'per-voxel'; choose one of \\('per-class', 'per-case'\\)"),
])
def test_spec_errors_are_clear(tmp_path, extra, trainers, message):
    with pytest.raises(ValueError, match=message):
        load_experiment(_spec(tmp_path, BASE + extra, trainers))


@pytest.mark.parametrize("experiment,trainers,key", [
    (BASE + "folds = 0\n", 'RRW = "RRWTrainer"\n', "folds"),
    (BASE + 'folds = ["0"]\n', 'RRW = "RRWTrainer"\n', "folds"),
    (BASE + 'runs = "two"\n', 'RRW = "RRWTrainer"\n', "runs"),
    (BASE + 'runs = 1.5\n', 'RRW = "RRWTrainer"\n', "runs"),
    (BASE + 'permutations = true\n', 'RRW = "RRWTrainer"\n', "permutations"),
    (BASE + 'split_seed = "0"\n', 'RRW = "RRWTrainer"\n', "split_seed"),
    (BASE + 'metrics = "dice"\n', 'RRW = "RRWTrainer"\n', "metrics"),
    (BASE + 'split_group = 3\n', 'RRW = "RRWTrainer"\n', "split_group"),
    (BASE + 'split_group = "("\n', 'RRW = "RRWTrainer"\n', "split_group"),
    ('name = "t"\ndataset = "abc"\nconfiguration = "2d"\n', 'RRW = "RRWTrainer"\n', "dataset"),
    ('name = "t"\ndataset = 0\nconfiguration = "2d"\n', 'RRW = "RRWTrainer"\n', "dataset"),
    ('name = "t"\ndataset = 901\nconfiguration = "2dd"\n', 'RRW = "RRWTrainer"\n', "configuration"),
    ('name = "t"\ndataset = 901\nconfiguration = 2\n', 'RRW = "RRWTrainer"\n', "configuration"),
    (BASE, 'RRW = 5\n', "RRW"),
    (BASE, 'RRW = "RRWTrainer"\nAgain = "RRWTrainer"\n', "Again"),  # one output folder for two labels
])
def test_spec_values_of_the_wrong_type_name_file_and_key(tmp_path, experiment, trainers, key):
    path = _spec(tmp_path, experiment, trainers)
    with pytest.raises(ValueError) as err:
        load_experiment(path)
    assert str(err.value).startswith(f"{path}: ") and key in str(err.value), str(err.value)


LONG = "DiceTrainer_ep" + "1" * 236  # 250 characters: a valid name, but nnU-Net's output folder name is longer


@pytest.mark.parametrize("trainers,words", [
    ('A = "ComboTrainer"\nB = "ComboTrainer_a0p5"\n', ["trainers A and B", "same loss and settings"]),
    ('A = "ComboTrainer"\nC = "ComboTrainer_pc"\n', ["trainers A and C", "same loss and settings"]),
    ('A = "DiceCETrainer"\nB = "DiceCETrainer_ep1000_it250_sgd_lr0p01"\n', ["trainers A and B"]),
    ('"Dice/CE" = "DiceCETrainer"\n', ["label 'Dice/CE'", "folder name"]),
    ('"Dice CE" = "DiceCETrainer"\n', ["label 'Dice CE'"]),
    ('".." = "DiceCETrainer"\n', ["label '..'"]),
    ('"-x" = "DiceCETrainer"\n', ["label '-x'"]),
    (f'{"L" * 256} = "DiceCETrainer"\n', ["256 bytes", "limit of 255 bytes"]),
    (f'Long = "{LONG}"\n', ["trainer Long", "output folder name", "limit of 255 bytes"]),
    ('S = "DiceTrainer_ep1"\n', ["seed 4294967296 is outside [0, 4294967295]"]),
])
def test_spec_refuses_one_loss_twice_unsafe_labels_and_names_too_long(tmp_path, trainers, words):
    """Labels are folder names (WORK/evaluation/<label>) and report arguments; two labels of one loss and settings
    would be reported as two losses; names are checked against the folders and seeds the matrix makes of them."""
    experiment = BASE + ("runs = 4294967296\n" if trainers.startswith("S =") else "")
    path = _spec(tmp_path, experiment, trainers)
    with pytest.raises(ValueError) as err:
        load_experiment(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    for word in words:
        assert word in message, message


def test_spec_name_length_counts_the_plans_and_configuration(tmp_path):
    """The output folder <trainer>_s<runs>__<plans>__<configuration> must fit 255 bytes: a name that fits with
    nnU-Net's plans may not with a longer plans name."""
    fits = "DiceTrainer_ep" + "1" * (255 - len("DiceTrainer_ep") - len("_s1__nnUNetPlans__2d"))
    load_experiment(_spec(tmp_path, BASE, f'A = "{fits}"\n'))
    with pytest.raises(ValueError, match="256 bytes"):
        load_experiment(_spec(tmp_path, BASE + "runs = 10\n", f'A = "{fits}"\n'))


@pytest.mark.parametrize("option", ["-np", "-j"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_reproduce_refuses_non_positive_process_counts(option, value, capsys):
    from nnunet_losses.cli import main

    with pytest.raises(SystemExit):
        main(["reproduce", TINY, "--dry-run", option, value])
    assert f"{option}: must be at least 1, got {value}" in capsys.readouterr().err


def _fake_preprocessed(paths, splits):
    """A preprocessed dataset of 12 cases as the prepare stage sees it (plans, data folder), no nnU-Net run."""
    return fake_preprocessed(paths.preprocessed, [f"case_{i:03d}" for i in range(12)], splits)


def test_split_step_is_done_only_with_this_specs_split(tmp_path):
    """An earlier nnUNetv2_train left nnU-Net's 5 folds in splits_final.json: the spec's half split is not done."""
    from nnunet_losses.experiment.plan import Paths, prepare_steps
    from nnunet_losses.experiment.runner import describe, run_prepare
    from nnunet_losses.experiment.split import write_half_split

    paths = Paths(str(tmp_path / "raw"), str(tmp_path / "pre"), str(tmp_path / "res"), str(tmp_path / "work"))
    cases = [f"case_{i:03d}" for i in range(12)]
    five_folds = [{"train": [c for j, c in enumerate(cases) if j % 5 != k], "val": cases[k::5]} for k in range(5)]
    pre = _fake_preprocessed(paths, five_folds)
    exp = load_experiment(_spec(tmp_path, BASE + 'split = "half"\n', 'Dice = "DiceTrainer"\n'))
    split = [s for s in prepare_steps(exp, paths) if s.command[1] == "split"][0]
    assert not split.done()
    assert "[refused] nnunet-losses split -d 901 --seed 0" in describe(exp, paths, "cpu", 1)
    with pytest.raises(RuntimeError, match="splits_final.json holds another split .*--force"):
        run_prepare(exp, paths)
    write_half_split(pre, seed=0, force=True)
    assert split.done() and "[done] nnunet-losses split" in describe(exp, paths, "cpu", 1)
    other_seed = load_experiment(_spec(tmp_path, BASE + 'split = "half"\nsplit_seed = 1\n', 'D = "DiceTrainer"\n'))
    assert not [s for s in prepare_steps(other_seed, paths) if s.command[1] == "split"][0].done()


def test_synthetic_step_refuses_a_users_dataset_under_the_same_id(tmp_path):
    from nnunet_losses.experiment.plan import Paths, prepare_steps
    from nnunet_losses.experiment.runner import run_prepare

    paths = Paths(str(tmp_path / "raw"), str(tmp_path / "pre"), str(tmp_path / "res"), str(tmp_path / "work"))
    os.makedirs(os.path.join(paths.raw, "Dataset901_Mine"))
    with open(os.path.join(paths.raw, "Dataset901_Mine", "dataset.json"), "w") as f:
        json.dump({"file_ending": ".nii.gz"}, f)
    exp = load_experiment(_spec(tmp_path, BASE + 'convert = "synthetic"\n', 'Dice = "DiceTrainer"\n'))
    step = prepare_steps(exp, paths)[0]
    assert step.command[1] == "synthetic-dataset" and not step.done()
    with pytest.raises(RuntimeError, match="Dataset901_Mine"):
        run_prepare(exp, paths)


def test_configuration_missing_from_existing_plans_is_refused_before_any_step(tmp_path):
    from nnunet_losses.experiment.plan import Paths
    from nnunet_losses.experiment.runner import run_prepare

    paths = Paths(str(tmp_path / "raw"), str(tmp_path / "pre"), str(tmp_path / "res"), str(tmp_path / "work"))
    _fake_preprocessed(paths, None)
    exp = load_experiment(_spec(tmp_path, BASE.replace('"2d"', '"3d_lowres"'), 'Dice = "DiceTrainer"\n'))
    with pytest.raises(RuntimeError, match="nnUNetPlans.json has no configuration '3d_lowres'"):
        run_prepare(exp, paths)
    assert not os.path.exists(paths.work)  # nothing ran, no log written


def test_test_set_steps_predict_imagests_and_are_refused_without_it(tmp_path):
    """evaluate = "test": nnUNetv2_predict on imagesTs and evaluate against labelsTs; a raw dataset without them
    is refused with a message naming the spec and the folder, before the training's result is thrown away."""
    from nnunet_losses.experiment.plan import Paths, run_steps
    from nnunet_losses.experiment.runner import run_task

    paths = Paths(str(tmp_path / "raw"), str(tmp_path / "pre"), str(tmp_path / "res"), str(tmp_path / "work"))
    path = _spec(tmp_path, BASE + 'evaluate = "test"\n', 'Dice = "DiceTrainer"\n')
    exp = load_experiment(path)
    train, predict, evaluate = run_steps(exp, paths, exp.matrix[0], "cpu")
    assert predict.command[:3] == ["nnUNetv2_predict", "-i", os.path.join(paths.raw, "Dataset901_<name>", "imagesTs")]
    assert evaluate.command[1:3] == ["evaluate", predict.command[4]] and "labelsTs" in evaluate.command[3]
    assert predict.command[4].endswith(os.path.join("DiceTrainer_s1__nnUNetPlans__2d", "fold_0", "test_predictions"))
    assert predict.refused() is None  # no raw dataset yet: the prepare stage generates or asks for it
    os.makedirs(os.path.join(paths.raw, "Dataset901_Mine", "imagesTs"))
    message = predict.refused()
    assert path in message and "labelsTs" in message and "imagesTs" not in message.split(" needs ")[1]
    fold = os.path.join(paths.results, "Dataset901_Mine", "DiceTrainer_s1__nnUNetPlans__2d", "fold_0")
    os.makedirs(os.path.join(fold, "validation"))
    for name in ("checkpoint_final.pth", os.path.join("validation", "summary.json")):
        open(os.path.join(fold, name), "w").close()
    with pytest.raises(RuntimeError, match="labelsTs"):
        run_task(exp, paths, exp.matrix[0], "cpu")


def _evaluation_as_the_step_writes(step, rows=None, **changes):
    """The JSON the evaluate step's command writes (``nnunet-losses evaluate PRED GT --dataset-json DS -o OUT``),
    with ``changes``; ``rows``: per-case rows (default: one case of one class)."""
    from nnunet_losses.metrics.case import METRICS

    command = step.command
    rows = rows or [{"case": "case_000", "class": "organ", "status": "both", **{m: 0.5 for m in METRICS}}]
    evaluation = {"pred_dir": command[2], "ref_dir": command[3],
                  "dataset_json": command[command.index("--dataset-json") + 1],
                  "classes": [{"name": "organ", "labels": [1]}], "metrics": list(METRICS), "num_cases": len(rows),
                  "aggregation": {"both_empty": "exclude", "description": "nnU-Net's evaluator"},
                  "nsd_tolerance_mm": {"organ": 1.0}, "warnings": [], "cases": rows,
                  "summary": {"organ": {"status": {"both": len(rows), "ref_empty": 0, "pred_empty": 0,
                                                   "both_empty": 0}},
                              "mean_foreground": {"dice": {"mean": 0.5}}}}
    evaluation.update(changes)
    out = command[command.index("-o") + 1]
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(evaluation, f)
    return out


def _trained(step_or_folder):
    """The files that say a training finished (checkpoint_final.pth, validation/summary.json), written now."""
    folder = step_or_folder if isinstance(step_or_folder, str) else os.path.dirname(step_or_folder.command[2])
    os.makedirs(os.path.join(folder, "validation"), exist_ok=True)
    for name in ("checkpoint_final.pth", os.path.join("validation", "summary.json")):
        open(os.path.join(folder, name), "w").close()


def _age(path, seconds=100):
    stat = os.stat(path)
    os.utime(path, (stat.st_atime - seconds, stat.st_mtime - seconds))


def test_an_evaluation_of_other_settings_is_not_done(tmp_path):
    """`demo --full-plans`, then `demo`: one evaluation path (WORK/evaluation/<label>/<trainer>/fold_<f>.json) for
    two plans. The evaluate step is done only for an evaluation of its own prediction folder (which names dataset,
    trainer, plans, configuration and fold), references and conventions, newer than the training's result."""
    import dataclasses

    from nnunet_losses.experiment.plan import Paths, evaluation_file, evaluation_mismatch, run_steps

    paths = Paths(str(tmp_path / "raw"), str(tmp_path / "pre"), str(tmp_path / "res"), str(tmp_path / "work"))
    _fake_preprocessed(paths, None)
    full = load_experiment(_spec(tmp_path, BASE, 'Dice = "DiceTrainer"\n'))
    small = dataclasses.replace(full, plans="nnUNetPlans_small_f8_b8")
    lowres = dataclasses.replace(full, configuration="3d_lowres")
    run = full.matrix[0]
    assert evaluation_file(full, paths, run) == evaluation_file(small, paths, run)  # the same file
    steps = {name: run_steps(exp, paths, run, "cpu")[1] for name, exp in
             (("full", full), ("small", small), ("lowres", lowres))}
    for step in steps.values():
        _trained(step)
        _age(os.path.join(os.path.dirname(step.command[2]), "validation", "summary.json"))
    out = _evaluation_as_the_step_writes(steps["full"])  # what `demo --full-plans` left
    assert steps["full"].done()
    assert not steps["small"].done() and not steps["lowres"].done()
    why = evaluation_mismatch(out, steps["small"].command[2], steps["small"].command[3], steps["small"].command[5])
    assert "(plans nnUNetPlans, configuration 2d, trainer DiceTrainer_s1, fold_0, validation)" in why
    assert why.endswith("the evaluate step's: plans nnUNetPlans_small_f8_b8, configuration 2d, trainer "
                        "DiceTrainer_s1, fold_0, validation")
    _evaluation_as_the_step_writes(steps["small"])
    assert steps["small"].done() and not steps["full"].done()
    for change in ({"aggregation": {"both_empty": "one"}}, {"nsd_tolerance_mm": {"organ": 2.0}},
                   {"metrics": ["dice"]}, {"ref_dir": str(tmp_path / "elsewhere")},
                   {"dataset_json": None}, {"pred_dir": None}):
        _evaluation_as_the_step_writes(steps["small"], **change)
        assert not steps["small"].done(), change
    _evaluation_as_the_step_writes(steps["small"])
    _trained(steps["small"])  # trained again after the evaluation: its numbers are of the older training
    _age(out, 200)
    assert not steps["small"].done()


def test_a_test_set_evaluation_of_other_settings_is_not_done(tmp_path):
    import dataclasses

    from nnunet_losses.experiment.plan import Paths, run_steps

    paths = Paths(str(tmp_path / "raw"), str(tmp_path / "pre"), str(tmp_path / "res"), str(tmp_path / "work"))
    os.makedirs(os.path.join(paths.raw, "Dataset901_Mine", "imagesTs"))
    os.makedirs(os.path.join(paths.raw, "Dataset901_Mine", "labelsTs"))
    exp = load_experiment(_spec(tmp_path, BASE + 'evaluate = "test"\n', 'Dice = "DiceTrainer"\n'))
    other = dataclasses.replace(exp, plans="nnUNetPlans_small_f8_b8")
    run = exp.matrix[0]
    _, predict, evaluate = run_steps(exp, paths, run, "cpu")
    _, other_predict, other_evaluate = run_steps(other, paths, run, "cpu")
    for step in (evaluate, other_evaluate):
        folder = os.path.dirname(step.command[2])
        _trained(folder)
        _age(os.path.join(folder, "checkpoint_final.pth"))
    _evaluation_as_the_step_writes(evaluate)
    assert evaluate.done() and predict.done()
    assert not other_evaluate.done() and not other_predict.done()


def _spec_evaluations(tmp_path, trainers, runs=1):
    """A spec, its paths with a fake preprocessed dataset, and each run's evaluate step."""
    from nnunet_losses.experiment.plan import Paths, run_steps

    paths = Paths(str(tmp_path / "raw"), str(tmp_path / "pre"), str(tmp_path / "res"), str(tmp_path / "work"))
    _fake_preprocessed(paths, None)
    exp = load_experiment(_spec(tmp_path, BASE + f"runs = {runs}\nmetrics = [\"dice\"]\npermutations = 10\n", trainers))
    return exp, paths, {run: run_steps(exp, paths, run, "cpu")[1] for run in exp.matrix}


def test_the_report_stage_sets_aside_evaluations_of_other_settings(tmp_path):
    """`demo --epochs 2` after `demo --epochs 1`, or a spec edited in place: the evaluations of the earlier
    trainers stay under the same label. The report stage moves them (and those of other plans or conventions at
    the matrix's own paths) to WORK/evaluation_superseded/ first: the report never averages them as runs."""
    import dataclasses

    from nnunet_losses.experiment.plan import (SUPERSEDED, evaluations_to_set_aside, run_steps,
                                               set_aside_evaluations)
    from nnunet_losses.experiment.runner import describe, run_report

    exp, paths, steps = _spec_evaluations(tmp_path, 'Dice = "DiceTrainer_ep2"\nCE = "CETrainer_ep2"\n', runs=2)
    earlier = dataclasses.replace(exp, trainers={"Dice": "DiceTrainer_ep1", "CE": "CETrainer_ep2"}, folds=(0, 1))
    kept = [_evaluation_as_the_step_writes(step) for step in steps.values()]
    moved = []
    for run in earlier.matrix:
        if run.trainer.startswith("DiceTrainer_ep1") or run.fold == 1:
            moved.append(_evaluation_as_the_step_writes(run_steps(earlier, paths, run, "cpu")[1]))
    ce_s2 = [step for run, step in steps.items() if run.trainer == "CETrainer_ep2_s2"][0]
    other_plans = dataclasses.replace(exp, plans="nnUNetPlans_small_f8_b8")
    run = [run for run in exp.matrix if run.trainer == "CETrainer_ep2_s2"][0]
    _evaluation_as_the_step_writes(run_steps(other_plans, paths, run, "cpu")[1])  # at the matrix's own path
    moved.append(kept.pop(kept.index(ce_s2.command[ce_s2.command.index("-o") + 1])))
    os.makedirs(os.path.join(paths.work, "evaluation", "Unlisted", "DiceTrainer_s1"))  # another label: untouched
    unlisted = os.path.join(paths.work, "evaluation", "Unlisted", "DiceTrainer_s1", "fold_0.json")
    open(unlisted, "w").close()

    listed = evaluations_to_set_aside(exp, paths)
    assert sorted(path for path, _ in listed) == sorted(moved)
    reasons = dict(listed)
    assert "not a training of" in reasons[moved[0]] and "nnUNetPlans_small_f8_b8__2d" in reasons[moved[-1]]
    dry = describe(exp, paths, "cpu", 1)
    assert dry.count("# set aside before the report: ") == len(moved)
    assert all(os.path.isfile(p) for p in moved)  # a dry run moves nothing

    run_report(exp, paths)
    assert not any(os.path.exists(p) for p in moved) and all(os.path.isfile(p) for p in kept + [unlisted])
    aside = glob.glob(os.path.join(paths.work, SUPERSEDED, "*", "*", "*", "fold_*.json"))
    assert sorted(os.path.relpath(p, os.path.dirname(os.path.dirname(os.path.dirname(p)))) for p in aside) == \
        sorted(os.path.relpath(p, os.path.join(paths.work, "evaluation")) for p in moved)
    report = open(os.path.join(paths.work, "report", "report.md")).read()
    assert "Runs evaluated per loss: Dice: 2, CE: 1." in report
    assert set_aside_evaluations(exp, paths) == []  # nothing left to move


def test_demo_is_the_demo_spec_run_by_the_reproduce_runner(tmp_path, cli):
    """`nnunet-losses demo --dry-run` lists the spec's commands (configs/demo.toml); the options rebuild its
    trainer names; unknown trainers are refused with the spec's path."""
    from nnunet_losses.demo import SPEC, demo_experiment

    spec = load_experiment(SPEC)
    assert spec.evaluate == "validation" and spec.plans == "nnUNetPlans_small_f8_b8"
    assert spec.synthetic_cases == (40, 8) and spec.synthetic_kind == "phantom"
    assert demo_experiment().trainers == spec.trainers
    short = demo_experiment(["RRWTrainer", "DiceCETrainer"], epochs=2, full_plans=True)
    assert short.trainers == {"RRWTrainer": "RRWTrainer_ep2_it100", "DiceCETrainer": "DiceCETrainer_ep2_it100"}
    assert short.plans == "nnUNetPlans" and short.reference == "DiceCETrainer"
    with pytest.raises(ValueError, match="demo.toml: trainer NoSuchTrainer"):
        demo_experiment(["NoSuchTrainer"])
    out = cli("demo", "--root", str(tmp_path / "d"), "--dry-run", "--trainers", "RRWTrainer", "--iterations",
              "3").stdout
    assert "[todo] nnunet-losses synthetic-dataset -d 901 --num-train 40 --num-test 8 --kind phantom" in out
    assert "[todo] nnunet-losses small-plans -d 901 -c 2d -p nnUNetPlans --features 8 --batch-size 8" in out
    assert "--kinds rrw" in out and "-tr RRWTrainer_ep8_it3_s1 -p nnUNetPlans_small_f8_b8 --c -device cpu" in out
    assert "fold_0/validation" in out and "--split" in out and "report" in out  # nnU-Net's held-out cases
    assert not os.path.exists(tmp_path / "d" / "logs")  # a dry run runs nothing


def test_every_shipped_config_loads():
    configs = sorted(glob.glob(os.path.join(REPO, "configs", "*.toml")))
    assert TINY in configs
    for path in configs:
        exp = load_experiment(path)
        assert exp.name == os.path.splitext(os.path.basename(path))[0]
        assert len(exp.matrix) == len(exp.trainers) * exp.runs * len(exp.folds)


def test_matrix_appends_seeds_run_major(tmp_path):
    exp = load_experiment(_spec(tmp_path, BASE + "runs = 2\n"))
    assert [r.trainer for r in exp.matrix] == ["RRWTrainer_s1", "DiceTrainer_s1", "RRWTrainer_s2", "DiceTrainer_s2"]


def test_half_split_keeps_groups_together_and_is_deterministic():
    cases = [f"patient{p:03d}_frame{f:02d}" for p in range(1, 11) for f in (1, 12)]
    fold = half_split(cases, seed=0, group=r"^(patient\d+)")[0]
    assert len(fold["train"]) == len(fold["val"]) == 10
    train_patients = {c[:10] for c in fold["train"]}
    assert not train_patients & {c[:10] for c in fold["val"]}
    assert half_split(cases, seed=0, group=r"^(patient\d+)") == [fold]
    assert half_split(cases, seed=1, group=r"^(patient\d+)") != [fold]
    authors = half_split(cases, group=r"^(patient\d+)", alternate=1)[0]  # their ACDC17 script: even patients train
    assert {c[:10] for c in authors["train"]} == {f"patient{p:03d}" for p in range(2, 11, 2)}
    assert half_split([f"case_{i:05d}" for i in range(6)], alternate=0)[0]["train"] == [
        "case_00000", "case_00002", "case_00004"]
    odd = half_split([f"c{i}" for i in range(7)], seed=0)[0]
    assert (len(odd["train"]), len(odd["val"])) == (3, 4)
    with pytest.raises(ValueError, match="does not match"):
        half_split(["patient001_frame01", "other"], group=r"^(patient\d+)")


def test_slurm_scripts_chain_prepare_array_and_report(tmp_path, cli):
    env = nnunet_env(str(tmp_path / "nn"))
    work = tmp_path / "work"
    proc = cli("reproduce", TINY, "--emit", "slurm", "--work-dir", str(work), "--partition", "gpu",
                "--max-parallel", "2", "--setup", "module load cuda", env=env)
    assert "submit with" in proc.stdout
    folder = work / "slurm"
    train = (folder / "train.sbatch").read_text()
    assert "#SBATCH --array=0-3%2" in train and "--task \"$SLURM_ARRAY_TASK_ID\"" in train
    assert "#SBATCH --partition=gpu" in train and "module load cuda" in train and "#SBATCH --gres=gpu:1" in train
    assert f"export nnUNet_results={env['nnUNet_results']}" in train
    submit = (folder / "submit.sh").read_text()
    assert "--dependency=afterok:$prepare" in submit and "--dependency=afterany:$train" in submit
    assert "--stage prepare" in (folder / "prepare.sbatch").read_text()
    assert "--stage report" in (folder / "report.sbatch").read_text()
    for script in ("prepare.sbatch", "train.sbatch", "report.sbatch", "submit.sh"):
        assert subprocess.run(["bash", "-n", str(folder / script)]).returncode == 0


def _sbatch_arguments(line):
    """The arguments sbatch reads from an ``#SBATCH`` line (src/sbatch/opt.c, _get_argument): whitespace separates,
    double or single quotes group, a backslash escapes the next character, an unescaped # outside quotes starts a
    comment."""
    arguments, current, quote, escape, started = [], "", None, False, False
    for char in line[len("#SBATCH"):]:
        if escape:
            current, escape, started = current + char, False, True
        elif char == "\\":
            escape = True
        elif quote:
            if char == quote:
                quote = None
            else:
                current += char
        elif char in "\"'":
            quote, started = char, True
        elif char == "#":
            break
        elif char.isspace():
            if started:
                arguments.append(current)
            current, started = "", False
        else:
            current, started = current + char, True
    assert quote is None, line
    return arguments + ([current] if started else [])


def test_slurm_scripts_quote_every_path(tmp_path, cli):
    """A work folder with a space, a quote, a '#' and a '%' (sbatch's file name pattern character): every path of
    the generated scripts reads back as itself, in the #SBATCH lines (sbatch's parser) and in the shell lines."""
    import shlex

    env = nnunet_env(str(tmp_path / "nn"))
    work = tmp_path / "my work's #1 100%"
    proc = cli("reproduce", TINY, "--emit", "slurm", "--work-dir", str(work), "--partition", "gpu queue",
                "--account", "lab #2", env=env)
    folder = work / "slurm"
    submit = str(folder / "submit.sh")
    assert f"submit with: bash {shlex.quote(submit)}" in proc.stdout
    train = (folder / "train.sbatch").read_text().splitlines()
    options = [argument for line in train if line.startswith("#SBATCH") for argument in _sbatch_arguments(line)]
    logs = str(work / "logs").replace("%", "%%")
    assert f"--output={logs}/slurm-train-%A_%a.out" in options
    assert "--partition=gpu queue" in options and "--account=lab #2" in options
    command = shlex.split(train[-1].replace('"$SLURM_ARRAY_TASK_ID"', "0"))
    assert command[command.index("--work-dir") + 1] == str(work) and command[2] == TINY
    for script in ("prepare.sbatch", "train.sbatch", "report.sbatch", "submit.sh"):
        assert subprocess.run(["bash", "-n", str(folder / script)]).returncode == 0
    submitted = [shlex.split(line.split("$(", 1)[1][:-1])[-1] for line in open(submit).read().splitlines()
                 if "sbatch --parsable" in line]
    assert submitted == [str(folder / name) for name in ("prepare.sbatch", "train.sbatch", "report.sbatch")]


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder in which nothing can be created: permission bits, or (as root, whom they do not stop) sysfs."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").mkdir()
    except OSError:
        yield str(folder)
    else:
        (folder / "probe").rmdir()
        try:
            os.mkdir("/sys/nnunet_losses_probe")
        except OSError:
            yield "/sys"
        else:
            os.rmdir("/sys/nnunet_losses_probe")
            pytest.skip("no folder here refuses new entries")
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("args,option", [
    (["reproduce", TINY, "--local", "--device", "cpu"], "--work-dir"),
    (["reproduce", TINY, "--emit", "slurm"], "--work-dir"),
    (["reproduce", TINY, "--stage", "report"], "--work-dir"),
    (["demo", "--dry-run"], "--root"),
    (["demo", "--epochs", "1", "--iterations", "1"], "--root"),
])
def test_a_folder_that_cannot_be_written_is_named_with_the_option_that_moves_it(tmp_path, read_only_dir, args,
                                                                               option, cli):
    env = nnunet_env(str(tmp_path / "nn"))
    proc = cli(*args, env=env, cwd=read_only_dir, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    message = proc.stderr.strip()
    assert "\n" not in message and "Traceback" not in message, message
    folder = os.path.join(read_only_dir, "nnunet_losses_demo" if args[0] == "demo" else "nnunet_losses_experiments")
    assert folder in message and "not writable" in message and option in message, message


@pytest.mark.nnunet
def test_reproduce_needs_nnunet_environment_and_raw_data(tmp_path, cli):
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    proc = cli("reproduce", TINY, "--dry-run", env=env, check=False)
    assert proc.returncode == 2 and "nnUNet_raw" in proc.stderr
    env = nnunet_env(str(tmp_path / "nn"))
    acdc = os.path.join(REPO, "configs", "regionwise_acdc.toml")
    proc = cli("reproduce", acdc, "--local", "--work-dir", str(tmp_path / "w"), env=env, check=False)
    assert proc.returncode == 2 and "nnunet-losses convert acdc SOURCE_FOLDER -d" in proc.stderr
    proc = cli("reproduce", acdc, "--dry-run", "--work-dir", str(tmp_path / "w"), env=env)
    assert "nnunet-losses split -d 27 --alternate 1 --group" in proc.stdout
    assert "RRWTrainer_ep300_adam_lr1em5_s3" in proc.stdout and "# before running:" in proc.stdout


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, cli):
    root = tmp_path_factory.mktemp("reproduce")
    env = nnunet_env(str(root / "nn"))
    work = root / "work"
    dry = cli("reproduce", TINY, "--dry-run", "--work-dir", str(work), "--device", "cpu", env=env)
    first = cli("reproduce", TINY, "--local", "-j", "2", "--work-dir", str(work), "--device", "cpu", env=env)
    return {"env": env, "work": work, "dry": dry.stdout, "first": first.stdout}


@pytest.mark.nnunet
def test_dry_run_lists_every_command_before_anything_runs(tiny_run):
    dry = tiny_run["dry"]
    assert dry.count("[todo] nnUNetv2_train 901 2d 0 -tr") == 4
    for command in ("nnunet-losses synthetic-dataset -d 901", "nnUNetv2_plan_and_preprocess -d 901 -c 2d",
                    "nnunet-losses split -d 901", "precompute-maps -d 901 -c 2d", "--kinds rrw",
                    "nnunet-losses evaluate", "nnunet-losses report"):
        assert command in dry


@pytest.mark.nnunet
def test_local_run_writes_split_evaluations_and_report(tiny_run):
    env, work = tiny_run["env"], tiny_run["work"]
    pre = glob.glob(os.path.join(env["nnUNet_preprocessed"], "Dataset901_*"))[0]
    with open(os.path.join(pre, "splits_final.json")) as f:
        splits = json.load(f)
    assert len(splits) == 1 and len(splits[0]["train"]) == len(splits[0]["val"]) == 6
    evaluations = sorted(glob.glob(str(work / "evaluation" / "*" / "*" / "fold_0.json")))
    assert [os.path.relpath(p, work / "evaluation") for p in evaluations] == [
        "Dice/DiceTrainer_ep1_it2_s1/fold_0.json", "Dice/DiceTrainer_ep1_it2_s2/fold_0.json",
        "RRW/RRWTrainer_ep1_it2_s1/fold_0.json", "RRW/RRWTrainer_ep1_it2_s2/fold_0.json"]
    with open(evaluations[0]) as f:
        evaluation = json.load(f)
    assert evaluation["num_cases"] == 6 and {c["case"] for c in evaluation["cases"]} == set(splits[0]["val"])
    report = (work / "report" / "report.md").read_text()
    assert "| RRW (ref.) |" in report and "| Dice |" in report and "**HD95 pooled (mm)**" in report
    assert "Empty masks: nnU-Net's evaluator" in report
    assert "| mean (per class) |" in report and "(nnU-Net's foreground_mean)" in report
    for png in ("box_dice.png", "box_hd95.png", "cdf_dice.png", "curves_pseudo_dice.png"):
        data = (work / "report" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000 and f"]({png})" in report
    tex = (work / "report" / "table.tex").read_text()
    assert r"\begin{tabular}" in tex and r"\toprule" in tex and "RRW (ref.)" in tex
    with open(work / "report" / "table.csv") as f:
        rows = list(csv.DictReader(f))
    dice_rows = [r for r in rows if r["metric"] == "dice" and r["loss"] == "Dice"]
    assert len(dice_rows) == 4 and all(0 < float(r["p_value"]) <= 1 for r in dice_rows)
    assert all(r["p_value"] == "" for r in rows if r["loss"] == "RRW")


@pytest.mark.nnunet
def test_evaluation_of_nnunet_predictions_matches_medpy(tiny_run):
    medpy = pytest.importorskip("medpy.metric.binary")
    import SimpleITK as sitk

    path = glob.glob(str(tiny_run["work"] / "evaluation" / "RRW" / "*_s1" / "fold_0.json"))[0]
    with open(path) as f:
        evaluation = json.load(f)
    labels = {c["name"]: c["labels"][0] for c in evaluation["classes"]}
    checked = 0
    for row in evaluation["cases"]:
        read = lambda folder: sitk.GetArrayFromImage(sitk.ReadImage(  # noqa: E731
            os.path.join(folder, row["case"] + ".nii.gz")))[0] == labels[row["class"]]
        pred, ref = read(evaluation["pred_dir"]), read(evaluation["ref_dir"])
        if pred.any() and ref.any():
            np.testing.assert_allclose([row["hd"], row["hd95"], row["assd"]],
                                       [medpy.hd(pred, ref), medpy.hd95(pred, ref), medpy.assd(pred, ref)],
                                       rtol=1e-5)
            checked += 1
    assert checked >= 6


@pytest.mark.nnunet
def test_rerun_skips_finished_work_and_task_mode(tiny_run, cli):
    env, work = tiny_run["env"], tiny_run["work"]
    again = cli("reproduce", TINY, "--local", "--work-dir", str(work), "--device", "cpu", env=env)
    assert again.stdout.count("done before") == 4
    assert "[skip] plan and preprocess: done" in again.stdout
    task = cli("reproduce", TINY, "--task", "3", "--work-dir", str(work), "--device", "cpu", env=env)
    assert "task 3: Dice seed 2 fold 0: done before" in task.stdout
    bad = cli("reproduce", TINY, "--task", "4", "--work-dir", str(work), env=env, check=False)
    assert bad.returncode == 2 and "0..3" in bad.stderr
    dry = cli("reproduce", TINY, "--dry-run", "--work-dir", str(work), "--device", "cpu", env=env)
    assert "[todo] nnUNetv2_train" not in dry.stdout and dry.stdout.count("[done] nnUNetv2_train") == 4


@pytest.mark.nnunet
def test_split_command_refuses_to_replace_a_different_split(tiny_run, cli):
    env = tiny_run["env"]
    proc = cli("split", "-d", "901", "--seed", "5", env=env, check=False)
    assert proc.returncode == 2 and "another split" in proc.stderr
    assert "6 training / 6 validation" in cli("split", "-d", "901", "--seed", "0", env=env).stdout


@pytest.mark.nnunet
def test_evaluations_of_other_settings_are_redone_or_set_aside_never_averaged(tiny_run, cli):
    """On the real run: an evaluation of another trainer under a label (a spec edited in place, `demo --epochs`)
    makes `report` refuse, naming both files, and is set aside by the report stage; an evaluation of other plans at
    a run's own path (`demo --full-plans`, then `demo`) is redone, the training is not."""
    env, work = tiny_run["env"], tiny_run["work"]
    evaluation = work / "evaluation"
    source = evaluation / "RRW" / "RRWTrainer_ep1_it2_s1" / "fold_0.json"
    earlier = evaluation / "RRW" / "RRWTrainer_ep9_it2_s1" / "fold_0.json"
    earlier.parent.mkdir()
    earlier.write_text(source.read_text().replace("RRWTrainer_ep1_it2_s1", "RRWTrainer_ep9_it2_s1"))
    by_hand = cli("report", str(evaluation), "-o", str(work / "by_hand"), "--plots", env=env, check=False)
    assert by_hand.returncode == 2 and str(source) in by_hand.stderr and str(earlier) in by_hand.stderr
    assert "trainer RRWTrainer_ep1_it2 and RRWTrainer_ep9_it2" in by_hand.stderr
    stage = cli("reproduce", TINY, "--stage", "report", "--work-dir", str(work), env=env)
    assert f"[set aside] {earlier} -> {work / 'evaluation_superseded'}" in stage.stdout and not earlier.exists()
    assert "Runs evaluated per loss: RRW: 2, Dice: 2." in (work / "report" / "report.md").read_text()

    other = evaluation / "Dice" / "DiceTrainer_ep1_it2_s2" / "fold_0.json"
    text = other.read_text()
    other.write_text(text.replace("__nnUNetPlans__2d", "__nnUNetPlans_small_f8_b8__2d"))
    dry = cli("reproduce", TINY, "--dry-run", "--work-dir", str(work), "--device", "cpu", env=env).stdout
    assert dry.count("[todo] nnunet-losses evaluate") == 1 and dry.count("[done] nnUNetv2_train") == 4
    again = cli("reproduce", TINY, "--local", "--work-dir", str(work), "--device", "cpu", env=env)
    assert again.stdout.count("done before") == 3 and "Dice seed 2 fold 0: evaluate" in again.stdout
    assert json.loads(other.read_text())["pred_dir"] == json.loads(text)["pred_dir"]


@pytest.mark.nnunet
def test_readme_reproduction_steps_on_a_fake_acdc(tmp_path, cli):
    """README: convert the download, then reproduce; here the preparation stage (plan/preprocess, the authors'
    alternating split by patient, RRW and boundary maps) of configs/regionwise_acdc.toml on 6 fake patients."""
    from fake_downloads import write_fake_acdc

    env = nnunet_env(str(tmp_path / "nn"))
    source = write_fake_acdc(tmp_path / "ACDC" / "database", training=range(1, 7), testing=())
    convert = cli("convert", "acdc", str(source), env=env, check=False)  # as the README says
    assert convert.returncode == 0, convert.stderr
    acdc = os.path.join(REPO, "configs", "regionwise_acdc.toml")
    work = str(tmp_path / "work")
    cli("reproduce", acdc, "--stage", "prepare", "--work-dir", work, env=env)
    pre = os.path.join(env["nnUNet_preprocessed"], "Dataset027_ACDC")
    with open(os.path.join(pre, "splits_final.json")) as f:
        fold = json.load(f)[0]
    assert {c[:10] for c in fold["train"]} == {"patient002", "patient004", "patient006"}
    assert len(fold["val"]) == 6 and all(c[:10] in ("patient001", "patient003", "patient005") for c in fold["val"])
    assert glob.glob(os.path.join(pre, "nnUNetPlans_2d_maps", "*"))
    dry = cli("reproduce", acdc, "--dry-run", "--work-dir", work, env=env).stdout
    assert "[done] nnUNetv2_plan_and_preprocess -d 27" in dry and "[done] nnunet-losses split -d 27" in dry
    assert dry.count("[todo] nnUNetv2_train 27 2d 0") == 12 and "# before running" not in dry
