"""``nnunet-losses report``: from the evaluations of several trainers to ``report.md`` with the paper-style table
(also ``table.tex``, ``table.csv`` with every p-value) and the PNG plots."""
from __future__ import annotations

import csv
import io
import os
from typing import Dict, List, Optional, Sequence

from .._files import atomic_write_text
from .collect import RunResult, load_results, per_case
from .plots import box_plots, cdf_plot, curves_plot
from .tables import TITLES, build_table, p_value_rows, to_latex, to_markdown
from .training_log import parse_training_logs


def _csv(rows: List[Dict[str, object]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _plots(results: Dict[str, List[RunResult]], out: str, metrics: Sequence[str], plots: Sequence[str]) -> List[str]:
    classes = next(iter(results.values()))[0].classes
    made = []
    if "box" in plots:
        for metric in metrics:
            values = {loss: {cls: list(per_case(runs, metric, cls).values()) for cls in classes}
                      for loss, runs in results.items()}
            made.append(box_plots(values, TITLES.get(metric, metric), os.path.join(out, f"box_{metric}.png")))
    if "cdf" in plots:
        final = {loss: [run.mean_foreground("dice") for run in runs] for loss, runs in results.items()}
        made.append(cdf_plot(final, os.path.join(out, "cdf_dice.png")))
    if "curves" in plots:
        curves = {loss: [parse_training_logs(run.fold_dir)["mean_pseudo_dice"] for run in runs]
                  for loss, runs in results.items()}
        if any(len(c) for runs in curves.values() for c in runs):
            made.append(curves_plot(curves, os.path.join(out, "curves_pseudo_dice.png")))
    return made


def build_report(eval_root: str, out: str, reference: Optional[str] = None, order: Optional[Sequence[str]] = None,
                 metrics: Sequence[str] = ("dice", "hd"), plots: Sequence[str] = ("box",),
                 permutations: int = 10000, title: str = "Results") -> str:
    """Write the report into ``out``; returns the path of ``report.md``."""
    results = load_results(eval_root, order)
    reference = reference or next(iter(results))
    os.makedirs(out, exist_ok=True)
    table = build_table(results, metrics, reference, permutations)
    runs_line = ", ".join(f"{loss}: {len(runs)}" for loss, runs in results.items())
    missing = [label for label in (order or []) if label not in results]
    cases = sorted({case for runs in results.values() for run in runs for case in run.values("dice", run.classes[0])})
    caption = (f"{title}. Mean ± std over {len(cases)} cases; each case's value is the mean over the runs of its "
               f"loss. * p < 0.05 against {reference} (paired permutation test, {permutations} permutations). "
               "Bold: best mean.")
    atomic_write_text(os.path.join(out, "table.md"), to_markdown(table, reference))
    atomic_write_text(os.path.join(out, "table.tex"), to_latex(table, reference, caption))
    atomic_write_text(os.path.join(out, "table.csv"), _csv(p_value_rows(table)))
    figures = _plots(results, out, metrics, plots)
    empty = ["| loss | class | prediction empty | reference empty | both empty |", "|---|---|---|---|---|"]
    for loss, runs in results.items():
        for cls in runs[0].classes:
            counts = [sum(run.evaluation["summary"][cls]["status"][s] for run in runs)
                      for s in ("pred_empty", "ref_empty", "both_empty")]
            if any(counts):
                empty.append(f"| {loss} | {cls} | " + " | ".join(str(c) for c in counts) + " |")
    lines = [f"# {title}", "", caption, "", f"Runs evaluated per loss: {runs_line}."]
    if missing:
        lines.append(f"\n**Missing:** no evaluation yet for {', '.join(missing)}.")
    lines += ["", to_markdown(table, reference), "Empty masks (counted over runs x cases; see "
              "`nnunet_losses.metrics.case` for the values they get):", ""]
    lines += empty if len(empty) > 2 else ["none."]
    lines += [""] + [f"![{os.path.basename(f)[:-4]}]({os.path.basename(f)})" for f in figures]
    lines += ["", "Files: `table.md`, `table.tex` (booktabs), `table.csv` (every mean, std, n and p-value)."]
    return atomic_write_text(os.path.join(out, "report.md"), "\n".join(lines) + "\n")
