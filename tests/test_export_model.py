"""``nnunet-losses export-model``: a model trained with one of our trainers, exported as nnUNetTrainer, installed and
run by a stock nnU-Net in a process that cannot import nnunet-losses, predicts byte for byte what the original
predicts with the plugin. The refusals and the checkpoint conversion are checked without training."""
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import pytest
import torch

from nnunet_losses.cli import main
from nnunet_losses.nnunet.export import CHECKPOINT_KEY, RECORD, check_architecture, plain_checkpoint
from nnunet_losses.nnunet.synthetic import nnunet_env, write_synthetic_dataset

BIN = os.path.dirname(sys.executable)
TRAINER = "RRWTrainer_online_ep1_it2"  # RRW maps made in the loader workers; Adam; a loss nnU-Net does not have

# Put first on PYTHONPATH, this sitecustomize makes nnunet_losses (and the shim module of nnUNet_extTrainer)
# unimportable, whatever else is installed, and logs every attempt to import them.
NO_PLUGIN = textwrap.dedent("""\
    import os, sys

    class RefuseNnunetLosses:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("nnunet_losses", "nnunet_losses_trainers"):
                with open(os.environ["NO_PLUGIN_LOG"], "a") as log:
                    log.write(name + "\\n")
                raise ModuleNotFoundError(f"No module named {name!r} (no plugin here)", name=name)
            return None

    sys.meta_path.insert(0, RefuseNnunetLosses())
    """)


def _run(cmd, env, cwd=None):
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def _predictions(folder):
    files = sorted(f for f in os.listdir(folder) if f.endswith(".nii.gz"))
    assert len(files) == 2
    return {f: open(os.path.join(folder, f), "rb").read() for f in files}


# With the plugin, in one process: nnU-Net's planning and preprocessing, small plans (8-128 features), nnU-Net's
# training loop (fold 0: 4 training cases; augmentation in this process; no final validation), nnU-Net's predictor.
PLUGIN_SIDE = """
import os, sys, torch
from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.run.run_training import get_trainer_from_args
from nnunet_losses.nnunet.small_plans import write_small_plans

images, out, name = sys.argv[1:]
extract_fingerprints([913], num_processes=1, check_dataset_integrity=True, show_progress_bar=False)
plan_experiments([913])
plans = write_small_plans("913", "2d").name
preprocess([913], plans, ["2d"], [1], show_progress_bar=False)
os.environ["nnUNet_n_proc_DA"] = "0"  # augmentation in this process: no worker to start
trainer = get_trainer_from_args("913", "2d", 0, name, plans, device=torch.device("cpu"))
trainer.run_training()
predictor = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
predictor.initialize_from_trained_model_folder(trainer.output_folder_base, (0,))
os.makedirs(out)
predictor.predict_from_files_sequential(images, out)
print("plans", plans)
"""


# Without the plugin: nnunet_losses is not importable, nnU-Net's trainer lookup (nnUNetv2_predict's) does not find
# the original trainer, and nnU-Net's predictor, on the installed nnUNetTrainer folder, predicts the test images.
STOCK_SIDE = """
import os, sys, torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.file_path_utilities import get_output_folder
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

images, out, plans, original = sys.argv[1:]
try:
    import nnunet_losses
    raise SystemExit("nnunet_losses is importable")
except ImportError:
    pass
try:
    recursive_find_trainer_class_by_name(original)
    raise SystemExit(f"nnU-Net finds {original}")
except RuntimeError:
    pass
predictor = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
predictor.initialize_from_trained_model_folder(get_output_folder("913", "nnUNetTrainer", plans, "2d"), (0,))
os.makedirs(out)
predictor.predict_from_files_sequential(images, out)
"""


