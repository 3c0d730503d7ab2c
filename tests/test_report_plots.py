"""Training logs and figures of ``nnunet-losses report``: the parser on a real nnU-Net v2 log (a 2-epoch CPU training
of a tiny synthetic dataset, about 30 s) and on hand-written logs (NaN pseudo Dice, both NumPy reprs, a continued
training redoing epochs, foreign lines); the PNGs of the RW paper's figures (Valverde & Tohka (Pattern Recognition
2023): Tables 2-4 as box plots, Fig. 5 CDF, Fig. 6-9 curves) with NaN values and empty inputs."""
import os
import struct

import matplotlib
import matplotlib.image
import numpy as np
import pytest

from nnunet_losses.report import (box_plots, cdf_plot, curves_plot, loss_colours, parse_training_log,
                                  parse_training_logs)
from nnunet_losses.report.plots import PALETTE, _mean_band

NAN = float("nan")
TRAINER = "DiceCETrainer_ep2_it2"


@pytest.fixture(scope="module")
def real_fold(prepared_dataset, nnunet):
    """The fold folder of a real 2-epoch, 2-iteration nnU-Net training on CPU (3 foreground classes)."""
    ds = prepared_dataset(901)
    nnunet.train(ds, TRAINER)
    return nnunet.fold(ds, TRAINER)


@pytest.mark.nnunet
def test_real_log(real_fold):
    (name,) = [n for n in os.listdir(real_fold) if n.startswith("training_log_")]
    log = parse_training_log(os.path.join(real_fold, name))
    np.testing.assert_array_equal(log["epoch"], [0, 1])
    assert log["pseudo_dice"].shape == (2, 3)  # large, medium, small
    for key in ("lr", "train_loss", "val_loss", "epoch_time", "pseudo_dice", "mean_pseudo_dice"):
        assert np.isfinite(log[key]).all(), key
    assert log["lr"][0] == 0.01 and log["lr"][1] < 0.01  # nnU-Net's poly schedule
    assert ((log["pseudo_dice"] >= 0) & (log["pseudo_dice"] <= 1)).all()
    np.testing.assert_allclose(log["mean_pseudo_dice"], log["pseudo_dice"].mean(axis=1))
    assert np.isfinite(log["new_best_ema"][0])  # the first epoch always sets the first best
    merged = parse_training_logs(real_fold)
    assert merged.keys() == log.keys()
    for key in log:
        np.testing.assert_array_equal(merged[key], log[key])


FIRST = """
#######################################################################
Please cite the following paper when using nnU-Net:
#######################################################################
2026-01-05 09:00:00.000001: nnunet-losses: RRWTrainer_s1: loss 'rrw' params {}; module RRWLoss(
Epoch 99
) 
This is the configuration used by this training:
Epoch 98
2026-01-05 09:00:01: Epoch 0 
2026-01-05 09:00:01.000002: Current learning rate: 0.01 
2026-01-05 09:00:01.000003: nnunet-losses: schedule alpha this epoch 1.0 
2026-01-05 09:00:05.000001: train_loss 0.31 
2026-01-05 09:00:05.000002: val_loss -0.18 
2026-01-05 09:00:05.000003: Pseudo dice [np.float32(0.9268), np.float32(nan), np.float32(0.0)] 
2026-01-05 09:00:05.000004: Epoch time: 3.9 s 
2026-01-05 09:00:05.000005: Yayy! New best EMA pseudo Dice: 0.4634 
2026-01-05 09:00:06.000001:  
2026-01-05 09:00:06.000002: Epoch 1 
2026-01-05 09:00:06.000003: Current learning rate: 0.009 
2026-01-05 09:00:09.000001: train_loss -0.1 
2026-01-05 09:00:09.000002: val_loss -0.2 
2026-01-05 09:00:09.000003: Pseudo dice [0.5, nan, 0.25] 
2026-01-05 09:00:09.000004: Epoch time: 3.0 s 
2026-01-05 09:00:10.000001: Epoch 2 
2026-01-05 09:00:10.000002: Current learning rate: 1e-05 
2026-01-05 09:00:14.000001: train_loss -0.3 
"""
# a start of --c that stopped during epoch 1: must not erase the epoch 1 completed above
STOPPED = """
2026-01-05 09:30:00.000001: Epoch 1 
2026-01-05 09:30:00.000002: Current learning rate: 0.009 
"""
# the --c run that went on from the checkpoint of epoch 0: its epoch 1 replaces the first one
CONTINUED = """
2026-01-05 10:00:00.000001: nnunet-losses: restored schedule from checkpoint: Schedule(alpha=1.0)
2026-01-05 10:00:01.000001: Epoch 1 
2026-01-05 10:00:01.000002: Current learning rate: 0.009 
2026-01-05 10:00:05.000001: train_loss -0.2 
2026-01-05 10:00:05.000002: val_loss -0.25 
2026-01-05 10:00:05.000003: Pseudo dice [np.float32(nan), np.float32(nan), np.float32(nan)] 
2026-01-05 10:00:05.000004: Epoch time: 4.1 s 
2026-01-05 10:00:06.000001: Epoch 2 
2026-01-05 10:00:06.000002: Current learning rate: 0.008 
2026-01-05 10:00:09.000001: train_loss -0.4 
2026-01-05 10:00:09.000002: val_loss -0.45 
2026-01-05 10:00:09.000003: Pseudo dice [np.float64(0.95), np.float64(0.4), np.float64(0.1)] 
2026-01-05 10:00:09.000004: Epoch time: 4.2 s 
2026-01-05 10:00:09.000005: Yayy! New best EMA pseudo Dice: 0.5 
2026-01-05 10:00:10.000001: Epoch 3 
2026-01-05 10:00:10.000002: Current learning rate: 0.007 
"""


