"""nnU-Net's preprocessed data written without running nnU-Net: a dataset as the experiment's prepare stage sees it
(its references, dataset.json and, optionally, its plans with one data file and a splits_final.json), and
preprocessed cases of smooth random label maps as the map precomputation reads them."""
import json
import os
import pickle

import numpy as np


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


def blobs(shape, num_classes, seed):
    """A label map of ``shape`` (int16) with smooth blobs of ``num_classes`` classes."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=(num_classes,) + shape), 2.0, axes=range(1, len(shape) + 1))
    return np.argmax(field, 0).astype(np.int16)


def write_preprocessed_case(folder, case, seg):
    """A preprocessed case as nnU-Net writes it: ``case.b2nd`` (random data of ``seg``'s shape), ``case_seg.b2nd``
    (written whole, then renamed into place) and ``case.pkl``."""
    import blosc2

    os.makedirs(folder, exist_ok=True)
    data = np.random.default_rng(0).normal(size=seg.shape).astype(np.float32)
    blosc2.asarray(data, urlpath=os.path.join(folder, case + ".b2nd"), mode="w")
    path = os.path.join(folder, case + "_seg.b2nd")
    tmp = path + ".x"
    blosc2.asarray(seg, urlpath=tmp, mode="w")
    os.replace(tmp, path)
    with open(os.path.join(folder, case + ".pkl"), "wb") as f:  # nnU-Net's properties file
        pickle.dump({}, f)
