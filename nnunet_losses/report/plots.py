"""The figures of the RW paper, Valverde & Tohka (Pattern Recognition 2023), as PNG files: per-class distributions
of a per-case metric (the values behind Tables 2-4), the empirical CDF of the final Dice of repeated runs (Fig. 5,
Fig. 6c) and validation curves over epochs averaged over runs (Fig. 6a-b, 7-9).

Matplotlib draws on its Agg canvas, created per figure (no backend switch, no pyplot state). Each loss takes its
colour from a fixed palette in the order the losses first appear in the input, so one report that passes its losses
in one order colours them alike in every figure. NaN values are left out and counted in tick labels or legends.
Every function writes its PNG (150 dpi) atomically (a temporary file in the same folder, then ``os.replace``) and
returns the path.
"""
from __future__ import annotations

import os
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from .._files import atomic_file
from ..stats import ecdf

DPI = 150
# matplotlib's "tab10" colours; past ten losses they repeat
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def loss_colours(losses: Sequence[str]) -> Dict[str, str]:
    """``{loss: colour}``, palette colours given in the order of first appearance."""
    return {loss: PALETTE[i % len(PALETTE)] for i, loss in enumerate(dict.fromkeys(losses))}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str) -> str:
    path = os.fspath(path)
    with atomic_file(path, "wb") as f:
        figure.savefig(f, format="png", dpi=DPI)
    return path


def _split(values) -> tuple:
    """The finite values of a 1-D sequence and how many NaN were dropped."""
    array = np.asarray(values, dtype=float).reshape(-1)
    finite = array[np.isfinite(array)]
    return finite, int(np.isnan(array).sum())


def _nan_note(nan: int) -> str:
    return f", {nan} NaN skipped" if nan else ""


def box_plots(values: Mapping[str, Mapping[str, Sequence[float]]], metric: str, path: str,
              class_names: Optional[Sequence[str]] = None) -> str:
    """One panel per class, one box per loss over the per-case values ``values[loss][class]``: the distributions
    behind the per-class means of the RW paper's Tables 2-4 (Valverde & Tohka (Pattern Recognition 2023)). Boxes
    show the quartiles, whiskers 1.5 IQR, outliers as dots and the mean as a white diamond; each tick label gives the
    number of cases and of NaN values skipped. ``metric`` labels the y axis ("Dice", "HD (mm)"). ``class_names``
    chooses and orders the classes (default: every class, in order of first appearance); a class a loss lacks gets an
    empty slot."""
    if not values:
        raise ValueError("box_plots: no losses given")
    classes = list(class_names) if class_names is not None else list(
        dict.fromkeys(c for per_class in values.values() for c in per_class))
    if not classes:
        raise ValueError("box_plots: no classes given")
    if not any(len(np.asarray(v).reshape(-1)) for per_class in values.values() for v in per_class.values()):
        raise ValueError("box_plots: no values given")
    losses = list(values)
    colour = loss_colours(losses)
    figure = _figure(len(classes) * max(3.0, 0.6 * len(losses) + 1.0), 4.5)
    for ax, cls in zip(figure.subplots(1, len(classes), squeeze=False)[0], classes):
        split = [_split(values[loss].get(cls, [])) for loss in losses]
        boxes = ax.boxplot([finite for finite, _ in split], patch_artist=True, widths=0.6, showmeans=True,
                           medianprops={"color": "black"},
                           meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black",
                                      "markersize": 5})
        for loss, box, flier in zip(losses, boxes["boxes"], boxes["fliers"]):
            box.set(facecolor=colour[loss], alpha=0.6)
            flier.set(marker="o", markersize=3, markerfacecolor=colour[loss], markeredgecolor="none")
        ax.set_xticks(range(1, len(losses) + 1),
                      [f"{loss}\nn={finite.size}{_nan_note(nan)}" for loss, (finite, nan) in zip(losses, split)],
                      rotation=30, ha="right", rotation_mode="anchor", fontsize=8)
        ax.set_title(cls)
        ax.set_ylabel(metric)
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle(f"{metric} per case, per class")
    return _save(figure, path)


