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

The file is ``<source>_small_f<features>_b<batch>.json`` beside ``<source>.json``; its name is what ``-p`` takes in
``nnUNetv2_train``, ``nnUNetv2_predict``, ``nnunet-losses precompute-maps`` and in experiment specs
(``plans = "nnUNetPlans_small_f8_b8"``), and it spells the settings, so that ``reproduce`` can write it again.
"""
from __future__ import annotations

import copy
import json
import os
import re
from typing import Optional, Tuple

from .._files import atomic_write_text

_NAME = re.compile(r"^(?P<source>[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*?)_small_f(?P<features>[1-9]\d*)_b(?P<batch>[1-9]\d*)$")
MAX_FEATURE_RATIO = 16  # nnU-Net's 2D/3D plans: 32 -> 512 (unet_max_num_features / UNet_base_num_features)


def small_plans_name(source: str, features: int, batch_size: int) -> str:
    """``nnUNetPlans`` , 8, 8 -> ``nnUNetPlans_small_f8_b8``."""
    name = f"{source}_small_f{int(features)}_b{int(batch_size)}"
    if parse_small_plans_name(name) is None:
        raise ValueError(f"cannot name small plans after {source!r} (letters, digits and single '_' only)")
    return name


def parse_small_plans_name(name: str) -> Optional[Tuple[str, int, int]]:
    """(source plans, features, batch size) of a small-plans name, or None if ``name`` is not one."""
    match = _NAME.match(name)
    if not match:
        return None
    return match["source"], int(match["features"]), int(match["batch"])


def default_batch_size(configuration: dict) -> int:
    return 8 if len(configuration["patch_size"]) == 2 else 2


def make_small_plans(plans: dict, configuration: str, features: int = 8, batch_size: Optional[int] = None) -> dict:
    """The small plans (a new dict) for one configuration of nnU-Net's ``plans``.

    The configuration is resolved through nnU-Net's :class:`PlansManager` (``inherits_from`` merged), so the new
    plans hold one self-contained configuration with the same ``data_identifier``.
    """
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    if features < 1:
        raise ValueError(f"--features must be >= 1, got {features}")
    config = copy.deepcopy(PlansManager(plans).get_configuration(configuration).configuration)
    if batch_size is None:
        batch_size = default_batch_size(config)
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    arch = config.get("architecture", {}).get("arch_kwargs", {})
    if "features_per_stage" not in arch:
        raise ValueError(f"configuration {configuration!r} has no architecture.arch_kwargs.features_per_stage "
                         f"(old plans format: run nnUNetv2_plan_experiment again)")
    n_stages = len(arch["features_per_stage"])
    arch["features_per_stage"] = [min(features * 2 ** i, MAX_FEATURE_RATIO * features) for i in range(n_stages)]
    config["batch_size"] = int(batch_size)
    config.pop("inherits_from", None)
    source = plans["plans_name"]
    small = copy.deepcopy({k: v for k, v in plans.items() if k != "configurations"})
    small["plans_name"] = small_plans_name(source, features, batch_size)
    small["configurations"] = {configuration: config}
    small["nnunet_losses_small_plans"] = {"source": source, "configuration": configuration, "features": features,
                                          "batch_size": int(batch_size),
                                          "features_per_stage": arch["features_per_stage"]}
    return small


def write_small_plans(dataset: str, configuration: str, features: int = 8, batch_size: Optional[int] = None,
                      source: str = "nnUNetPlans") -> str:
    """Write the small plans of ``dataset`` beside ``<source>.json``; return the path. Atomic; rewriting an
    existing file gives the same content."""
    from .precompute import resolve_dataset_folder

    base = resolve_dataset_folder(dataset)
    source_file = os.path.join(base, source + ".json")
    if not os.path.isfile(source_file):
        raise FileNotFoundError(f"no nnU-Net plans {source_file}: run nnUNetv2_plan_and_preprocess -d {dataset} "
                                f"-c {configuration} first")
    with open(source_file) as f:
        plans = json.load(f)
    small = make_small_plans(plans, configuration, features, batch_size)
    path = os.path.join(base, small["plans_name"] + ".json")
    return atomic_write_text(path, json.dumps(small, indent=4, sort_keys=False) + "\n")
