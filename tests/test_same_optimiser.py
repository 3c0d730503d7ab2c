"""A reference per optimiser: each loss is tested against the reference label trained with its optimiser (SGD or
Adam, the learning rate where two references share one), the tables say which optimiser each row used, specs list
several references, and the shipped CPU specs give every Adam row a Dice+CE reference trained with Adam."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from nnunet_losses.experiment.config import load_experiment
from nnunet_losses.experiment.plan import Paths, missing_raw_data_message, prepare_steps, report_step
from nnunet_losses.report import build_report
from nnunet_losses.report import optimisers as opt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_optimiser_of_a_trainer_name_with_its_family_defaults():
    assert opt.trainer_optimiser("DiceCETrainer_ep8_it100_s1") == ("sgd", 1e-2)  # nnU-Net's SGD
    assert opt.trainer_optimiser("RRWTrainer_ep8_it100_s2") == ("adam", 1e-3)  # the family's default
    assert opt.trainer_optimiser("DiceCETrainer_ep15_it100_adam") == ("adam", 1e-4)  # _adam without _lr
    assert opt.trainer_optimiser("IoUxyTrainer_a0p5_b1p5_sgd") == ("sgd", 1e-2)
    assert opt.trainer_optimiser("nnUNetTrainer") is None and opt.trainer_optimiser("DiceCETrainer_x1") is None
    assert [opt.optimiser_text(o) for o in (("sgd", 1e-2), ("adam", 2.5e-4), None)] == ["SGD 1e-2", "Adam 2.5e-4",
                                                                                    "unknown"]
    assert opt.reference_labels("A, B,") == ["A", "B"] and opt.reference_labels(["A"]) == ["A"]
    assert opt.reference_labels(None) == []


def test_each_loss_gets_the_reference_with_its_optimiser():
    used = opt.label_optimisers({"DiceCE": "DiceCETrainer_s1", "DiceCE_adam": "DiceCETrainer_adam_lr1em3_s1",
                       "DiceCE_adam4": "DiceCETrainer_adam_s1", "Combo": "ComboTrainer_s1",
                       "RRW": "RRWTrainer_s1", "RRW4": "RRWTrainer_lr1em4_s1", "RRW5": "RRWTrainer_lr1em5_s1",
                       "Other": "nnUNetTrainer"})
    against = opt.tested_against(used, ["DiceCE", "DiceCE_adam", "DiceCE_adam4"])
    assert against == {"DiceCE": "DiceCE", "DiceCE_adam": "DiceCE_adam", "DiceCE_adam4": "DiceCE_adam4",
                       "Combo": "DiceCE", "RRW": "DiceCE_adam", "RRW4": "DiceCE_adam4",
                       "RRW5": "DiceCE_adam",  # Adam, no reference at 1e-5: the first Adam one
                       "Other": "DiceCE"}  # optimiser unknown: the first reference
    text = opt.pairing_text(used, against)
    assert "Combo, Other against DiceCE (SGD 1e-2)" in text and "RRW4 against DiceCE_adam4 (Adam 1e-4)" in text
    assert "RRW5 (Adam 1e-5), Other (unknown): no reference with the same optimiser" in text
    assert opt.tested_against(used, ["DiceCE"])["RRW"] == "DiceCE"  # one reference: every loss against it


def _evaluation(root, label, trainer, dice):
    cases = [{"case": f"c{i}", "class": "organ", "status": "both", "dice": d, "hd95": 5 * (1 - d)}
             for i, d in enumerate(dice)]
    folder = root / label / trainer
    folder.mkdir(parents=True)
    (folder / "fold_0.json").write_text(json.dumps({
        "pred_dir": str(root / "results" / f"{trainer}__P__2d" / "fold_0" / "validation"),
        "classes": [{"name": "organ"}], "cases": cases,
        "summary": {"organ": {}, "mean_foreground": {"dice": {"mean": float(np.mean(dice))}}}}))


@pytest.fixture
def two_optimisers(tmp_path):
    """Dice+CE with SGD well below Dice+CE with Adam; RRW (Adam) as good as the Adam reference, Combo (SGD) as the
    SGD one."""
    rng = np.random.default_rng(1)
    low, high = rng.uniform(0.5, 0.6, 16), rng.uniform(0.8, 0.9, 16)
    root = tmp_path / "evaluation"
    for label, trainer, dice in (("DiceCE", "DiceCETrainer_ep8_it100_s1", low),
                                 ("DiceCE_adam", "DiceCETrainer_ep8_it100_adam_lr1em3_s1", high),
                                 ("Combo", "ComboTrainer_ep8_it100_s1", low + rng.normal(0, 1e-4, 16)),
                                 ("RRW", "RRWTrainer_ep8_it100_s1", high + rng.normal(0, 1e-4, 16))):
        _evaluation(root, label, trainer, dice)
    return root


def _row(text, loss):
    return next(line for line in text.splitlines() if line.startswith(f"| {loss} |"))


def test_report_tests_each_loss_against_the_reference_with_its_optimiser(two_optimisers, tmp_path):
    order = ["DiceCE", "DiceCE_adam", "Combo", "RRW"]
    text = open(build_report(str(two_optimisers), str(tmp_path / "r"), reference="DiceCE,DiceCE_adam", order=order,
                             metrics=["dice"], plots=[], permutations=2000)).read()
    assert "| loss | optimiser | organ | mean (per class) |" in text
    assert _row(text, "DiceCE (ref.)").startswith("| DiceCE (ref.) | SGD 1e-2 |")
    assert _row(text, "DiceCE_adam (ref.)").startswith("| DiceCE_adam (ref.) | Adam 1e-3 |")
    assert "\\*" not in _row(text, "RRW") and "\\*" not in _row(text, "Combo")  # each equals its own reference
    assert "Combo against DiceCE (SGD 1e-2); RRW against DiceCE_adam (Adam 1e-3)" in text
    rows = list(csv.DictReader(open(tmp_path / "r" / "table.csv")))
    assert {(r["loss"], r["optimiser"], r["tested_against"]) for r in rows} == {
        ("DiceCE", "SGD 1e-2", ""), ("DiceCE_adam", "Adam 1e-3", ""), ("Combo", "SGD 1e-2", "DiceCE"),
        ("RRW", "Adam 1e-3", "DiceCE_adam")}
    tex = open(tmp_path / "r" / "table.tex").read()
    assert r"Loss & Optimiser & organ" in tex and r"RRW & Adam 1e-3 & " in tex and r"\cmidrule(lr){3-4}" in tex
    # one reference: RRW is tested against Dice+CE with SGD, and differs from it
    text = open(build_report(str(two_optimisers), str(tmp_path / "one"), reference="DiceCE", order=order,
                             metrics=["dice"], plots=[], permutations=2000)).read()
    assert "\\*" in _row(text, "RRW") and _row(text, "RRW").startswith("| RRW | Adam 1e-3 |")
    assert "against DiceCE (paired permutation test" in text


def test_report_command_takes_references_separated_by_commas(two_optimisers, tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import sys; from nnunet_losses.cli import main; sys.exit(main())",
                           "report", str(two_optimisers), "-o", str(tmp_path / "r"), "--reference",
                           "DiceCE,DiceCE_adam", "--metrics", "dice", "--plots", "--permutations", "100"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "RRW against DiceCE_adam (Adam 1e-3)" in (tmp_path / "r" / "report.md").read_text()


BASE = 'name = "t"\ndataset = 905\nconfiguration = "2d"\nconvert = "inia19"\n'
TRAINERS = ('[trainers]\nDiceCE = "DiceCETrainer_ep2_it5"\nDiceCE_adam = "DiceCETrainer_ep2_it5_adam_lr1em3"\n'
            'RRW = "RRWTrainer_ep2_it5"\n')


def _spec(tmp_path, extra):
    path = tmp_path / "spec.toml"
    path.write_text("[experiment]\n" + BASE + extra + TRAINERS)
    return str(path)


def test_spec_lists_one_reference_per_optimiser(tmp_path):
    exp = load_experiment(_spec(tmp_path, 'reference = ["DiceCE", "DiceCE_adam"]\n'))
    assert exp.reference == "DiceCE" and exp.references == ("DiceCE", "DiceCE_adam")
    paths = Paths(*(str(tmp_path / d) for d in ("raw", "pre", "res", "work")))
    command = report_step(exp, paths).command
    assert command[command.index("--reference") + 1] == "DiceCE,DiceCE_adam"
    assert load_experiment(_spec(tmp_path, 'reference = "RRW"\n')).references == ("RRW",)
    for extra, message in (('reference = ["DiceCE_adam", "RRW"]\n', "both train with Adam 1e-3"),
                           ('reference = ["DiceCE", "Nope"]\n', "'Nope' is not a label"),
                           ("reference = []\n", "expected a label"), ("reference = [1]\n", "expected a label")):
        with pytest.raises(ValueError, match=message):
            load_experiment(_spec(tmp_path, extra))


def test_inia19_spec_converts_in_the_prepare_stage(tmp_path, monkeypatch):
    from nnunet_losses.convert import inia19

    exp = load_experiment(_spec(tmp_path, ""))
    paths = Paths(*(str(tmp_path / d) for d in ("raw", "pre", "res", "work")))
    step = prepare_steps(exp, paths)[0]
    assert step.command == ["nnunet-losses", "convert", "inia19", "-d", "905"] and not step.done()
    monkeypatch.setattr(inia19, "DEFAULT_SOURCE", str(tmp_path / "nowhere"))
    assert "apt-get install mricron-data" in missing_raw_data_message(exp, paths)
    (tmp_path / "raw" / "Dataset905_INIA19").mkdir(parents=True)
    (tmp_path / "raw" / "Dataset905_INIA19" / "dataset.json").write_text("{}")
    assert step.done() and missing_raw_data_message(exp, paths) is None


@pytest.mark.parametrize("spec", ["cpu_study", "demo_seeds", "inia19_study"])
def test_every_loss_of_the_cpu_specs_has_a_reference_with_its_optimiser_and_lr(spec):
    exp = load_experiment(os.path.join(REPO, "configs", f"{spec}.toml"))
    used = opt.label_optimisers(exp.trainers)
    against = opt.tested_against(used, exp.references)
    assert len(exp.references) == 2 and {used[r][0] for r in exp.references} == {"sgd", "adam"}
    for label, reference in against.items():
        assert used[label] == used[reference], (label, reference)


def test_the_fair_demo_adds_dice_ce_with_each_other_optimiser():
    """`nnunet-losses demo --fair`: Dice+CE retrained with Adam 1e-3 (RRW, Dice+Boundary and IoU_xy's default),
    named by the grammar (length before the optimiser), listed as a second reference, first in the table."""
    from nnunet_losses.demo import demo_experiment, same_optimiser_references

    fair = demo_experiment(fair=True)
    assert fair.trainers["DiceCETrainer_adam_lr1em3"] == "DiceCETrainer_ep8_it100_adam_lr1em3"
    assert fair.references == ("DiceCETrainer", "DiceCETrainer_adam_lr1em3")
    assert list(fair.trainers)[:2] == ["DiceCETrainer", "DiceCETrainer_adam_lr1em3"]
    assert len(fair.trainers) == len(demo_experiment().trainers) + 1 and demo_experiment().references == ()
    # SGD-only trainers need no second reference; an _sgd name and an Adam lr of its own each count
    assert same_optimiser_references("DiceCETrainer", ["ComboTrainer_b0p7", "TopKDiceTrainer_k50"]) == []
    assert same_optimiser_references("DiceCETrainer", ["RRWTrainer_sgd", "RRWTrainer_adam_lr1em5", "IoUxyTrainer"]) \
        == ["DiceCETrainer_adam_lr1em5", "DiceCETrainer_adam_lr1em3"]
