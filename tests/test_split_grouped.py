"""Grouped nnU-Net folds: with split = "nnunet" and a split_group, reproduce writes a 5-fold splits_final.json in
which no group (an ACDC patient's two frames, a CHAOS patient's two phases) is on both sides of any fold; the split
command writes the same folds; an existing split that mixes a group is refused with the command that replaces it;
spec keys that would have no effect are refused."""
import json
import os
import shlex

import pytest

from nnunet_losses.experiment import load_experiment
from nnunet_losses.experiment.split import grouped_folds
from nnunet_losses.nnunet.synthetic import nnunet_env
from fake_nnunet import fake_preprocessed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUP = r"^(patient\d+)"
BASE = 'name = "t"\ndataset = 901\nconfiguration = "2d"\nsplit = "nnunet"\n'
GROUPED = BASE + 'split_group = "^(patient\\\\d+)"\nfolds = [0, 1, 2, 3, 4]\n'
FIX = shlex.join(["nnunet-losses", "split", "-d", "901", "--folds", "5", "--seed", "0", "--group", GROUP, "--force"])


def _acdc_cases(patients=13):
    return [f"patient{p:03d}_frame{f:02d}" for p in range(1, patients + 1) for f in (1, 12)]


def _patient(case):
    return case.split("_")[0]


def _assert_no_patient_on_both_sides(splits, cases):
    assert len(splits) == 5
    assert sorted(c for fold in splits for c in fold["val"]) == sorted(cases)  # the folds partition the cases
    for fold in splits:
        assert fold["train"] == sorted(fold["train"]) and fold["val"] == sorted(fold["val"])
        assert sorted(fold["train"] + fold["val"]) == sorted(cases)
        assert not {_patient(c) for c in fold["train"]} & {_patient(c) for c in fold["val"]}, fold


def _spec(tmp_path, experiment, trainers='Dice = "DiceTrainer"\n'):
    path = tmp_path / "spec.toml"
    path.write_text(f"[experiment]\n{experiment}\n[trainers]\n{trainers}")
    return str(path)


def _paths(env, work):
    from nnunet_losses.experiment.plan import Paths

    return Paths(env["nnUNet_raw"], env["nnUNet_preprocessed"], env["nnUNet_results"], str(work))


def _fake_acdc_preprocessed(env, splits=None, preprocessed=True):
    """Dataset901 as the prepare stage sees it after nnU-Net's preprocessing: two frames of 13 patients."""
    return fake_preprocessed(env["nnUNet_preprocessed"], _acdc_cases(), splits, with_data=preprocessed)


def _by_case_folds(cases):
    """nnU-Net's own 5 folds by case: consecutive frames of a patient land in different folds."""
    cases = sorted(cases)
    return [{"train": [c for j, c in enumerate(cases) if j % 5 != k], "val": cases[k::5]} for k in range(5)]


def test_grouped_folds_never_put_a_patient_on_both_sides():
    cases = _acdc_cases()
    splits = grouped_folds(cases, seed=0, group=GROUP)
    _assert_no_patient_on_both_sides(splits, cases)
    assert sorted(len(fold["val"]) for fold in splits) == [4, 4, 6, 6, 6]  # 13 patients: 3, 3, 3, 2, 2 per fold


def test_grouped_folds_balance_case_counts_of_uneven_groups():
    cases = [f"g{g:02d}_{i}" for g in range(10) for i in range(1 + g % 3)]  # groups of 1, 2 or 3 cases
    sizes = [len(fold["val"]) for fold in grouped_folds(cases, seed=3, group=r"^(g\d+)")]
    assert sum(sizes) == len(cases) and max(sizes) - min(sizes) <= 2


def test_grouped_folds_are_deterministic_given_the_seed():
    cases = _acdc_cases()
    assert grouped_folds(cases, seed=0, group=GROUP) == grouped_folds(list(reversed(cases)), seed=0, group=GROUP)
    assert grouped_folds(cases, seed=1, group=GROUP) != grouped_folds(cases, seed=0, group=GROUP)


def test_grouped_folds_need_a_group_per_fold_and_cases_matching_the_pattern():
    with pytest.raises(ValueError, match="5 folds need at least 5 groups"):
        grouped_folds(_acdc_cases(4), group=GROUP)
    with pytest.raises(ValueError, match="does not match"):
        grouped_folds(_acdc_cases() + ["other"], group=GROUP)