def cdf_plot(values: Mapping[str, Sequence[float]], path: str, xlabel: str = "Final mean foreground Dice") -> str:
    """The step-wise empirical CDF, CDF(d) = fraction of runs with a value <= d, of one value per run for each loss
    (``values[loss]``): Fig. 5 and Fig. 6c of the RW paper (Valverde & Tohka (Pattern Recognition 2023), eq. 8),
    where a curve rising early marks runs that failed to converge. The legend gives the runs counted and the NaN
    skipped."""
    if not values:
        raise ValueError("cdf_plot: no losses given")
    split = {loss: _split(runs) for loss, runs in values.items()}
    if all(finite.size + nan == 0 for finite, nan in split.values()):
        raise ValueError("cdf_plot: no values given")
    colour = loss_colours(list(values))
    pooled = np.concatenate([finite for finite, _ in split.values()])
    low, high = (pooled.min(), pooled.max()) if pooled.size else (0.0, 1.0)
    figure = _figure(6.5, 4.5)
    ax = figure.subplots()
    for loss, (finite, nan) in split.items():
        label = f"{loss} (n={finite.size}{_nan_note(nan)})"
        if finite.size == 0:
            ax.plot([], [], color=colour[loss], label=label)
            continue
        x, fraction = ecdf(finite)  # from 0 below the smallest value to 1 at the largest one pooled
        ax.step(np.r_[low, x, high], np.r_[0.0, fraction, 1.0], where="post", color=colour[loss], linewidth=1.8,
                label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Fraction of runs ≤ x")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Empirical CDF over runs")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return _save(figure, path)


def _mean_band(runs: Sequence[Sequence[float]]) -> tuple:
    """Per epoch over the runs that reached it: the NaN-ignoring mean, minimum and maximum (NaN where no run has a
    finite value), and how many NaN the runs hold."""
    arrays = [np.asarray(run, dtype=float).reshape(-1) for run in runs]
    table = np.full((len(arrays), max(a.size for a in arrays)), np.nan)
    for row, array in zip(table, arrays):
        row[:array.size] = array
    finite = np.isfinite(table)
    with np.errstate(invalid="ignore"):
        mean = np.where(finite, table, 0.0).sum(axis=0) / finite.sum(axis=0)
    nan = int(sum(np.isnan(a).sum() for a in arrays))
    return mean, np.fmin.reduce(table, axis=0), np.fmax.reduce(table, axis=0), nan


def curves_plot(curves: Mapping[str, Sequence[Sequence[float]]], path: str,
                ylabel: str = "Validation pseudo Dice (mean foreground)") -> str:
    """Per-epoch curves of repeated runs (``curves[loss]``: one 1-D array per run, lengths may differ): the mean over
    runs as a line and the min-max over runs as a band, like the RW paper's validation Dice over epochs
    (Valverde & Tohka (Pattern Recognition 2023), Fig. 6a-b, 7-9; epochs counted from 0 as nnU-Net does). NaN values
    are skipped (the line breaks where every run is NaN) and counted in the legend."""
    if not curves:
        raise ValueError("curves_plot: no losses given")
    runs_of = {loss: [run for run in runs if len(run)] for loss, runs in curves.items()}
    if not any(runs_of.values()):
        raise ValueError("curves_plot: no epochs given")
    colour = loss_colours(list(curves))
    figure = _figure(7.0, 4.5)
    ax = figure.subplots()
    for loss, runs in runs_of.items():
        if not runs:
            ax.plot([], [], color=colour[loss], label=f"{loss} (no epochs)")
            continue
        mean, low, high, nan = _mean_band(runs)
        epochs = np.arange(mean.size)
        ax.plot(epochs, mean, color=colour[loss], marker="o" if mean.size == 1 else None,
                label=f"{loss} ({len(runs)} run{'s' if len(runs) > 1 else ''}{_nan_note(nan)})")
        ax.fill_between(epochs, low, high, color=colour[loss], alpha=0.2, linewidth=0)
    ax.set_xlabel("Epoch")
    ax.set_ylabel(ylabel)
    ax.set_title("Mean over runs (band: min-max)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(figure, path)
