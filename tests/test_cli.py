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


def test_synthetic_dataset_refuses_a_taken_id_and_bad_counts(tmp_path, capsys, monkeypatch):
    raw, pre = tmp_path / "raw", tmp_path / "pre"
    (raw / "Dataset005_Mine").mkdir(parents=True)
    (pre / "Dataset006_Other").mkdir(parents=True)
    monkeypatch.setenv("nnUNet_preprocessed", str(pre))
    for args, message in ((["-d", "5"], "Dataset005_Mine"), (["-d", "6"], "Dataset006_Other"),
                          (["-d", "-5"], "1..999"), (["-d", "7", "--num-train", "0"], "--num-train"),
                          (["-d", "7", "--size", "4"], "--size")):
        assert main(["synthetic-dataset", "-o", str(raw), *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (args, err)
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset005_Mine"]
    assert main(["synthetic-dataset", "-o", str(raw), "-d", "7", "--num-train", "2", "--num-test", "0",
                 "--size", "16"]) == 0
    assert main(["synthetic-dataset", "-o", str(raw), "-d", "7", "--num-train", "2", "--num-test", "0",
                 "--size", "16"]) == 0  # the same settings again: nothing to do
    capsys.readouterr()
    assert main(["synthetic-dataset", "-o", str(raw), "-d", "7", "--num-train", "3", "--num-test", "0",
                 "--size", "16"]) == 2  # other settings
    assert "num_train 2" in capsys.readouterr().err


def test_split_group_pattern_errors_are_messages():
    import pytest

    from nnunet_losses.experiment.split import half_split

    cases = ["Synthetic_000", "Synthetic_001", "Synthetic_002"]
    with pytest.raises(ValueError, match="not a regular expression"):
        half_split(cases, group="(")
    with pytest.raises(ValueError, match="capture group"):
        half_split(cases, group="Synthetic")
    with pytest.raises(ValueError, match="Synthetic_002"):  # its first group captures nothing
        half_split(cases, group=r"(Synthetic_00[01])|(\d+)")


def test_process_counts_below_one_are_refused(capsys):
    import pytest

    for command in (["precompute-maps", "-d", "1", "-c", "2d"], ["evaluate", "pred", "gt"]):
        for value in ("0", "-1"):
            with pytest.raises(SystemExit):
                main([*command, "-np", value])
            assert f"-np: must be at least 1, got {value}" in capsys.readouterr().err


def test_bugs_keep_their_traceback_and_messages_are_one_line(monkeypatch, capsys):
    """main turns the errors a user can fix (nnunet_losses.errors.UserError, a message) into one line, exit status 2;
    a dict lookup's KeyError (it names the missing key), NotImplementedError, RecursionError are bugs: they keep their
    traceback (tests/test_errors.py: plain builtins too)."""
    import pytest

    from nnunet_losses import cli
    from nnunet_losses.errors import InvalidInput, MissingInput, StepFailed, UnknownName
    from nnunet_losses.experiment.runner import FolderNotWritable

    def raising(error):
        def command(args):
            raise error
        return command

    for error in (KeyError("cases"), KeyError(3), NotImplementedError("no"), RecursionError("maximum recursion")):
        monkeypatch.setattr(cli, "run_losses", raising(error))
        with pytest.raises(type(error)):
            cli.main(["losses"])
    for error, shown in ((StepFailed("training failed (exit 1); see LOG"), "training failed (exit 1); see LOG"),
                         (UnknownName("unknown loss 'x'. Known losses: a, b"), "unknown loss 'x'. Known losses: a, b"),
                         (FolderNotWritable("the work folder W is not writable"), "the work folder W is not writable"),
                         (InvalidInput("spec.toml: runs = 0"), "spec.toml: runs = 0"),
                         (MissingInput("no such experiment spec: x.toml"), "no such experiment spec: x.toml")):
        monkeypatch.setattr(cli, "run_losses", raising(error))
        assert cli.main(["losses"]) == 2
        assert capsys.readouterr().err == f"nnunet-losses losses: error: {shown}\n"