@pytest.mark.nnunet
def test_exported_model_predicts_the_same_without_the_plugin(tmp_path, monkeypatch):
    from nnunet_losses import ext_trainers

    env = nnunet_env(tmp_path / "plugin")
    env["nnUNet_extTrainer"] = os.path.dirname(ext_trainers.__file__)
    raw = write_synthetic_dataset(env["nnUNet_raw"], 913, "Synth913", num_train=5, num_test=2)
    images = os.path.join(raw, "imagesTs")
    proc = _run([sys.executable, "-c", PLUGIN_SIDE, images, str(tmp_path / "pred_plugin"), TRAINER], env)
    plans = proc.stdout.split("plans ")[-1].strip()
    with_plugin = _predictions(tmp_path / "pred_plugin")

    out = str(tmp_path / "model.zip")
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(key, env[key])
    assert main(["export-model", "-d", "913", "-c", "2d", "-tr", TRAINER, "-p", plans, "-o", out]) == 0
    with zipfile.ZipFile(out) as zipf:
        names = zipf.namelist()
        folder = f"Dataset913_Synth913/nnUNetTrainer__{plans}__2d"
        record = json.loads(zipf.read(f"{folder}/{RECORD}"))
        settings = json.loads(zipf.read(f"{folder}/fold_0/nnunet_losses.json"))
    assert {f"{folder}/fold_0/checkpoint_final.pth", f"{folder}/plans.json", f"{folder}/dataset.json",
            f"{folder}/dataset_fingerprint.json", f"{folder}/fold_0/progress.png"} <= set(names)
    assert not [n for n in names if TRAINER in n]
    assert record["original_trainer"] == settings["trainer"] == TRAINER
    assert record["trained_with"]["fold_0"]["loss"] == "rrw" and record["folds"] == ["0"]
    assert main(["export-model", "-d", "913", "-c", "2d", "-tr", TRAINER, "-p", plans, "-o", out]) == 2  # exists

    # a stock nnU-Net: nnunet_losses cannot be imported, no nnUNet_extTrainer, fresh nnU-Net folders
    blocker = tmp_path / "no_plugin"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(NO_PLUGIN)
    stock = nnunet_env(tmp_path / "stock", base={k: v for k, v in os.environ.items()
                                                 if k not in ("nnUNet_extTrainer", "PYTHONPATH")})
    stock.update(PYTHONPATH=str(blocker), NO_PLUGIN_LOG=str(tmp_path / "imports.log"))
    _run([os.path.join(BIN, "nnUNetv2_install_pretrained_model_from_zip"), out], stock, cwd=str(tmp_path))
    _run([sys.executable, "-c", STOCK_SIDE, images, str(tmp_path / "pred_stock"), plans, TRAINER], stock,
         cwd=str(tmp_path))
    with open(tmp_path / "imports.log") as f:  # the one attempt is STOCK_SIDE's own check
        assert f.read().split() == ["nnunet_losses"]
    assert _predictions(tmp_path / "pred_stock") == with_plugin  # byte-identical files


def _fake_model(results, trainer=TRAINER, folds=(0,)):
    folder = os.path.join(results, "Dataset914_Fake", f"{trainer}__nnUNetPlans__2d")
    os.makedirs(folder)
    for name in ("plans.json", "dataset.json"):
        with open(os.path.join(folder, name), "w") as f:
            json.dump({}, f)
    for fold in folds:
        os.makedirs(os.path.join(folder, f"fold_{fold}"))
    return folder


def test_refusals_name_the_path(tmp_path, monkeypatch, capsys):
    results = str(tmp_path / "results")
    monkeypatch.setenv("nnUNet_results", results)
    folder = _fake_model(results)
    out = str(tmp_path / "m.zip")

    def error(*extra, tr=TRAINER, o=out):
        assert main(["export-model", "-d", "Dataset914_Fake", "-c", "2d", "-tr", tr, "-o", o, *extra]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1
        return lines[0]

    assert f"no trained model folder {os.path.join(results, 'Dataset914_Fake', 'RRWTrainer__nnUNetPlans__2d')}" \
        in error(tr="RRWTrainer")
    assert f"no fold in {folder} has checkpoint_final.pth" in error()
    missing = os.path.join(folder, "fold_1", "checkpoint_final.pth")
    assert f"{missing} is missing" in error("-f", "1")
    open(out, "w").close()
    assert f"{out} exists" in error()
    assert not os.path.exists(tmp_path / "m2.zip")


class _Ours:  # stands for an object of the plugin in a checkpoint
    __module__ = "nnunet_losses.losses.dice_boundary"


def test_checkpoint_keeps_plain_data_and_drops_ours():
    checkpoint = {"network_weights": {"w": torch.ones(2)}, "init_args": {"configuration": "2d",
                                                                            "device": torch.device("cpu")},
                  "trainer_name": TRAINER, "logging": {"mean_fg_dice": [0.5]}, "current_epoch": 1,
                  "nnunet_losses": {"schedule": {"epochs_done": 1}}, "extra_plain": [1, 2],
                  "extra_object": {"state": _Ours()}}
    exported, dropped = plain_checkpoint(checkpoint, TRAINER, "ck.pth")
    assert exported["trainer_name"] == "nnUNetTrainer"
    assert exported[CHECKPOINT_KEY]["trainer_name"] == TRAINER
    assert exported["extra_plain"] == [1, 2] and "nnunet_losses" not in exported and "extra_object" not in exported
    assert dropped["nnunet_losses"] == {"schedule": {"epochs_done": 1}}
    assert "nnunet_losses.losses.dice_boundary._Ours" in dropped["extra_object"]
    assert checkpoint["trainer_name"] == TRAINER  # the original is not changed
    with pytest.raises(ValueError, match=r"ck.pth: checkpoint\['logging'\]\['x'\]: nnunet_losses"):
        plain_checkpoint({**checkpoint, "logging": {"x": _Ours()}}, TRAINER, "ck.pth")


def test_a_trainer_with_its_own_network_is_refused():
    from nnunet_losses.nnunet.trainers import trainer_class

    check_architecture(trainer_class("ComboTrainer"))  # ours: nnUNetTrainer's network
    own = type("OwnNetworkTrainer", (trainer_class("ComboTrainer"),),
               {"build_network_architecture": staticmethod(lambda *args, **kwargs: None)})
    with pytest.raises(ValueError, match="OwnNetworkTrainer builds its network with .*OwnNetworkTrainer"):
        check_architecture(own)
