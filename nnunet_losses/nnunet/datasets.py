"""Where an nnU-Net dataset's preprocessed files are: its folder under ``nnUNet_preprocessed`` from an id or a name,
and the data folder, labels, dimensionality and spacing of one configuration of its plans (nnU-Net's own
resolvers)."""
from __future__ import annotations

import os

from ..errors import InvalidInput, StepFailed


def resolve_dataset_folder(dataset: str) -> str:
    """``nnUNet_preprocessed/DatasetXXX_Name`` of a dataset id or name."""
    from nnunetv2.paths import nnUNet_preprocessed

    if not nnUNet_preprocessed.is_set():
        raise StepFailed("nnUNet_preprocessed is not set (nnU-Net's environment variable)")
    return os.path.join(str(nnUNet_preprocessed.get()), dataset_name(dataset))


def dataset_name(dataset: str) -> str:
    """``DatasetXXX_Name`` of a dataset id or name, as nnU-Net resolves it; its errors as one-line user errors."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        return maybe_convert_to_dataset_name(dataset)
    except RuntimeError as err:  # nnU-Net's: no dataset (or several) of this id
        raise StepFailed(str(err)) from None
    except ValueError as err:  # nnU-Net's: neither an id nor a DatasetXXX_ name
        raise InvalidInput(str(err)) from None


def resolve_dataset(dataset: str, configuration: str, plans: str = "nnUNetPlans"):
    """(data folder, num_classes, is_2d, spacing, ignore/regions info) of a dataset id or name and configuration."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    base = resolve_dataset_folder(dataset)
    plans_manager = PlansManager(os.path.join(base, plans + ".json"))
    try:
        config = plans_manager.get_configuration(configuration)
    except RuntimeError as err:  # nnU-Net's: no such configuration in the plans
        raise StepFailed(str(err)) from None
    label_manager = plans_manager.get_label_manager(load_json(os.path.join(base, "dataset.json")))
    data_folder = os.path.join(base, config.data_identifier)
    is_2d = len(config.patch_size) == 2
    return data_folder, label_manager, is_2d, tuple(float(s) for s in config.spacing)
