"""``nnunet-losses evaluate``: every metric of ``metrics.case`` for a folder of predictions against references.

Files are read with nnU-Net's own reader for their ending (any format nnU-Net reads), spacing from the headers.
Classes are labels or regions (a region is a set of labels, as nnU-Net's ``dataset.json`` declares them); by default
they come from the ``dataset.json`` beside or above the reference folder (nnU-Net's ``gt_segmentations`` sits beside
it), else from the labels found in the references. Outputs: a per-case CSV and a JSON with the per-case rows and a
summary (mean, std, median, n, n_undefined per class and metric; status counts), both written atomically.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._files import atomic_write_text
from .case import COUNTS, METRICS, class_metrics

KNOWN_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".bmp", ".tif", ".tiff", ".b2nd")


@dataclass(frozen=True)
class EvalClass:
    """One evaluated class: a name and the labels it covers (one label, or several for an nnU-Net region)."""
    name: str
    labels: Tuple[int, ...]


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
            raise ValueError(f"-l: {item!r} is not a label or a comma-separated region of labels") from None
        classes.append(EvalClass(str(item), labels))
    return classes


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
    raise ValueError(f"no segmentation files ({', '.join(KNOWN_ENDINGS)}) in {folder}")


def _read(path: str) -> Tuple[np.ndarray, Tuple[float, ...]]:
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_file_ending

    ending = next(e for e in KNOWN_ENDINGS if path.endswith(e))
    reader = determine_reader_writer_from_file_ending(ending, path, verbose=False)()
    seg, props = reader.read_seg(path)
    return seg[0], tuple(float(s) for s in props["spacing"])


def evaluate_case(pred_path: str, ref_path: str, classes: Sequence[EvalClass],
                  ignore_label: Optional[int] = None) -> List[Dict[str, object]]:
    """One row per class for one case (``metrics.case.class_metrics``), spacing from the reference header."""
    pred, pred_spacing = _read(pred_path)
    ref, spacing = _read(ref_path)
    if pred.shape != ref.shape:
        raise ValueError(f"{os.path.basename(pred_path)}: prediction shape {pred.shape} differs from the "
                         f"reference's {ref.shape}")
    if not np.allclose(pred_spacing, spacing, rtol=1e-3):
        raise ValueError(f"{os.path.basename(pred_path)}: prediction spacing {pred_spacing} differs from the "
                         f"reference's {spacing}")
    valid = None if ignore_label is None else ref != ignore_label
    rows = []
    for cls in classes:
        row = class_metrics(np.isin(pred, cls.labels), np.isin(ref, cls.labels), spacing, valid)
        rows.append({"class": cls.name, **row})
    return rows


def _evaluate_one(job):
    case, pred_path, ref_path, classes, ignore_label = job
    return [{"case": case, **row} for row in evaluate_case(pred_path, ref_path, classes, ignore_label)]


def summarise(rows: Sequence[Dict[str, object]], classes: Sequence[EvalClass]) -> Dict[str, dict]:
    """Per class and metric: mean, std, median over the cases where the value is defined, n and n_undefined;
    per class: how many cases had each status. ``mean_foreground`` averages the classes per case first."""
    summary: Dict[str, dict] = {}
    groups = {cls.name: [r for r in rows if r["class"] == cls.name] for cls in classes}
    for name, class_rows in groups.items():
        entry = {m: _stats([r[m] for r in class_rows]) for m in METRICS}
        entry["status"] = {s: sum(r["status"] == s for r in class_rows)
                           for s in ("both", "ref_empty", "pred_empty", "both_empty")}
        summary[name] = entry
    by_case: Dict[str, list] = {}
    for r in rows:
        by_case.setdefault(r["case"], []).append(r)
    summary["mean_foreground"] = {m: _stats([_defined_mean([r[m] for r in case_rows])
                                             for case_rows in by_case.values()]) for m in METRICS}
    return summary


def _defined_mean(values: Sequence[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def _stats(values: Sequence[float]) -> Dict[str, Optional[float]]:
    arr = np.asarray(values, dtype=np.float64)
    defined = arr[~np.isnan(arr)]
    if defined.size == 0:
        return {"mean": None, "std": None, "median": None, "n": 0, "n_undefined": int(arr.size)}
    return {"mean": float(defined.mean()), "std": float(defined.std()), "median": float(np.median(defined)),
            "n": int(defined.size), "n_undefined": int(arr.size - defined.size)}


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
    csv_path = output_json[:-5] + ".csv" if output_json.endswith(".json") else output_json + ".csv"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["case", "class", "status", *METRICS, *COUNTS], lineterminator="\n")
    writer.writeheader()
    for row in result["cases"]:
        writer.writerow({k: row[k] for k in writer.fieldnames})
    atomic_write_text(csv_path, buffer.getvalue())
    return csv_path


def evaluate_folder(pred_dir: str, ref_dir: str, classes: Optional[Sequence[EvalClass]] = None,
                    dataset_json: Optional[str] = None, num_processes: int = 1, output: Optional[str] = None,
                    progress: bool = True) -> dict:
    """Evaluate every prediction in ``pred_dir`` against the file of the same name in ``ref_dir``.

    A prediction without a reference is an error; references without a prediction are counted
    (``num_references_without_prediction``: nnU-Net's gt_segmentations hold all training cases, a fold's
    validation folder only its own).
    """
    from tqdm import tqdm

    for folder in (pred_dir, ref_dir):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"no such folder: {folder}")
    dataset_json = dataset_json or find_dataset_json(ref_dir)
    ds = None
    if dataset_json:
        with open(dataset_json) as f:
            ds = json.load(f)
    ending = ds["file_ending"] if ds and "file_ending" in ds else detect_file_ending(ref_dir)
    ignore_label = classes_from_dataset_json(ds)[1] if ds else None
    if classes is None:
        classes = classes_from_dataset_json(ds)[0] if ds else None
    preds = sorted(n for n in os.listdir(pred_dir) if n.endswith(ending))
    if not preds:
        raise ValueError(f"no predictions ending in {ending} in {pred_dir}")
    missing = [n for n in preds if not os.path.isfile(os.path.join(ref_dir, n))]
    if missing:
        raise FileNotFoundError(f"{len(missing)} predictions have no reference in {ref_dir}: "
                                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if classes is None:
        found = sorted({int(v) for n in preds for v in np.unique(_read(os.path.join(ref_dir, n))[0])} - {0})
        classes = [EvalClass(str(v), (v,)) for v in found]
    if not classes:
        raise ValueError("no foreground class to evaluate (pass -l)")
    jobs = [(n[:-len(ending)], os.path.join(pred_dir, n), os.path.join(ref_dir, n), tuple(classes), ignore_label)
            for n in preds]
    bar = tqdm(total=len(jobs), desc="evaluate", unit="case", disable=not progress)
    rows: List[Dict[str, object]] = []
    if num_processes > 1:
        with ProcessPoolExecutor(max_workers=num_processes) as pool:
            for case_rows in pool.map(_evaluate_one, jobs, chunksize=max(1, len(jobs) // (4 * num_processes))):
                rows.extend(case_rows)
                bar.update()
    else:
        for job in jobs:
            rows.extend(_evaluate_one(job))
            bar.update()
    bar.close()
    num_refs = sum(n.endswith(ending) for n in os.listdir(ref_dir))
    result = {"pred_dir": os.path.abspath(pred_dir), "ref_dir": os.path.abspath(ref_dir),
              "dataset_json": os.path.abspath(dataset_json) if dataset_json else None,
              "classes": [{"name": c.name, "labels": list(c.labels)} for c in classes],
              "ignore_label": ignore_label, "metrics": list(METRICS), "num_cases": len(jobs),
              "num_references_without_prediction": num_refs - len(jobs),
              "conventions": "see nnunet_losses.metrics.case: empty masks have defined values, undefined ratios null "
                             "(never averaged; n_undefined counts them)",
              "summary": summarise(rows, classes), "cases": rows}
    if output:
        write_outputs(result, output)
    return result