def test_reproduce_writes_grouped_folds_before_any_training(tmp_path):
    from nnunet_losses.experiment.plan import prepare_steps
    from nnunet_losses.experiment.runner import command_env, describe, run_prepare

    env = nnunet_env(str(tmp_path / "nn"))
    paths = _paths(env, tmp_path / "work")
    pre = _fake_acdc_preprocessed(env)
    exp = load_experiment(_spec(tmp_path, GROUPED))
    split = [s for s in prepare_steps(exp, paths) if s.command[1] == "split"]
    assert [s.command for s in split] == [shlex.split(FIX)[:-1]] and not split[0].done()
    assert f"[todo] {shlex.join(shlex.split(FIX)[:-1])}" in describe(exp, paths, "cpu", 1)
    run_prepare(exp, paths, env=command_env(env))
    with open(os.path.join(pre, "splits_final.json")) as f:
        splits = json.load(f)
    _assert_no_patient_on_both_sides(splits, _acdc_cases())
    assert splits == grouped_folds(_acdc_cases(), seed=0, group=GROUP) and split[0].done()


def test_nnunet_split_without_group_keeps_nnunets_own_folds(tmp_path):
    from nnunet_losses.experiment.plan import prepare_steps

    env = nnunet_env(str(tmp_path / "nn"))
    exp = load_experiment(_spec(tmp_path, BASE + "folds = [0, 1]\n"))
    assert not [s for s in prepare_steps(exp, _paths(env, tmp_path / "work")) if s.command[1] == "split"]


def test_existing_split_that_mixes_a_patient_is_refused_before_any_step_runs(tmp_path):
    from nnunet_losses.experiment.runner import describe, run_prepare

    env = nnunet_env(str(tmp_path / "nn"))
    paths = _paths(env, tmp_path / "work")
    pre = _fake_acdc_preprocessed(env, _by_case_folds(_acdc_cases()), preprocessed=False)
    path = _spec(tmp_path, GROUPED)
    exp = load_experiment(path)
    with pytest.raises(RuntimeError) as err:
        run_prepare(exp, paths)  # plan and preprocess is still to do: refused before it runs
    message = str(err.value)
    assert "\n" not in message and os.path.join(pre, "splits_final.json") in message and path in message
    assert FIX in message and "patient001" in message
    assert not os.path.exists(paths.work)  # nothing ran, no log written
    assert f"[refused] {shlex.join(shlex.split(FIX)[:-1])}" in describe(exp, paths, "cpu", 1)


