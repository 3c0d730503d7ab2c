"""CPU-sized plans (``nnunet-losses small-plans``): nnU-Net loads them, trains and predicts with ``-p``, and they
share nnU-Net's preprocessed data folder and the precomputed maps."""
import json
import os

import pytest

from nnunet_losses.experiment.plan import Paths, prepare_steps
from nnunet_losses.nnunet.small_plans import make_small_plans, parse_small_plans_name, small_plans_name

SMALL = "nnUNetPlans_small_f4_b6"


def test_names_round_trip():
    assert small_plans_name("nnUNetPlans", 8, 8) == "nnUNetPlans_small_f8_b8"
    assert parse_small_plans_name("nnUNetPlans_small_f8_b8") == ("nnUNetPlans", 8, 8)
    assert parse_small_plans_name("nnUNetResEncUNetMPlans_small_f16_b2") == ("nnUNetResEncUNetMPlans", 16, 2)
    for other in ("nnUNetPlans", "nnUNetPlans_small_f08_b8", "nnUNetPlans_small_f8", "x__small_f8_b8"):
        assert parse_small_plans_name(other) is None


@pytest.fixture(scope="module")
def small(prepared_dataset, nnunet):
    ds = prepared_dataset(901, maps="rrw")
    proc = nnunet.run([nnunet.command("nnunet-losses"), "small-plans", "-d", ds["id"], "-c", "2d", "--features", "4",
                       "--batch-size", "6"], ds["env"])
    assert f"-p {SMALL}" in proc.stdout
    return ds


@pytest.mark.nnunet
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


@pytest.mark.nnunet
def test_train_predict_and_share_data_and_maps(small, tmp_path, nnunet):
    env, trainer = small["env"], "RRWTrainer_ep1_it3"
    # the maps written for nnUNetPlans are found through the small plans: nothing to compute
    proc = nnunet.run([nnunet.command("nnunet-losses"), "precompute-maps", "-d", small["id"], "-c", "2d", "-p", SMALL,
                       "--kinds", "rrw"], env)
    assert "0 case(s) computed, 10 up to date" in proc.stdout
    nnunet.run([nnunet.command("nnUNetv2_train"), small["id"], "2d", "0", "-tr", trainer, "-p", SMALL,
                "-device", "cpu"], env)
    fold = os.path.join(small["results"], f"{trainer}__{SMALL}__2d", "fold_0")
    log = "".join(open(os.path.join(fold, f)).read() for f in os.listdir(fold) if f.startswith("training_log"))
    assert "nnUNetPlans_2d_maps" in log and "'batch_size': 6" in log
    assert os.path.isfile(os.path.join(fold, "checkpoint_final.pth"))
    assert sorted(d for d in os.listdir(small["pre"]) if os.path.isdir(os.path.join(small["pre"], d))) == \
        ["gt_segmentations", "nnUNetPlans_2d", "nnUNetPlans_2d_maps"]  # no second data folder
    out = tmp_path / "pred"
    nnunet.run([nnunet.command("nnUNetv2_predict"), "-i", os.path.join(small["raw"], "imagesTs"), "-o", str(out),
                "-d", small["id"], "-c", "2d", "-f", "0", "-tr", trainer, "-p", SMALL, "-device", "cpu", "-npp", "1",
                "-nps", "1", "--disable_progress_bar"], env)
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


# ------------------------------------------------------------------------ one file per source plans and settings
DATASET = "Dataset950_Small"


def _source_plans(name="nnUNetPlans", plans_name=None, patch=(64, 64), spacing_note=1.0):
    config = lambda ident, patch_size, batch: {  # noqa: E731
        "data_identifier": ident, "preprocessor_name": "DefaultPreprocessor", "batch_size": batch,
        "patch_size": list(patch_size), "spacing": [1.0] * len(patch_size), "normalization_schemes": ["ZScore"],
        "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                         "arch_kwargs": {"n_stages": 4, "features_per_stage": [32, 64, 128, 256]},
                         "_kw_requires_import": []}}
    return {"dataset_name": DATASET, "plans_name": plans_name or name,
            "original_median_spacing_after_transp": [spacing_note, 1.0, 1.0],
            "configurations": {"2d": config(f"{name}_2d", patch, 12),
                               "3d_fullres": config(f"{name}_3d_fullres", (32, 32, 32), 2)}}


