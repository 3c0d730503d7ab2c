"""``nnunet-losses evaluate``: every metric of :mod:`nnunet_losses.metrics` for a folder of predictions against a
folder of references, the JSON and CSV it writes, and the summary it prints.

Files are read by the ``reader`` the caller passes (``path -> (labels, spacing[, Header])``), as nnU-Net's
``compute_metrics_on_folder`` takes its ``image_reader_writer``; nothing here imports nnunetv2.
:func:`nnunet_losses.nnunet.evaluation.evaluate_folder` passes nnU-Net's own reader for the file ending (any format
nnU-Net reads, spacing, origin and direction from the headers).
Classes are labels or regions (a region is a set of labels, as nnU-Net's ``dataset.json`` declares them); by default
they come from the ``dataset.json`` beside or above the reference folder (nnU-Net's ``gt_segmentations`` sits beside
it), else from the labels found in the references. Outputs: a per-case CSV and a JSON with the per-case rows and a
summary (mean, std, median, n, n_undefined per class and metric; status counts), both written atomically. The JSON
names the conventions it follows (``aggregation``, ``hd95``, ``nsd_tolerance_mm``) and lists the ``warnings``.

Inputs that would be misread are reported (stderr and the JSON's ``warnings``), or refused with ``strict``: labels
that are neither background, a label of the dataset (or of the classes) nor the ignore label, non-finite or
non-integer voxel values, a prediction whose direction or origin differs from its reference's (the arrays are
compared voxel by voxel as stored: a mirrored header does not change the scores, an image stored flipped lowers
them), and references without a prediction. Always errors: a prediction without a reference, a file that cannot be
read, a prediction whose shape or spacing differs from its reference's.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ._files import atomic_write_text
from .errors import InvalidInput, MissingInput
from .metrics.case import BOTH_EMPTY, COUNTS, DEFAULT_NSD_TOLERANCE, METRICS
from .metrics.evaluate import (AGGREGATION, HD95_DEFINITIONS, EvalClass, Header, case_metrics, header_problems,
                               label_problems, summarise)

__all__ = ["KNOWN_ENDINGS", "Reader", "EvalClass", "Header", "classes_from_dataset_json", "parse_class_arguments",
           "parse_tolerances", "find_dataset_json", "detect_file_ending", "evaluate_case", "evaluate_folder",
           "write_outputs", "validation_cases", "format_summary"]

KNOWN_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".bmp", ".tif", ".tiff", ".b2nd")
MAX_PRINTED_WARNINGS = 10

# path -> (labels (*spatial), spacing per axis[, Header or None where the format has none]); picklable (a
# module-level function) for num_processes > 1
Reader = Callable[[str], Tuple]


def classes_from_dataset_json(dataset_json: dict) -> Tuple[List[EvalClass], Optional[int]]:
    """Foreground labels (or regions) of an nnU-Net ``dataset.json``, and its ignore label."""
    labels = dict(dataset_json["labels"])
    ignore = labels.pop("ignore", None)
    classes = []
    for name, value in labels.items():
        values = tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),)
        if values != (0,) and name != "background":
            classes.append(EvalClass(name, values))
    return classes, (int(ignore) if ignore is not None else None)


def parse_class_arguments(items: Sequence[str]) -> List[EvalClass]:
    """``-l 1 2 3`` (labels) or ``-l 1,2,3 2,3 3`` (regions) into classes named after their labels."""
    classes = []
    for item in items:
        try:
            labels = tuple(int(v) for v in str(item).split(","))
        except ValueError:
            raise InvalidInput(f"-l: {item!r} is not a label or a comma-separated region of labels") from None
        classes.append(EvalClass(str(item), labels))
    return classes


def parse_tolerances(items: Optional[Sequence[str]]) -> Union[float, Dict[str, float]]:
    """``--nsd-tolerance 2`` (every class) or ``--nsd-tolerance RV=1 MLV=2.5`` (per class; the others get the
    default, 1 mm)."""
    if not items:
        return DEFAULT_NSD_TOLERANCE
    try:
        if len(items) == 1 and "=" not in items[0]:
            return float(items[0])
        return {name: float(value) for name, value in (item.split("=", 1) for item in items)}
    except ValueError:
        raise InvalidInput(f"--nsd-tolerance: expected MM or CLASS=MM ..., got {' '.join(items)}") from None


def find_dataset_json(ref_dir: str) -> Optional[str]:
    for folder in (ref_dir, os.path.dirname(os.path.abspath(ref_dir))):
        candidate = os.path.join(folder, "dataset.json")
        if os.path.isfile(candidate):
            return candidate
    return None


def detect_file_ending(folder: str) -> str:
    names = sorted(os.listdir(folder))
    for ending in KNOWN_ENDINGS:
        if any(n.endswith(ending) for n in names):
            return ending
    raise InvalidInput(f"no segmentation files ({', '.join(KNOWN_ENDINGS)}) in {folder}")


def _read(reader: Reader, path: str) -> Tuple[np.ndarray, Tuple[float, ...], Optional[Header]]:
    """``reader(path)`` as (labels, spacing, header); a reader that returns no header gives None."""
    out = reader(path)
    return out[0], out[1], (out[2] if len(out) > 2 else None)


def evaluate_case(pred_path: str, ref_path: str, classes: Sequence[EvalClass], reader: Reader,
                  ignore_label: Optional[int] = None, both_empty: str = "exclude",
                  nsd_tolerances: Optional[Mapping[str, float]] = None,
                  known_labels: Optional[FrozenSet[int]] = None,
                  strict: bool = False) -> Tuple[List[Dict[str, object]], List[str]]:
    """One row per class for one case (:func:`nnunet_losses.metrics.evaluate.case_metrics`), spacing from the
    reference header, and the problems found in the two files (``header_problems``, then ``label_problems`` when
    ``known_labels`` is given; with ``strict`` the first one raises InvalidInput). A shape or spacing that differs
    raises InvalidInput."""
    pred, pred_spacing, pred_header = _read(reader, pred_path)
    ref, spacing, ref_header = _read(reader, ref_path)
    name = os.path.basename(pred_path)
    if pred.shape != ref.shape:
        raise InvalidInput(f"{name}: prediction shape {pred.shape} differs from the reference's {ref.shape}")
    if not np.allclose(pred_spacing, spacing, rtol=1e-3):
        raise InvalidInput(f"{name}: prediction spacing {pred_spacing} differs from the reference's {spacing}")
    problems = [f"{name}: {p}" for p in header_problems(pred_header, ref_header)]
    if known_labels is not None:
        problems += [f"{name}: {p}" for what, array in (("prediction", pred), ("reference", ref))
                     for p in label_problems(array, known_labels, what)]
    if strict and problems:
        raise InvalidInput(f"{problems[0]} (--strict)")
    return case_metrics(pred, ref, spacing, classes, ignore_label, both_empty, nsd_tolerances), problems


def _evaluate_one(job):
    case, pred_path, ref_path, kwargs = job
    rows, problems = evaluate_case(pred_path, ref_path, **kwargs)
    return [{"case": case, **row} for row in rows], problems


def _json_safe(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_outputs(result: dict, output_json: str) -> str:
    """``output_json`` (NaN written as null) and the per-case CSV beside it (same stem); returns the CSV path."""
    atomic_write_text(output_json, json.dumps(_json_safe(result), indent=1))
    csv_path = _csv_path(output_json)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["case", "class", "status", *METRICS, *COUNTS], lineterminator="\n")
    writer.writeheader()
    for row in result["cases"]:
        writer.writerow({k: row[k] for k in writer.fieldnames})
    atomic_write_text(csv_path, buffer.getvalue())
    return csv_path


def validation_cases(splits_json: str, fold: str) -> Optional[List[str]]:
    """The validation cases of ``fold`` in nnU-Net's ``splits_final.json``; None for fold ``all`` (nnU-Net
    validates on every case)."""
    if str(fold) == "all":
        return None
    splits = _read_json(splits_json)
    try:
        return list(splits[int(fold)]["val"])
    except (ValueError, IndexError, KeyError, TypeError):
        raise InvalidInput(f"{splits_json}: no validation cases for fold {fold!r} ({len(splits)} folds)") from None


def _known_labels(ds: Optional[dict], classes: Sequence[EvalClass], ignore_label: Optional[int]) -> FrozenSet[int]:
    known = {0} | {v for c in classes for v in c.labels}
    if ignore_label is not None:
        known.add(ignore_label)
    if ds:
        for value in ds["labels"].values():
            known.update(int(v) for v in (value if isinstance(value, (list, tuple)) else (value,)))
    return frozenset(known)


def _report(problems: Sequence[str]) -> None:
    for problem in problems[:MAX_PRINTED_WARNINGS]:
        print(f"nnunet-losses evaluate: warning: {problem}", file=sys.stderr)
    if len(problems) > MAX_PRINTED_WARNINGS:
        print(f"nnunet-losses evaluate: warning: ... and {len(problems) - MAX_PRINTED_WARNINGS} more (all in the "
              "JSON's 'warnings')", file=sys.stderr)


def _listed(names: Sequence[str]) -> str:
    """The first five names, "..." when there are more."""
    return f"{', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"


def _csv_path(output_json: str) -> str:
    return output_json[:-5] + ".csv" if output_json.endswith(".json") else output_json + ".csv"


def _check_arguments(pred_dir: str, ref_dir: str, both_empty: str, reader: Optional[Reader],
                     output: Optional[str]) -> None:
    if reader is None:
        raise TypeError("evaluate_folder needs reader=path -> (labels, spacing[, header]); nnU-Net's reader: "
                        "nnunet_losses.nnunet.evaluation.evaluate_folder")
    if both_empty not in BOTH_EMPTY:
        raise ValueError(f"both_empty: choose one of {', '.join(BOTH_EMPTY)}, got {both_empty!r}")
    for folder in (pred_dir, ref_dir):
        if not os.path.isdir(folder):
            raise MissingInput(f"no such folder: {folder}")
    for path in ((output, _csv_path(output)) if output else ()):
        if os.path.isdir(path):
            raise InvalidInput(f"output {path} is a folder: the output is a JSON file path (its CSV beside it)")


def _read_json(path: str):
    with open(path) as f:
        try:
            return json.load(f)
        except ValueError as err:  # not JSON, or not UTF-8
            raise InvalidInput(f"{path}: not valid JSON: {err}") from None


def _load_json(path: Optional[str]) -> Optional[dict]:
    return _read_json(path) if path else None


def _predictions(pred_dir: str, ref_dir: str, ending: str) -> List[str]:
    """File names of the predictions; an error when there are none or one has no reference."""
    preds = sorted(n for n in os.listdir(pred_dir) if n.endswith(ending))
    if not preds:
        raise InvalidInput(f"no predictions ending in {ending} in {pred_dir}")
    missing = [n for n in preds if not os.path.isfile(os.path.join(ref_dir, n))]
    if missing:
        raise MissingInput(f"{len(missing)} predictions have no reference in {ref_dir}: {_listed(missing)}")
    return preds


def _cases_without_prediction(preds: Sequence[str], ref_dir: str, ending: str,
                              expected_cases: Optional[Sequence[str]]) -> List[str]:
    """The expected cases (default: every reference) that have no prediction."""
    refs = sorted(n[:-len(ending)] for n in os.listdir(ref_dir) if n.endswith(ending))
    predicted = {n[:-len(ending)] for n in preds}
    return [c for c in (refs if expected_cases is None else sorted(expected_cases)) if c not in predicted]


def _classes_in_references(preds: Sequence[str], ref_dir: str, reader: Reader,
                           ignore_label: Optional[int]) -> List[EvalClass]:
    """One class per label found in the predicted cases' references, background and ignore label excepted."""
    found = sorted({int(v) for n in preds for v in np.unique(reader(os.path.join(ref_dir, n))[0])
                    if np.isfinite(v)} - {0, *(() if ignore_label is None else (ignore_label,))})
    return [EvalClass(str(v), (v,)) for v in found]


