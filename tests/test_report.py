"""Report pieces: nnU-Net training-log parsing (continued trainings, nan), tables with significance marks and bold
best values on hand-made evaluations, plots' refusals. The full report on real trainings: test_reproduce.py."""
import json
import math
import os

import numpy as np
import pytest

from nnunet_losses.report import build_report, box_plots, cdf_plot, curves_plot, parse_training_logs
from nnunet_losses.report.collect import load_results, per_case

FIRST_LOG = """
#######################################################################
Please cite the following paper when using nnU-Net:
#######################################################################
2026-11-22 10:00:00.000001: nnunet-losses: RRWTrainer_s1: loss 'rrw' params {}
2026-11-22 10:00:01.000001: Epoch 0
2026-11-22 10:00:01.000002: Current learning rate: 0.01
2026-11-22 10:00:05.000001: train_loss 0.31
2026-11-22 10:00:05.000002: val_loss -0.18
2026-11-22 10:00:05.000003: Pseudo dice [np.float32(0.9268), np.float32(nan), np.float32(0.0)]
2026-11-22 10:00:05.000004: Epoch time: 3.9 s
2026-11-22 10:00:06.000001: Epoch 1
2026-11-22 10:00:06.000002: Current learning rate: 0.009
2026-11-22 10:00:09.000001: train_loss -0.1
"""
SECOND_LOG = """
2026-11-22 11:00:01.000001: Epoch 1
2026-11-22 11:00:01.000002: Current learning rate: 0.009
2026-11-22 11:00:05.000001: train_loss -0.2
2026-11-22 11:00:05.000002: val_loss -0.25
2026-11-22 11:00:05.000003: Pseudo dice [0.95, 0.4, 0.1]
2026-11-22 11:00:05.000004: Epoch time: 4.1 s
2026-11-22 11:00:05.000005: Yayy! New best EMA pseudo Dice: 0.3
"""


def test_training_logs_merge_a_continued_training(tmp_path):
    (tmp_path / "training_log_2026_11_22_10_00_00.txt").write_text(FIRST_LOG)
    (tmp_path / "training_log_2026_11_22_9_59_00.txt").write_text("")  # unpadded: sorts before 10_00_00
    (tmp_path / "training_log_2026_11_22_11_00_00.txt").write_text(SECOND_LOG)
    log = parse_training_logs(str(tmp_path))
    np.testing.assert_array_equal(log["epoch"], [0, 1])
    np.testing.assert_allclose(log["train_loss"], [0.31, -0.2])  # the interrupted epoch 1 was redone
    assert math.isnan(log["pseudo_dice"][0, 1]) and log["pseudo_dice"].shape == (2, 3)
    np.testing.assert_allclose(log["mean_pseudo_dice"], [(0.9268 + 0.0) / 2, (0.95 + 0.4 + 0.1) / 3], rtol=1e-6)
    np.testing.assert_allclose(log["lr"], [0.01, 0.009])
    empty = parse_training_logs(str(tmp_path / "nowhere"))
    assert empty["epoch"].size == 0 and empty["mean_pseudo_dice"].size == 0


def _evaluation(root, label, trainer, dice_by_case, fold="0", classes=("organ",), **extra):
    cases = [{"case": case, "class": cls, "status": "both", "dice": d, "hd": 10 * (1 - d), "hd95": 5 * (1 - d),
              "hd95_max": 9 * (1 - d), "nsd": d} for case, d in dice_by_case.items() for cls in classes]
    summary = {cls: {"status": {"both": len(dice_by_case), "ref_empty": 0, "pred_empty": 0, "both_empty": 0}}
               for cls in classes}
    summary["mean_foreground"] = {"dice": {"mean": float(np.mean(list(dice_by_case.values())))}}
    folder = root / label / trainer
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"fold_{fold}.json").write_text(json.dumps({
        "pred_dir": str(root / "results" / trainer / f"fold_{fold}" / "validation"),
        "classes": [{"name": c} for c in classes], "cases": cases, "summary": summary, **extra}))