@pytest.fixture
def preprocessed(tmp_path, monkeypatch):
    """nnUNet_preprocessed with nnU-Net's plans and MyPlans (a copy of them that kept plans_name nnUNetPlans, as a
    hand-made plans file may), different data and patch size."""
    base = tmp_path / "pre" / DATASET
    base.mkdir(parents=True)
    (base / "nnUNetPlans.json").write_text(json.dumps(_source_plans()))
    (base / "MyPlans.json").write_text(json.dumps(_source_plans("MyPlans", plans_name="nnUNetPlans", patch=(96, 96))))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "pre"))
    return base


def _small_plans(capsys, *args):
    """``nnunet-losses small-plans -d DATASET *args``: (exit status, stdout, stderr)."""
    from nnunet_losses.cli import main

    status = main(["small-plans", "-d", DATASET, *args])
    out, err = capsys.readouterr()
    return status, out, err


def _refused(capsys, path, *args):
    before = path.read_bytes() if path.exists() else None
    status, out, err = _small_plans(capsys, *args)
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert (path.read_bytes() if path.exists() else None) == before
    return err


def test_a_second_configuration_is_added_to_the_file(preprocessed, capsys):
    source = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    path = preprocessed / "nnUNetPlans_small_f8_b2.json"
    assert _small_plans(capsys, "-c", "3d_fullres")[0] == 0
    status, out, _ = _small_plans(capsys, "-c", "2d", "--batch-size", "2")
    assert status == 0 and "added 2d" in out and "-p nnUNetPlans_small_f8_b2" in out
    small = json.loads(path.read_text())
    assert list(small["configurations"]) == ["3d_fullres", "2d"]
    for configuration in ("3d_fullres", "2d"):
        expected = make_small_plans(source, configuration, 8, 2)["configurations"][configuration]
        assert small["configurations"][configuration] == expected
    assert small["plans_name"] == "nnUNetPlans_small_f8_b2"
    assert sorted(small["nnunet_losses_small_plans"]["configurations"]) == ["2d", "3d_fullres"]
    assert sorted(os.listdir(preprocessed)) == ["MyPlans.json", "nnUNetPlans.json", "nnUNetPlans_small_f8_b2.json"]


def test_the_same_configuration_again_is_a_no_op(preprocessed, capsys):
    path = preprocessed / "nnUNetPlans_small_f8_b8.json"
    assert _small_plans(capsys, "-c", "2d")[0] == 0
    before = os.stat(path)
    status, out, _ = _small_plans(capsys, "-c", "2d", "--features", "8", "--batch-size", "8")
    after = os.stat(path)
    assert status == 0 and "unchanged" in out and "-p nnUNetPlans_small_f8_b8" in out
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_the_message_names_the_source_plans_file_and_the_data_identifier(preprocessed, capsys):
    status, out, _ = _small_plans(capsys, "-c", "2d")
    assert status == 0 and len(out.strip().splitlines()) == 1
    assert "nnUNetPlans.json" in out and "nnUNetPlans_2d" in out and "-p nnUNetPlans_small_f8_b8" in out


def test_other_source_plans_get_a_file_named_after_them(preprocessed, capsys):
    """MyPlans.json says plans_name nnUNetPlans: its small plans must not replace nnU-Net's plans' small plans."""
    assert _small_plans(capsys, "-c", "2d")[0] == 0
    default = (preprocessed / "nnUNetPlans_small_f8_b8.json").read_bytes()
    status, out, _ = _small_plans(capsys, "-c", "2d", "-p", "MyPlans")
    assert status == 0 and "MyPlans.json" in out and "MyPlans_2d" in out and "-p MyPlans_small_f8_b8" in out
    assert (preprocessed / "nnUNetPlans_small_f8_b8.json").read_bytes() == default
    mine = json.loads((preprocessed / "MyPlans_small_f8_b8.json").read_text())
    assert mine["plans_name"] == "MyPlans_small_f8_b8"
    assert mine["configurations"]["2d"]["data_identifier"] == "MyPlans_2d"
    assert mine["configurations"]["2d"]["patch_size"] == [96, 96]
    assert mine["nnunet_losses_small_plans"]["source"] == "MyPlans"


def test_experiment_specs_name_the_small_plans_of_other_plans_the_same_way():
    from nnunet_losses.nnunet.small_plans import small_plans_name

    assert parse_small_plans_name("MyPlans_small_f8_b8") == ("MyPlans", 8, 8)
    assert small_plans_name(*parse_small_plans_name("MyPlans_small_f8_b8")) == "MyPlans_small_f8_b8"