def test_one_log_keeps_completed_epochs_and_skips_foreign_lines(tmp_path):
    path = tmp_path / "training_log_2026_1_5_09_00_00.txt"
    path.write_text(FIRST)
    log = parse_training_log(str(path))
    np.testing.assert_array_equal(log["epoch"], [0, 1])  # epoch 2 was cut off; unstamped "Epoch 99/98" ignored
    np.testing.assert_allclose(log["lr"], [0.01, 0.009])
    np.testing.assert_allclose(log["train_loss"], [0.31, -0.1])
    np.testing.assert_allclose(log["val_loss"], [-0.18, -0.2])
    np.testing.assert_allclose(log["epoch_time"], [3.9, 3.0])
    np.testing.assert_allclose(log["new_best_ema"], [0.4634, NAN])
    np.testing.assert_allclose(log["pseudo_dice"], [[0.9268, NAN, 0.0], [0.5, NAN, 0.25]])
    np.testing.assert_allclose(log["mean_pseudo_dice"], [0.4634, 0.375])


def test_logs_of_a_continued_training_merge_in_time_order(tmp_path):
    (tmp_path / "training_log_2026_1_5_9_00_00.txt").write_text(FIRST)
    (tmp_path / "training_log_2026_1_5_9_30_00.txt").write_text(STOPPED)
    np.testing.assert_allclose(parse_training_logs(str(tmp_path))["train_loss"], [0.31, -0.1])
    (tmp_path / "training_log_2026_1_5_10_00_00.txt").write_text(CONTINUED)  # "10" sorts before "9" as text
    (tmp_path / "training_log_notes.txt").write_text("2026-01-05 11:00:00: Epoch 7\n")  # not nnU-Net's name
    log = parse_training_logs(str(tmp_path))
    np.testing.assert_array_equal(log["epoch"], [0, 1, 2])
    np.testing.assert_allclose(log["train_loss"], [0.31, -0.2, -0.4])
    np.testing.assert_allclose(log["lr"], [0.01, 0.009, 0.008])
    np.testing.assert_allclose(log["new_best_ema"], [0.4634, NAN, 0.5])
    assert np.isnan(log["pseudo_dice"][1]).all() and np.isnan(log["mean_pseudo_dice"][1])
    np.testing.assert_allclose(log["mean_pseudo_dice"][[0, 2]], [0.4634, (0.95 + 0.4 + 0.1) / 3])


def test_logs_without_epochs_and_inconsistent_logs(tmp_path):
    for log in (parse_training_logs(str(tmp_path / "missing")), parse_training_logs(str(tmp_path))):
        assert log["epoch"].size == 0 and log["mean_pseudo_dice"].size == 0 and log["pseudo_dice"].shape == (0, 0)
    (tmp_path / "training_log_2026_1_5_9_00_00.txt").write_text(FIRST)
    (tmp_path / "training_log_2026_1_5_9_30_00.txt").write_text(
        "2026-01-05 09:30:00.1: Epoch 5\n2026-01-05 09:30:00.2: Pseudo dice [0.5, 0.5]\n")
    with pytest.raises(ValueError, match="different trainings"):
        parse_training_logs(str(tmp_path))
    bad = tmp_path / "bad.txt"
    bad.write_text("2026-01-05 09:30:00.1: Epoch 5\n2026-01-05 09:30:00.2: Pseudo dice [0.5, tensor(0.5)]\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: cannot read pseudo Dice value 'tensor\(0.5\)'"):
        parse_training_log(str(bad))


