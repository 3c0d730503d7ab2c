"""``nnunet-losses small-plans``: a CPU-sized copy of nnU-Net's plans that shares nnU-Net's preprocessed data.

nnU-Net plans its networks for a GPU (2D: 32 features in the first stage, doubling up to 512) and a batch that fits
the GPU memory budget. On a CPU that costs seconds per iteration, and a few hundred iterations (what a CPU can
afford) are not enough for that network to learn small classes. The small plans keep everything nnU-Net decided
(patch size, spacing, normalisation, number of stages, kernels, strides, deep supervision, and above all the
``data_identifier``, so the preprocessed data and the maps of ``precompute-maps`` are shared, never recomputed)
and change two things only:

* ``features_per_stage``: ``features * 2**i`` for stage i, capped at 16 x ``features`` (nnU-Net's own ratio,
  32 -> 512): 8, 16, 32, 64, 128, 128, ... by default;
* ``batch_size``: 8 for 2D configurations, 2 for 3D ones, unless ``--batch-size`` says otherwise.

The file is ``<source>_small_f<features>_b<batch>.json`` beside ``<source>.json``, named after the arguments (the
source plans identifier ``-p`` and the settings, never after the ``plans_name`` inside the source file); its name is
what ``-p`` takes in ``nnUNetv2_train``, ``nnUNetv2_predict``, ``nnunet-losses precompute-maps`` and in experiment
specs (``plans = "nnUNetPlans_small_f8_b8"``), and it spells the settings, so that ``reproduce`` can write it again.
One file holds every configuration it was asked for: a run with another ``-c`` adds that configuration (atomically,
one run at a time per dataset folder); the same ``-c`` with the same settings leaves the file untouched. A file of
that name is never overwritten when it was not written by ``small-plans``, was written from other source plans or
with other settings, or holds what the source plans do not give any more (they were planned again): the run is
refused with one line naming the file and the difference.
"""
from __future__ import annotations

import copy
import json
import os
import re
from contextlib import contextmanager
from typing import List, NamedTuple, Optional, Tuple

from .._files import atomic_write_text
from ..errors import InvalidInput, MissingInput

RECORD = "nnunet_losses_small_plans"  # what small-plans wrote: source, settings, configurations
_NAME = re.compile(r"^(?P<source>[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*?)_small_f(?P<features>[1-9]\d*)_b(?P<batch>[1-9]\d*)$")
MAX_FEATURE_RATIO = 16  # nnU-Net's 2D/3D plans: 32 -> 512 (unet_max_num_features / UNet_base_num_features)


def small_plans_name(source: str, features: int, batch_size: int) -> str:
    """``nnUNetPlans`` , 8, 8 -> ``nnUNetPlans_small_f8_b8``."""
    name = f"{source}_small_f{int(features)}_b{int(batch_size)}"
    if parse_small_plans_name(name) is None:
        raise InvalidInput(f"cannot name small plans after {source!r} (letters, digits and single '_' only)")
    return name


def parse_small_plans_name(name: str) -> Optional[Tuple[str, int, int]]:
    """(source plans, features, batch size) of a small-plans name, or None if ``name`` is not one."""
    match = _NAME.match(name)
    if not match:
        return None
    return match["source"], int(match["features"]), int(match["batch"])


def default_batch_size(configuration: dict) -> int:
    return 8 if len(configuration["patch_size"]) == 2 else 2


def make_small_plans(plans: dict, configuration: str, features: int = 8, batch_size: Optional[int] = None,
                     source: Optional[str] = None) -> dict:
    """The small plans (a new dict) for one configuration of nnU-Net's ``plans``, read from ``<source>.json``
    (``source`` defaults to the ``plans_name`` inside ``plans``; it names the small plans).

    The configuration is resolved through nnU-Net's :class:`PlansManager` (``inherits_from`` merged), so the new
    plans hold one self-contained configuration with the same ``data_identifier``.
    """
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    if features < 1:
        raise InvalidInput(f"--features must be >= 1, got {features}")
    source = source or plans["plans_name"]
    configurations = plans.get("configurations", {})
    if configuration not in configurations:
        raise InvalidInput(f"{source}.json has no configuration {configuration!r} (it has "
                           f"{', '.join(configurations) or 'none'})")
    config = copy.deepcopy(PlansManager(plans).get_configuration(configuration).configuration)
    if batch_size is None:
        batch_size = default_batch_size(config)
    if batch_size < 1:
        raise InvalidInput(f"--batch-size must be >= 1, got {batch_size}")
    arch = config.get("architecture", {}).get("arch_kwargs", {})
    if "features_per_stage" not in arch:
        raise InvalidInput(f"configuration {configuration!r} has no architecture.arch_kwargs.features_per_stage "
                           f"(old plans format: run nnUNetv2_plan_experiment again)")
    n_stages = len(arch["features_per_stage"])
    arch["features_per_stage"] = [min(features * 2 ** i, MAX_FEATURE_RATIO * features) for i in range(n_stages)]
    config["batch_size"] = int(batch_size)
    config.pop("inherits_from", None)
    small = copy.deepcopy({k: v for k, v in plans.items() if k not in ("configurations", RECORD)})
    small["plans_name"] = small_plans_name(source, features, batch_size)
    small["configurations"] = {configuration: config}
    small[RECORD] = {"source": source, "features": int(features), "batch_size": int(batch_size),
                     "configurations": _summary(small["configurations"])}
    return small