def test_reproduce_cli_refuses_a_mixing_split_in_one_line(tmp_path, run_cli):
    env = nnunet_env(str(tmp_path / "nn"))
    _fake_acdc_preprocessed(env, _by_case_folds(_acdc_cases()))
    proc = run_cli("reproduce", _spec(tmp_path, GROUPED), "--stage", "prepare", "--work-dir", str(tmp_path / "w"),
                   env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and FIX in proc.stderr


def test_training_task_is_refused_on_a_mixing_split(tmp_path):
    from nnunet_losses.experiment.runner import run_task

    env = nnunet_env(str(tmp_path / "nn"))
    paths = _paths(env, tmp_path / "work")
    _fake_acdc_preprocessed(env, _by_case_folds(_acdc_cases()))
    exp = load_experiment(_spec(tmp_path, GROUPED))
    with pytest.raises(RuntimeError, match="--force"):
        run_task(exp, paths, exp.matrix[0], "cpu")
    assert not os.path.exists(paths.work)


def test_existing_split_that_keeps_patients_together_is_used_as_it_is(tmp_path):
    """A patient-grouped split written otherwise (nnU-Net's create_ACDC_split, another seed) is not replaced."""
    from nnunet_losses.experiment.plan import prepare_steps

    env = nnunet_env(str(tmp_path / "nn"))
    _fake_acdc_preprocessed(env, grouped_folds(_acdc_cases(), seed=7, group=GROUP))
    exp = load_experiment(_spec(tmp_path, GROUPED))
    split = [s for s in prepare_steps(exp, _paths(env, tmp_path / "work")) if s.command[1] == "split"][0]
    assert split.done() and split.refused() is None


def test_existing_split_without_the_specs_folds_is_refused(tmp_path):
    """A one-fold half split: nnU-Net would draw folds 1-4 as random 80:20 splits by case."""
    from nnunet_losses.experiment.plan import prepare_steps
    from nnunet_losses.experiment.split import half_split

    env = nnunet_env(str(tmp_path / "nn"))
    _fake_acdc_preprocessed(env, half_split(_acdc_cases(), group=GROUP))
    exp = load_experiment(_spec(tmp_path, GROUPED))
    split = [s for s in prepare_steps(exp, _paths(env, tmp_path / "work")) if s.command[1] == "split"][0]
    assert not split.done() and "1 fold" in split.refused() and FIX in split.refused()


def test_split_command_writes_grouped_folds_and_refuses_to_replace_them(tmp_path, run_cli):
    env = nnunet_env(str(tmp_path / "nn"))
    pre = _fake_acdc_preprocessed(env)
    proc = run_cli("split", "-d", "901", "--folds", "5", "--group", GROUP, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "5 folds" in proc.stdout
    with open(os.path.join(pre, "splits_final.json")) as f:
        assert json.load(f) == grouped_folds(_acdc_cases(), seed=0, group=GROUP)
    other = run_cli("split", "-d", "901", "--folds", "5", "--group", GROUP, "--seed", "4", env=env)
    assert other.returncode == 2 and "another split" in other.stderr and len(other.stderr.strip().splitlines()) == 1
    assert run_cli("split", "-d", "901", "--folds", "5", "--group", GROUP, "--seed", "4", "--force",
                   env=env).returncode == 0
    with open(os.path.join(pre, "splits_final.json")) as f:
        assert json.load(f) == grouped_folds(_acdc_cases(), seed=4, group=GROUP)
    both = run_cli("split", "-d", "901", "--folds", "5", "--alternate", "1", env=env)
    assert both.returncode == 2 and "--alternate" in both.stderr and "--folds" in both.stderr


def test_split_help_explains_folds(capsys):
    from nnunet_losses.cli import main

    with pytest.raises(SystemExit):
        main(["split", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--folds" in text and "5" in text and "both sides" in text


@pytest.mark.parametrize("extra,key", [
    ('split = "half"\nsplit_offset = 1\n', "split_offset"),
    ('split_offset = 0\n', "split_offset"),
    ('split = "alternate"\nsplit_seed = 3\n', "split_seed"),
    ('split_seed = 3\n', "split_seed"),
    ('split_group = "^(patient\\\\d+)"\nfolds = [0, 5]\n', "folds"),
    ('folds = [0, 0]\n', "folds"),
])
def test_spec_keys_without_effect_are_refused(tmp_path, extra, key):
    experiment = BASE.replace('split = "nnunet"\n', "") + extra
    path = _spec(tmp_path, experiment)
    with pytest.raises(ValueError) as err:
        load_experiment(path)
    assert str(err.value).startswith(f"{path}: ") and key in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("extra", [
    'split = "half"\nsplit_seed = 1\n', 'split = "alternate"\nsplit_offset = 1\n',
    'split_group = "^(patient\\\\d+)"\nsplit_seed = 2\nfolds = [4]\n', 'split = "half"\nsplit_group = "^(p\\\\d)"\n',
])
def test_spec_keys_with_effect_are_accepted(tmp_path, extra):
    load_experiment(_spec(tmp_path, BASE.replace('split = "nnunet"\n', "") + extra))


def test_shipped_grouped_specs_match_their_case_names_and_need_no_manual_step(tmp_path):
    from fake_downloads import write_fake_acdc

    from nnunet_losses.convert.acdc import find_frames
    from nnunet_losses.experiment.plan import prepare_steps

    env = nnunet_env(str(tmp_path / "nn"))
    source = write_fake_acdc(tmp_path / "database", training=range(1, 6), testing=())
    acdc_cases = [case for case, _, _ in find_frames(str(source / "training"))]
    chaos_cases = [f"chaos{p}_{phase}" for p in (1, 2, 3, 5, 8, 10, 13, 19) for phase in ("in", "out")]
    for name, cases, dataset in (("topk_dice_acdc", acdc_cases, "527"), ("iou_xy_chaos", chaos_cases, "510")):
        path = os.path.join(REPO, "configs", f"{name}.toml")
        exp = load_experiment(path)
        splits = grouped_folds(cases, exp.split_seed, exp.split_group)
        owner = lambda case: case.split("_")[0]  # noqa: E731
        for fold in splits:
            assert not {owner(c) for c in fold["train"]} & {owner(c) for c in fold["val"]}, name
        assert len({owner(c) for fold in splits for c in fold["val"]}) == len(cases) // 2
        step = [s for s in prepare_steps(exp, _paths(env, tmp_path / "w")) if s.command[1] == "split"][0]
        assert step.command[:6] == ["nnunet-losses", "split", "-d", dataset, "--folds", "5"]
        text = open(path).read()
        assert "python -c" not in text and "splits_final.json" in text
    assert "nnunet-losses convert acdc /path/to/ACDC/database -d 527" in open(
        os.path.join(REPO, "configs", "topk_dice_acdc.toml")).read()
