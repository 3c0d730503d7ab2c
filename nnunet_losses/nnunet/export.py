"""``nnunet-losses export-model``: a model trained with one of our trainers as nnU-Net's model zip that a stock
nnU-Net, without this plugin, installs (``nnUNetv2_install_pretrained_model_from_zip``) and predicts with
(``nnUNetv2_predict -tr nnUNetTrainer``), giving the predictions of the original model.

Prediction (``nnUNetPredictor.initialize_from_trained_model_folder``) reads the model folder's ``plans.json`` and
``dataset.json``, and from each fold's checkpoint the network weights, ``init_args['configuration']``,
``inference_allowed_mirroring_axes`` and ``trainer_name``; of the trainer class it only calls
``build_network_architecture``. Our trainers change the loss, the optimiser and the data loading, never the
network: their ``build_network_architecture`` is nnUNetTrainer's (the export refuses a trainer whose method is
another, and a checkpoint whose weights do not load strictly into nnUNetTrainer's network). So the copy differs from
the original in:

* the folder name, ``nnUNetTrainer__<plans>__<configuration>``, and each checkpoint's ``trainer_name``,
  ``nnUNetTrainer``;
* the checkpoints hold plain data only (Python, ``collections``, torch and numpy types): a value holding an object of
  another module (which ``torch.load`` could not unpickle without it) is refused in nnU-Net's own keys and dropped
  in any other; keys named ``nnunet_losses*`` are dropped (their values, as JSON, go to the record below); a key
  ``nnunet_losses_export`` names the original trainer;
* ``nnunet_losses_export.json`` in the model folder records the original trainer, what each fold was trained with
  (family, loss, parameters, from the ``nnunet_losses.json`` each training writes, which is kept in its fold folder)
  and the versions of the exporting software.

Copied as they are, as ``nnUNetv2_export_model_to_zip`` does: ``plans.json``, ``dataset.json``,
``dataset_fingerprint.json``, and per fold ``debug.json``, ``progress.png``, ``validation/summary.json`` (each when
present) and the ``crossval_results_folds_*`` summaries of the exported folds. Not copied: ensembles and
``inference_information.*``, which name the original trainer's folder.
"""
from __future__ import annotations

import glob
import json
import os
import zipfile
from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import ExistingOutput, InvalidInput, MissingInput, StepFailed

STOCK_TRAINER = "nnUNetTrainer"
RECORD = "nnunet_losses_export.json"
SETTINGS = "nnunet_losses.json"  # what LossTrainer.write_settings writes into each fold folder
CHECKPOINT_KEY = "nnunet_losses_export"  # added to each exported checkpoint
# what nnUNetTrainer.save_checkpoint writes (nnunetv2 2.8): refused, not dropped, when not plain data
NNUNET_KEYS = ("network_weights", "optimizer_state", "grad_scaler_state", "logging", "_best_ema", "current_epoch",
               "init_args", "trainer_name", "inference_allowed_mirroring_axes")
PLAIN_MODULES = ("builtins", "collections", "torch", "numpy")  # what a stock nnU-Net unpickles
MODEL_FILES = ("plans.json", "dataset.json", "dataset_fingerprint.json")
FOLD_FILES = ("debug.json", "progress.png", os.path.join("validation", "summary.json"), SETTINGS)


def _fold_folder(fold) -> str:
    return "fold_all" if str(fold) == "all" else f"fold_{int(fold)}"


def _parse_fold(fold) -> str:
    text = str(fold)
    if text != "all" and not text.isdigit():
        raise InvalidInput(f"fold {fold!r}: a fold is a number or 'all'")
    return text


