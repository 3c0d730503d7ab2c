"""The command line's errors: a UserError (or an OSError naming a file) is one line with exit status 2, anything else
keeps its traceback; each UserError is also the builtin it stands for."""
import errno
import json

import pytest

from nnunet_losses import cli, registry
from nnunet_losses.errors import ExistingOutput, InvalidInput, MissingInput, StepFailed, UnknownName, UserError


def _one_line(capsys, command):
    err = capsys.readouterr().err
    assert err.startswith(f"nnunet-losses {command}: error: ") and err.count("\n") == 1, err
    return err[len(f"nnunet-losses {command}: error: "):].rstrip("\n")


def test_user_errors_are_their_builtins():
    for error, builtin in ((InvalidInput("x"), ValueError), (MissingInput("x"), FileNotFoundError),
                           (ExistingOutput("x"), FileExistsError), (StepFailed("x"), RuntimeError),
                           (UnknownName("x"), KeyError)):
        assert isinstance(error, UserError) and isinstance(error, builtin)
    assert str(UnknownName("unknown loss 'x'")) == "unknown loss 'x'"  # KeyError would quote it
    assert MissingInput("no such spec").filename is None and str(MissingInput("no such spec")) == "no such spec"


def test_project_errors_are_user_errors():
    from nnunet_losses.convert._common import ConversionError
    from nnunet_losses.experiment.runner import FolderNotWritable
    from nnunet_losses.naming import TrainerNameError
    from nnunet_losses.nnunet.map_pipeline import MapReadError
    from nnunet_losses.nnunet.precompute import MapsNotReady

    for cls, builtin in ((TrainerNameError, ValueError), (ConversionError, ValueError),
                         (registry.LossParameterError, TypeError), (FolderNotWritable, RuntimeError),
                         (MapReadError, RuntimeError), (MapsNotReady, RuntimeError)):
        assert issubclass(cls, UserError) and issubclass(cls, builtin), cls


@pytest.mark.parametrize("error", [KeyError("combo"), KeyError("a sentence that names no key"),
                                   ValueError("operands could not be broadcast together"),
                                   RuntimeError("CUDA error: device-side assert triggered"),
                                   FileNotFoundError("no filename"), TypeError("unsupported operand")])
def test_bugs_keep_their_traceback(monkeypatch, error):
    def describe():
        raise error

    monkeypatch.setattr(registry, "describe", describe)  # what `nnunet-losses losses` calls
    with pytest.raises(type(error)):
        cli.main(["losses"])


@pytest.mark.parametrize("error, shown", [
    (InvalidInput("spec.toml: runs = 0"), "spec.toml: runs = 0"),
    (UnknownName("unknown loss 'x'"), "unknown loss 'x'"),
    (ExistingOutput("Dataset005_X exists"), "Dataset005_X exists"),
    (PermissionError(errno.EACCES, "Permission denied", "/data/out.json"),
     "[Errno 13] Permission denied: '/data/out.json'"),
])
def test_user_errors_and_named_files_are_one_line(monkeypatch, capsys, error, shown):
    def describe():
        raise error

    monkeypatch.setattr(registry, "describe", describe)
    assert cli.main(["losses"]) == 2
    assert _one_line(capsys, "losses") == shown


def test_bad_input_on_the_command_line_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("nnUNet_raw", raising=False)
    assert cli.main(["evaluate", str(tmp_path / "nowhere"), str(tmp_path), "--no-progress"]) == 2
    assert _one_line(capsys, "evaluate") == f"no such folder: {tmp_path / 'nowhere'}"
    splits = tmp_path / "splits_final.json"
    splits.write_text("[{\"train\": [], ")
    assert cli.main(["evaluate", str(tmp_path), str(tmp_path), "--split", str(splits), "--fold", "0"]) == 2
    assert _one_line(capsys, "evaluate").startswith(f"{splits}: not valid JSON")
    splits.write_text(json.dumps([{"train": ["a"], "val": ["b"]}]))
    assert cli.main(["evaluate", str(tmp_path), str(tmp_path), "--split", str(splits), "--fold", "3"]) == 2
    assert "no validation cases for fold '3'" in _one_line(capsys, "evaluate")
    assert cli.main(["evaluate", str(tmp_path), str(tmp_path), "--split", str(tmp_path / "none.json"),
                     "--fold", "0"]) == 2  # an OSError naming the file
    assert "No such file or directory" in _one_line(capsys, "evaluate")
    assert cli.main(["report", str(tmp_path / "nowhere")]) == 2
    assert "no evaluation folder" in _one_line(capsys, "report")
    assert cli.main(["reproduce", str(tmp_path / "none.toml"), "--dry-run"]) == 2
    assert _one_line(capsys, "reproduce") == f"no such experiment spec: {tmp_path / 'none.toml'}"
    assert cli.main(["synthetic-dataset", "-d", "7"]) == 2
    assert _one_line(capsys, "synthetic-dataset") == "give -o or set nnUNet_raw"
