"""nnunet-losses: class-imbalance losses from four papers, for nnU-Net v2.

Layers, each importing only those before it (``tests/test_layering.py``):

* the core, importable without nnU-Net: ``errors`` (the errors a user can fix), ``losses`` (PyTorch modules),
  ``maps`` (numpy + edt distance maps and their stored formats), ``metrics`` (per-case metrics), ``evaluation`` (the
  folder evaluator, with the image reader passed in), ``stats`` (the papers' statistics), ``registry`` (loss name ->
  factory with typed parameters), ``catalogue`` (the trainer families), ``papers`` (the works cited);
* ``nnunet``: the nnU-Net v2 glue (generated trainers, the map pipeline, precomputed maps, baselines, small plans);
  ``ext_trainers``: the ``nnUNet_extTrainer`` shim folder nnU-Net imports (``trainers/`` in the repository);
* on top: ``experiment`` (specs, plans, runners), ``report`` (tables and figures), ``convert`` (public datasets to
  nnU-Net's format), ``demo`` and ``loss_demo``, ``doc_tables`` (the generated tables of ``documentation/``), and
  ``cli`` (the ``nnunet-losses`` command).
"""

__version__ = "0.3.0"