def _not_plain(value: Any, where: str) -> Optional[str]:
    """Where in ``value`` an object of a module other than :data:`PLAIN_MODULES` sits (``where[key]...: type``);
    None when everything is plain data."""
    import numpy as np

    kind = type(value)
    root = (kind.__module__ or "").split(".")[0]
    if root not in PLAIN_MODULES:
        return f"{where}: {kind.__module__}.{kind.__qualname__}"
    if isinstance(value, Mapping):
        if type(value).__name__ == "defaultdict" and value.default_factory is not None:
            found = _not_plain(value.default_factory, f"{where}.default_factory")
            if found:
                return found
        for key, item in value.items():
            found = _not_plain(key, f"{where} key {key!r}") or _not_plain(item, f"{where}[{key!r}]")
            if found:
                return found
    elif isinstance(value, (list, tuple, set, frozenset)):
        for i, item in enumerate(value):
            found = _not_plain(item, f"{where}[{i}]")
            if found:
                return found
    elif isinstance(value, np.ndarray) and value.dtype == object:
        for i, item in enumerate(value.ravel()):
            found = _not_plain(item, f"{where}.flat[{i}]")
            if found:
                return found
    elif isinstance(value, type) or (callable(value) and root == "builtins"):  # pickled by its module and name
        module = getattr(value, "__module__", None) or "?"
        if module.split(".")[0] not in PLAIN_MODULES:
            return f"{where}: {module}.{getattr(value, '__qualname__', value)}"
    return None


def _jsonable(value: Any) -> Any:
    """``value`` as JSON data (what is not, as its text)."""
    return json.loads(json.dumps(value, default=str))


