"""nnunet-losses: class-imbalance losses from four papers, for nnU-Net v2.

Subpackages: ``losses`` (pure PyTorch), ``maps`` (numpy + edt distance maps),
``registry`` (name -> loss factory, used by the trainers and the CLI).
"""

__version__ = "0.1.0"
