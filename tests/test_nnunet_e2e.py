"""End to end with nnU-Net's own commands on CPU: plan/preprocess, precompute maps, train, resume, predict.

Each training is 1 epoch of a few iterations at 64x64 (about 15 s on 2 cores).
"""
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import SimpleITK as sitk
import pytest

from nnunet_losses.losses._fast import combo_cpu

pytestmark = pytest.mark.nnunet  # every test here runs nnU-Net


@pytest.fixture(scope="session")
def dataset(prepared_dataset, nnunet):
    ds = prepared_dataset(901)
    proc = nnunet.run([nnunet.command("nnunet-losses"), "precompute-maps", "-d", ds["id"], "-c", "2d", "-np", "2"],
                      ds["env"])
    assert "10 case(s) computed" in proc.stdout
    return ds


def _predict(nnunet, ds, trainer, out):
    nnunet.run([nnunet.command("nnUNetv2_predict"), "-i", os.path.join(ds["raw"], "imagesTs"), "-o", str(out),
                "-d", ds["id"], "-c", "2d", "-f", "0", "-tr", trainer, "-device", "cpu", "-npp", "1", "-nps", "1",
                "--disable_progress_bar"], ds["env"])
    files = sorted(f for f in os.listdir(out) if f.endswith(".nii.gz"))
    assert len(files) == 2
    pred = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(out, files[0])))
    assert pred.shape == (1, 64, 64) and set(np.unique(pred)) <= {0, 1, 2, 3}


def _kill_during_checkpoint_save(nnunet, ds, trainer):
    """A SIGKILL (SLURM preemption) in the middle of writing checkpoint_final.pth, then a checkpoint as nnU-Net
    alone writes it (no nnunet-losses entry): `--c` must still continue, with the schedule of the checkpoint's epoch."""
    import torch

    final = os.path.join(nnunet.fold(ds, trainer), "checkpoint_final.pth")
    code = ("import os, signal, torch\n"
            "from nnunetv2.run.run_training import get_trainer_from_args\n"
            f"trainer = get_trainer_from_args({ds['id']!r}, '2d', 0, {trainer!r}, continue_training=True, "
            "device=torch.device('cpu'))\n"
            "trainer.initialize()\n"
            "def killed(obj, f, *args, **kwargs):  # torch.save writes part of the file, then the job is killed\n"
            "    out = open(f, 'wb') if isinstance(f, (str, os.PathLike)) else f\n"
            "    out.write(b'the first bytes of a checkpoint')\n"
            "    out.flush()\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n"
            "torch.save = killed\n"
            f"trainer.save_checkpoint({final!r})\n")
    proc = nnunet.run([sys.executable, "-c", code], ds["env"], check=False)
    assert proc.returncode == -9, proc.stderr[-2000:]
    checkpoint = torch.load(final, map_location="cpu", weights_only=False)  # the previous one, whole
    assert checkpoint["current_epoch"] == 1
    checkpoint.pop("nnunet_losses", None)
    torch.save(checkpoint, final)
    assert glob.glob(final + ".tmp*")  # the partial file, removed when the training continues


@pytest.mark.parametrize("trainer,expect", [
    ("RRWTrainer_ep1_it5", "using precomputed 'rrw' maps"),
    ("ComboTrainer_a0p5_b0p7_ep1_it5", "params {'alpha': 0.5, 'beta': 0.7, 'smooth': 1.0, 'dice': 'per_class'}"),
    ("TopKDiceTrainer_k50_ep1_it5", "params {'k': 50.0}"),
    ("DiceBoundaryTrainer_ep1_it5", "using precomputed 'boundary' maps"),
])
def test_train_resume_predict(dataset, trainer, expect, tmp_path, nnunet):
    nnunet.train(dataset, trainer)
    log = nnunet.log(dataset, trainer)
    assert expect in log
    settings = json.load(open(os.path.join(nnunet.fold(dataset, trainer), "nnunet_losses.json")))
    assert settings["trainer"] == trainer and settings["training"]["epochs"] == 1
    assert settings["training"]["iterations_per_epoch"] == 5
    # the Adam defaults (RRW, Dice+Boundary) use torch's fused Adam on the CPU; the SGD ones keep nnU-Net's
    assert settings["training"]["fused_adam"] is trainer.startswith(("RRW", "DiceBoundary")), settings["training"]
    # Combo's sums on the CPU: the fused C kernel wherever a C compiler could build it
    assert settings["training"]["combo_sums"] == (None if not trainer.startswith("Combo") else
                                                  combo_cpu.description()), settings["training"]
    if trainer.startswith("Combo") and shutil.which(os.environ.get("CC", "cc")):
        assert settings["training"]["combo_sums"] == "fused C kernel (combo_cpu.c)"
    if trainer.startswith("DiceBoundary"):
        assert settings["schedule"]["epochs_done"] == 1  # kept current, not the snapshot of the start
        _kill_during_checkpoint_save(nnunet, dataset, trainer)
    # --c: continue from the final checkpoint (restores the Dice+Boundary alpha), then validate
    proc = nnunet.train(dataset, trainer, "--c")
    if trainer.startswith("DiceBoundary"):
        assert "restored schedule from checkpoint" in nnunet.log(dataset, trainer)
        assert "epochs_done=1, alpha=0.99" in nnunet.log(dataset, trainer)
        assert not glob.glob(os.path.join(nnunet.fold(dataset, trainer), "*.tmp*"))
        assert settings["schedule"]["kind"] == "gradual"
    assert "Mean Validation Dice" in proc.stdout + nnunet.log(dataset, trainer)
    _predict(nnunet, dataset, trainer, tmp_path / "pred")
    if trainer.startswith("RRW"):
        nnunet.run([nnunet.command("nnUNetv2_find_best_configuration"), dataset["id"], "-c", "2d", "-tr", trainer,
                    "-f", "0"], dataset["env"])


