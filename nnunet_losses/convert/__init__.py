"""Dataset conversion into nnU-Net v2 raw format: ACDC17, BraTS18 (three plain classes) and KiTS19 as the RW paper
prepared it. Each module has ``convert(...)`` and ``main(argv)``; ``scripts/convert_*.py`` call ``main``."""
