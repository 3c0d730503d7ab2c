"""Experiment specs (``configs/*.toml``): which dataset, configuration, split, trainers and repeated runs reproduce
one table or figure of a paper. Schema: see ``documentation/reproducing.md``; every key is checked here with a clear message.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from ..errors import InvalidInput, MissingInput
from ..report.catalogue import MEANS, PLOTS, REPORT_METRICS
from ..synthetic_images import GENERATORS

CONVERTERS = ("acdc", "brats18", "kits19", "inia19", "synthetic", "")
SPLITS = ("half", "alternate", "nnunet")
EVALUATE = ("validation", "test")
_REQUIRED = ("name", "dataset", "configuration", "trainers")
_KNOWN = {"name", "paper", "description", "dataset", "convert", "configuration", "plans", "folds", "split",
          "split_group", "split_seed", "split_offset", "runs", "reference", "metrics", "plots", "permutations", "mean",
          "trainers", "evaluate", "synthetic_train", "synthetic_test", "synthetic_kind"}


@dataclass(frozen=True)
class Run:
    """One nnU-Net training of the matrix: a loss label, the trainer name with its seed token, a fold."""
    label: str
    trainer: str
    seed: int
    fold: int

    @property
    def key(self) -> str:
        return f"{self.trainer}/fold_{self.fold}"


@dataclass(frozen=True)
class Experiment:
    path: str
    name: str
    paper: str
    description: str
    dataset: int
    convert: str
    configuration: str
    plans: str
    folds: Tuple[int, ...]
    split: str
    split_group: str
    split_seed: int
    split_offset: int
    runs: int
    reference: str
    metrics: Tuple[str, ...]
    plots: Tuple[str, ...]
    permutations: int
    trainers: Dict[str, str]
    evaluate: str = "validation"  # or "test": the held-out imagesTs/labelsTs of the raw dataset
    synthetic_cases: Tuple[int, int] = (12, 4)  # convert = "synthetic": training and test images generated
    synthetic_kind: str = "discs"  # convert = "synthetic": the generator (synthetic_images.GENERATORS)
    mean: str = "per-class"  # the report's mean column over classes (report.catalogue.MEANS)
    # every reference label, ``reference`` first (``reference = [..]``): each loss is tested against the one with its
    # optimiser (report.optimisers); empty: ``reference`` alone
    references: Tuple[str, ...] = ()

    @property
    def matrix(self) -> List[Run]:
        """Every training, run-major so that a partial matrix already holds one run of every loss."""
        return [Run(label, f"{name}_s{seed}", seed, fold) for seed in range(1, self.runs + 1)
                for label, name in self.trainers.items() for fold in self.folds]


def _fail(path: str, message: str):
    raise InvalidInput(f"{path}: {message}")


# nnU-Net's configurations (nnUNetPlans); other plans are checked against their file before anything runs
NNUNET_CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres")
_KINDS = {int: "a whole number", str: "a string", list: "a list"}


def _value(path: str, exp: dict, key: str, kind: type, default=None, of: type = None):
    """``exp[key]`` (or ``default``) checked to be of ``kind`` (a list: of items of type ``of``), else a message
    naming the file and the key. TOML's booleans are not numbers here."""
    value = exp.get(key, default)
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok and kind is list:
        ok = all(isinstance(v, of) and not isinstance(v, bool) for v in value)
    if not ok:
        what = _KINDS[kind] + (f" of {_KINDS[of].split(' ', 1)[1]}s" if kind is list else "")
        _fail(path, f"{key} = {value!r}: expected {what}")
    return value


# a label names the folder WORK/evaluation/<label> and is an argument of `nnunet-losses report --order`
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def _short(text: str, keep: int = 60) -> str:
    return text if len(text) <= keep else text[:keep] + "..."


def check_label(path: str, label: str) -> None:
    """A label is a safe folder name: letters, digits, '_', '.', '+', '-', starting with a letter or digit, at most
    255 bytes; else a ValueError naming ``path`` and the label."""
    from ..naming import TrainerNameError, check_name_length

    if not _LABEL.fullmatch(label):
        _fail(path, f"label {_short(label)!r}: letters, digits, '_', '.', '+', '-' only, starting with a letter or "
                    "digit: it must be a safe folder name (WORK/evaluation/<label>) and report argument")
    try:
        check_name_length(label, "label")
    except TrainerNameError as err:
        _fail(path, str(err))