def plain_checkpoint(checkpoint: Dict[str, Any], original: str, where: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The exported checkpoint of ``checkpoint`` (trained by ``original``) and what was dropped from it
    (``{key: JSON value or the reason}``). ``where``: the checkpoint's path, for errors."""
    missing = [k for k in ("network_weights", "init_args", "trainer_name") if k not in checkpoint]
    if missing:
        raise InvalidInput(f"{where} is not an nnU-Net checkpoint: it lacks {', '.join(missing)}")
    exported: Dict[str, Any] = {}
    dropped: Dict[str, Any] = {}
    for key, value in checkpoint.items():
        if key == CHECKPOINT_KEY:
            continue
        found = _not_plain(value, f"checkpoint[{key!r}]")
        if key in NNUNET_KEYS:
            if found:
                raise InvalidInput(f"{where}: {found} cannot be read without the module that defines it; nothing "
                                 f"exported")
            exported[key] = value
        elif str(key).startswith("nnunet_losses"):
            dropped[key] = _jsonable(value) if not found else f"not plain data ({found})"
        elif found:
            dropped[key] = f"not plain data ({found})"
        else:
            exported[key] = value
    exported["trainer_name"] = STOCK_TRAINER
    exported[CHECKPOINT_KEY] = {"trainer_name": original, "exported_as": STOCK_TRAINER}
    return exported, dropped


def original_trainer_class(name: str):
    """The class of trainer ``name``: ours from its name, else nnU-Net's lookup (its folders and
    ``nnUNet_extTrainer``)."""
    from ..naming import TrainerNameError
    from .trainers import _looks_like_ours, trainer_class

    if _looks_like_ours(name):
        try:
            return trainer_class(name)
        except TrainerNameError as err:
            raise InvalidInput(f"trainer {name!r}: {err}") from None
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    try:
        return recursive_find_trainer_class_by_name(name)
    except RuntimeError as err:  # nnU-Net's: no such trainer in its folders or nnUNet_extTrainer
        raise StepFailed(" ".join(str(err).split())) from None


def check_architecture(trainer_cls) -> None:
    """Refuse a trainer whose network is not built by nnUNetTrainer's ``build_network_architecture``."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    if trainer_cls.build_network_architecture is not nnUNetTrainer.build_network_architecture:
        owner = next(c for c in trainer_cls.__mro__ if "build_network_architecture" in vars(c))
        raise InvalidInput(f"{trainer_cls.__name__} builds its network with {owner.__module__}.{owner.__qualname__}"
                         f".build_network_architecture, not nnUNetTrainer's: nnU-Net without that class could not "
                         f"rebuild the network, so the model cannot be exported as {STOCK_TRAINER}")


def _stock_network(model_folder: str, configuration: str):
    """nnUNetTrainer's network for the model's plans, as prediction builds it (no deep supervision)."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dataset_json = load_json(os.path.join(model_folder, "dataset.json"))
    plans_manager = PlansManager(load_json(os.path.join(model_folder, "plans.json")))
    config = plans_manager.get_configuration(configuration)
    return nnUNetTrainer.build_network_architecture(
        plans_manager, config, determine_num_input_channels(plans_manager, config, dataset_json),
        plans_manager.get_label_manager(dataset_json).num_segmentation_heads, enable_deep_supervision=False)


def available_folds(model_folder: str, checkpoint: str) -> List[str]:
    """The folds of ``model_folder`` with ``checkpoint`` (numbers in order, then ``all``)."""
    folds = []
    for path in glob.glob(os.path.join(glob.escape(model_folder), "fold_*", checkpoint)):
        fold = os.path.basename(os.path.dirname(path))[len("fold_"):]
        if fold == "all" or fold.isdigit():
            folds.append(fold)
    return sorted(folds, key=lambda f: (f == "all", int(f) if f.isdigit() else 0))


def _versions() -> Dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    found = {"nnunet_losses": __version__}
    for package in ("nnunetv2", "torch"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "unknown"
    return found


def _training_record(fold_folder: str) -> Optional[Dict[str, Any]]:
    try:
        with open(os.path.join(fold_folder, SETTINGS)) as f:
            settings = json.load(f)
    except (OSError, ValueError):
        return None
    return {k: settings[k] for k in ("trainer", "family", "loss", "paper", "equation", "loss_params", "context",
                                     "training", "schedule") if k in settings}


def export_model(dataset: str, configuration: str, trainer: str, output: str, plans: str = "nnUNetPlans",
                 folds: Optional[Sequence] = None, checkpoints: Sequence[str] = ("checkpoint_final.pth",),
                 results: Optional[str] = None) -> Dict[str, Any]:
    """Write the zip of the model ``nnUNet_results/<dataset>/<trainer>__<plans>__<configuration>`` (``results``:
    another results folder) as ``nnUNetTrainer``; returns the record written as ``nnunet_losses_export.json``."""
    import torch

    from .._files import atomic_file
    from .datasets import dataset_name

    if os.path.lexists(output):
        raise ExistingOutput(f"{output} exists: choose another output file or remove it")
    if not output.endswith(".zip"):
        raise InvalidInput(f"-o {output}: the model file is a .zip (nnUNetv2_install_pretrained_model_from_zip)")
    if results is None:
        results = os.environ.get("nnUNet_results")
        if not results:
            raise StepFailed("nnUNet_results is not set (nnU-Net's environment variable): it holds the trained "
                             "models")
    if trainer == STOCK_TRAINER:
        raise InvalidInput(f"{STOCK_TRAINER} is nnU-Net's own trainer: export it with nnUNetv2_export_model_to_zip")
    for name, value in (("plans", plans), ("configuration", configuration), ("trainer", trainer)):
        if "__" in value or os.sep in value:
            raise InvalidInput(f"{name} {value!r}: may contain neither '__' nor '{os.sep}'")
    for chk in checkpoints:
        if os.path.basename(chk) != chk or not chk.endswith(".pth"):
            raise InvalidInput(f"--chk {chk!r}: the file name of a checkpoint in the fold folders, e.g. "
                               f"checkpoint_final.pth")
    dataset = dataset_name(dataset)
    folder_name = f"{trainer}__{plans}__{configuration}"
    model_folder = os.path.join(results, dataset, folder_name)
    if not os.path.isdir(model_folder):
        raise MissingInput(f"no trained model folder {model_folder}: check -d, -c, -tr and -p (or train it "
                           f"with nnUNetv2_train)")
    for name in ("plans.json", "dataset.json"):
        if not os.path.isfile(os.path.join(model_folder, name)):
            raise MissingInput(f"{os.path.join(model_folder, name)} is missing: prediction needs it")
    folds = [_parse_fold(f) for f in folds] if folds else available_folds(model_folder, checkpoints[0])
    if not folds:
        raise MissingInput(f"no fold in {model_folder} has {checkpoints[0]} (fold_*/{checkpoints[0]})")
    for fold in folds:
        for chk in checkpoints:
            path = os.path.join(model_folder, _fold_folder(fold), chk)
            if not os.path.isfile(path):
                raise MissingInput(f"{path} is missing: fold {fold} has no {chk}")

    trainer_cls = original_trainer_class(trainer)
    check_architecture(trainer_cls)
    network = _stock_network(model_folder, configuration)

    stock_folder = f"{STOCK_TRAINER}__{plans}__{configuration}"
    arc = lambda *parts: "/".join((dataset, stock_folder) + parts)  # noqa: E731 - names inside the zip
    record: Dict[str, Any] = {
        "exported_as": STOCK_TRAINER, "original_trainer": trainer, "original_folder": folder_name,
        "dataset": dataset, "plans": plans, "configuration": configuration, "folds": folds,
        "checkpoints": list(checkpoints), "versions": _versions(), "trained_with": {}, "dropped_checkpoint_keys": {},
        "install": f"nnUNetv2_install_pretrained_model_from_zip {os.path.basename(output)}",
        "predict": f"nnUNetv2_predict -i INPUT -o OUTPUT -d {dataset} -c {configuration} -tr {STOCK_TRAINER} "
                   f"-p {plans} -f {' '.join(folds)}"}
    with atomic_file(output, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zipf:
        for fold in folds:
            fold_dir = os.path.join(model_folder, _fold_folder(fold))
            for chk in checkpoints:
                path = os.path.join(fold_dir, chk)
                checkpoint = torch.load(path, map_location="cpu", weights_only=False)
                if checkpoint.get("init_args", {}).get("configuration", configuration) != configuration:
                    raise InvalidInput(f"{path} was trained on configuration "
                                     f"{checkpoint['init_args']['configuration']!r}, not {configuration!r}")
                try:  # strict, as prediction loads them
                    network.load_state_dict(checkpoint["network_weights"])
                except RuntimeError as err:
                    raise InvalidInput(f"{path}: its weights do not fit nnUNetTrainer's network for these plans "
                                       f"({' '.join(str(err).split())[:300]})") from None
                exported, dropped = plain_checkpoint(checkpoint, trainer, path)
                if dropped:
                    record["dropped_checkpoint_keys"][f"{_fold_folder(fold)}/{chk}"] = dropped
                entry = zipfile.ZipInfo.from_file(path, arc(_fold_folder(fold), chk))  # the original's date
                entry.compress_type = zipfile.ZIP_DEFLATED
                with zipf.open(entry, "w", force_zip64=True) as f:
                    torch.save(exported, f)
            for name in FOLD_FILES:
                if os.path.isfile(os.path.join(fold_dir, name)):
                    zipf.write(os.path.join(fold_dir, name), arc(_fold_folder(fold), *name.split(os.sep)))
            trained = _training_record(fold_dir)
            if trained is not None:
                record["trained_with"][_fold_folder(fold)] = trained
        for name in MODEL_FILES:
            if os.path.isfile(os.path.join(model_folder, name)):
                zipf.write(os.path.join(model_folder, name), arc(name))
        from nnunetv2.utilities.file_path_utilities import folds_tuple_to_string

        crossval = os.path.join(model_folder, f"crossval_results_folds_"
                                              f"{folds_tuple_to_string([f if f == 'all' else int(f) for f in folds])}")
        for name in ("summary.json", "postprocessing.pkl", "postprocessing.json"):
            if os.path.isfile(os.path.join(crossval, name)):
                zipf.write(os.path.join(crossval, name), arc(os.path.basename(crossval), name))
        zipf.writestr(arc(RECORD), json.dumps(record, indent=2, default=str))
    return record


def describe_export(record: Dict[str, Any], output: str) -> str:
    """What ``export-model`` prints: what was written and how a stock nnU-Net uses it."""
    dropped = sorted({k for keys in record["dropped_checkpoint_keys"].values() for k in keys})
    trained = {v.get("loss") for v in record["trained_with"].values()} - {None}
    loss = f"loss {', '.join(sorted(trained))}" if trained else f"no {SETTINGS}"
    lines = [f"wrote {output}: {record['original_trainer']} ({loss}) as {record['exported_as']}, "
             f"{record['dataset']} {record['configuration']} plans {record['plans']}, fold(s) "
             f"{', '.join(record['folds'])}"
             + (f"; checkpoint keys dropped: {', '.join(dropped)}" if dropped else ""),
             f"  install (nnU-Net v2, nnunet-losses not needed): {record['install']}  (extracts into nnUNet_results/"
             f"{record['dataset']}/{record['exported_as']}__{record['plans']}__{record['configuration']}, replacing "
             f"a model of that name)",
             f"  predict: {record['predict']}"]
    return "\n".join(lines)

