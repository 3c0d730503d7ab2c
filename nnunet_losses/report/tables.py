"""The papers' result tables: mean +- std over cases per loss, class and metric, ``*`` where a loss differs from the
reference loss (or from the reference trained with its optimiser: :mod:`.optimisers`; paired permutation test,
p < 0.05), as in the RW paper's Tables 2-4 (Valverde & Tohka, Pattern
Recognition 2023, arXiv:2108.01405), and a mean column over the classes.

The mean column is by default the mean over classes of each class's mean over the cases where it is defined
(``per-class``: nnU-Net's ``foreground_mean``, the papers' average of their per-class columns); its ± is the std
over the classes, and its test flips each case's whole vector of class values (``paired_class_mean_test``). With
``per-case`` it is the mean over cases of each case's mean over its defined classes, a quantity in which a class
absent from most cases hardly counts."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ..errors import InvalidInput
from ..metrics.case import LOWER_IS_BETTER
from .catalogue import MEANS
from ..stats import paired_class_mean_test, paired_permutation_test
from .collect import RunResult, per_case, per_case_foreground

ALPHA = 0.05
MEAN_COLUMNS = {"per-class": "mean (per class)", "per-case": "mean (per case)"}
MEAN_CAPTIONS = {
    "per-class": "mean (per class) = the mean over classes of each class's mean over the cases where it is defined "
                 "(nnU-Net's foreground_mean), ± the std over classes; its test flips each case's vector of class "
                 "values as a whole",
    "per-case": "mean (per case) = the mean over cases of each case's mean over its defined classes (a class absent "
                "from most cases hardly counts in it)"}
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


def _class_matrix(runs: Sequence[RunResult], metric: str, classes: Sequence[str], cases: Sequence[str]) -> np.ndarray:
    """(cases, classes) run-averaged values, NaN where undefined or not evaluated."""
    columns = [per_case(runs, metric, cls, cases) for cls in classes]
    return np.array([[column.get(case, math.nan) for column in columns] for case in cases], dtype=np.float64)


def _class_mean_cell(values: np.ndarray, reference: Optional[np.ndarray], permutations: int, seed: int) -> Cell:
    """The mean over classes of the class means (classes with no defined value left out), ± std over classes."""
    defined = ~np.isnan(values)
    class_means = np.array([values[defined[:, c], c].mean() for c in range(values.shape[1]) if defined[:, c].any()])
    p_value = None if reference is None else paired_class_mean_test(values, reference, permutations, seed)
    if class_means.size == 0:
        return Cell(math.nan, math.nan, 0, p_value)
    return Cell(float(class_means.mean()), float(class_means.std()), int(class_means.size), p_value)


def build_table(results: Dict[str, List[RunResult]], metrics: Sequence[str], reference: str,
                permutations: int = 10000, seed: int = 0, cases: Optional[Sequence[str]] = None,
                mean: str = "per-class", against: Optional[Dict[str, str]] = None
                ) -> Dict[str, Dict[str, Dict[str, Cell]]]:
    """``table[metric][loss][column]`` (the classes, then ``MEAN_COLUMNS[mean]``) with p-values against
    ``reference``, or against ``against[loss]`` where given (:func:`.optimisers.tested_against`: the reference with
    the loss's optimiser; a reference maps to itself and has no test); means, std and tests over ``cases`` only when
    given (``collect.coverage``: the cases every loss has)."""
    if reference not in results:
        raise InvalidInput(f"reference loss {reference!r} has no results (found: {', '.join(results)})")
    if mean not in MEANS:
        raise ValueError(f"mean must be one of {', '.join(MEANS)}, got {mean!r}")
    classes = next(iter(results.values()))[0].classes
    if cases is None:
        cases = sorted({case for runs in results.values() for run in runs for case in run.cases()})
    table: Dict[str, Dict[str, Dict[str, Cell]]] = {}
    for metric in metrics:
        table[metric] = {}
        for loss, runs in results.items():
            row = table[metric][loss] = {}
            target = (against or {}).get(loss, reference)  # the reference this loss is tested against
            for cls in classes:
                ref = None if loss == target else per_case(results[target], metric, cls, cases)
                row[cls] = _cell(per_case(runs, metric, cls, cases), ref, permutations, seed)
            if mean == "per-class":
                ref = None if loss == target else _class_matrix(results[target], metric, classes, cases)
                cell = _class_mean_cell(_class_matrix(runs, metric, classes, cases), ref, permutations, seed)
            else:
                ref = None if loss == target else per_case_foreground(results[target], metric, classes, cases)
                cell = _cell(per_case_foreground(runs, metric, classes, cases), ref, permutations, seed)
            row[MEAN_COLUMNS[mean]] = cell
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


def _references(reference: Union[str, Sequence[str]]) -> set:
    return {reference} if isinstance(reference, str) else set(reference)


def to_markdown(table, reference: Union[str, Sequence[str]], caption: Optional[str] = None,
                optimisers: Optional[Dict[str, str]] = None) -> str:
    """``reference``: the reference label(s), marked (ref.); ``optimisers``: {loss: optimiser}, shown in a column."""
    lines = [caption, ""] if caption else []
    opt = "optimiser | " if optimisers is not None else ""
    for metric, rows in table.items():
        columns = list(next(iter(rows.values())))
        lines.append(f"**{TITLES.get(metric, metric)}**\n")
        lines.append(f"| loss | {opt}" + " | ".join(columns) + " |")
        lines.append("|---|" + "---|" * (len(columns) + bool(opt)))
        best = {col: _best({loss: rows[loss][col] for loss in rows}, metric) for col in columns}
        for loss, cells in rows.items():
            name = f"{loss} (ref.)" if loss in _references(reference) else loss
            if opt:
                name += f" | {optimisers.get(loss, 'unknown')}"
            lines.append(f"| {name} | " + " | ".join(_text(cells[c], metric, False, best[c] == loss)
                                                     for c in columns) + " |")
        lines.append("")
    return "\n".join(lines)


def _latex_escape(text: str) -> str:
    return text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")


def to_latex(table, reference: Union[str, Sequence[str]], caption: str,
             optimisers: Optional[Dict[str, str]] = None) -> str:
    """One booktabs tabular: a row per loss (with its optimiser where ``optimisers`` is given), a column group per
    metric with its classes."""
    metrics = list(table)
    columns = list(next(iter(table[metrics[0]].values())))
    losses = list(table[metrics[0]])
    first = 1 + (optimisers is not None)  # the columns before the metrics'
    spec = "l" * first + "".join("c" * len(columns) for _ in metrics)
    head1 = " & ".join(rf"\multicolumn{{{len(columns)}}}{{c}}{{{_latex_escape(TITLES.get(m, m))}}}"
                       for m in metrics)
    rules = "".join(rf"\cmidrule(lr){{{first + 1 + i * len(columns)}-{first + (i + 1) * len(columns)}}}"
                    for i in range(len(metrics)))
    head2 = " & ".join(_latex_escape(c) for _ in metrics for c in columns)
    best = {(m, c): _best({loss: table[m][loss][c] for loss in losses}, m) for m in metrics for c in columns}
    body = []
    for loss in losses:
        cells = [_text(table[m][loss][c], m, True, best[(m, c)] == loss) for m in metrics for c in columns]
        name = _latex_escape(loss) + (" (ref.)" if loss in _references(reference) else "")
        if optimisers is not None:
            name += " & " + _latex_escape(optimisers.get(loss, "unknown"))
        body.append(name + " & " + " & ".join(cells) + r" \\")
    caption = _latex_escape(caption).replace("±", r"$\pm$")
    return "\n".join([r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{caption}}}",
                      rf"\begin{{tabular}}{{{spec}}}", r"\toprule", rf"{' & ' * first}{head1} \\", rules,
                      rf"Loss & {'Optimiser & ' if optimisers is not None else ''}{head2} \\",
                      r"\midrule", *body, r"\bottomrule", r"\end{tabular}", r"\end{table}", ""])


def p_value_rows(table, optimisers: Optional[Dict[str, str]] = None,
                 against: Optional[Dict[str, str]] = None) -> List[Dict[str, object]]:
    """One row per table cell; with ``optimisers`` and ``against`` also each loss's optimiser and the reference its
    p-value is against (empty for a reference)."""
    rows = []
    for metric, losses in table.items():
        for loss, cells in losses.items():
            extra = {} if optimisers is None else {"optimiser": optimisers.get(loss, "unknown")}
            if against is not None:
                extra["tested_against"] = "" if against.get(loss, loss) == loss else against[loss]
            for column, cell in cells.items():
                rows.append({"metric": metric, "loss": loss, **extra, "class": column, "mean": cell.mean,
                             "std": cell.std, "n": cell.n, "p_value": "" if cell.p_value is None else cell.p_value})
    return rows
