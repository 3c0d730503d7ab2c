"""``nnunet-losses doctor``: each set-up fault is planted and found, named on its own line with the fix; a healthy
set-up exits 0. The dataset is written without nnU-Net (tests/fake_nnunet.py)."""
import json
import os

import pytest

from nnunet_losses.cli import main
from nnunet_losses.nnunet import doctor
from nnunet_losses.nnunet.doctor import FAIL, OK, WARN
from nnunet_losses.nnunet.precompute import precompute_maps
from fake_nnunet import blobs, write_preprocessed_case

DATASET = "Dataset915_Doctor"


def _plans(name, spacing):
    return {"dataset_name": DATASET, "plans_name": name, "label_manager": "LabelManager",
            "configurations": {"2d": {"data_identifier": "nnUNetPlans_2d", "patch_size": [16, 16],
                                      "spacing": spacing, "batch_size": 2,
                                      "architecture": {"network_class_name": "dynamic_network_architectures."
                                                                             "architectures.unet.PlainConvUNet",
                                                       "arch_kwargs": {}, "_kw_requires_import": []}}}}


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A healthy set-up: the three folders, nnUNet_extTrainer, a preprocessed 2D dataset of 3 cases, 3 classes."""
    env = {k: str(tmp_path / k) for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for key, value in env.items():
        os.makedirs(value)
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("nnUNet_extTrainer", doctor.trainers_folder())
    for key in ("nnUNet_losses_make_maps", "nnUNet_losses_fused", "nnUNet_compile"):
        monkeypatch.delenv(key, raising=False)
    base = os.path.join(env["nnUNet_preprocessed"], DATASET)
    data = os.path.join(base, "nnUNetPlans_2d")
    for i in range(3):
        write_preprocessed_case(data, f"c{i}", blobs((1, 16, 16), 3, i)[None])
    with open(os.path.join(base, "dataset.json"), "w") as f:
        json.dump({"labels": {"background": 0, "a": 1, "b": 2}, "file_ending": ".nii.gz",
                   "channel_names": {"0": "x"}, "numTraining": 3}, f)
    for name, spacing in (("nnUNetPlans", [1.0, 1.0]), ("OtherPlans", [0.5, 0.5])):  # one data folder, two spacings
        with open(os.path.join(base, name + ".json"), "w") as f:
            json.dump(_plans(name, spacing), f)
    return {"data": data, **env}


def _by_name(checks):
    return {c.name: c for c in checks}


def _make_maps(setup, kinds=("rrw",)):
    precompute_maps(setup["data"], list(kinds), 3, True, [1.0, 1.0], progress=False)


def test_healthy_setup_exits_0(setup, capsys):
    _make_maps(setup)
    assert main(["doctor", "-d", "915", "-c", "2d", "-tr", "RRWTrainer"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert not [line for line in lines if line.startswith(FAIL)]
    for name in ("nnU-Net", "torch", "device", "nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "trainer",
                 "nnUNet_extTrainer", "dataset", "maps rrw", "disk"):
        assert [line for line in lines if line.split(None, 1)[1].startswith(name + ":")], name
    assert "nnU-Net's lookup finds RRWTrainer" in out
    assert "maps rrw: up to date for 3 cases" in out
    assert lines[-1].startswith("0 FAIL")


def test_ext_trainer_unset_or_wrong(setup, monkeypatch, tmp_path):
    monkeypatch.delenv("nnUNet_extTrainer")
    check = doctor.check_ext_trainer()
    assert check.status == FAIL and "not set" in check.text and doctor.EXT_FIX in check.text
    assert doctor.check_ext_trainer(needed=False).status == OK  # nnU-Net's own trainers need none
    monkeypatch.setenv("nnUNet_extTrainer", str(tmp_path / "nowhere"))
    check = doctor.check_ext_trainer()
    assert check.status == FAIL and f"{tmp_path / 'nowhere'} does not exist" in check.text
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "my_trainers.py").write_text("X = 1\n")
    monkeypatch.setenv("nnUNet_extTrainer", str(tmp_path / "other"))
    check = doctor.check_ext_trainer()
    assert check.status == FAIL and "holds no module that gives our trainers" in check.text
    assert doctor.EXT_FIX in check.text and doctor.trainers_folder() in check.text


def test_path_variables_unset_or_missing(setup, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("nnUNet_preprocessed")
    monkeypatch.delenv("nnUNet_raw")
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "no" / "such"))
    assert main(["doctor"]) == 1
    lines = {line.split(":")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["FAIL  nnUNet_preprocessed"].endswith("fix: export nnUNet_preprocessed=/path/to/nnUNet_preprocessed")
    assert "warn  nnUNet_raw" in lines  # only planning and preprocessing read it
    assert f"{tmp_path / 'no' / 'such'} does not exist" in lines["warn  nnUNet_results"]
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "file"))
    assert doctor.check_path_variable("nnUNet_results").status == FAIL


def test_bad_trainer_name(setup):
    check, parsed, own = doctor.check_trainer_name("ComboTrainer_a1p5")
    assert check.status == FAIL and parsed is None and "nearest valid name" in check.text
    assert "ComboTrainer_a1p5" in check.text and "\n" not in check.text
    check, _, own = doctor.check_trainer_name("ComboTrainr")
    assert check.status == FAIL and "nearest valid name: ComboTrainer" in check.text
    check, _, own = doctor.check_trainer_name("nnUNetTrainer_250epochs")
    assert check.status == OK and own
    assert doctor.check_trainer_name("NoSuchTrainer")[0].status == FAIL


def test_missing_maps(setup, monkeypatch):
    checks = _by_name(doctor.check_dataset("915", "2d", "nnUNetPlans", doctor.check_trainer_name("RRWTrainer")[1]))
    assert checks["dataset"].status == OK and "3 preprocessed cases" in checks["dataset"].text
    maps = checks["maps rrw"]
    assert maps.status == WARN and "no precomputed 'rrw' maps" in maps.text
    assert "nnunet-losses precompute-maps -d 915 -c 2d -p nnUNetPlans" in maps.text
    assert "or the first training makes them" in maps.text
    assert checks["disk"].status == OK and "rrw maps of 3 cases take at most 768 B" in checks["disk"].text
    monkeypatch.setenv("nnUNet_losses_make_maps", "f")  # trainings refuse instead of making them
    checks = _by_name(doctor.check_dataset("915", "2d", "nnUNetPlans", doctor.check_trainer_name("RRWTrainer")[1]))
    assert checks["maps rrw"].status == FAIL and "first training" not in checks["maps rrw"].text
    # online maps: nothing to precompute
    online = doctor.check_trainer_name("RRWTrainer_online")[1]
    assert "maps rrw" not in _by_name(doctor.check_dataset("915", "2d", "nnUNetPlans", online))


def test_stale_maps_changed_segmentation_or_other_plans(setup, monkeypatch):
    monkeypatch.setenv("nnUNet_losses_make_maps", "f")
    _make_maps(setup, ("rrw", "boundary"))
    parsed = doctor.check_trainer_name("DiceBoundaryTrainer")[1]
    assert _by_name(doctor.check_dataset("915", "2d", "nnUNetPlans", parsed))["maps boundary"].status == OK
    other = _by_name(doctor.check_dataset("915", "2d", "OtherPlans", parsed))["maps boundary"]  # spacing 0.5
    assert other.status == FAIL and "stale: spacing [1.0, 1.0] (configuration: [0.5, 0.5])" in other.text
    assert "precompute-maps -d 915 -c 2d -p OtherPlans" in other.text
    write_preprocessed_case(setup["data"], "c1", blobs((1, 16, 16), 3, 7)[None])  # re-preprocessed
    stale = _by_name(doctor.check_dataset("915", "2d", "nnUNetPlans", parsed))["maps boundary"]
    assert stale.status == FAIL and "stale: 1 case(s), e.g. c1" in stale.text
    # without a trainer, the maps present are reported; nothing fails
    checks = _by_name(doctor.check_dataset("915", "2d", "nnUNetPlans"))
    assert checks["maps rrw"].status == WARN and checks["maps boundary"].status == WARN


def test_missing_dataset_or_plans(setup):
    assert doctor.check_dataset("916", "2d", "nnUNetPlans")[0].status == FAIL
    check = doctor.check_dataset("915", "2d", "NoPlans")[0]
    assert check.status == FAIL and "NoPlans.json" in check.text and "nnUNetPlans, OtherPlans" in check.text
    assert doctor.check_dataset("915", "3d_fullres", "nnUNetPlans")[0].status == FAIL


def test_no_c_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-cc"))
    check = doctor.check_compiler()
    assert check.status == WARN and "no C compiler" in check.text and "PyTorch path" in check.text
    monkeypatch.delenv("CC")
    monkeypatch.setenv("PATH", str(tmp_path))  # no cc on PATH
    assert doctor.check_compiler().status == WARN
    assert doctor.check_compiler("rrw") is None  # only Combo has the kernel
    monkeypatch.setenv("nnUNet_losses_fused", "f")
    assert doctor.check_compiler().status == OK
