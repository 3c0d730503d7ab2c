"""A preprocessed nnU-Net dataset as the experiment's prepare stage sees it, written without running nnU-Net: its
references, dataset.json and, optionally, its plans with one data file and a splits_final.json."""
import json
import os


def fake_preprocessed(preprocessed_root, cases, splits=None, with_data=True):
    """``<preprocessed_root>/Dataset901_Fake`` with an empty reference per case; with ``with_data``, nnU-Net's plans
    for 2d and the first case's data file; ``splits`` written as splits_final.json. Returns the folder."""
    pre = os.path.join(preprocessed_root, "Dataset901_Fake")
    os.makedirs(os.path.join(pre, "gt_segmentations"))
    for case in cases:
        open(os.path.join(pre, "gt_segmentations", f"{case}.nii.gz"), "w").close()
    with open(os.path.join(pre, "dataset.json"), "w") as f:
        json.dump({"file_ending": ".nii.gz"}, f)
    if with_data:
        os.makedirs(os.path.join(pre, "nnUNetPlans_2d"))
        open(os.path.join(pre, "nnUNetPlans_2d", f"{cases[0]}.b2nd"), "w").close()
        with open(os.path.join(pre, "nnUNetPlans.json"), "w") as f:
            json.dump({"configurations": {"2d": {"data_identifier": "nnUNetPlans_2d"}}}, f)
    if splits is not None:
        with open(os.path.join(pre, "splits_final.json"), "w") as f:
            json.dump(splits, f)
    return pre