@pytest.fixture
def evaluations(tmp_path):
    root = tmp_path / "evaluation"
    rng = np.random.default_rng(0)
    base = rng.uniform(0.7, 0.8, 20)
    for seed in (1, 2):
        _evaluation(root, "Ref", f"RRWTrainer_s{seed}", {f"c{i}": base[i] + 0.1 for i in range(20)})
        _evaluation(root, "Worse", f"DiceTrainer_s{seed}", {f"c{i}": base[i] - 0.01 * seed for i in range(20)})
        _evaluation(root, "Same", f"FocalTrainer_s{seed}",
                    {f"c{i}": base[i] + 0.1 + rng.normal(0, 1e-3) for i in range(20)})
    return root


def test_report_marks_significant_differences_and_the_best(evaluations, tmp_path):
    results = load_results(str(evaluations), ["Ref", "Worse", "Same", "Missing"])
    assert list(results) == ["Ref", "Worse", "Same"]
    assert per_case(results["Worse"], "dice", "organ")["c0"] == pytest.approx(
        np.mean([r.values("dice", "organ")["c0"] for r in results["Worse"]]))
    report = build_report(str(evaluations), str(tmp_path / "report"), reference="Ref",
                          order=["Ref", "Worse", "Same", "Missing"], metrics=["dice", "hd"], plots=["box", "cdf"],
                          permutations=2000)
    text = open(report).read()
    worse_row = next(line for line in text.splitlines() if line.startswith("| Worse |"))
    same_row = next(line for line in text.splitlines() if line.startswith("| Same |"))
    assert worse_row.count("\\*") == 2 and "\\*" not in same_row  # Dice and HD differ, the other does not
    assert "| Ref (ref.) | Adam 1e-3 | **" in text or "| Same | SGD 1e-2 | **" in text  # the best mean is bold
    assert "**Missing:** no evaluation yet for Missing" in text
    assert "Runs evaluated per loss: Ref: 2, Worse: 2, Same: 2." in text
    with pytest.raises(ValueError, match="reference loss 'Nope'"):
        build_report(str(evaluations), str(tmp_path / "r2"), reference="Nope")
    with pytest.raises(FileNotFoundError):
        build_report(str(tmp_path / "nowhere"), str(tmp_path / "r3"))


