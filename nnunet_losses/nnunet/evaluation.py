"""The folder evaluator (:mod:`nnunet_losses.metrics.evaluate`) with nnU-Net's image reader for the file ending, as
nnU-Net's ``compute_metrics_on_folder`` is called with its ``image_reader_writer``: any format nnU-Net reads,
spacing from the headers. ``nnunet-losses evaluate`` runs this."""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ..metrics import evaluate as _evaluate
from ..metrics.evaluate import KNOWN_ENDINGS, parse_class_arguments, parse_tolerances, validation_cases

__all__ = ["read_segmentation", "evaluate_folder", "parse_class_arguments", "parse_tolerances", "validation_cases"]


def read_segmentation(path: str) -> Tuple[np.ndarray, Tuple[float, ...]]:
    """(labels, spacing) of a segmentation file, read by nnU-Net's reader for its ending."""
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_file_ending

    ending = next(e for e in KNOWN_ENDINGS if path.endswith(e))
    reader = determine_reader_writer_from_file_ending(ending, path, verbose=False)()
    seg, props = reader.read_seg(path)
    return seg[0], tuple(float(s) for s in props["spacing"])


def evaluate_folder(pred_dir: str, ref_dir: str, *args, **kwargs) -> dict:
    """:func:`nnunet_losses.metrics.evaluate.evaluate_folder` (same arguments) reading with nnU-Net's readers."""
    kwargs.setdefault("reader", read_segmentation)
    return _evaluate.evaluate_folder(pred_dir, ref_dir, *args, **kwargs)