def test_online_maps_under_spawn(dataset, nnunet):
    """Maps computed in the augmentation workers, with the workers started by `spawn` (the loader pickles)."""
    trainer = "RRWTrainer_online_ep1_it5_s1"
    code = ("import multiprocessing as mp, sys\n"
            "mp.set_start_method('spawn', force=True)\n"
            "from nnunetv2.run.run_training import run_training_entry\n"
            f"sys.argv = ['nnUNetv2_train', '{dataset['id']}', '2d', '0', '-tr', '{trainer}', '-device', 'cpu']\n"
            "run_training_entry()\n")
    nnunet.run([sys.executable, "-c", code], dataset["env"])
    settings = json.load(open(os.path.join(nnunet.fold(dataset, trainer), "nnunet_losses.json")))
    assert settings["training"]["maps"] == "online" and settings["training"]["seed"] == 1
    assert "'rrw' maps computed in the loader workers after augmentation" in nnunet.log(dataset, trainer)


def test_ac_maps_built_on_the_device(dataset, nnunet):
    """RW-AC trains with its 1 - Y built on the training device from each scale's labels (the loader carries none)."""
    trainer = "RWACTrainer_ep1_it5"
    nnunet.train(dataset, trainer)
    assert "'ac' maps built on the training device" in nnunet.log(dataset, trainer)
    settings = json.load(open(os.path.join(nnunet.fold(dataset, trainer), "nnunet_losses.json")))
    assert settings["training"]["maps"] == "device"


def test_missing_and_stale_maps_stop_training_when_trainings_may_not_make_them(dataset, nnunet):
    """With nnUNet_losses_make_maps=f (trainings refuse instead of making maps) the one-line message names the
    command."""
    dataset = dict(dataset, env=dict(dataset["env"], nnUNet_losses_make_maps="f"))
    maps = os.path.join(dataset["pre"], "nnUNetPlans_2d_maps")
    hidden = maps + "_hidden"
    os.rename(maps, hidden)
    try:
        proc = nnunet.train(dataset, "RWBoundaryTrainer_ep1_it5", check=False)
    finally:
        os.rename(hidden, maps)
    assert proc.returncode != 0
    assert f"Run: nnunet-losses precompute-maps -d {dataset['name']} -c 2d" in proc.stdout + proc.stderr
    # a re-preprocessed case (a segmentation with other content) makes its map stale; a new mtime alone does not
    import blosc2

    seg = os.path.join(dataset["pre"], "nnUNetPlans_2d", f"{dataset['name'].split('_', 1)[1]}_000_seg.b2nd")
    original = open(seg, "rb").read()
    labels = blosc2.open(urlpath=seg, mode="r")[...]
    labels[0, 0, :4, :4] = 3
    blosc2.asarray(labels, urlpath=seg, mode="w")
    try:
        proc = nnunet.train(dataset, "RRWTrainer_ep1_it5_s7", check=False)
        assert proc.returncode != 0 and "stale: 1 case(s)" in proc.stdout + proc.stderr
    finally:
        with open(seg, "wb") as f:
            f.write(original)


