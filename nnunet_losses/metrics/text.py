"""Plain-text view of an evaluation (what ``nnunet-losses evaluate`` prints)."""
from __future__ import annotations

from .case import METRICS


def format_summary(result: dict) -> str:
    """The evaluation summary as a plain-text table: mean +- std per class, and status counts."""
    metrics = tuple(m for m in METRICS if not m.startswith("vol_"))  # volumes are records, not compared
    lines = [f"{result['num_cases']} cases; mean +- std over the cases where the value is defined; "
             f"both masks empty: {result['aggregation']['both_empty']} ({result['aggregation']['description']})"]
    lines.append(f"{'class':<16}" + "".join(f"{m:>16}" for m in metrics) + "   empty: ref/pred/both")
    for name, entry in result["summary"].items():
        if name == "foreground_mean":  # one number per metric, not statistics over cases
            continue
        cells = []
        for m in metrics:
            st = entry[m]
            cells.append(f"{'-':>16}" if st["mean"] is None else f"{st['mean']:>9.4g} +- {st['std']:<4.2g}")
        status = entry.get("status")
        counts = f"   {status['ref_empty']}/{status['pred_empty']}/{status['both_empty']}" if status else ""
        lines.append(f"{name:<16}" + "".join(f"{c:>16}" for c in cells) + counts)
    return "\n".join(lines)
