"""Do the RRW maps the loss receives equal eq. 4 of Valverde & Tohka (Pattern Recognition 2023) for the augmented
target at every scale?

Draws training batches through nnU-Net's own loader and augmentation with the trainer's map pipeline
(:class:`~nnunet_losses.nnunet.map_pipeline.MapPipeline`, as ``RRWTrainer`` wires it), takes ``z`` as the trainer does, and compares it per deep-supervision scale with
``rrw_map`` of the labels that arrive at that scale. Needs a preprocessed dataset with precomputed maps:

    python benchmarks/map_check.py $nnUNet_preprocessed/Dataset902_SyntheticManyClasses [PLANS]
"""
from __future__ import annotations

import os
import sys

import numpy as np
import torch


def main(folder: str, plans: str = "nnUNetPlans", configuration: str = "2d", batches: int = 3) -> None:
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_losses.maps import rrw_map
    from nnunet_losses.nnunet.map_pipeline import MapPipeline

    manager = PlansManager(os.path.join(folder, plans + ".json"))
    config = manager.get_configuration(configuration)
    labels_manager = manager.get_label_manager(load_json(os.path.join(folder, "dataset.json")))
    k = labels_manager.num_segmentation_heads
    patch = tuple(config.patch_size)
    n_scales = len(config.pool_op_kernel_sizes) - 1  # nnU-Net's deep-supervision outputs
    scales = [[0.5 ** s] * len(patch) for s in range(n_scales)]
    for seed in range(batches):
        torch.manual_seed(seed)
        np.random.seed(seed)
        transforms = nnUNetTrainer.get_training_transforms(patch, (-np.pi, np.pi), scales, (0, 1), False,
                                                           foreground_labels=labels_manager.foreground_labels)
        pipeline = MapPipeline("rrw", k, precomputed=True)
        pipeline.add_to(transforms)
        data = pipeline.wrap(nnUNetDatasetBlosc2(os.path.join(folder, config.data_identifier)))
        loader = nnUNetDataLoader(data, config.batch_size, patch, patch, labels_manager, 0.33, transforms=transforms)
        labels, maps = pipeline.take(loader.generate_train_batch(), "cpu")
        for s, (lab, z) in enumerate(zip(labels, maps)):
            z = z.numpy()
            lab = lab[:, 0].numpy()
            expected = np.stack([rrw_map(x, k) for x in lab])
            inside = np.stack([lab == c for c in range(k)], 1)
            fg = inside.copy()
            fg[:, 0] = False
            err = np.abs(z - expected)
            print(f"batch {seed} scale {s} {lab.shape[1:]}: outside every class equal: "
                  f"{np.array_equal(z[~inside], expected[~inside])}; |z - eq.4| inside the background "
                  f"{err[:, 0][inside[:, 0]].mean():.3f}, inside foreground classes {err[fg].mean():.3f}; "
                  f"mean z inside foreground: received {z[fg].mean():.3f}, eq. 4 {expected[fg].mean():.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
