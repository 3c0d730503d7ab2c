"""The only subpackage that imports nnunetv2: baselines now, trainers and map hooks later."""