def _assert_png(path, folder):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    chunk = data.index(b"pHYs")  # pixels per metre, x and y, unit 1 = metre
    x, y, unit = struct.unpack(">IIB", data[chunk + 4:chunk + 13])
    assert unit == 1 and round(x * 0.0254) == round(y * 0.0254) == 150
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) > 300 and image.std() > 0.01  # something is drawn
    assert not [name for name in os.listdir(folder) if ".tmp" in name]  # no temporary file left


def test_box_plots(tmp_path):
    backend = matplotlib.get_backend()
    rng = np.random.default_rng(0)
    values = {"RRW": {"RV": rng.uniform(0.6, 1, 20), "LV": [0.9, NAN, 0.8]},
              "Dice": {"RV": [NAN, NAN], "LV": rng.uniform(0.5, 1, 20), "Myo": [0.7]},  # RV: all NaN
              "CE": {"LV": [0.5, 0.6]}}  # no RV, no Myo
    path = box_plots(values, "Dice", str(tmp_path / "sub" / "box_dice.png"))
    assert path == str(tmp_path / "sub" / "box_dice.png")
    _assert_png(path, tmp_path / "sub")
    wide = matplotlib.image.imread(path).shape[1]
    path = box_plots(values, "HD (mm)", str(tmp_path / "sub" / "box_dice.png"), class_names=["LV"])  # overwrite
    _assert_png(path, tmp_path / "sub")
    assert matplotlib.image.imread(path).shape[1] < wide  # one panel instead of three
    assert os.listdir(tmp_path / "sub") == ["box_dice.png"]
    assert matplotlib.get_backend() == backend  # no global matplotlib state changed
    for bad, match in (({}, "no losses"), ({"A": {}}, "no classes"), ({"A": {"x": []}}, "no values")):
        with pytest.raises(ValueError, match=match):
            box_plots(bad, "Dice", str(tmp_path / "never.png"))
    assert not (tmp_path / "never.png").exists()


def test_cdf_plot(tmp_path):
    rng = np.random.default_rng(1)
    values = {"RRW": rng.uniform(0.9, 0.95, 50), "RW-Boundary": np.r_[rng.uniform(0.45, 0.95, 48), NAN, NAN],
              "Failed": [NAN]}
    _assert_png(cdf_plot(values, str(tmp_path / "cdf.png")), tmp_path)
    _assert_png(cdf_plot({"one": [0.8]}, str(tmp_path / "one.png"), xlabel="Dice"), tmp_path)
    for bad, match in (({}, "no losses"), ({"A": []}, "no values")):
        with pytest.raises(ValueError, match=match):
            cdf_plot(bad, str(tmp_path / "never.png"))


@pytest.mark.nnunet
def test_curves_plot(tmp_path, real_fold):
    runs = [[0.1, 0.2, 0.3], [0.3, NAN], [NAN, NAN, 0.5, 0.6]]
    mean, low, high, nan = _mean_band(runs)
    np.testing.assert_allclose(mean, [0.2, 0.2, 0.4, 0.6])
    np.testing.assert_allclose(low, [0.1, 0.2, 0.3, 0.6])
    np.testing.assert_allclose(high, [0.3, 0.2, 0.5, 0.6])
    assert nan == 3
    assert np.isnan(_mean_band([[NAN, 0.5]])[0][0])  # an epoch without a finite value stays NaN (a gap)
    real = parse_training_logs(real_fold)["mean_pseudo_dice"]
    curves = {"DiceCE": [real, real + 0.05], "Gappy": runs, "Empty": [[]], "None": []}
    _assert_png(curves_plot(curves, str(tmp_path / "curves.png")), tmp_path)
    for bad, match in (({}, "no losses"), ({"A": [[]], "B": []}, "no epochs")):
        with pytest.raises(ValueError, match=match):
            curves_plot(bad, str(tmp_path / "never.png"))


def test_saving_is_atomic(tmp_path, monkeypatch):
    path = cdf_plot({"A": [0.5, 0.6]}, str(tmp_path / "cdf.png"))
    before = open(path, "rb").read()

    def interrupted(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(OSError, match="disk full"):
        cdf_plot({"A": [0.1, 0.9], "B": [0.3]}, path)
    assert open(path, "rb").read() == before and os.listdir(tmp_path) == ["cdf.png"]


def test_each_loss_keeps_its_colour():
    first = loss_colours(["RRW", "Dice", "RRW", "CE"])
    assert first == {"RRW": PALETTE[0], "Dice": PALETTE[1], "CE": PALETTE[2]}
    many = loss_colours([f"L{i}" for i in range(len(PALETTE) + 1)])
    assert many[f"L{len(PALETTE)}"] == PALETTE[0] and len(set(PALETTE)) == len(PALETTE)