def test_units_copies_and_read_only_with_the_cli(dataset, tmp_path, nnunet):
    """On real preprocessed data: a `cp -r` copy is up to date, a change of units is not, and an up-to-date run
    writes nothing."""
    env = dict(dataset["env"], nnUNet_preprocessed=str(tmp_path))
    copy = tmp_path / dataset["name"]
    subprocess.run(["cp", "-r", dataset["pre"], str(copy)], check=True)  # new mtimes, same content
    command = [nnunet.command("nnunet-losses"), "precompute-maps", "-d", dataset["id"], "-c", "2d", "--no-progress"]
    assert "0 case(s) computed, 10 up to date" in nnunet.run(command, env).stdout
    manifest = copy / "nnUNetPlans_2d_maps" / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    assert "0 case(s) computed" in nnunet.run(command, env).stdout and manifest.stat().st_mtime_ns == stamp
    proc = nnunet.run(command + ["--voxel-units"], env)
    assert "10 case(s) computed, 0 up to date (20 stale" in proc.stdout
    assert json.load(open(manifest))["kinds"]["boundary"]["spacing"] is None


def test_rw_authors_boundary_variant_trains(dataset, nnunet):
    trainer = "RWBoundaryTrainer_authors_ep1_it2"
    nnunet.train(dataset, trainer)
    log = nnunet.log(dataset, trainer)
    assert "using precomputed 'boundary' maps minus Y (the RW authors' variant)" in log
    assert "'boundary_map': 'authors'" in log


def test_malformed_trainer_name_shows_grammar(dataset, nnunet):
    proc = nnunet.train(dataset, "ComboTrainer_b0p70", check=False)
    assert proc.returncode != 0
    assert "nearest valid name: ComboTrainer_b0p7" in proc.stdout + proc.stderr


def _pipeline_batch(dataset, kind, training, seed=0):
    """One batch of nnU-Net's own loader and transforms with our precomputed-map transforms added."""
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_losses.nnunet.map_pipeline import MapPipeline

    torch.manual_seed(seed)
    np.random.seed(seed)
    label_manager = PlansManager(os.path.join(dataset["pre"], "nnUNetPlans.json")).get_label_manager(
        load_json(os.path.join(dataset["pre"], "dataset.json")))
    folder = os.path.join(dataset["pre"], "nnUNetPlans_2d")
    pipeline = MapPipeline(kind, 4, precomputed=True)
    data = pipeline.wrap(nnUNetDatasetBlosc2(folder))
    scales = [[1.0, 1.0], [0.5, 0.5], [0.25, 0.25]]
    if training:
        transforms = nnUNetTrainer.get_training_transforms((64, 64), (-np.pi, np.pi), scales, (0, 1), False,
                                                           foreground_labels=[1, 2, 3])
    else:
        transforms = nnUNetTrainer.get_validation_transforms(scales, foreground_labels=[1, 2, 3])
    pipeline.add_to(transforms)
    # no foreground oversampling without augmentation: its patches may be shifted past the border and padded
    loader = nnUNetDataLoader(data, 4, (64, 64), (64, 64), label_manager, 0.33 if training else 0.0,
                              transforms=transforms)
    batch = loader.generate_train_batch()
    return pipeline.take(batch, "cpu")  # as the trainer does on its device


def test_precomputed_maps_through_nnunet_pipeline(dataset):
    from nnunet_losses.maps import boundary_map, rrw_map

    # without augmentation the map that arrives is the map of the label patch (the whole 64x64 slice here)
    for kind, fn, tol in (("rrw", rrw_map, 0.5 / 255 + 1e-5), ("boundary", boundary_map, 0.125 + 1e-5)):
        labels, maps = _pipeline_batch(dataset, kind, training=False)
        assert [m.shape[-1] for m in maps] == [t.shape[-1] for t in labels] == [64, 32, 16]
        for b in range(4):
            expected = fn(labels[0][b, 0].numpy(), 4)
            assert np.abs(maps[0][b].numpy() - expected).max() <= tol, kind
    # with nnU-Net's augmentation: +1 outside each class, in [-1, 0] inside, at every deep-supervision scale
    labels, maps = _pipeline_batch(dataset, "rrw", training=True, seed=3)
    for lab, z in zip(labels, maps):
        assert z.shape == (4, 4) + tuple(lab.shape[2:])
        onehot = np.stack([(lab[:, 0].numpy() == k) for k in range(4)], 1)
        zn = z.numpy()
        assert np.all(zn[~onehot] == 1.0)
        assert np.all((zn[onehot] <= 0) & (zn[onehot] >= -1.0 - 1e-6))
    assert maps[0].min() < -0.5  # the distances survived the augmentation
