"""``nnunet-losses report``: from the evaluations of several trainers to ``report.md`` with the paper-style table
(also ``table.md``, ``table.tex``, ``table.csv`` with every p-value) and the PNG plots.

Losses are compared over the cases every one of them has (means, std and paired tests alike); the report lists the
cases left out. Every caption names the empty-mask convention of the evaluations, the HD95 definition and the NSD
tolerance of the metrics shown."""
from __future__ import annotations

import csv
import glob
import io
import os
from typing import Dict, List, Optional, Sequence

from .._files import atomic_write_text
from ..errors import InvalidInput
from .collect import (Coverage, RunResult, check_comparable, check_one_setting_per_label, coverage, load_results,
                      per_case)
from .optimisers import label_optimisers, optimiser_text, pairing_text, reference_labels, tested_against
from .plots import box_plots, cdf_plot, curves_plot
from .tables import MEAN_CAPTIONS, TITLES, build_table, p_value_rows, to_latex, to_markdown
from .training_log import parse_training_logs

HD95_NAMES = {"hd95": "HD95 pooled = 95th percentile of both directions' surface distances together (medpy, the "
                      "RW paper's evaluator)",
              "hd95_max": "HD95 max-directed = the larger of the two directed 95th percentiles (Metrics Reloaded, "
                          "MONAI)"}
MAX_LISTED = 20


