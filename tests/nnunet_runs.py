"""nnU-Net's own commands on CPU on synthetic datasets, for the tests that run nnU-Net (conftest.py hands them out as
the ``nnunet`` and ``prepared_dataset`` fixtures).

A dataset is a dict: ``env`` (nnU-Net's environment variables for its root, our trainers' folder as
``nnUNet_extTrainer``), ``raw`` (its raw folder), ``id`` (as a string), ``name`` (``DatasetXXX_Name``), ``pre`` (its
preprocessed folder) and ``results`` (its results folder).
"""
import fcntl
import json
import os
import shutil
import subprocess
import sys

from nnunet_losses.nnunet.synthetic import nnunet_env, write_synthetic_dataset

BIN = os.path.dirname(sys.executable)


def command(name):
    """The path of a command of this environment (``nnUNetv2_train``, ``nnunet-losses``)."""
    return os.path.join(BIN, name)


def run(cmd, env, check=True):
    """``cmd`` with ``env``, its output captured; with ``check``, an exit status other than 0 fails the test with
    the ends of both outputs."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def dataset_at(root, dataset_id, folder):
    """The dataset dict of the dataset folder ``folder`` (``DatasetXXX_Name``) under the nnU-Net root ``root``."""
    from nnunet_losses import ext_trainers

    env = nnunet_env(root)
    env["nnUNet_extTrainer"] = os.path.dirname(ext_trainers.__file__)
    return {"env": env, "raw": os.path.join(env["nnUNet_raw"], folder), "id": str(dataset_id), "name": folder,
            "pre": os.path.join(env["nnUNet_preprocessed"], folder),
            "results": os.path.join(env["nnUNet_results"], folder)}


def prepare(root, dataset_id, **kwargs):
    """A synthetic dataset (10 training, 2 test cases; ``kwargs`` go to ``write_synthetic_dataset``) written under
    the nnU-Net root ``root`` and planned and preprocessed for 2d by nnU-Net."""
    env = nnunet_env(root)
    raw = write_synthetic_dataset(env["nnUNet_raw"], dataset_id, f"Synth{dataset_id}", num_train=10, num_test=2,
                                  **kwargs)
    ds = dataset_at(root, dataset_id, os.path.basename(raw))
    run([command("nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-c", "2d", "-npfp", "1", "-np", "1"],
        ds["env"])
    return ds


def train(ds, trainer, *extra, check=True):
    """``nnUNetv2_train ID 2d 0 -tr TRAINER -device cpu EXTRA...``."""
    return run([command("nnUNetv2_train"), ds["id"], "2d", "0", "-tr", trainer, "-device", "cpu", *extra], ds["env"],
               check=check)


def fold(ds, trainer):
    """The fold 0 folder of ``trainer``'s training with nnU-Net's plans."""
    return os.path.join(ds["results"], f"{trainer}__nnUNetPlans__2d", "fold_0")


def log(ds, trainer):
    """Every training log of that fold, oldest first, as one text."""
    folder = fold(ds, trainer)
    return "\n".join(open(os.path.join(folder, f)).read() for f in sorted(os.listdir(folder))
                     if f.startswith("training_log"))


def _key(dataset_id, maps, kwargs):
    parts = [f"d{dataset_id}"] + [f"{k}-{kwargs[k]}" for k in sorted(kwargs)]
    if maps:
        parts.append("maps-" + maps.replace(",", "-"))
    return "_".join(parts)


class PreparedDatasets:
    """Datasets planned and preprocessed once in ``shared`` (a folder that every pytest-xdist worker of the run
    sees: the first worker to ask prepares, the others wait for it), copied into a new nnU-Net root for each
    request, with an empty results folder: a test may change its copy."""

    def __init__(self, shared, new_root):
        self.shared = shared
        self.new_root = new_root  # () -> a new empty folder
        os.makedirs(shared, exist_ok=True)

    def _prepared(self, dataset_id, maps, kwargs):
        """The folder of the shared prepared dataset, prepared now if no worker did."""
        key = _key(dataset_id, maps, kwargs)
        folder = os.path.join(self.shared, key)
        with open(folder + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not os.path.isfile(os.path.join(folder, "prepared.json")):
                shutil.rmtree(folder, ignore_errors=True)
                if maps:
                    ds = self._copy(self._prepared(dataset_id, None, kwargs), folder)
                    kinds = [] if maps == "all" else ["--kinds", maps]
                    run([command("nnunet-losses"), "precompute-maps", "-d", ds["id"], "-c", "2d", *kinds,
                         "--no-progress"], ds["env"])
                else:
                    ds = prepare(folder, dataset_id, **kwargs)
                with open(os.path.join(folder, "prepared.json"), "w") as f:
                    json.dump({"id": ds["id"], "name": ds["name"]}, f)
        return folder

    @staticmethod
    def _copy(source, root):
        with open(os.path.join(source, "prepared.json")) as f:
            info = json.load(f)
        ds = dataset_at(root, info["id"], info["name"])
        for part in ("raw", "pre"):
            folder = os.path.relpath(ds[part], root)
            shutil.rmtree(ds[part], ignore_errors=True)
            shutil.copytree(os.path.join(source, folder), ds[part], symlinks=True)
        return ds

    def __call__(self, dataset_id=901, maps=None, **kwargs):
        """A copy of synthetic dataset ``dataset_id`` (see :func:`prepare` for ``kwargs``), planned and preprocessed
        for 2d; with ``maps`` (comma-separated kinds, or "all"), those maps precomputed."""
        return self._copy(self._prepared(dataset_id, maps, kwargs), self.new_root())
