"""nnUNet_extTrainer folder shipped inside the package (see `nnunet-losses trainers-path`)."""
