"""Trainer names: grammar, canonical numbers, generated classes, error messages."""
import pickle
import subprocess
import sys

import pytest

from nnunet_losses.nnunet import trainers as T
from nnunet_losses.naming import TrainerNameError, check_name, format_number, parse_name, parse_number


@pytest.mark.parametrize("value,text", [(0.5, "0p5"), (1.5, "1p5"), (50, "50"), (2.0, "2"), (1e-4, "1em4"),
                                        (2.5e-4, "2p5em4"), (0.01, "0p01"), (0, "0"), (0.7, "0p7"),
                                        (1e-2, "0p01"), (5e-3, "5em3"), (123.25, "123p25")])
def test_numbers_round_trip(value, text):
    assert format_number(value) == text
    assert parse_number(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["0p50", "00p5", "1e0", "0p0001", "1p0", "5p", "p5", "1em04"])
def test_non_canonical_numbers_are_refused(text):
    with pytest.raises(TrainerNameError):
        parse_number(text)


@pytest.mark.parametrize("name,loss_params,training", [
    ("ComboTrainer", {}, {}),
    ("ComboTrainer_a0p5_b0p7", {"alpha": 0.5, "beta": 0.7}, {}),
    ("ComboTrainer_b0p9_pc", {"beta": 0.9, "dice": "per_class"}, {}),
    ("IoUxyTrainer_a0p5_b1p5", {"alpha": 0.5, "beta": 1.5}, {}),
    ("IoUxyTrainer_nobg", {"include_background": False}, {}),
    ("TopKDiceTrainer_k30", {"k": 30.0}, {}),
    ("FocalTrainer_g2_a0p25", {"gamma": 2.0, "alpha": 0.25}, {}),
    ("DiceBoundaryTrainer_equal_online", {"schedule": "equal"}, {"online_maps": True}),
    ("RRWTrainer_online_ep300_it250_adam_lr1em5_s2", {},
     {"online_maps": True, "epochs": 300, "iterations_per_epoch": 250, "optimizer": "adam", "initial_lr": 1e-5,
      "seed": 2}),
    ("DiceCETrainer_sgd_lr0p01", {}, {"optimizer": "sgd", "initial_lr": 1e-2}),
])
def test_names_parse_to_settings(name, loss_params, training):
    cls = getattr(T, name)
    assert cls.__name__ == name and issubclass(cls, T.LossTrainer)
    assert cls.parsed.loss_params == loss_params
    for key, value in training.items():
        assert cls.parsed.training()[key] == value
    assert getattr(T, name) is cls  # cached: one class per name
    assert pickle.loads(pickle.dumps(cls)) is cls
    assert "__" not in name


@pytest.mark.parametrize("bad,nearest", [
    ("ComboTrainer_b0p70", "ComboTrainer_b0p7"),
    ("ComboTrainer_b0p7_a0p5", "ComboTrainer_a0p5_b0p7"),
    ("ComboTrainer_lr0p0001", "ComboTrainer_lr1em4"),
    ("RRWTrainer_ep5_online", "RRWTrainer_online_ep5"),
    ("ComboTrainer_online", "ComboTrainer"),
    ("RWACTrainer_online_ep5", "RWACTrainer_ep5"),  # its map 1 - Y is built on the device: _online changed nothing
    ("ComboTrainer_a1p5", "ComboTrainer"),          # alpha out of [0, 1]: the default
    ("IoUxyTrainer_a0p5_b1", None),                 # alpha + beta != 2
    ("TopKDiceTrainer_k0", "TopKDiceTrainer"),
    ("TopKCETrainer_k0", "TopKCETrainer"),          # nnU-Net's TopKLoss would train on NaN
    ("DiceTopKCETrainer_k150_ep5", "DiceTopKCETrainer_ep5"),
    ("FocalTrainer_g2_a2", "FocalTrainer_g2"),
    ("ComboTrainer_a1e400", "ComboTrainer"),        # inf
    ("ComboTrainr_a0p5", "ComboTrainer_a0p5"),      # a typo in the family
    ("ComboTrainer_ep0", None),
    ("ComboTrainer_s01", None),
    ("ComboTrainer__a0p5", None),
])
def test_malformed_names_explain_the_grammar(bad, nearest, capsys):
    assert not hasattr(T, bad)
    err = capsys.readouterr().err
    assert "grammar:" in err and "nearest valid name:" in err
    suggested = err.split("nearest valid name: ")[1].split("\n")[0]
    assert suggested != bad and T.trainer_class(suggested).__name__ == suggested  # a name that trains
    if nearest:
        assert suggested == nearest


