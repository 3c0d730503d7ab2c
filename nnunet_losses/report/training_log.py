"""Per-epoch values from nnU-Net v2's text training logs, the source of the validation curves of the RW paper
(Valverde & Tohka (Pattern Recognition 2023), Fig. 6-9).

``nnUNetTrainer`` (2.8.1) writes ``fold_N/training_log_YYYY_M_D_HH_MM_SS.txt`` (no zero padding of month and day)
through ``print_to_log_file``, which prefixes each line with ``str(datetime.now())`` and a colon. Per epoch:
``Epoch 3``, ``Current learning rate: 0.00536`` (``on_train_epoch_start``), then ``train_loss -0.41``,
``val_loss -0.52``, ``Pseudo dice [np.float32(0.93), np.float32(nan)]``, ``Epoch time: 4.1 s`` and, when the EMA of
the mean pseudo Dice improves, ``Yayy! New best EMA pseudo Dice: 0.61`` (``on_epoch_end``). Every other line (the
configuration dump, our trainers' ``nnunet-losses: ...`` lines, validation) is skipped. ``progress.png`` and the
checkpoints' ``logging`` are not read.

A training continued with ``--c`` starts a new log file in the same folder and redoes the epochs after its last
checkpoint: :func:`parse_training_logs` merges the logs of a fold in time order, the later value winning.
"""
from __future__ import annotations

import os
import re
from typing import Dict

import numpy as np

from ..errors import InvalidInput

_MESSAGE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?: (.*)")
_EPOCH = re.compile(r"Epoch (\d+)")
# a number as str() or repr() of a NumPy scalar writes it: 0.93, 1e-05, nan, np.float32(0.93), np.float64(nan)
_VALUE = r"(?:np\.float\d+\()?(nan|[-+]?inf|[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\)?"
_SCALARS = {"lr": re.compile(rf"Current learning rate: {_VALUE}"),
            "train_loss": re.compile(rf"train_loss {_VALUE}"),
            "val_loss": re.compile(rf"val_loss {_VALUE}"),
            "epoch_time": re.compile(rf"Epoch time: {_VALUE} s"),
            "new_best_ema": re.compile(rf"Yayy! New best EMA pseudo Dice: {_VALUE}")}
_DICE = re.compile(r"Pseudo dice \[(.*)\]")
_DICE_VALUE = re.compile(_VALUE)
_LOG_NAME = re.compile(r"training_log_(\d+)_(\d+)_(\d+)_(\d+)_(\d+)_(\d+)\.txt")


def _dice_values(inside: str, where: str) -> list:
    values = []
    for item in filter(None, (part.strip() for part in inside.split(","))):
        match = _DICE_VALUE.fullmatch(item)
        if match is None:
            raise InvalidInput(f"{where}: cannot read pseudo Dice value {item!r}")
        values.append(float(match.group(1)))
    return values


def _completed_epochs(path: str) -> Dict[int, dict]:
    """``{epoch: fields}`` for the epochs of one log whose ``Pseudo dice`` line was written; an epoch cut off
    before it (an interrupted run) is left out."""
    epochs: Dict[int, dict] = {}
    current = None
    with open(path, errors="replace") as f:
        for number, line in enumerate(f, start=1):
            stamped = _MESSAGE.fullmatch(line.strip())
            if stamped is None:
                continue
            text = stamped.group(1).strip()
            if (match := _EPOCH.fullmatch(text)) is not None:
                current = {"epoch": int(match.group(1))}
            elif current is None:
                continue
            elif (match := _DICE.fullmatch(text)) is not None:
                current["pseudo_dice"] = _dice_values(match.group(1), f"{path}:{number}")
                epochs[current["epoch"]] = current
            else:
                for key, pattern in _SCALARS.items():
                    if (match := pattern.fullmatch(text)) is not None:
                        current[key] = float(match.group(1))
    return epochs


def _arrays(epochs: Dict[int, dict]) -> Dict[str, np.ndarray]:
    order = sorted(epochs)
    widths = {len(epochs[e]["pseudo_dice"]) for e in order}
    if len(widths) > 1:
        raise InvalidInput(f"pseudo Dice has {sorted(widths)} classes in different epochs: logs of different trainings")
    dice = np.array([epochs[e]["pseudo_dice"] for e in order], dtype=float).reshape(len(order), max(widths, default=0))
    finite = np.isfinite(dice)
    with np.errstate(invalid="ignore"):  # all classes NaN: the mean stays NaN
        mean = np.where(finite, dice, 0.0).sum(axis=1) / finite.sum(axis=1)
    out = {"epoch": np.array(order, dtype=int)}
    for key in _SCALARS:
        out[key] = np.array([epochs[e].get(key, np.nan) for e in order], dtype=float)
    out["pseudo_dice"] = dice
    out["mean_pseudo_dice"] = mean
    return out


def parse_training_log(path: str) -> Dict[str, np.ndarray]:
    """The completed epochs of one nnU-Net v2 training log, in epoch order.

    Returns 1-D arrays over those epochs: ``epoch`` (int), ``lr``, ``train_loss``, ``val_loss``, ``epoch_time``
    (seconds), ``new_best_ema`` (the EMA pseudo Dice where the epoch set a new best, else NaN), ``mean_pseudo_dice``
    (NaN-ignoring mean over the classes, as nnU-Net's ``mean_fg_dice``), and ``pseudo_dice`` (epochs x classes:
    foreground labels or regions, NaN where a class was absent from the validation batches). A field missing from
    the log is NaN.
    """
    return _arrays(_completed_epochs(path))


def parse_training_logs(fold_dir: str) -> Dict[str, np.ndarray]:
    """All ``training_log_*.txt`` of a fold folder merged in the time order of their names; for an epoch written
    by several (a continued training redoing it), the later log's values win. Same arrays as
    :func:`parse_training_log`; all empty (``pseudo_dice`` of shape (0, 0)) when the folder has no log."""
    named = [(m, name) for name in (os.listdir(fold_dir) if os.path.isdir(fold_dir) else [])
             if (m := _LOG_NAME.fullmatch(name)) is not None]
    epochs: Dict[int, dict] = {}
    for _, name in sorted(named, key=lambda item: tuple(int(g) for g in item[0].groups())):
        epochs.update(_completed_epochs(os.path.join(fold_dir, name)))
    return _arrays(epochs)