def test_plots_refuse_empty_input_and_skip_nan(tmp_path):
    for plot, args in ((box_plots, ({}, "Dice", str(tmp_path / "a.png"))), (cdf_plot, ({}, str(tmp_path / "b.png"))),
                       (curves_plot, ({}, str(tmp_path / "c.png")))):
        with pytest.raises(ValueError, match="no"):
            plot(*args)
    path = box_plots({"A": {"x": [0.5, float("nan"), 0.7]}, "B": {"x": [float("nan")]}}, "Dice",
                     str(tmp_path / "box.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    path = curves_plot({"A": [[0.1, 0.2], [0.15, float("nan"), 0.3]], "B": [[]]}, str(tmp_path / "curves.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


NNUNET = {"aggregation": {"both_empty": "exclude", "description": "nnU-Net's evaluator: both empty undefined"},
          "nsd_tolerance_mm": {"organ": 1.0}}


def _row(text, loss):
    return next(line for line in text.splitlines() if line.startswith(f"| {loss} |"))


def test_losses_are_compared_over_the_cases_they_all_have(tmp_path):
    """A loss whose evaluation lacks the hard case must not win by it: means use the shared cases, with a note."""
    root = tmp_path / "evaluation"
    easy = {f"c{i}": 0.8 + 0.01 * i for i in range(5)}
    _evaluation(root, "Ref", "DiceCETrainer", {**easy, "hard": 0.1}, **NNUNET)
    _evaluation(root, "Partial", "RRWTrainer", {c: d - 0.05 for c, d in easy.items()}, **NNUNET)
    text = open(build_report(str(root), str(tmp_path / "report"), reference="Ref", metrics=["dice"],
                             plots=["box"], permutations=100)).read()
    assert "over the 5 cases every loss has (1 other cases left out" in text
    assert "**Cases left out** of every mean and test (not evaluated for every loss): hard (none for Partial)" in text
    ref_mean = np.mean(list(easy.values()))
    assert f"{ref_mean:.3f}" in _row(text, "Ref (ref.)") and "**" in _row(text, "Ref (ref.)")  # 0.82, not 0.70
    assert f"{ref_mean - 0.05:.3f}" in _row(text, "Partial") and "**" not in _row(text, "Partial")
    assert "Empty masks: nnU-Net's evaluator" in open(tmp_path / "report" / "table.md").read()


def test_runs_lacking_cases_are_noted(tmp_path):
    root = tmp_path / "evaluation"
    cases = {f"c{i}": 0.8 for i in range(4)}
    for seed in (1, 2):
        _evaluation(root, "Ref", f"DiceCETrainer_s{seed}", cases, **NNUNET)
    _evaluation(root, "Other", "RRWTrainer_s1", cases, **NNUNET)
    _evaluation(root, "Other", "RRWTrainer_s2", {"c0": 0.7}, **NNUNET)
    text = open(build_report(str(root), str(tmp_path / "r"), metrics=["dice"], plots=[], permutations=10)).read()
    assert "**Other:** 3 of the compared cases are averaged over 1 run(s) instead of 2." in text


def test_evaluation_warnings_are_shown(tmp_path):
    root = tmp_path / "evaluation"
    _evaluation(root, "A", "DiceTrainer", {"c0": 0.8}, warnings=["c0.nii.gz: prediction has labels outside the "
                                                                 "classes and the ignore label: 7"], **NNUNET)
    text = open(build_report(str(root), str(tmp_path / "r"), metrics=["dice"], plots=[], permutations=10)).read()
    assert (f"**Warnings** of the evaluation {os.path.join('A', 'DiceTrainer', 'fold_0.json')} (1): c0.nii.gz: "
            "prediction has labels outside") in text


def test_captions_name_the_convention_the_hd95_and_the_nsd_tolerance(tmp_path):
    root = tmp_path / "evaluation"
    _evaluation(root, "A", "DiceTrainer", {"c0": 0.8, "c1": 0.7}, **NNUNET)
    _evaluation(root, "B", "RRWTrainer", {"c0": 0.6, "c1": 0.7}, **NNUNET)
    build_report(str(root), str(tmp_path / "r"), metrics=["dice", "hd95", "hd95_max", "nsd"], plots=["box"],
                 permutations=10)
    for name in ("report.md", "table.md", "table.tex"):
        text = open(tmp_path / "r" / name).read()
        assert "nnU-Net's evaluator" in text and "within 1 mm" in text, name
        assert "HD95 pooled" in text and "HD95 max-directed" in text and "medpy" in text and "MONAI" in text
    assert os.path.isfile(tmp_path / "r" / "box_nsd.png") and os.path.isfile(tmp_path / "r" / "box_hd95_max.png")
    legacy = tmp_path / "legacy"  # written before conventions were recorded: both empty = 1
    _evaluation(legacy, "A", "DiceTrainer", {"c0": 0.8})
    assert "both empty = 1" in open(build_report(str(legacy), str(tmp_path / "r2"), metrics=["dice"], plots=[],
                                                 permutations=10)).read()


def test_incomparable_evaluations_are_refused_with_their_names(tmp_path):
    root = tmp_path / "classes"
    _evaluation(root, "A", "DiceTrainer", {"c0": 0.8}, **NNUNET)
    _evaluation(root, "B", "RRWTrainer", {"c0": 0.6}, classes=("1",), **NNUNET)
    with pytest.raises(ValueError, match="different classes: .*A/DiceTrainer/fold_0.json has organ; .*B/RRWTrainer"):
        build_report(str(root), str(tmp_path / "r"), plots=[])
    root = tmp_path / "conventions"
    _evaluation(root, "A", "DiceTrainer", {"c0": 0.8}, **NNUNET)
    _evaluation(root, "B", "RRWTrainer", {"c0": 0.6})
    with pytest.raises(ValueError, match="different empty-mask conventions: .*A/DiceTrainer.*exclude.*B/RRWTrainer"):
        build_report(str(root), str(tmp_path / "r"), plots=[])
    root = tmp_path / "tolerances"
    _evaluation(root, "A", "DiceTrainer", {"c0": 0.8}, **NNUNET)
    _evaluation(root, "B", "RRWTrainer", {"c0": 0.6}, **{**NNUNET, "nsd_tolerance_mm": {"organ": 2.0}})
    build_report(str(root), str(tmp_path / "r"), metrics=["dice"], plots=[])  # NSD not shown: fine
    with pytest.raises(ValueError, match="different NSD tolerances"):
        build_report(str(root), str(tmp_path / "r"), metrics=["nsd"], plots=[])
    root = tmp_path / "old"
    _evaluation(root, "A", "DiceTrainer", {"c0": 0.8}, metrics=["dice", "hd"])
    with pytest.raises(ValueError, match="fold_0.json has no nsd .*evaluate it again"):
        build_report(str(root), str(tmp_path / "r"), metrics=["dice", "nsd"], plots=[])


def test_fold_all_is_a_fold(tmp_path):
    root = tmp_path / "evaluation"
    _evaluation(root, "A", "DiceTrainer", {"c0": 0.8, "c1": 0.9}, fold="all", **NNUNET)
    results = load_results(str(root))
    assert results["A"][0].fold == "all"
    assert "0.850" in open(build_report(str(root), str(tmp_path / "r"), metrics=["dice"], plots=[])).read()


@pytest.fixture
def report_cli(run_cli):
    """``nnunet-losses report ARGS`` in a process of its own."""
    return lambda *args: run_cli("report", *args)


@pytest.mark.parametrize("fault,message", [
    ("truncated", "fold_0.json: not valid JSON (truncated or unfinished?)"),
    ("not_evaluation", "fold_0.json: not an nnunet-losses evaluate JSON (no 'classes', 'cases', 'summary')"),
    ("fold_name", "fold_x.json: expected fold_<number>.json or fold_all.json"),
    ("order", "--order: no evaluation for Z under"),
    ("cases_null", "fold_0.json: 'cases' is null, expected a list of per-case rows"),
    ("classes_null", "fold_0.json: 'classes' is null, expected a list of classes"),
    ("summary_list", "fold_0.json: 'summary' is a list, expected an object"),
    ("row_not_object", "fold_0.json: 'cases' row 0 is a string, expected an object with 'case' and 'class'"),
    ("class_without_name", "fold_0.json: 'classes' entry 0 has no 'name'"),
])
def test_bad_inputs_give_a_one_line_message(tmp_path, fault, message, report_cli):
    root = tmp_path / "evaluation"
    _evaluation(root, "A", "DiceTrainer", {"c0": 0.8}, **NNUNET)
    path = root / "A" / "DiceTrainer" / "fold_0.json"
    args = []
    if fault == "truncated":
        path.write_text(path.read_text()[:40])
    elif fault == "not_evaluation":
        path.write_text(json.dumps({"foreground_mean": {"Dice": 0.5}}))
    elif fault == "fold_name":
        path.rename(path.with_name("fold_x.json"))
    elif fault != "order":
        evaluation = json.loads(path.read_text())
        key, value = {"cases_null": ("cases", None), "classes_null": ("classes", None), "summary_list": ("summary", []),
                      "row_not_object": ("cases", ["c0"]), "class_without_name": ("classes", [{}])}[fault]
        evaluation[key] = value
        path.write_text(json.dumps(evaluation))
    else:
        args = ["--order", "Z"]
    proc = report_cli(root, "-o", tmp_path / "r", "--plots", *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


def _evaluation_by_class(root, label, trainer, dice, **extra):
    """``dice[case][class]``; NaN = the class is absent from both masks (undefined, as nnU-Net's evaluator)."""
    classes = list(next(iter(dice.values())))
    cases = [{"case": case, "class": cls, "status": "both_empty" if math.isnan(d) else "both",
              "dice": None if math.isnan(d) else d, "hd": None if math.isnan(d) else 10 * (1 - d)}
             for case, row in dice.items() for cls, d in row.items()]
    per_case_means = [np.nanmean(list(row.values())) for row in dice.values()]
    summary = {cls: {"status": {"both": 0, "ref_empty": 0, "pred_empty": 0, "both_empty": 0}} for cls in classes}
    summary["mean_foreground"] = {"dice": {"mean": float(np.mean(per_case_means))}}
    folder = root / label / trainer
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fold_0.json").write_text(json.dumps({
        "pred_dir": str(root / "results" / trainer / "fold_0" / "validation"),
        "classes": [{"name": c} for c in classes], "cases": cases, "summary": summary, **extra}))