def _csv(rows: List[Dict[str, object]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _plots(results: Dict[str, List[RunResult]], out: str, metrics: Sequence[str], plots: Sequence[str],
           cases: Sequence[str], mean: str) -> List[str]:
    classes = next(iter(results.values()))[0].classes
    made = []
    if "box" in plots:
        for metric in metrics:
            values = {loss: {cls: list(per_case(runs, metric, cls, cases).values()) for cls in classes}
                      for loss, runs in results.items()}
            made.append(box_plots(values, TITLES.get(metric, metric), os.path.join(out, f"box_{metric}.png")))
    if "cdf" in plots:
        final = {loss: [run.mean_over_classes("dice", mean) for run in runs] for loss, runs in results.items()}
        label = f"Final mean Dice ({mean.replace('-', ' ')})"
        made.append(cdf_plot(final, os.path.join(out, "cdf_dice.png"), label))
    if "curves" in plots:
        curves = {loss: [parse_training_logs(run.fold_dir)["mean_pseudo_dice"] for run in runs]
                  for loss, runs in results.items()}
        if any(len(c) for runs in curves.values() for c in runs):
            made.append(curves_plot(curves, os.path.join(out, "curves_pseudo_dice.png")))
    return made


def _caption(title: str, first: RunResult, metrics: Sequence[str], reference: str, permutations: int,
             cov: Coverage, mean: str) -> str:
    left = f" ({len(cov.left_out)} other cases left out, listed below)" if cov.left_out else ""
    parts = [f"{title}. Mean ± std over the {len(cov.common)} cases every loss has{left}; each case's value is the "
             f"mean over the runs of its loss; {MEAN_CAPTIONS[mean]}.",
             f"Empty masks: {first.aggregation['description']}."]
    parts += [f"{HD95_NAMES[m]}." for m in ("hd95", "hd95_max") if m in metrics]
    if "nsd" in metrics:
        tolerances = first.evaluation.get("nsd_tolerance_mm") or {}
        values = sorted(set(tolerances.values()))
        text = (f"{values[0]:g} mm" if len(values) == 1
                else ", ".join(f"{name} {tau:g} mm" for name, tau in tolerances.items()))
        parts.append(f"NSD: share of both surfaces within {text} of the other (surface voxels).")
    parts.append(f"* p < 0.05 against {reference} (paired permutation test over the same cases, {permutations} "
                 "permutations). Bold: best mean.")
    return " ".join(parts)


def _listed(items: Sequence[str]) -> str:
    return ", ".join(items[:MAX_LISTED]) + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def build_report(eval_root: str, out: str, reference: Optional[str] = None, order: Optional[Sequence[str]] = None,
                 metrics: Sequence[str] = ("dice", "hd"), plots: Sequence[str] = ("box",),
                 permutations: int = 10000, title: str = "Results", mean: str = "per-class") -> str:
    """Write the report into ``out``; returns the path of ``report.md``. ``mean``: the mean column over classes,
    ``per-class`` (nnU-Net's foreground_mean, default) or ``per-case`` (see :mod:`.tables`). ``reference``: one
    label, or several (comma-separated or a list): each loss is then tested against the one with its optimiser
    (:mod:`.optimisers`); the tables show every loss's optimiser."""
    results = load_results(eval_root, order)
    labels = reference_labels(reference) or [next(iter(results))]
    reference = labels[0]  # the first reference: the one a loss without a same-optimiser reference is tested against
    if reference not in results:
        raise InvalidInput(f"reference loss {reference!r} has no results (found: {', '.join(results)})")
    check_one_setting_per_label(results)
    check_comparable(results, metrics)
    cov = coverage(results)
    if not cov.common:
        raise InvalidInput(f"no case under {eval_root} is evaluated for every loss ({', '.join(results)}): nothing to "
                           "compare")
    os.makedirs(out, exist_ok=True)
    first = next(iter(results.values()))[0]
    references = list(dict.fromkeys([reference] + [r for r in labels[1:] if r in results]))
    used = label_optimisers({label: runs[0].trainer for label, runs in results.items()})
    against = tested_against(used, references)
    shown = {label: optimiser_text(optimiser) for label, optimiser in used.items()}
    caption = _caption(title, first, metrics, reference if len(references) == 1 else "its reference", permutations,
                       cov, mean)
    if len(references) > 1:
        caption += f" References: {', '.join(references)}; {pairing_text(used, against)}."
    table = build_table(results, metrics, reference, permutations, cases=cov.common, mean=mean, against=against)
    atomic_write_text(os.path.join(out, "table.md"), to_markdown(table, references, caption, shown))
    atomic_write_text(os.path.join(out, "table.tex"), to_latex(table, references, caption, shown))
    atomic_write_text(os.path.join(out, "table.csv"), _csv(p_value_rows(table, shown, against)))
    figures = _plots(results, out, metrics, plots, cov.common, mean)

    lines = [f"# {title}", "", caption, "",
             "Runs evaluated per loss: " + ", ".join(f"{loss}: {len(runs)}" for loss, runs in results.items()) + "."]
    missing = [label for label in (order or []) if label not in results]
    if missing:
        lines.append(f"\n**Missing:** no evaluation yet for {', '.join(missing)}.")
    if order:
        others = sorted({os.path.basename(os.path.dirname(os.path.dirname(p)))
                         for p in _all_evaluations(eval_root)} - set(results))
        if others:
            lines.append(f"\n**Not shown** (not in --order): {', '.join(others)}.")
    if cov.left_out:
        lines.append("\n**Cases left out** of every mean and test (not evaluated for every loss): " + _listed(
            [f"{case} (none for {', '.join(losses)})" for case, losses in cov.left_out.items()]) + ".")
    for run in (run for runs in results.values() for run in runs if run.evaluation.get("warnings")):
        warnings = run.evaluation["warnings"]
        lines.append(f"\n**Warnings** of the evaluation {os.path.relpath(run.path, eval_root)} ({len(warnings)}): "
                     f"{warnings[0]}{' ...' if len(warnings) > 1 else ''}")
    for loss, (count, runs, most) in cov.fewer_runs.items():
        lines.append(f"\n**{loss}:** {count} of the compared cases are averaged over {runs} run(s) instead of {most}.")
    lines += ["", to_markdown(table, references, optimisers=shown),
              "Empty masks over the compared cases (counted over runs x cases; the "
              "caption says what values they get):", ""]
    lines += _empty_table(results, cov.common)
    lines += [""] + [f"![{os.path.basename(f)[:-4]}]({os.path.basename(f)})" for f in figures]
    lines += ["", "Files: `table.md`, `table.tex` (booktabs), `table.csv` (every mean, std, n and p-value)."]
    return atomic_write_text(os.path.join(out, "report.md"), "\n".join(lines) + "\n")


def _all_evaluations(eval_root: str) -> List[str]:
    return glob.glob(os.path.join(eval_root, "*", "*", "fold_*.json"))


def _empty_table(results: Dict[str, List[RunResult]], cases: Sequence[str]) -> List[str]:
    keep = set(cases)
    lines = ["| loss | class | prediction empty | reference empty | both empty |", "|---|---|---|---|---|"]
    for loss, runs in results.items():
        for cls in runs[0].classes:
            rows = [r for run in runs for r in run.evaluation["cases"] if r["class"] == cls and r["case"] in keep]
            counts = [sum(r["status"] == s for r in rows) for s in ("pred_empty", "ref_empty", "both_empty")]
            if any(counts):
                lines.append(f"| {loss} | {cls} | " + " | ".join(str(c) for c in counts) + " |")
    return lines if len(lines) > 2 else ["none."]