def check_trainers(path: str, trainers: Dict[str, str], plans: Optional[str] = None,
                   configuration: Optional[str] = None, runs: int = 1, folds: Tuple[int, ...] = (0,)) -> None:
    """Each ``label = trainer`` has a safe folder name as label and names a trainer nnU-Net can import (the parser
    its import goes through), without a seed token; the matrix's names (``_s1`` .. ``_s<runs>``) have seeds numpy
    takes and fit the file systems' 255 bytes as nnU-Net's output folder ``<trainer>__<plans>__<configuration>``
    and as log file; no two labels train the same loss with the same settings once every default is resolved
    (``ComboTrainer`` and ``ComboTrainer_a0p5`` are one). Else a ValueError naming ``path`` and the label(s)."""
    from ..naming import (TrainerNameError, check_name, check_name_length, output_folder_name,
                                 resolved_settings)

    seen: Dict[tuple, str] = {}
    for label, trainer in trainers.items():
        check_label(path, label)
        if not isinstance(trainer, str):
            _fail(path, f"trainer {label} = {trainer!r}: expected a trainer name (a string)")
        if re.search(r"_s\d+$", trainer):
            _fail(path, f"trainer {label} = {trainer!r}: leave out the seed token; runs = N appends _s1.._sN")
        last = f"{trainer}_s{runs}"  # the matrix's longest name, with its largest seed
        try:
            parsed = check_name(f"{trainer}_s1")
            check_name(last)
            if plans and configuration:
                check_name_length(output_folder_name(last, plans, configuration), "nnU-Net's output folder name")
            check_name_length(f"{last}_fold{max(folds)}.log", "log file name")
        except (TrainerNameError, ValueError, KeyError) as err:
            _fail(path, f"trainer {label} = {_short(trainer)!r}: {err}")
        settings = resolved_settings(parsed)
        if settings in seen:
            other = seen[settings]
            what = "both" if trainers[other] == trainer else f"{trainers[other]!r} and {trainer!r}"
            _fail(path, f"trainers {other} and {label} are {what}: the same loss and settings once the defaults "
                        "are resolved (one nnU-Net training reported as two losses); list each setting once")
        seen[settings] = label


def _read_tables(path: str) -> dict:
    """The spec's ``[experiment]`` keys with ``trainers`` = its ``[trainers]`` table; required and unknown keys
    checked."""
    if not os.path.isfile(path):
        raise MissingInput(f"no such experiment spec: {path}")
    with open(path, "rb") as f:
        try:
            spec = tomllib.load(f)
        except tomllib.TOMLDecodeError as err:
            _fail(path, f"not valid TOML: {err}")
    exp, trainers = dict(spec.get("experiment", {})), spec.get("trainers", {})
    if not isinstance(trainers, dict):
        _fail(path, "[trainers] must be a table of label = \"trainer name\"")
    exp["trainers"] = trainers
    missing = [k for k in _REQUIRED if exp.get(k) in (None, "", {})]
    if missing:
        _fail(path, f"missing {', '.join(missing)} ([experiment] keys and a [trainers] table)")
    unknown = set(spec) - {"experiment", "trainers"}
    if unknown:
        _fail(path, f"unknown table(s) {sorted(unknown)}; expected [experiment] and [trainers]")
    if set(exp) - _KNOWN:
        _fail(path, f"unknown [experiment] key(s) {sorted(set(exp) - _KNOWN)}")
    return exp


def _check_choices(path: str, texts: dict, metrics: tuple, plots: tuple) -> None:
    """Values from a fixed list: converter, split, evaluation set, report mean, nnU-Net configuration, metrics,
    plots."""
    from ..nnunet.small_plans import parse_small_plans_name
    from .split import compile_group

    for key, allowed in (("convert", CONVERTERS), ("split", SPLITS), ("evaluate", EVALUATE), ("mean", MEANS)):
        if texts[key] not in allowed:
            _fail(path, f"{key} = {texts[key]!r}; choose one of {allowed}")
    small = parse_small_plans_name(texts["plans"])
    nnunet_plans = (small[0] if small else texts["plans"]) == "nnUNetPlans"
    if nnunet_plans and texts["configuration"] not in NNUNET_CONFIGURATIONS:
        _fail(path, f"configuration = {texts['configuration']!r}: nnU-Net's plans have "
                    f"{', '.join(NNUNET_CONFIGURATIONS)}")
    for values, allowed, key in ((metrics, REPORT_METRICS, "metrics"), (plots, PLOTS, "plots")):
        bad = [v for v in values if v not in allowed]
        if bad:
            _fail(path, f"{key}: unknown {bad}; choose from {allowed}")
    if texts["split_group"]:
        try:
            compile_group(texts["split_group"])
        except ValueError as err:
            _fail(path, f"split_group: {err}")


def _check_numbers(path: str, exp: dict, texts: dict, numbers: dict, folds: tuple) -> None:
    """Ranges, and the numbers that go with other keys (folds with the split, sizes with the generator)."""
    if not 1 <= numbers["dataset"] <= 999:
        _fail(path, f"dataset = {numbers['dataset']}: nnU-Net dataset ids are 1..999")
    if numbers["runs"] < 1 or numbers["permutations"] < 1 or not folds:
        _fail(path, "runs and permutations must be >= 1 and folds non-empty")
    if texts["split"] != "nnunet" and folds != (0,):
        _fail(path, f"split = {texts['split']!r} has one fold (0), got folds = {list(folds)}")
    if texts["convert"] != "synthetic" and {"synthetic_train", "synthetic_test", "synthetic_kind"} & set(exp):
        _fail(path, "synthetic_train, synthetic_test and synthetic_kind describe the generated dataset: they need "
                    "convert = \"synthetic\"")
    if texts["synthetic_kind"] not in GENERATORS:
        _fail(path, f"synthetic_kind = {texts['synthetic_kind']!r}: choose from {', '.join(GENERATORS)}")
    if numbers["synthetic_train"] < 2 or numbers["synthetic_test"] < 1:
        _fail(path, "synthetic_train must be >= 2 and synthetic_test >= 1")
    if numbers["split_offset"] not in (0, 1):
        _fail(path, f"split_offset must be 0 or 1, got {numbers['split_offset']}")
    _check_split_keys(path, exp, texts["split"], bool(texts["split_group"]), folds)


