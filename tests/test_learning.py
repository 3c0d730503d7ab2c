"""RRW must not collapse to background on many-class data: its family default, small plans, a few hundred
iterations of nnU-Net's own training on the many-class generated dataset. Under nnU-Net's SGD RRW can reach the
stationary point where it predicts background everywhere (docs/learning.md); this test fails if the default does."""
import glob
import json
import os
import re

import pytest

from nnunet_losses.nnunet.synthetic import nnunet_env
from nnunet_losses.nnunet.synthetic_many import write_many_class_dataset

pytestmark = pytest.mark.nnunet  # every test here runs nnU-Net

PLANS = "nnUNetPlans_small_f8_b8"
TRAINER = "RRWTrainer_ep4_it50_s1"  # the family default optimiser (Adam 1e-3); 200 iterations


def test_rrw_default_learns_the_large_class(tmp_path, nnunet):
    from nnunet_losses import ext_trainers

    env = nnunet_env(str(tmp_path))
    env["nnUNet_extTrainer"] = os.path.dirname(ext_trainers.__file__)
    raw = write_many_class_dataset(env["nnUNet_raw"], 932, num_train=16, num_test=1)
    name = os.path.basename(raw)
    for command in (["nnUNetv2_plan_and_preprocess", "-d", "932", "-c", "2d", "-npfp", "1", "-np", "1"],
                    ["nnunet-losses", "small-plans", "-d", "932", "-c", "2d"],
                    ["nnunet-losses", "precompute-maps", "-d", "932", "-c", "2d", "-p", PLANS, "--kinds", "rrw",
                     "--no-progress"],
                    ["nnUNetv2_train", "932", "2d", "0", "-tr", TRAINER, "-p", PLANS, "-device", "cpu"]):
        nnunet.run([nnunet.command(command[0])] + command[1:], env)
    fold = os.path.join(env["nnUNet_results"], name, f"{TRAINER}__{PLANS}__2d", "fold_0")
    settings = json.load(open(os.path.join(fold, "nnunet_losses.json")))
    log = open(sorted(glob.glob(os.path.join(fold, "training_log*")))[-1]).read()
    pseudo = [[float(v) for v in re.findall(r"\d+\.\d+(?:e-?\d+)?|\b0\b", line)]
              for line in re.findall(r"Pseudo dice \[(.*?)\]", log)]
    summary = json.load(open(os.path.join(fold, "validation", "summary.json")))
    dice = {int(k): v["Dice"] for k, v in summary["mean"].items()}
    print(settings["training"], "pseudo dice per epoch", pseudo, "validation Dice", dice)
    assert len(pseudo) == 4 and len(pseudo[-1]) == 6
    # measured (docs/learning.md): pseudo Dice of the large class 0.21, 0.37, 0.51, 0.57 by epoch, validation Dice
    # 0.71; a collapse to background gives 0
    assert pseudo[-1][0] > 0.3, "RRW stopped predicting the large class (collapse to background)"
    assert pseudo[-1][0] > pseudo[0][0]
    assert dice[1] > 0.3 and summary["foreground_mean"]["n_pred"] > 0


def test_combo_family_default_is_the_per_class_dice():
    from nnunet_losses.naming import TrainerNameError
    from nnunet_losses.nnunet.trainers import trainer_class

    assert trainer_class("ComboTrainer_b0p7").parsed.loss_kwargs() == {"beta": 0.7, "dice": "per_class"}
    assert trainer_class("ComboTrainer_b0p7_pc").parsed.loss_kwargs()["dice"] == "per_class"
    assert trainer_class("ComboTrainer_b0p7_flat").parsed.loss_kwargs()["dice"] == "flattened"  # the paper's
    try:
        trainer_class("ComboTrainer_pc_flat")
    except TrainerNameError as err:
        assert "contradicts" in str(err)
    else:
        raise AssertionError("ComboTrainer_pc_flat was accepted")


def test_per_class_and_flattened_dice_agree_with_one_foreground_class():
    """The per-class default changes nothing on binary data (the Combo paper's datasets are binary)."""
    import torch

    from nnunet_losses.losses import ComboLoss

    torch.manual_seed(0)
    logits, target = torch.randn(2, 2, 16, 16), torch.randint(0, 2, (2, 1, 16, 16))
    flat, per_class = (ComboLoss(beta=0.7, dice=d)(logits, target) for d in ("flattened", "per_class"))
    assert torch.allclose(flat, per_class)
    logits, target = torch.randn(2, 4, 16, 16), torch.randint(0, 4, (2, 1, 16, 16))
    assert not torch.allclose(ComboLoss(dice="flattened")(logits, target), ComboLoss(dice="per_class")(logits, target))


def test_family_default_optimisers_and_the_papers_settings_by_name():
    from nnunet_losses.nnunet.trainers import trainer_class

    def resolved(name):
        parsed = trainer_class(name).parsed
        return parsed.resolved_optimizer(), parsed.resolved_lr()

    # losses without a log term train with Adam 1e-3 by default (docs/learning.md, section 6)
    for family in ("RRWTrainer", "IoUxyTrainer", "DiceBoundaryTrainer"):
        assert resolved(family) == ("adam", 1e-3), family
        assert resolved(f"{family}_sgd") == ("sgd", None)  # nnU-Net's SGD and initial lr (1e-2)
    assert resolved("RRWTrainer_online") == resolved("IoUxyTrainer_a0p5_b1p5") == ("adam", 1e-3)
    assert resolved("RRWTrainer_lr1em4") == ("adam", 1e-4)  # the RW authors' code
    assert resolved("RRWTrainer_adam_lr1em5") == resolved("DiceBoundaryTrainer_adam_lr1em5") == ("adam", 1e-5)  # paper
    assert resolved("DiceCETrainer") == resolved("RWACTrainer") == resolved("ComboTrainer") == ("sgd", None)
    assert resolved("DiceCETrainer_adam") == ("adam", 1e-4)