def _summary(configurations: dict) -> dict:
    """Per configuration: the data it shares and its features per stage (the record of a small-plans file)."""
    return {name: {"data_identifier": config.get("data_identifier"),
                   "features_per_stage": config.get("architecture", {}).get("arch_kwargs", {}).get(
                       "features_per_stage")}
            for name, config in configurations.items()}


class SmallPlans(NamedTuple):
    """What :func:`write_small_plans` did: ``action`` is ``"wrote"`` (a new file), ``"added"`` (a configuration
    added to the file) or ``"unchanged"`` (the file already held this configuration with these settings)."""
    path: str
    name: str
    action: str
    configuration: str
    configurations: List[str]
    features_per_stage: List[int]
    batch_size: int
    source_file: str
    data_identifier: str


def _normal(value):
    return json.loads(json.dumps(value))


def _merge(path: str, existing: dict, new: dict, configuration: str, source_file: str) -> Optional[dict]:
    """``existing`` (the file at ``path``) with ``new``'s configuration added; None if it holds it already; a
    ValueError (one line) when the file is another plans file or came from other source plans or settings."""
    record, wanted = existing.get(RECORD), new[RECORD]
    keep = "not overwritten: move it away, or choose other --features/--batch-size"
    if not isinstance(record, dict) or not isinstance(existing.get("configurations"), dict):
        raise InvalidInput(f"{path} is not a file written by nnunet-losses small-plans; {keep}")
    for key, label in (("source", "source plans"), ("features", "--features"), ("batch_size", "--batch-size")):
        if record.get(key) != wanted[key]:
            raise InvalidInput(f"{path} was written with {label} {record.get(key)}, not {wanted[key]}; {keep}")
    differs = sorted(k for k in set(existing) | set(new) if k not in ("configurations", RECORD)
                     and _normal(existing.get(k)) != _normal(new.get(k)))
    if differs:
        raise InvalidInput(f"{path} was written from another {source_file} ({', '.join(differs)} differ: the plans "
                           f"were made again since); {keep}, or delete it to write it from the present plans")
    held = existing.get("configurations", {})
    if configuration in held:
        if _normal(held[configuration]) != _normal(new["configurations"][configuration]):
            raise InvalidInput(f"{path} holds a configuration {configuration!r} that {source_file} does not give "
                               f"with these settings (written from other plans, or the plans were made again); "
                               f"{keep}, or delete it to write it from the present plans")
        return None
    merged = copy.deepcopy(existing)
    merged["configurations"][configuration] = new["configurations"][configuration]
    merged[RECORD] = {**wanted, "configurations": _summary(merged["configurations"])}
    return merged


@contextmanager
def _folder_lock(folder: str):
    """One small-plans run at a time in ``folder`` (a lock on the folder itself: no file left behind)."""
    try:
        import fcntl
        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):  # not POSIX, or a folder that cannot be opened: no lock (writes stay atomic)
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without locks
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def write_small_plans(dataset: str, configuration: str, features: int = 8, batch_size: Optional[int] = None,
                      source: str = "nnUNetPlans") -> SmallPlans:
    """Write (or add ``configuration`` to) the small plans ``<source>_small_f<features>_b<batch>.json`` of
    ``dataset`` beside ``<source>.json``. Atomic; a ValueError (one line) instead of overwriting another plans
    file (see the module's docstring)."""
    from .datasets import resolve_dataset_folder

    base = resolve_dataset_folder(dataset)
    source_file = os.path.join(base, source + ".json")
    if not os.path.isfile(source_file):
        raise MissingInput(f"no nnU-Net plans {source_file}: run nnUNetv2_plan_and_preprocess -d {dataset} "
                           f"-c {configuration} first")
    with _folder_lock(base):
        with open(source_file) as f:
            plans = json.load(f)
        if RECORD in plans:
            raise InvalidInput(f"{source_file} holds small plans already (made from {plans[RECORD].get('source')}): "
                               f"use -p {plans[RECORD].get('source')}")
        small = make_small_plans(plans, configuration, features, batch_size, source=source)
        name = small["plans_name"]
        path = os.path.join(base, name + ".json")
        action, configurations = "wrote", [configuration]
        if os.path.exists(path):
            try:
                with open(path) as f:
                    existing = json.load(f)
                if not isinstance(existing, dict):
                    raise ValueError("not an object")
            except (OSError, ValueError) as err:
                raise InvalidInput(f"{path} exists and is not a plans file written by nnunet-losses small-plans "
                                   f"({' '.join(str(err).split())}); not overwritten: move it away") from None
            merged = _merge(path, existing, small, configuration, os.path.basename(source_file))
            action = "unchanged" if merged is None else "added"
            if merged is not None:
                small = merged
            configurations = list(existing["configurations"]) + ([configuration] if merged is not None else [])
        if action != "unchanged":
            atomic_write_text(path, json.dumps(small, indent=4, sort_keys=False) + "\n")
    config = small["configurations"][configuration]
    return SmallPlans(path, name, action, configuration, configurations,
                      config["architecture"]["arch_kwargs"]["features_per_stage"], config["batch_size"],
                      source_file, config.get("data_identifier"))
