"""The command line: --help, losses listing, and a short real demo run."""
import json
import subprocess
import sys

from nnunet_losses.cli import main
from nnunet_losses.loss_demo import make_dataset


def test_help_and_losses(capsys):
    assert main(["losses"]) == 0
    out = capsys.readouterr().out
    assert "combo" in out and "topk_dice" in out and "alpha = 0.5" in out
    proc = subprocess.run([sys.executable, "-m", "nnunet_losses.cli", "loss-demo", "--help"], capture_output=True,
                          text=True, check=True)
    assert "--steps" in proc.stdout


def test_unknown_loss_is_a_clear_error(capsys):
    assert main(["loss-demo", "--losses", "nope", "--steps", "1"]) == 2
    assert "unknown loss 'nope'" in capsys.readouterr().err


def test_dataset_is_imbalanced():
    _, labels = make_dataset(16, seed=3)
    share = [float((labels == c).mean()) for c in range(4)]
    assert share[1] > 5 * share[2] > 0 and share[2] > share[3] > 0


def test_demo_trains_and_reports(tmp_path, capsys):
    out = tmp_path / "demo.json"
    assert main(["loss-demo", "--losses", "combo,rrw,topk_dice", "--steps", "6", "--log-every", "3",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| combo |" in text and "| rrw |" in text and "step    6/6" in text
    results = json.loads(out.read_text())
    assert [r["loss"] for r in results] == ["combo", "rrw", "topk_dice"]
    assert all(len(r["dice"]) == 3 for r in results)
