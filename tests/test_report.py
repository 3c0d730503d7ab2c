"""Report pieces: nnU-Net training-log parsing (continued trainings, nan), tables with significance marks and bold
best values on hand-made evaluations, plots' refusals. The full report on real trainings: test_reproduce.py."""
import json
import math

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


def _evaluation(root, label, trainer, dice_by_case):
    cases = [{"case": case, "class": "organ", "status": "both", "dice": d, "hd": 10 * (1 - d)}
             for case, d in dice_by_case.items()]
    summary = {"organ": {"status": {"both": len(cases), "ref_empty": 0, "pred_empty": 0, "both_empty": 0}},
               "mean_foreground": {"dice": {"mean": float(np.mean(list(dice_by_case.values())))}}}
    folder = root / label / trainer
    folder.mkdir(parents=True)
    (folder / "fold_0.json").write_text(json.dumps({
        "pred_dir": str(root / "results" / trainer / "fold_0" / "validation"), "classes": [{"name": "organ"}],
        "cases": cases, "summary": summary}))


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
    assert "| Ref (ref.) | **" in text or "| Same | **" in text  # the best mean is bold
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
