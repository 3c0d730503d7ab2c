"""The nnU-Net v2 glue, the only subpackage of the core that imports nnunetv2: the generated trainers
(:mod:`.trainers`, names parsed by :mod:`nnunet_losses.naming`), the map's trip from disk to the loss (:mod:`.precompute`,
:mod:`.map_pipeline`), nnU-Net's baseline losses (:mod:`.baselines`), the folder evaluator with nnU-Net's reader
(:mod:`.evaluation`), CPU-sized plans (:mod:`.small_plans`) and the synthetic datasets (:mod:`.synthetic`). It imports
nothing above it (cli, demo, report, experiment); ``tests/test_layering.py`` checks both directions."""
