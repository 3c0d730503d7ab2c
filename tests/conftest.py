"""Fixtures shared by the test modules.

Commands in new processes, fast (tests/preloaded_python.py): ``run_cli``, ``run_python``, ``run_bare_python``.
nnU-Net's own commands (tests/nnunet_runs.py): ``nnunet``, ``prepared_dataset``.
Trainers built outside nnUNetv2_train: ``make_trainer``.
"""
import os
import sys

# OpenMP threads that wait sleep instead of spinning: two pytest-xdist workers (and the trainings they start) each
# run torch's threads on the same cores, and a spinning waiter burns the time the other one needs (a CPU-bound test
# took 4 times the CPU). Read when torch loads OpenMP, so before any import of torch; the workers inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))  # the helper modules beside this file: reference.py, nnunet_runs.py

import nnunet_runs  # noqa: E402
from preloaded_python import BIN, PreloadedPython  # noqa: E402

# third-party modules only: the package and nnU-Net are imported by the code run, as in a new interpreter
BARE_PRELOAD = ("torch", "numpy", "scipy.ndimage", "scipy.stats", "scipy.spatial")
# and what the command line imports anyway, none of it nnunetv2 (it reads nnU-Net's environment variables on import)
CLI_PRELOAD = ("SimpleITK", "nibabel", "matplotlib.figure", "matplotlib.backends.backend_agg", "nnunet_losses.cli",
               "nnunet_losses.registry", "nnunet_losses.report", "nnunet_losses.evaluation",
               "nnunet_losses.nnunet.evaluation", "nnunet_losses.experiment.runner", "nnunet_losses.experiment.slurm",
               "nnunet_losses.convert")
NOT_PRELOADED = ("nnunetv2", "batchgenerators", "batchgeneratorsv2", "dynamic_network_architectures", "acvl_utils")


@pytest.fixture(scope="session")
def _bare_server():
    server = PreloadedPython(BARE_PRELOAD, absent=NOT_PRELOADED + ("nnunet_losses",))
    yield server
    server.close()


@pytest.fixture(scope="session")
def _cli_server(_bare_server):
    return _bare_server.derived(CLI_PRELOAD, absent=NOT_PRELOADED)


@pytest.fixture(scope="session")
def run_cli(_cli_server):
    """``run_cli(*args, env=None, cwd=None, check=False) -> subprocess.CompletedProcess``: ``nnunet-losses ARGS`` in
    a process of its own (output captured as text), forked from an interpreter that has imported the command line;
    with ``check``, an exit status other than 0 fails the test with the ends of both outputs."""
    def run(*args, env=None, cwd=None, check=False):
        proc = _cli_server.run([os.path.join(BIN, "nnunet-losses"), *map(str, args)], env=env, cwd=cwd)
        if check:
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc
    return run


@pytest.fixture(scope="session")
def run_python(_cli_server):
    """``run_python(argv, env=None, cwd=None, timeout=None, check=False) -> subprocess.CompletedProcess``: what
    ``subprocess.run(argv, capture_output=True, text=True, ...)`` gives for ``[sys.executable, "-c", CODE, ...]``
    (``-W`` options before ``-c`` too), ``[sys.executable, "SCRIPT.py", ...]`` or ``[BIN/nnunet-losses, ...]``, run
    in a fork of an interpreter that has imported torch, scipy and the command line (not nnunetv2)."""
    return _cli_server.run


@pytest.fixture(scope="session")
def run_bare_python(_bare_server):
    """As ``run_python``, forked from an interpreter that has imported only torch, numpy and scipy: no module of
    nnunet_losses, nnunetv2 or nnU-Net's other packages is loaded before the command runs."""
    return _bare_server.run


@pytest.fixture(scope="session")
def nnunet():
    """nnU-Net's commands on synthetic datasets (tests/nnunet_runs.py): ``nnunet.command(name)``,
    ``nnunet.run(cmd, env, check=True)``, ``nnunet.prepare(root, dataset_id, **kwargs)``,
    ``nnunet.train(ds, trainer, *extra, check=True)``, ``nnunet.fold(ds, trainer)``, ``nnunet.log(ds, trainer)``."""
    return nnunet_runs


@pytest.fixture(scope="session")
def prepared_dataset(tmp_path_factory):
    """``prepared_dataset(dataset_id=901, maps=None, **kwargs) -> dataset dict``: a synthetic dataset of 10 training
    and 2 test cases planned and preprocessed for 2d (``maps``: the kinds precomputed, comma-separated, or "all"),
    prepared once for the whole run (the pytest-xdist workers share it) and copied into a new nnU-Net root with an
    empty results folder for each call. See tests/nnunet_runs.py for the dict."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # one run's workers share the parent
    return nnunet_runs.PreparedDatasets(str(shared / "prepared_datasets"),
                                        lambda: str(tmp_path_factory.mktemp("nnunet")))


@pytest.fixture
def make_trainer(tmp_path, monkeypatch):
    """``make_trainer(name) -> trainer``: our trainer ``name`` built as nnUNetv2_train builds it, outside
    nnUNetv2_train: minimal 2d plans of Dataset999_X (one foreground label, "a"), fold 0, on the CPU, with
    ``nnUNet_results`` set to ``tmp_path``."""
    def make(name):
        import torch

        from nnunet_losses.nnunet.trainers import trainer_class

        plans = {"dataset_name": "Dataset999_X", "plans_name": "nnUNetPlans",
                 "configurations": {"2d": {"data_identifier": "nnUNetPlans_2d", "architecture": {}}}}
        dataset_json = {"labels": {"background": 0, "a": 1}, "channel_names": {"0": "x"}, "file_ending": ".nii.gz"}
        return trainer_class(name)(plans, "2d", 0, dataset_json, device=torch.device("cpu"))

    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    return make