def test_a_plans_file_not_written_by_small_plans_is_not_overwritten(preprocessed, capsys):
    path = preprocessed / "nnUNetPlans_small_f8_b8.json"
    path.write_text(json.dumps(_source_plans("nnUNetPlans_small_f8_b8")))
    err = _refused(capsys, path, "-c", "2d")
    assert str(path) in err and "small-plans" in err


def test_a_file_that_is_not_json_is_not_overwritten(preprocessed, capsys):
    path = preprocessed / "nnUNetPlans_small_f8_b8.json"
    path.write_text("{ not json")
    assert str(path) in _refused(capsys, path, "-c", "2d")


@pytest.mark.parametrize("field,value", [("source", "MyPlans"), ("features", 16), ("batch_size", 4)])
def test_a_file_of_that_name_from_other_plans_or_settings_is_refused(preprocessed, capsys, field, value):
    path = preprocessed / "nnUNetPlans_small_f8_b8.json"
    assert _small_plans(capsys, "-c", "2d")[0] == 0
    small = json.loads(path.read_text())
    small["nnunet_losses_small_plans"][field] = value
    path.write_text(json.dumps(small))
    err = _refused(capsys, path, "-c", "3d_fullres", "--batch-size", "8")
    assert str(path) in err and str(value) in err


def test_a_configuration_written_from_other_plans_is_refused(preprocessed, capsys):
    """What MyPlans' small plans were named before (after MyPlans.json's plans_name, nnUNetPlans): the same name
    holds another 2d configuration, which is not replaced."""
    from nnunet_losses._files import atomic_write_text

    mine = make_small_plans(json.loads((preprocessed / "MyPlans.json").read_text()), "2d", 8, 8)
    path = preprocessed / "nnUNetPlans_small_f8_b8.json"
    atomic_write_text(str(path), json.dumps(mine))
    err = _refused(capsys, path, "-c", "2d")
    assert str(path) in err and "2d" in err and "nnUNetPlans.json" in err


def test_small_plans_of_replanned_source_plans_are_not_mixed(preprocessed, capsys):
    """nnU-Net's plans were made again (another spacing) after the small plans: a configuration from the new plans
    is not added beside one from the old plans."""
    path = preprocessed / "nnUNetPlans_small_f8_b2.json"
    assert _small_plans(capsys, "-c", "3d_fullres")[0] == 0
    (preprocessed / "nnUNetPlans.json").write_text(json.dumps(_source_plans(spacing_note=2.0)))
    err = _refused(capsys, path, "-c", "2d", "--batch-size", "2")
    assert "original_median_spacing_after_transp" in err and str(path) in err


def test_small_plans_of_small_plans_are_refused(preprocessed, capsys):
    assert _small_plans(capsys, "-c", "2d")[0] == 0
    err = _refused(capsys, preprocessed / "nnUNetPlans_small_f8_b8_small_f8_b8.json", "-c", "2d", "-p",
                   "nnUNetPlans_small_f8_b8")
    assert "-p nnUNetPlans" in err


def test_a_missing_configuration_or_plans_file_is_one_line(preprocessed, capsys):
    err = _refused(capsys, preprocessed / "nnUNetPlans_small_f8_b2.json", "-c", "3d_lowres")
    assert "nnUNetPlans.json" in err and "3d_lowres" in err and "2d, 3d_fullres" in err
    err = _refused(capsys, preprocessed / "OtherPlans_small_f8_b8.json", "-c", "2d", "-p", "OtherPlans")
    assert "OtherPlans.json" in err


def test_concurrent_runs_keep_both_configurations(preprocessed, monkeypatch):
    """Two runs adding different configurations at once: the second reads the file after the first wrote it."""
    import threading

    from nnunet_losses.nnunet import small_plans

    barrier, real = threading.Barrier(2), small_plans.make_small_plans

    def meet(*args, **kwargs):
        try:
            barrier.wait(timeout=2)  # both runs here at once unless one waits for the other
        except threading.BrokenBarrierError:
            pass
        return real(*args, **kwargs)

    monkeypatch.setattr(small_plans, "make_small_plans", meet)
    runs = [threading.Thread(target=small_plans.write_small_plans, args=(DATASET, c), kwargs={"batch_size": 2})
            for c in ("2d", "3d_fullres")]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    small = json.loads((preprocessed / "nnUNetPlans_small_f8_b2.json").read_text())
    assert sorted(small["configurations"]) == ["2d", "3d_fullres"]
