"""Precomputed RW maps: precompute speed, data loader throughput and disk bytes, as ratios measured in one run.

    python benchmarks/maps.py                 # full run, ~3 minutes on 2 cores (2D: 3 cases (1, 24, 256, 256);
                                              #   3D: 2 cases 128^3)
    python benchmarks/maps.py --quick         # small shapes, a smoke run (< 1 minute)
    python benchmarks/maps.py --json out.json --profile precomputed-boundary --explore

One question per module, each runnable alone on the same data (``maps_data.py``):

(a) ``maps_precompute.py``: our precompute against the RW paper code's method (scipy, per class), and the error of
    the stored maps. Goal: >= 30x faster.
(b) ``maps_loader.py``: nnU-Net's data loader and training transforms with the trainer's ``MapPipeline``, against
    the stock pipeline. Goal: >= 0.9x of stock.
(c) ``maps_bytes.py``: the maps folder against the preprocessed image files (``--explore``: alternative
    encodings, the record in BENCHMARKS.md). Goal: <= 15%.
"""
from __future__ import annotations

import maps_bytes
import maps_loader
import maps_precompute
from maps_data import main

QUESTIONS = (maps_precompute, maps_loader, maps_bytes)

if __name__ == "__main__":
    main(QUESTIONS, __doc__)
