"""Converters of the Region-wise loss paper's datasets (Valverde & Tohka: ACDC17, BraTS18, KiTS19), and of the
INIA19 macaque template with its NeuroMaps parcellation (2D slices, ``inia19``), into nnU-Net v2 raw format. Each
module has ``convert(source, nnunet_raw, dataset_id, ...)`` and the command line ``main(argv)``, which
``scripts/convert_*.py`` run."""