def test_reserved_nnunet_names_are_never_generated():
    """nnU-Net's master adds built-in Pretrained*/DynamicPretrained* trainers, which win nnU-Net's lookup."""
    from nnunet_losses.naming import Family

    assert not any(name.startswith(("Pretrained", "DynamicPretrained")) for name in T.FAMILIES)
    families = {"PretrainedComboTrainer": Family("PretrainedComboTrainer", "combo", "")}
    with pytest.raises(TrainerNameError, match="nnU-Net's own"):
        parse_name("PretrainedComboTrainer", families)


@pytest.mark.nnunet
def test_nnunet_finds_generated_trainers_through_the_shim(tmp_path):
    """nnU-Net's own lookup (hasattr over the extTrainer folder) finds a generated name and nothing collides; a
    refused name makes nnU-Net raise its 'could not find' error, and our message is repeated after its traceback."""
    code = (
        "from nnunet_losses.cli import main\n"
        "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as f\n"
        "cls = f('ComboTrainer_a0p5_b0p7_ep2_s1')\n"
        "print('FOUND', cls.__name__, cls.__module__)\n"
        "for fam in ['ComboTrainer', 'RRWTrainer', 'DiceTrainer', 'DiceCETrainer', 'CETrainer', 'FocalTrainer']:\n"
        "    assert f(fam).__module__ == 'nnunet_losses.nnunet.trainers', fam\n"
        "f('ComboTrainer_a1p5')  # what nnUNetv2_train -tr ComboTrainer_a1p5 does first\n")
    import os

    from nnunet_losses import ext_trainers

    env = dict(os.environ, nnUNet_extTrainer=os.path.dirname(ext_trainers.__file__))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert "FOUND ComboTrainer_a0p5_b0p7_ep2_s1 nnunet_losses.nnunet.trainers" in proc.stdout, proc.stderr
    assert proc.returncode == 1 and "RuntimeError: Could not find requested nnunet trainer" in proc.stderr
    tail = proc.stderr.split("RuntimeError: Could not find requested nnunet trainer")[-1]
    assert "invalid nnunet-losses trainer name 'ComboTrainer_a1p5'" in tail
    assert "nearest valid name: ComboTrainer\n" in tail


def test_run_tokens_table_follows_the_grammar():
    """The run options the documentation lists (naming.RUN_TOKENS) are the grammar's, in its order."""
    from nnunet_losses.naming import GRAMMAR, RUN_TOKENS

    tokens = [token for token, _, _ in RUN_TOKENS]
    assert tokens == ["_online", "_ep<int>", "_it<int>", "_adam", "_sgd", "_lr<number>", "_s<int>"]
    assert GRAMMAR.startswith("<Family>[_<loss parameters>][_online][_ep<int>][_it<int>][_adam|_sgd][_lr<number>]"
                              "[_s<int>]")
    parsed = parse_name("RRWTrainer_online_ep5_it7_adam_lr1em3_s2", T.FAMILIES, T.ONLINE_MAP_FAMILIES)
    assert (parsed.online, parsed.epochs, parsed.iterations, parsed.optimizer, parsed.lr, parsed.seed) == \
        (True, 5, 7, "adam", 1e-3, 2)


