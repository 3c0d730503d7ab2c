"""PNG figures of the papers: box plots of per-case metrics per class (001, Tables 2-4 as distributions), the
empirical CDF of the final Dice of repeated runs (001, Fig. 5) and validation curves over epochs (001, Fig. 6-9).

Every loss keeps one colour in every figure (the order given); NaN values are left out and counted in the legend.
Files are written atomically (temporary file, then rename).
"""
from __future__ import annotations

import os
import warnings
from typing import Dict, List, Sequence

import numpy as np

from ..stats import ecdf

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf")


def colours(labels: Sequence[str]) -> Dict[str, str]:
    return {label: _PALETTE[i % len(_PALETTE)] for i, label in enumerate(labels)}


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width, height))


def _save(plt, fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.png"
    fig.tight_layout()
    fig.savefig(tmp, dpi=150)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _finite(values) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return arr[np.isfinite(arr)]


def box_plots(values: Dict[str, Dict[str, Sequence[float]]], metric: str, path: str) -> str:
    """``values[loss][class]`` = per-case values; one panel per class, one box per loss, cases as dots."""
    if not values:
        raise ValueError("box_plots: no values")
    losses = list(values)
    classes = list(next(iter(values.values())))
    palette = colours(losses)
    plt, fig = _figure(max(4.0, 2.2 * len(classes) + 0.4 * len(losses)), 3.8)
    axes = fig.subplots(1, len(classes), squeeze=False)[0]
    for ax, cls in zip(axes, classes):
        data = [_finite(values[loss].get(cls, [])) for loss in losses]
        box = ax.boxplot([d if d.size else [np.nan] for d in data], patch_artist=True, widths=0.6,
                         showfliers=False, medianprops={"color": "black"})
        for patch, loss in zip(box["boxes"], losses):
            patch.set_facecolor(palette[loss])
            patch.set_alpha(0.45)
        rng = np.random.default_rng(0)
        for i, d in enumerate(data, start=1):
            ax.scatter(i + rng.uniform(-0.15, 0.15, d.size), d, s=8, color=palette[losses[i - 1]], zorder=3)
        ax.set_xticks(range(1, len(losses) + 1), losses, rotation=30, ha="right")
        missing = sum(len(values[loss].get(cls, [])) - d.size for loss, d in zip(losses, data))
        ax.set_title(cls + (f" ({missing} undefined)" if missing else ""))
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(metric)
    return _save(plt, fig, path)


def cdf_plot(values: Dict[str, Sequence[float]], path: str, xlabel: str = "final mean foreground Dice") -> str:
    """``values[loss]`` = one value per run; the step-wise empirical CDF per loss (001, Fig. 5)."""
    if not values:
        raise ValueError("cdf_plot: no values")
    palette = colours(list(values))
    plt, fig = _figure(5.5, 4.0)
    ax = fig.gca()
    for loss, runs in values.items():
        finite = _finite(runs)
        if finite.size == 0:
            continue
        x, f = ecdf(finite)
        ax.step(np.concatenate([[x[0]], x]), np.concatenate([[0.0], f]), where="post", color=palette[loss],
                label=f"{loss} ({finite.size} runs)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of runs <= x")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return _save(plt, fig, path)


def curves_plot(curves: Dict[str, List[Sequence[float]]], path: str,
                ylabel: str = "validation pseudo Dice (mean foreground)") -> str:
    """``curves[loss]`` = one per-epoch series per run; the mean over runs and the min-max band (001, Fig. 6-9)."""
    if not curves:
        raise ValueError("curves_plot: no curves")
    palette = colours(list(curves))
    plt, fig = _figure(6.0, 4.0)
    ax = fig.gca()
    for loss, runs in curves.items():
        runs = [np.asarray(r, dtype=float) for r in runs if len(r)]
        if not runs:
            continue
        length = max(r.size for r in runs)
        table = np.full((len(runs), length), np.nan)
        for i, r in enumerate(runs):
            table[i, :r.size] = r
        with warnings.catch_warnings():  # epochs where every run has NaN stay NaN (a gap in the line)
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, low, high = np.nanmean(table, 0), np.nanmin(table, 0), np.nanmax(table, 0)
        epochs = np.arange(length)
        ax.plot(epochs, mean, color=palette[loss], label=f"{loss} ({len(runs)} runs)")
        ax.fill_between(epochs, low, high, color=palette[loss], alpha=0.15, linewidth=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(plt, fig, path)
