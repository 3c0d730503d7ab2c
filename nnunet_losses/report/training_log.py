"""Per-epoch values from nnU-Net v2's training logs (``fold_N/training_log_*.txt``): what the RW paper plots as
validation Dice over epochs (001, Fig. 6-9). nnU-Net writes one log per start; a continued training (``--c``) starts
a new file and may repeat the interrupted epoch: logs are merged in time order, the later value winning."""
from __future__ import annotations

import glob
import os
import re
from typing import Dict, List

import numpy as np

_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} [\d:.]+: (.*?)\s*$")
_NUMBER = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))"
_FIELDS = {"lr": re.compile(rf"^Current learning rate: {_NUMBER}$"),
           "train_loss": re.compile(rf"^train_loss {_NUMBER}$"),
           "val_loss": re.compile(rf"^val_loss {_NUMBER}$"),
           "epoch_time": re.compile(rf"^Epoch time: {_NUMBER} s$")}
_EPOCH = re.compile(r"^Epoch (\d+)$")
_DICE = re.compile(r"^Pseudo dice \[(.*)\]$")
_DICE_VALUE = re.compile(rf"(?:np\.float\d+\()?{_NUMBER}\)?")


def _parse_into(path: str, epochs: Dict[int, dict]) -> None:
    current = None
    with open(path, errors="replace") as f:
        for raw in f:
            match = _LINE.match(raw.strip())
            if not match:
                continue
            text = match.group(1)
            if (epoch := _EPOCH.match(text)) is not None:
                current = int(epoch.group(1))
                epochs[current] = {}
            elif current is not None and (dice := _DICE.match(text)) is not None:
                epochs[current]["pseudo_dice"] = [float(v) for v in _DICE_VALUE.findall(dice.group(1))]
            elif current is not None:
                for key, pattern in _FIELDS.items():
                    if (value := pattern.match(text)) is not None:
                        epochs[current][key] = float(value.group(1))


def parse_training_logs(fold_dir: str) -> Dict[str, np.ndarray]:
    """Arrays over the completed epochs of a fold (those with a pseudo Dice): ``epoch``, ``lr``, ``train_loss``,
    ``val_loss``, ``epoch_time``, ``pseudo_dice`` (epochs x classes) and ``mean_pseudo_dice`` (over foreground
    classes, NaN-aware as nnU-Net's EMA). Empty arrays when no log or no finished epoch is there."""
    epochs: Dict[int, dict] = {}
    for path in sorted(glob.glob(os.path.join(fold_dir, "training_log_*.txt")), key=_log_time):
        _parse_into(path, epochs)
    done = sorted(e for e, v in epochs.items() if "pseudo_dice" in v)
    out = {"epoch": np.array(done, dtype=int)}
    for key in ("lr", *_FIELDS):
        out[key] = np.array([epochs[e].get(key, np.nan) for e in done], dtype=float)
    width = max((len(epochs[e]["pseudo_dice"]) for e in done), default=0)
    dice = np.full((len(done), width), np.nan)
    for row, e in enumerate(done):
        values = epochs[e]["pseudo_dice"]
        dice[row, :len(values)] = values
    out["pseudo_dice"] = dice
    with np.errstate(all="ignore"):
        out["mean_pseudo_dice"] = np.array([np.nanmean(r) if np.isfinite(r).any() else np.nan for r in dice])
    return out


def _log_time(path: str) -> List[int]:
    """nnU-Net names logs training_log_YYYY_M_D_HH_MM_SS.txt (no zero padding): sort by the numbers."""
    return [int(n) for n in re.findall(r"\d+", os.path.basename(path))]