@pytest.fixture
def one_class_against_every_class(tmp_path):
    """Seven classes over 20 cases; the large class is in every case, each of the six small ones in 2 cases. Loss
    'OneClass' is perfect on the large class and misses every small one; 'Even' reaches 0.6 on every class."""
    root = tmp_path / "evaluation"
    classes = ["large"] + [f"small{k}" for k in range(6)]
    present = {f"c{i:02d}": {"large"} | {f"small{k}" for k in range(6) if i in (2 * k, 2 * k + 1)}
               for i in range(20)}
    one = {case: {cls: (1.0 if cls == "large" else 0.0) if cls in there else math.nan for cls in classes}
           for case, there in present.items()}
    even = {case: {cls: 0.6 if cls in there else math.nan for cls in classes} for case, there in present.items()}
    _evaluation_by_class(root, "Even", "DiceCETrainer", even, **NNUNET)
    _evaluation_by_class(root, "OneClass", "RRWTrainer", one, **NNUNET)
    per_case_one = float(np.mean([np.nanmean(list(row.values())) for row in one.values()]))
    return root, per_case_one


def test_the_per_class_mean_ranks_a_loss_that_learns_every_class_above_one_that_learns_one(
        one_class_against_every_class, tmp_path):
    root, per_case_one = one_class_against_every_class
    text = open(build_report(str(root), str(tmp_path / "r"), reference="Even", order=["Even", "OneClass"],
                             metrics=["dice"], plots=["box", "cdf"], permutations=2000)).read()
    assert "| loss | optimiser | large | small0 | small1 | small2 | small3 | small4 | small5 | mean (per class) |" \
        in text
    assert "mean (per class) = the mean over classes of each class's mean over the cases where it is defined " \
           "(nnU-Net's foreground_mean)" in text
    even, one = _row(text, "Even (ref.)"), _row(text, "OneClass")
    assert even.endswith("| **0.600 ± 0.000** |")
    # one class of seven at 1, six at 0: 1/7, ± the std over the seven class means, significantly below 0.6
    assert one.endswith(f"| {1 / 7:.3f} ± {np.std([1] + [0] * 6):.3f}\\* |")
    assert per_case_one > 0.6  # what the per-case mean credits it with: more than Even
    text = open(build_report(str(root), str(tmp_path / "r_case"), reference="Even", metrics=["dice"], plots=[],
                             permutations=2000, mean="per-case")).read()
    assert "mean (per case) = the mean over cases of each case's mean over its defined classes" in text
    assert _row(text, "OneClass").endswith(f"| **{per_case_one:.3f} ± " + _row(text, "OneClass").split(" ± ")[-1])


