"""The evaluation step of ``reproduce``: strict, only the fold's validation cases, and an evaluation written under
another convention, of other inputs (or truncated) is not "done"."""
import json
import os

from nnunet_losses.experiment import load_experiment
from nnunet_losses.experiment.plan import Paths, evaluation_file, run_steps
from nnunet_losses.metrics.case import DEFAULT_NSD_TOLERANCE, METRICS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_evaluation_step_is_strict_and_redone_for_another_convention(tmp_path):
    exp = load_experiment(os.path.join(REPO, "configs", "tiny_synthetic.toml"))
    paths = Paths(str(tmp_path / "raw"), str(tmp_path / "pre"), str(tmp_path / "results"), str(tmp_path / "work"))
    run = exp.matrix[0]
    evaluate = run_steps(exp, paths, run, "cpu")[1]
    command = evaluate.command
    assert "--strict" in command and command[command.index("--fold") + 1] == str(run.fold)
    assert command[command.index("--split") + 1].endswith("splits_final.json")
    summary = os.path.join(os.path.dirname(command[2]), "validation", "summary.json")
    os.makedirs(os.path.dirname(summary))
    open(summary, "w").close()
    out = evaluation_file(exp, paths, run)
    os.makedirs(os.path.dirname(out))
    written = {"aggregation": {"both_empty": "exclude"}, "pred_dir": command[2], "ref_dir": command[3],
               "dataset_json": command[command.index("--dataset-json") + 1], "metrics": list(METRICS),
               "nsd_tolerance_mm": {"RV": DEFAULT_NSD_TOLERANCE}}  # what the evaluate step writes
    for content, done in ((json.dumps({"cases": [], "summary": {}}), False),  # before conventions were recorded
                          ('{"aggregation": {"both_empty": "exclude"', False),  # truncated
                          (json.dumps({**written, "aggregation": {"both_empty": "one"}}), False),
                          (json.dumps({**written, "pred_dir": command[2] + "_other"}), False),
                          (json.dumps(written), True)):
        with open(out, "w") as f:
            f.write(content)
        assert evaluate.done() is done
