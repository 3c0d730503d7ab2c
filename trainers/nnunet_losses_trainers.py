"""Shim for nnU-Net's ``nnUNet_extTrainer`` lookup: every class lives in ``nnunet_losses.nnunet.trainers``.

nnU-Net imports each module of this folder and asks ``hasattr(module, NAME)``; the re-exported module
``__getattr__`` generates ``ComboTrainer_a0p5_b0p7`` and friends on demand.
"""
from nnunet_losses.nnunet.trainers import LossTrainer, __getattr__  # noqa: F401