def test_report_command_names_its_mean(one_class_against_every_class, tmp_path, report_cli):
    root, _ = one_class_against_every_class
    proc = report_cli(root, "-o", tmp_path / "r", "--metrics", "dice", "--plots", "--permutations", "100")
    assert proc.returncode == 0, proc.stderr
    assert "| mean (per class) |" in (tmp_path / "r" / "table.md").read_text()
    assert r"mean (per class)" in (tmp_path / "r" / "table.tex").read_text()
    proc = report_cli(root, "-o", tmp_path / "r2", "--metrics", "dice", "--plots", "--mean", "per-case")
    assert proc.returncode == 0, proc.stderr
    assert "| mean (per case) |" in (tmp_path / "r2" / "table.md").read_text()
    proc = report_cli(root, "-o", tmp_path / "r3", "--mean", "per-voxel")
    assert proc.returncode == 2 and "invalid choice: 'per-voxel'" in proc.stderr


def _nnunet_evaluation(root, label, trainer, plans="nnUNetPlans", configuration="2d", kind="validation",
                       results="results"):
    """An evaluation whose pred_dir is nnU-Net's <trainer>__<plans>__<configuration>/fold_0/<kind> folder."""
    _evaluation(root, label, trainer, {"c0": 0.8, "c1": 0.7}, **NNUNET)
    path = root / label / trainer / "fold_0.json"
    evaluation = json.loads(path.read_text())
    evaluation["pred_dir"] = str(root.parent / results / f"{trainer}__{plans}__{configuration}" / "fold_0" / kind)
    path.write_text(json.dumps(evaluation))
    return os.path.join(label, trainer, "fold_0.json")


