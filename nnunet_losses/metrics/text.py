"""Plain-text view of an evaluation (what ``nnunet-losses evaluate`` prints)."""
from __future__ import annotations

import numpy as np

from .case import METRICS

MEAN_ROWS = {"per-class": "mean (per class)", "per-case": "mean (per case)"}
MEAN_NOTES = {"per-class": "mean (per class) = the mean over classes of the class means (nnU-Net's foreground_mean), "
                           "+- the std over classes",
              "per-case": "mean (per case) = the mean over cases of each case's mean over its defined classes"}


def _class_means_row(result: dict, metrics) -> dict:
    """nnU-Net's foreground_mean per metric, with the std over the class means."""
    names = [c["name"] for c in result["classes"]]
    row = {}
    for m in metrics:
        means = [result["summary"][n][m]["mean"] for n in names if result["summary"][n][m]["mean"] is not None]
        row[m] = {"mean": float(np.mean(means)) if means else None, "std": float(np.std(means)) if means else None}
    return row


def format_summary(result: dict, mean: str = "per-class") -> str:
    """The evaluation summary as a plain-text table: mean +- std per class, status counts, and the mean over
    classes that ``mean`` names (``per-class``, nnU-Net's foreground_mean, or ``per-case``)."""
    metrics = tuple(m for m in METRICS if not m.startswith("vol_"))  # volumes are records, not compared
    lines = [f"{result['num_cases']} cases; mean +- std over the cases where the value is defined; "
             f"both masks empty: {result['aggregation']['both_empty']} ({result['aggregation']['description']}); "
             f"{MEAN_NOTES[mean]}"]
    lines.append(f"{'class':<18}" + "".join(f"{m:>16}" for m in metrics) + "   empty: ref/pred/both")
    rows = [(c["name"], result["summary"][c["name"]]) for c in result["classes"]]
    rows.append((MEAN_ROWS[mean], _class_means_row(result, metrics) if mean == "per-class"
                 else result["summary"]["mean_foreground"]))
    for name, entry in rows:
        cells = []
        for m in metrics:
            st = entry[m]
            cells.append(f"{'-':>16}" if st["mean"] is None else f"{st['mean']:>9.4g} +- {st['std']:<4.2g}")
        status = entry.get("status")
        counts = f"   {status['ref_empty']}/{status['pred_empty']}/{status['both_empty']}" if status else ""
        lines.append(f"{name:<18}" + "".join(f"{c:>16}" for c in cells) + counts)
    return "\n".join(lines)
