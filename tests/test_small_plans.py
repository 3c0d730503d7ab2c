"""CPU-sized plans (``nnunet-losses small-plans``): nnU-Net loads them, trains and predicts with ``-p``, and they
share nnU-Net's preprocessed data folder and the precomputed maps."""
import json
import os

import pytest

from nnunet_losses.experiment.plan import Paths, prepare_steps
from nnunet_losses.nnunet.small_plans import make_small_plans, parse_small_plans_name, small_plans_name
from test_nnunet_e2e import _cli, _prepare, _run

SMALL = "nnUNetPlans_small_f4_b6"


def test_names_round_trip():
    assert small_plans_name("nnUNetPlans", 8, 8) == "nnUNetPlans_small_f8_b8"
    assert parse_small_plans_name("nnUNetPlans_small_f8_b8") == ("nnUNetPlans", 8, 8)
    assert parse_small_plans_name("nnUNetResEncUNetMPlans_small_f16_b2") == ("nnUNetResEncUNetMPlans", 16, 2)
    for other in ("nnUNetPlans", "nnUNetPlans_small_f08_b8", "nnUNetPlans_small_f8", "x__small_f8_b8"):
        assert parse_small_plans_name(other) is None


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    ds = _prepare(str(tmp_path_factory.mktemp("small")), 931)
    _run([_cli("nnunet-losses"), "precompute-maps", "-d", ds["id"], "-c", "2d", "--kinds", "rrw"], ds["env"])
    proc = _run([_cli("nnunet-losses"), "small-plans", "-d", ds["id"], "-c", "2d", "--features", "4",
                 "--batch-size", "6"], ds["env"])
    assert f"-p {SMALL}" in proc.stdout
    return ds


def test_small_plans_load_in_nnunet(small):
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    source = json.load(open(os.path.join(small["pre"], "nnUNetPlans.json")))
    manager = PlansManager(os.path.join(small["pre"], SMALL + ".json"))
    assert manager.plans_name == SMALL
    config, original = manager.get_configuration("2d"), PlansManager(source).get_configuration("2d")
    assert config.data_identifier == original.data_identifier == "nnUNetPlans_2d"
    assert config.batch_size == 6 and original.batch_size != 6
    n = len(original.network_arch_init_kwargs["features_per_stage"])
    assert config.network_arch_init_kwargs["features_per_stage"] == [min(4 * 2 ** i, 64) for i in range(n)]
    for key in ("patch_size", "spacing", "normalization_schemes", "batch_dice"):  # nnU-Net's choices are kept
        assert config.configuration[key] == original.configuration[key]
    for key in ("kernel_sizes", "strides", "n_conv_per_stage"):
        assert config.network_arch_init_kwargs[key] == original.network_arch_init_kwargs[key]
    network = get_network_from_plans(config.network_arch_class_name, config.network_arch_init_kwargs,
                                     config.network_arch_init_kwargs_req_import, 1, 4, deep_supervision=True)
    assert network.encoder.stages[0][0].convs[0].conv.out_channels == 4


def test_inherited_configuration_is_resolved():
    plans = {"plans_name": "nnUNetPlans", "configurations": {
        "3d_fullres": {"data_identifier": "nnUNetPlans_3d_fullres", "patch_size": [8, 8, 8], "batch_size": 2,
                       "architecture": {"arch_kwargs": {"features_per_stage": [32, 64, 128, 256, 320]}}},
        "3d_lowres": {"inherits_from": "3d_fullres", "data_identifier": "nnUNetPlans_3d_lowres"}}}
    small = make_small_plans(plans, "3d_lowres", features=8)
    config = small["configurations"]["3d_lowres"]
    assert list(small["configurations"]) == ["3d_lowres"] and "inherits_from" not in config
    assert config["data_identifier"] == "nnUNetPlans_3d_lowres" and config["batch_size"] == 2  # 3D default
    assert config["architecture"]["arch_kwargs"]["features_per_stage"] == [8, 16, 32, 64, 128]
    assert plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["features_per_stage"][0] == 32


def test_train_predict_and_share_data_and_maps(small, tmp_path):
    env, trainer = small["env"], "RRWTrainer_ep1_it3"
    # the maps written for nnUNetPlans are found through the small plans: nothing to compute
    proc = _run([_cli("nnunet-losses"), "precompute-maps", "-d", small["id"], "-c", "2d", "-p", SMALL,
                 "--kinds", "rrw"], env)
    assert "0 case(s) computed, 10 up to date" in proc.stdout
    _run([_cli("nnUNetv2_train"), small["id"], "2d", "0", "-tr", trainer, "-p", SMALL, "-device", "cpu"], env)
    fold = os.path.join(small["results"], f"{trainer}__{SMALL}__2d", "fold_0")
    log = "".join(open(os.path.join(fold, f)).read() for f in os.listdir(fold) if f.startswith("training_log"))
    assert "nnUNetPlans_2d_maps" in log and "'batch_size': 6" in log
    assert os.path.isfile(os.path.join(fold, "checkpoint_final.pth"))
    assert sorted(d for d in os.listdir(small["pre"]) if os.path.isdir(os.path.join(small["pre"], d))) == \
        ["gt_segmentations", "nnUNetPlans_2d", "nnUNetPlans_2d_maps"]  # no second data folder
    out = tmp_path / "pred"
    _run([_cli("nnUNetv2_predict"), "-i", os.path.join(small["raw"], "imagesTs"), "-o", str(out), "-d", small["id"],
          "-c", "2d", "-f", "0", "-tr", trainer, "-p", SMALL, "-device", "cpu", "-npp", "1", "-nps", "1",
          "--disable_progress_bar"], env)
    assert len([f for f in os.listdir(out) if f.endswith(".nii.gz")]) == 2


def test_experiment_spec_writes_small_plans(tmp_path):
    spec = tmp_path / "exp.toml"
    spec.write_text('[experiment]\nname = "x"\ndataset = 931\nconvert = "synthetic"\nconfiguration = "2d"\n'
                    f'plans = "{SMALL}"\n[trainers]\nRRW = "RRWTrainer_ep1_it3"\n')
    from nnunet_losses.experiment import load_experiment

    exp = load_experiment(str(spec))
    paths = Paths(str(tmp_path / "raw"), str(tmp_path / "pre"), str(tmp_path / "res"), str(tmp_path / "work"))
    commands = [step.command for step in prepare_steps(exp, paths)]
    assert commands[1][0] == "nnUNetv2_plan_and_preprocess"
    assert commands[2] == ["nnunet-losses", "small-plans", "-d", "931", "-c", "2d", "-p", "nnUNetPlans",
                           "--features", "4", "--batch-size", "6"]
    assert commands[3][:2] == ["nnunet-losses", "precompute-maps"] and commands[3][7] == SMALL
