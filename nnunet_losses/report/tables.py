"""The papers' result tables: mean +- std over cases per loss, class and metric, ``*`` where a loss differs from the
reference loss (paired permutation test, p < 0.05), as in the RW paper's Tables 2-4 (001)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..metrics.case import LOWER_IS_BETTER
from ..stats import paired_permutation_test
from .collect import RunResult, per_case, per_case_foreground

ALPHA = 0.05
MEAN_COLUMN = "mean"
TITLES = {"dice": "Dice", "iou": "IoU", "hd": "HD (mm)", "hd95": "HD95 pooled (mm)",
          "hd95_max": "HD95 max-directed (mm)", "assd": "ASSD (mm)", "nsd": "NSD", "fpr": "FPR", "fnr": "FNR",
          "precision": "Precision", "recall": "Recall"}
DISTANCES = ("hd", "hd95", "hd95_max", "assd")


@dataclass
class Cell:
    mean: float
    std: float
    n: int
    p_value: Optional[float]  # None for the reference row

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA


def _cell(values: Dict[str, float], reference: Optional[Dict[str, float]], permutations: int, seed: int) -> Cell:
    defined = np.array([v for v in values.values() if not math.isnan(v)])
    p_value = None
    if reference is not None:
        common = sorted(set(values) & set(reference))
        p_value = paired_permutation_test([values[c] for c in common], [reference[c] for c in common],
                                          n_permutations=permutations, seed=seed, nan_policy="omit")
    if defined.size == 0:
        return Cell(math.nan, math.nan, 0, p_value)
    return Cell(float(defined.mean()), float(defined.std()), int(defined.size), p_value)


def build_table(results: Dict[str, List[RunResult]], metrics: Sequence[str], reference: str,
                permutations: int = 10000, seed: int = 0,
                cases: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, Dict[str, Cell]]]:
    """``table[metric][loss][class]`` (classes plus ``mean`` over classes) with p-values against ``reference``;
    means, std and tests over ``cases`` only when given (``collect.coverage``: the cases every loss has)."""
    if reference not in results:
        raise ValueError(f"reference loss {reference!r} has no results (found: {', '.join(results)})")
    classes = next(iter(results.values()))[0].classes
    table: Dict[str, Dict[str, Dict[str, Cell]]] = {}
    for metric in metrics:
        columns = {cls: (lambda runs, c=cls: per_case(runs, metric, c, cases)) for cls in classes}
        columns[MEAN_COLUMN] = lambda runs: per_case_foreground(runs, metric, classes, cases)
        table[metric] = {}
        for loss, runs in results.items():
            table[metric][loss] = {}
            for column, values_of in columns.items():
                ref = None if loss == reference else values_of(results[reference])
                table[metric][loss][column] = _cell(values_of(runs), ref, permutations, seed)
    return table


def _best(cells: Dict[str, Cell], metric: str) -> Optional[str]:
    means = {loss: c.mean for loss, c in cells.items() if not math.isnan(c.mean)}
    if not means:
        return None
    pick = min if metric in LOWER_IS_BETTER else max
    return pick(means, key=means.get)


def _digits(metric: str) -> int:
    return 2 if metric in DISTANCES else 3


def _text(cell: Cell, metric: str, latex: bool, best: bool) -> str:
    if math.isnan(cell.mean):
        return "-"
    d = _digits(metric)
    pm = r" $\pm$ " if latex else " ± "
    body = f"{cell.mean:.{d}f}{pm}{cell.std:.{d}f}"
    if best:
        body = rf"\textbf{{{body}}}" if latex else f"**{body}**"
    mark = "$^*$" if latex else "\\*"  # escaped in Markdown: next to bold's ** it would not show
    return body + (mark if cell.significant else "")


def to_markdown(table, reference: str, caption: Optional[str] = None) -> str:
    lines = [caption, ""] if caption else []
    for metric, rows in table.items():
        columns = list(next(iter(rows.values())))
        lines.append(f"**{TITLES.get(metric, metric)}**\n")
        lines.append("| loss | " + " | ".join(columns) + " |")
        lines.append("|---|" + "---|" * len(columns))
        best = {col: _best({loss: rows[loss][col] for loss in rows}, metric) for col in columns}
        for loss, cells in rows.items():
            name = f"{loss} (ref.)" if loss == reference else loss
            lines.append(f"| {name} | " + " | ".join(_text(cells[c], metric, False, best[c] == loss)
                                                     for c in columns) + " |")
        lines.append("")
    return "\n".join(lines)


def _latex_escape(text: str) -> str:
    return text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")


def to_latex(table, reference: str, caption: str) -> str:
    """One booktabs tabular: a row per loss, a column group per metric with its classes."""
    metrics = list(table)
    columns = list(next(iter(table[metrics[0]].values())))
    losses = list(table[metrics[0]])
    spec = "l" + "".join("c" * len(columns) for _ in metrics)
    head1 = " & ".join(rf"\multicolumn{{{len(columns)}}}{{c}}{{{_latex_escape(TITLES.get(m, m))}}}"
                       for m in metrics)
    rules = "".join(rf"\cmidrule(lr){{{2 + i * len(columns)}-{1 + (i + 1) * len(columns)}}}"
                    for i in range(len(metrics)))
    head2 = " & ".join(_latex_escape(c) for _ in metrics for c in columns)
    best = {(m, c): _best({loss: table[m][loss][c] for loss in losses}, m) for m in metrics for c in columns}
    body = []
    for loss in losses:
        cells = [_text(table[m][loss][c], m, True, best[(m, c)] == loss) for m in metrics for c in columns]
        body.append(_latex_escape(loss) + (" (ref.)" if loss == reference else "") + " & " + " & ".join(cells)
                    + r" \\")
    caption = _latex_escape(caption).replace("±", r"$\pm$")
    return "\n".join([r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{caption}}}",
                      rf"\begin{{tabular}}{{{spec}}}", r"\toprule", rf" & {head1} \\", rules, rf"Loss & {head2} \\",
                      r"\midrule", *body, r"\bottomrule", r"\end{tabular}", r"\end{table}", ""])


def p_value_rows(table) -> List[Dict[str, object]]:
    rows = []
    for metric, losses in table.items():
        for loss, cells in losses.items():
            for column, cell in cells.items():
                rows.append({"metric": metric, "loss": loss, "class": column, "mean": cell.mean, "std": cell.std,
                             "n": cell.n, "p_value": "" if cell.p_value is None else cell.p_value})
    return rows