@pytest.mark.parametrize("second,what", [
    (dict(trainer="DiceTrainer_ep2_s1"), "trainer DiceTrainer_ep1 and DiceTrainer_ep2"),  # demo --epochs 2, then 1
    (dict(trainer="DiceTrainer_ep1_s2", plans="nnUNetPlans_small_f8_b8"), "plans nnUNetPlans and nnUNetPlans_small"),
    (dict(trainer="DiceTrainer_ep1_s2", configuration="3d_fullres"), "configuration 2d and 3d_fullres"),
    (dict(trainer="DiceTrainer_ep1_s2", kind="test_predictions"), "predictions validation and test_predictions"),
])
def test_evaluations_of_different_settings_under_one_label_are_refused(tmp_path, second, what, report_cli):
    """Runs of one loss differ in their seed only: the report refuses to average evaluations of other trainers
    (apart from the seed), plans, configurations or evaluated sets under one label, naming both files."""
    root = tmp_path / "evaluation"
    first = _nnunet_evaluation(root, "Dice", "DiceTrainer_ep1_s1")
    other = _nnunet_evaluation(root, "Dice", **second)
    _nnunet_evaluation(root, "CE", "CETrainer_s1")
    proc = report_cli(root, "-o", tmp_path / "r", "--metrics", "dice", "--plots")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert first in proc.stderr and other in proc.stderr and what in proc.stderr and "label Dice" in proc.stderr
    proc = report_cli(root, "-o", tmp_path / "r", "--metrics", "dice", "--plots", "--order", "CE")
    assert proc.returncode == 0, proc.stderr  # not shown: not read


def test_runs_of_one_setting_with_other_seeds_or_folds_are_averaged(tmp_path):
    root = tmp_path / "evaluation"
    _nnunet_evaluation(root, "Dice", "DiceTrainer_ep1_s1")
    _nnunet_evaluation(root, "Dice", "DiceTrainer_ep1_s2")
    _nnunet_evaluation(root, "CE", "CETrainer_s1", results="elsewhere")  # other losses: other folders are fine
    _evaluation(root, "CE", "CETrainer_s2", {"c0": 0.8, "c1": 0.7}, **NNUNET)  # hand-made: no plans recorded
    text = open(build_report(str(root), str(tmp_path / "r"), metrics=["dice"], plots=[], permutations=10)).read()
    assert "Runs evaluated per loss: CE: 2, Dice: 2." in text


def test_labels_not_reported_are_not_read(tmp_path):
    root = tmp_path / "evaluation"
    _evaluation(root, "A", "DiceTrainer", {"c0": 0.8}, **NNUNET)
    (root / "Old" / "DiceTrainer").mkdir(parents=True)
    (root / "Old" / "DiceTrainer" / "fold_0.json").write_text("")
    text = open(build_report(str(root), str(tmp_path / "r"), order=["A"], metrics=["dice"], plots=[])).read()
    assert "**Not shown** (not in --order): Old." in text