def _check_split_keys(path: str, exp: dict, split: str, grouped: bool, folds: tuple) -> None:
    """The split's keys only where the split uses them (a key that changes nothing is refused), and folds that the
    split has."""
    from .split import NNUNET_FOLDS

    if "split_offset" in exp and split != "alternate":
        _fail(path, f"split_offset has no effect with split = {split!r} (it sets where split = \"alternate\" "
                    "starts): remove it")
    if "split_seed" in exp and not (split == "half" or (split == "nnunet" and grouped)):
        what = "split = \"nnunet\" without split_group (nnU-Net draws its own folds)" if split == "nnunet" \
            else f"split = {split!r}"
        _fail(path, f"split_seed has no effect with {what}: it shuffles split = \"half\" and the grouped folds of "
                    "split = \"nnunet\" with split_group; remove it")
    if len(set(folds)) != len(folds) or min(folds) < 0:
        _fail(path, f"folds = {list(folds)}: list each fold once, as a number >= 0")
    if split == "nnunet" and grouped and max(folds) >= NNUNET_FOLDS:
        _fail(path, f"folds = {list(folds)}: the grouped split (split = \"nnunet\" with split_group) has folds "
                    f"0..{NNUNET_FOLDS - 1}")


def load_experiment(path: str) -> Experiment:
    """Read and check a spec; trainer names are validated with the same parser nnU-Net's import goes through."""
    exp = _read_tables(path)
    trainers = exp["trainers"]
    name = _value(path, exp, "name", str)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        _fail(path, f"name {name!r}: letters, digits, '_', '.', '-' only (it names a folder)")
    texts = {key: _value(path, exp, key, str, default) for key, default in (
        ("paper", ""), ("description", ""), ("convert", ""), ("configuration", None), ("plans", "nnUNetPlans"),
        ("split", "nnunet"), ("split_group", ""), ("evaluate", "validation"), ("synthetic_kind", "discs"),
        ("mean", "per-class"))}
    numbers = {key: _value(path, exp, key, int, default) for key, default in (
        ("dataset", None), ("runs", 1), ("permutations", 10000), ("split_seed", 0), ("split_offset", 0),
        ("synthetic_train", 12), ("synthetic_test", 4))}
    folds = tuple(_value(path, exp, "folds", list, [0], of=int))
    metrics = tuple(_value(path, exp, "metrics", list, ["dice", "hd"], of=str))
    plots = tuple(_value(path, exp, "plots", list, ["box"], of=str))
    _check_numbers(path, exp, texts, numbers, folds)
    check_trainers(path, trainers, texts["plans"], texts["configuration"], numbers["runs"], folds)
    _check_choices(path, texts, metrics, plots)
    references = _references(path, exp, trainers)
    reference = references[0]
    return Experiment(path=os.path.abspath(path), name=name, paper=texts["paper"], description=texts["description"],
                      dataset=numbers["dataset"], convert=texts["convert"], configuration=texts["configuration"],
                      plans=texts["plans"], folds=folds, split=texts["split"], split_group=texts["split_group"],
                      split_seed=numbers["split_seed"], split_offset=numbers["split_offset"], runs=numbers["runs"],
                      reference=reference, metrics=metrics, plots=plots, permutations=numbers["permutations"],
                      trainers=dict(trainers), evaluate=texts["evaluate"],
                      synthetic_cases=(numbers["synthetic_train"], numbers["synthetic_test"]),
                      synthetic_kind=texts["synthetic_kind"], mean=texts["mean"], references=references)


def _references(path: str, exp: dict, trainers: Dict[str, str]) -> Tuple[str, ...]:
    """``reference``: one label, or a list of labels whose trainers use different optimisers (or learning rates),
    the first being the reference of a loss whose optimiser none uses; each a label of [trainers]."""
    from ..report.optimisers import optimiser_text, trainer_optimiser

    value = exp.get("reference", next(iter(trainers)))
    labels = [value] if isinstance(value, str) else value
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
        _fail(path, f"reference = {value!r}: expected a label of [trainers] or a list of them")
    for label in labels:
        if label not in trainers:
            _fail(path, f"reference {label!r} is not a label of [trainers] ({', '.join(trainers)})")
    seen: Dict[object, str] = {}
    for label in labels:
        optimiser = trainer_optimiser(trainers[label])
        if optimiser in seen:
            _fail(path, f"references {seen[optimiser]} and {label} both train with {optimiser_text(optimiser)}: "
                        "list one reference per optimiser (a loss is tested against the one with its optimiser)")
        seen[optimiser] = label
    return tuple(labels)
