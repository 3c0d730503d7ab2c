"""End to end with nnU-Net's own commands on CPU, on datasets of their own (regions, an ignore label, the demo's):
apart from tests/test_nnunet_e2e.py so that `pytest -n 2 --dist loadfile` runs the two files side by side."""
import json
import os

import pytest


pytestmark = pytest.mark.nnunet  # every test here runs nnU-Net


def test_region_dataset(prepared_dataset, nnunet):
    ds = prepared_dataset(902, regions=True)
    nnunet.train(ds, "ComboTrainer_ep1_it3")
    assert "'regions': True" in nnunet.log(ds, "ComboTrainer_ep1_it3")
    proc = nnunet.train(ds, "RRWTrainer_online_ep1_it3", check=False)
    assert proc.returncode != 0 and "does not support region-based" in proc.stdout + proc.stderr


def test_ignore_label_dataset(prepared_dataset, nnunet):
    ds = prepared_dataset(903, maps="rrw", ignore_label=True)
    for trainer in ("RRWTrainer_ep1_it3", "TopKDiceTrainer_ep1_it3"):
        nnunet.train(ds, trainer)
        assert "'ignore_label': 4" in nnunet.log(ds, trainer)



def test_demo_command_runs_and_resumes(tmp_path, nnunet):
    root = tmp_path / "demo"
    cmd = [nnunet.command("nnunet-losses"), "demo", "--root", str(root), "--trainers", "RRWTrainer,TopKDiceTrainer_k30",
           "--epochs", "1", "--iterations", "2"]
    proc = nnunet.run(cmd, dict(os.environ))
    assert "| RRWTrainer_ep1_it2_s1 |" in proc.stdout and "| TopKDiceTrainer_k30_ep1_it2_s1 |" in proc.stdout
    results = json.load(open(root / "demo_results.json"))
    assert [r["trainer"] for r in results] == ["RRWTrainer_ep1_it2_s1", "TopKDiceTrainer_k30_ep1_it2_s1"]
    assert all(set(r["dice"]) == {"organ", "kidney", "lesion"} and r["cases"] == 8 for r in results)  # fold 0 held out
    again = nnunet.run(cmd, dict(os.environ))  # everything is there: no step runs again
    assert "[run ] plan and preprocess" not in again.stdout and "[skip] plan and preprocess: done" in again.stdout
    assert "train " not in again.stdout.replace("trainings", "") and "done before" in again.stdout
    assert "| RRWTrainer_ep1_it2_s1 |" in again.stdout
    report = (root / "report" / "report.md").read_text()
    assert "| RRWTrainer (ref.) |" in report and "| TopKDiceTrainer_k30 |" in report and "HD95" in report
    assert (root / "report" / "box_dice.png").stat().st_size > 5000
    assert (root / "evaluation" / "RRWTrainer" / "RRWTrainer_ep1_it2_s1" / "fold_0.csv").is_file()
    # two trainings side by side, each told by OMP_NUM_THREADS to use its share of the cores (nnU-Net takes them all)
    settings = next(root.glob("nnUNet_results/*/RRWTrainer_ep1_it2_s1__*/fold_0/nnunet_losses.json"))
    assert json.load(open(settings))["training"]["cpu_threads"] == max(1, (os.cpu_count() or 1) // 2)
    assert "2 at a time" in proc.stdout