def _nsd_tolerances(nsd_tolerance: Union[float, Mapping[str, float]], names: Sequence[str]) -> Dict[str, float]:
    """The NSD tolerance in mm of each class, checked: one for all, or per class name (others: 1 mm)."""
    if isinstance(nsd_tolerance, Mapping):
        unknown = sorted(set(nsd_tolerance) - set(names))
        if unknown:
            raise InvalidInput(f"--nsd-tolerance: no class {', '.join(unknown)} (classes: {', '.join(names)})")
        tolerances = {n: float(nsd_tolerance.get(n, DEFAULT_NSD_TOLERANCE)) for n in names}
    else:
        tolerances = {n: float(nsd_tolerance) for n in names}
    for name, tau in tolerances.items():
        if not (math.isfinite(tau) and tau >= 0):
            raise InvalidInput(f"--nsd-tolerance: {name}: {tau} is not a distance in mm (>= 0)")
    return tolerances


def _evaluate_cases(jobs: Sequence[tuple], num_processes: int,
                    progress: bool) -> Tuple[List[Dict[str, object]], List[str]]:
    """Every job through :func:`_evaluate_one`, in ``num_processes`` processes: the rows and the problems found."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="evaluate", unit="case", disable=not progress)
    rows: List[Dict[str, object]] = []
    problems: List[str] = []

    def collect(outcome):
        rows.extend(outcome[0])
        problems.extend(outcome[1])
        bar.update()

    if num_processes > 1:
        with ProcessPoolExecutor(max_workers=num_processes) as pool:
            for outcome in pool.map(_evaluate_one, jobs, chunksize=max(1, len(jobs) // (4 * num_processes))):
                collect(outcome)
    else:
        for job in jobs:
            collect(_evaluate_one(job))
    bar.close()
    return rows, problems


def evaluate_folder(pred_dir: str, ref_dir: str, classes: Optional[Sequence[EvalClass]] = None,
                    dataset_json: Optional[str] = None, num_processes: int = 1, output: Optional[str] = None,
                    progress: bool = True, both_empty: str = "exclude",
                    nsd_tolerance: Union[float, Mapping[str, float]] = DEFAULT_NSD_TOLERANCE,
                    strict: bool = False, expected_cases: Optional[Sequence[str]] = None,
                    reader: Optional[Reader] = None) -> dict:
    """Evaluate every prediction in ``pred_dir`` against the file of the same name in ``ref_dir``, both read by
    ``reader`` (required; :func:`nnunet_losses.nnunet.evaluation.evaluate_folder` passes nnU-Net's).

    ``both_empty``: ``"exclude"`` (nnU-Net's evaluator, default) or ``"one"`` (``metrics.case``).
    ``nsd_tolerance``: mm, one for every class or ``{class name: mm}`` (others: 1 mm). A prediction without a
    reference is an error. References without a prediction (among ``expected_cases`` when given, e.g. a fold's
    validation cases; else every reference), ``header_problems`` and ``label_problems`` are warnings, errors with
    ``strict``. ``output`` naming a folder is an error, raised before any file is read.
    """
    _check_arguments(pred_dir, ref_dir, both_empty, reader, output)
    dataset_json = dataset_json or find_dataset_json(ref_dir)
    ds = _load_json(dataset_json)
    ending = ds["file_ending"] if ds and "file_ending" in ds else detect_file_ending(ref_dir)
    ignore_label = classes_from_dataset_json(ds)[1] if ds else None
    if classes is None:
        classes = classes_from_dataset_json(ds)[0] if ds else None
    preds = _predictions(pred_dir, ref_dir, ending)
    without_prediction = _cases_without_prediction(preds, ref_dir, ending, expected_cases)
    problems = []
    if without_prediction:
        problems.append(f"{len(without_prediction)} reference(s) without a prediction in {pred_dir}: "
                        f"{_listed(without_prediction)}")
        if strict:
            raise InvalidInput(f"{problems[0]} (--strict)")
    if classes is None:
        classes = _classes_in_references(preds, ref_dir, reader, ignore_label)
    if not classes:
        raise InvalidInput("no foreground class to evaluate (pass -l)")
    tolerances = _nsd_tolerances(nsd_tolerance, [c.name for c in classes])
    kwargs = dict(classes=tuple(classes), reader=reader, ignore_label=ignore_label, both_empty=both_empty,
                  nsd_tolerances=tolerances, known_labels=_known_labels(ds, classes, ignore_label), strict=strict)
    jobs = [(n[:-len(ending)], os.path.join(pred_dir, n), os.path.join(ref_dir, n), kwargs) for n in preds]
    rows, case_problems = _evaluate_cases(jobs, num_processes, progress)
    problems += case_problems
    _report(problems)
    result = {"pred_dir": os.path.abspath(pred_dir), "ref_dir": os.path.abspath(ref_dir),
              "dataset_json": os.path.abspath(dataset_json) if dataset_json else None,
              "classes": [{"name": c.name, "labels": list(c.labels)} for c in classes],
              "ignore_label": ignore_label, "metrics": list(METRICS), "num_cases": len(jobs),
              "num_references_without_prediction": len(without_prediction),
              "references_without_prediction": without_prediction,
              "aggregation": {"both_empty": both_empty, "description": AGGREGATION[both_empty]},
              "hd95": HD95_DEFINITIONS, "nsd_tolerance_mm": tolerances,
              "conventions": "see nnunet_losses.metrics.case and .surface; undefined values are null (never "
                             "averaged; n_undefined counts them)",
              "warnings": problems, "summary": summarise(rows, classes), "cases": rows}
    if output:
        write_outputs(result, output)
    return result


# ------------------------------------------------------------------------------------- the summary it prints
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