def test_cli_lists_trainers(capsys):
    from nnunet_losses.cli import main

    assert main(["trainers"]) == 0
    out = capsys.readouterr().out
    for family in T.FAMILIES:
        assert family in out
    assert main(["trainers-path"]) == 0
    assert capsys.readouterr().out.strip().endswith("trainers")


def test_trainer_builds_outside_nnunet_train(tmp_path, make_trainer):
    """nnunetv2 >= 2.7 pops plans["continue_training"], which only nnUNetv2_train sets: our trainers default it."""
    trainer = make_trainer("DiceBoundaryTrainer_ep3")
    assert trainer.num_epochs == 3 and trainer.output_folder.startswith(str(tmp_path))


def test_online_applies_to_precomputed_maps_only():
    from nnunet_losses.catalogue import ONLINE_MAP_FAMILIES

    assert "RRWTrainer" in ONLINE_MAP_FAMILIES and "RWACTrainer" not in ONLINE_MAP_FAMILIES
    with pytest.raises(TrainerNameError, match="RWACTrainer builds its map on the training device"):
        check_name("RWACTrainer_online")


@pytest.mark.parametrize("seed,ok", [(0, True), (2**32 - 1, True), (2**32, False), (10**30, False)])
def test_seeds_outside_numpys_range_are_refused(seed, ok):
    """numpy.random.seed takes 0 .. 2**32 - 1: a larger _s would fail inside nnUNetv2_train, after the name was
    accepted."""
    name = f"DiceTrainer_s{seed}"
    if ok:
        assert check_name(name).seed == seed
    else:
        with pytest.raises(TrainerNameError, match=r"seed .* outside \[0, 4294967295\]"):
            check_name(name)


def test_names_longer_than_a_file_name_are_refused():
    """A name is a folder name (nnU-Net's output folder, the report's evaluation folder): at most 255 bytes."""
    from nnunet_losses.naming import MAX_NAME_BYTES, output_folder_name, parse_output_folder_name

    assert MAX_NAME_BYTES == 255
    longest = "DiceTrainer_ep" + "1" * (255 - len("DiceTrainer_ep"))
    assert check_name(longest).epochs > 0
    with pytest.raises(TrainerNameError, match="256 bytes.*limit of 255 bytes"):
        check_name(longest + "1")
    assert output_folder_name("DiceTrainer_s1", "nnUNetPlans", "2d") == "DiceTrainer_s1__nnUNetPlans__2d"
    assert parse_output_folder_name("DiceTrainer_s1__nnUNetPlans__2d") == ("DiceTrainer_s1", "nnUNetPlans", "2d")
    assert parse_output_folder_name("DiceTrainer_s1") is None


@pytest.mark.parametrize("first,second,same", [
    ("ComboTrainer", "ComboTrainer_a0p5", True),          # alpha's default written out
    ("ComboTrainer", "ComboTrainer_pc", True),            # the family's per-class Dice written out
    ("ComboTrainer", "ComboTrainer_flat", False),
    ("ComboTrainer", "ComboTrainer_a0p6", False),
    ("RRWTrainer", "RRWTrainer_adam_lr1em3", True),       # the family's optimiser and lr written out
    ("RRWTrainer", "RRWTrainer_lr1em4", False),
    ("DiceCETrainer", "DiceCETrainer_ep1000_it250_sgd_lr0p01", True),  # nnU-Net's defaults written out
    ("DiceCETrainer", "DiceCETrainer_ep999", False),
    ("RRWTrainer", "RRWTrainer_online", False),           # maps computed after augmentation: another training
    ("DiceTrainer", "CETrainer", False),
])
def test_names_that_train_the_same_loss_and_settings_resolve_alike(first, second, same):
    from nnunet_losses.naming import resolved_settings

    assert (resolved_settings(check_name(first)) == resolved_settings(check_name(second))) is same
