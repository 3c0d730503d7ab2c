"""``nnunet-losses doctor``: checks the set-up a training or a prediction with our trainers needs, one line per check
(``ok``, ``warn`` or ``FAIL``, what was found and the fix).

Always: the versions of nnU-Net and torch against nnunet-losses' requirements; the device nnU-Net would use and
whether its trainer compiles there (nnU-Net compiles only on CUDA, see ``nnUNetTrainer._do_i_compile``); the path
variables ``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results``; ``nnUNet_extTrainer``, by running nnU-Net's
own trainer lookup (``recursive_find_trainer_class_by_name``, what ``nnUNetv2_train`` and ``nnUNetv2_predict`` call)
for one of our trainers in this environment; the C compiler of Combo's fused CPU kernel. With ``-tr``: whether the
name parses (else the grammar's message). With ``-d`` and ``-c``: the dataset's preprocessed folder, plans and
cases; the precomputed maps the trainer needs (:func:`~nnunet_losses.nnunet.precompute.check_maps`, every byte, as
at training start); the free disk space for maps against an upper bound of their size.

Nothing is written. Exit status 0 when no check fails, 1 otherwise.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from typing import List, Optional

OK, WARN, FAIL = "ok", "warn", "FAIL"
EXT_FIX = "export nnUNet_extTrainer=$(nnunet-losses trainers-path)"
PROBE_TRAINER = "ComboTrainer"  # looked up through nnUNet_extTrainer when -tr names none of ours


@dataclass
class Check:
    name: str  # what is checked (a short key; tests and scripts select lines by it)
    status: str  # OK, WARN or FAIL
    text: str  # what was found and, unless ok, the fix

    def line(self) -> str:
        return f"{self.status:<4}  {self.name}: {self.text}"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


# ----------------------------------------------------------------------------------------------- software
def _requirement(package: str) -> Optional[str]:
    """nnunet-losses' version bounds of ``package`` (e.g. ``>=2.8.1,<2.9``), from its installed metadata."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        lines = requires("nnunet-losses") or []
    except PackageNotFoundError:
        return None
    for line in lines:
        head = line.split(";")[0].strip()
        name = head.split("<")[0].split(">")[0].split("=")[0].split("!")[0].split("~")[0].strip()
        if name.lower().replace("_", "-") == package and "extra ==" not in line:
            return head[len(name):].strip() or None
    return None


def _version_check(name: str, package: str) -> Check:
    from importlib.metadata import PackageNotFoundError, version

    wanted = _requirement(package)
    try:
        found = version(package)
    except PackageNotFoundError:
        return Check(name, FAIL, f"{package} is not installed; fix: pip install '{package}{wanted or ''}'")
    if wanted:
        from packaging.specifiers import SpecifierSet

        if found not in SpecifierSet(wanted, prereleases=True):
            return Check(name, FAIL, f"{package} {found}, but nnunet-losses needs {package}{wanted}; fix: "
                                     f"pip install '{package}{wanted}'")
    return Check(name, OK, f"{package} {found}" + (f" (nnunet-losses needs {wanted})" if wanted else ""))


def check_versions() -> List[Check]:
    import platform

    from .. import __version__

    checks = [_version_check("nnU-Net", "nnunetv2"), _version_check("torch", "torch")]
    if checks[0].status == OK:
        checks[0].text += f"; nnunet-losses {__version__}, Python {platform.python_version()}"
    return checks


def _compile_switch() -> Optional[bool]:
    """nnU-Net's ``nnUNet_compile``: None when unset (nnU-Net's default: compile where it can)."""
    value = os.environ.get("nnUNet_compile")
    return None if value is None else value.lower() in ("true", "1", "t")


def check_device() -> Check:
    import torch

    switch = _compile_switch()
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        count = torch.cuda.device_count()
        where = f"CUDA: {count} GPU(s), {name} (torch CUDA {torch.version.cuda})"
        if os.name == "nt" or switch is False:
            why = "Windows" if os.name == "nt" else "nnUNet_compile is false"
            return Check("device", OK, f"{where}; nnU-Net's trainer does not compile the network ({why})")
        if importlib.util.find_spec("triton") is None:  # torch.compile's GPU code generator (torch's optional dep)
            return Check("device", WARN, f"{where}; nnU-Net's trainer compiles the network (torch.compile) but "
                                         f"triton is not installed, which torch.compile needs on the GPU; fix: pip "
                                         f"install triton, or export nnUNet_compile=f")
        return Check("device", OK, f"{where}; nnU-Net's trainer compiles the network with torch.compile "
                                   f"(nnUNet_compile=f turns it off)")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return Check("device", OK, "MPS (Apple GPU); nnU-Net does not compile on MPS; pass -device mps to "
                                   "nnUNetv2_train and nnUNetv2_predict (their default is cuda)")
    return Check("device", WARN, f"no GPU (no CUDA, no MPS): training runs on the CPU ({os.cpu_count()} cores), "
                                 f"slowly, and nnU-Net does not compile there; pass -device cpu to nnUNetv2_train and "
                                 f"nnUNetv2_predict (their default is cuda)")


def check_compiler(loss: Optional[str] = None) -> Optional[Check]:
    """Combo's fused CPU kernel needs a C compiler (``$CC``, default ``cc``); without one Combo uses PyTorch ops.
    None when the trainer's ``loss`` is known and is not Combo."""
    from ..losses._fast import combo_cpu

    if loss is not None and loss != "combo":
        return None
    try:
        if not combo_cpu.enabled():
            return Check("C compiler", OK, f"{combo_cpu.SWITCH}={os.environ.get(combo_cpu.SWITCH)}: Combo's loss "
                                           f"uses PyTorch ops on the CPU (the fused kernel is off)")
    except ValueError as err:
        return Check("C compiler", FAIL, f"{err}; fix: unset it or give one of these values")
    compiler = os.environ.get("CC", "cc")
    path = shutil.which(compiler)
    fallback = ("Combo's loss on the CPU uses its PyTorch path instead of the fused C kernel (same values, slower: "
                "BENCHMARKS.md, 'Loss cost, eager'); other devices are not affected")
    if path is None:
        return Check("C compiler", WARN, f"no C compiler {compiler!r} on PATH (CC={os.environ.get('CC', 'unset')}): "
                                         f"{fallback}; fix: install one (e.g. apt install gcc) or set CC")
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                                 check=True).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError) as err:
        return Check("C compiler", WARN, f"{path} does not run ({' '.join(str(err).split())[:120]}): {fallback}; "
                                         f"fix: install a working C compiler or set CC")
    return Check("C compiler", OK, f"{path} ({version}): Combo's fused CPU kernel is built on first use")


# ------------------------------------------------------------------------------------------------- paths
PATH_VARIABLES = {
    "nnUNet_raw": ("raw datasets: nnUNetv2_plan_and_preprocess and the converters read it", WARN),
    "nnUNet_preprocessed": ("preprocessed data, plans and maps: training reads them", FAIL),
    "nnUNet_results": ("trained models: training writes them, prediction reads them", FAIL),
}


def _nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    return path


def check_path_variable(variable: str) -> Check:
    role, unset_status = PATH_VARIABLES[variable]
    value = os.environ.get(variable)
    if not value:
        return Check(variable, unset_status, f"not set ({role}); fix: export {variable}=/path/to/{variable}")
    if os.path.isdir(value):
        if not os.access(value, os.W_OK | os.X_OK):
            status = WARN if variable == "nnUNet_raw" else FAIL
            return Check(variable, status, f"{value} is not writable ({role}); fix: make it writable or point "
                                           f"{variable} to a writable folder")
        return Check(variable, OK, f"{value} (exists, writable)")
    if os.path.lexists(value):
        return Check(variable, FAIL, f"{value} is not a folder ({role}); fix: point {variable} to a folder")
    parent = _nearest_existing(value)
    if os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK):
        return Check(variable, WARN, f"{value} does not exist ({role}); nnU-Net creates it on its first write; "
                                     f"check the spelling, or mkdir -p {value}")
    return Check(variable, FAIL, f"{value} does not exist and cannot be created ({parent} is not a writable "
                                 f"folder); fix: point {variable} to a writable folder")


# -------------------------------------------------------------------------------------------- trainers
def trainers_folder() -> str:
    """The folder ``nnunet-losses trainers-path`` prints."""
    from .. import ext_trainers

    return os.path.dirname(os.path.abspath(ext_trainers.__file__))


def _nnunet_lookup(name: str):
    """nnU-Net's own lookup of a trainer class (its folders, then ``nnUNet_extTrainer``), quiet; None if not found."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            return recursive_find_trainer_class_by_name(name)
        except (RuntimeError, AssertionError, ImportError):
            return None


def _nnunet_own_trainer(name: str):
    """The class of nnU-Net's own trainer ``name`` (in nnunetv2/training/nnUNetTrainer), else None."""
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer"), name,
                                           "nnunetv2.training.nnUNetTrainer", nnunetv2.__path__[0])


def check_trainer_name(name: str):
    """(check, parsed name or None, whether it is nnU-Net's own trainer)."""
    from ..naming import TrainerNameError, check_name, explain
    from ..catalogue import FAMILIES, ONLINE_MAP_FAMILIES, map_source
    from .trainers import _looks_like_ours

    if _looks_like_ours(name):
        try:
            parsed = check_name(name)
        except TrainerNameError as err:
            message = explain(name, err, FAMILIES, ONLINE_MAP_FAMILIES, check_name).splitlines()
            nearest = next((line.strip() for line in message if "nearest valid name" in line), "")
            return Check("trainer", FAIL, f"{message[0]}; {nearest}; fix: see nnunet-losses trainers"), None, False
        source = map_source(parsed)
        maps = "" if source is None else f", map {source.kind} ({source.made})"
        params = parsed.loss_kwargs()
        return Check("trainer", OK, f"{name}: family {parsed.family.name}, loss {parsed.family.loss!r}"
                                    + (f" {params}" if params else "") + maps), parsed, False
    if _nnunet_own_trainer(name) is not None:
        return Check("trainer", OK, f"{name}: one of nnU-Net's own trainers"), None, True
    return Check("trainer", FAIL, f"{name}: neither one of our trainer names nor one of nnU-Net's trainers; fix: "
                                  f"nnunet-losses trainers lists ours"), None, False


def check_ext_trainer(probe: str = PROBE_TRAINER, needed: bool = True) -> Check:
    """Whether nnU-Net's lookup finds our trainer ``probe`` in this environment (``needed``: False when the
    training uses one of nnU-Net's own trainers)."""
    from .trainers import LossTrainer

    expected = trainers_folder()
    value = os.environ.get("nnUNet_extTrainer")
    if not value:
        if not needed:
            return Check("nnUNet_extTrainer", OK, "not set; not needed for nnU-Net's own trainers")
        return Check("nnUNet_extTrainer", FAIL, f"not set: nnUNetv2_train and nnUNetv2_predict do not find our "
                                                f"trainers (e.g. {probe}); fix: {EXT_FIX}")
    found = _nnunet_lookup(probe)
    paths = [p for p in value.split(os.pathsep) if p.strip()]
    if found is not None and issubclass(found, LossTrainer):
        here = "" if any(os.path.realpath(p) == os.path.realpath(expected) for p in paths) else \
            f" (this installation's folder is {expected})"
        return Check("nnUNet_extTrainer", OK, f"{value}: nnU-Net's lookup finds {probe}{here}")
    missing = [p for p in paths if not os.path.isdir(p)]
    why = f"{', '.join(missing)} does not exist" if missing else "it holds no module that gives our trainers"
    status = FAIL if needed else WARN
    return Check("nnUNet_extTrainer", status, f"{value}: nnU-Net's lookup does not find {probe} ({why}); fix: "
                                              f"{EXT_FIX}  (= {expected})")


# ------------------------------------------------------------------------------------------ dataset, maps
def _map_kinds_needed(parsed, num_classes: int) -> List[str]:
    """The stored map kinds the trainer reads from disk ([] for online, device or no maps); without a trainer,
    those ``precompute-maps`` writes by default."""
    from ..maps import STORED_KINDS
    from ..catalogue import map_source
    from .map_pipeline import MapPipeline

    if parsed is None:
        return list(STORED_KINDS)
    stored = MapPipeline.from_source(map_source(parsed), num_classes).stored_kind
    return [stored] if stored else []


def _first_training_makes_maps() -> Optional[str]:
    """``nnUNet_losses_make_maps`` when it lets trainings make missing maps (unset or on), else None."""
    from .._args import env_switch
    from .precompute import MAKE_MAPS

    try:
        return MAKE_MAPS if env_switch(MAKE_MAPS) else None
    except ValueError:  # a value the trainings refuse too
        return None


def _map_bytes_bound(data_folder: str, cases: List[str], kind: str, num_classes: int) -> int:
    """An upper bound of the bytes of ``kind`` maps of ``cases``: uncompressed (voxels x channels x item size; the
    files are compressed blosc2 and smaller, BENCHMARKS.md "Stored bytes")."""
    import blosc2
    import numpy as np

    from ..maps import stored_row

    row = stored_row(kind)
    per_voxel = (1 if row.one_channel else num_classes) * np.dtype(row.stored.dtype).itemsize
    total = 0
    for case in cases:
        shape = blosc2.open(os.path.join(data_folder, case + "_seg.b2nd"), mode="r").shape
        total += int(np.prod(shape[1:])) * per_voxel
    return total


def _folder_bytes(folder: str) -> int:
    return sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())


def check_dataset(dataset: str, configuration: Optional[str], plans: str, parsed=None,
                  maps: bool = True) -> List[Check]:
    """The preprocessed dataset, plans and configuration; with ``maps``, the maps the trainer ``parsed`` (None: any
    trainer) reads and the disk space for them."""
    from ..errors import UserError
    from .datasets import resolve_dataset, resolve_dataset_folder
    from .precompute import MapsNotReady, check_maps, list_cases, maps_folder, read_manifest

    try:
        base = resolve_dataset_folder(dataset)
    except (UserError, RuntimeError, ValueError) as err:
        return [Check("dataset", FAIL, f"{dataset}: {' '.join(str(err).split())}; fix: nnUNetv2_plan_and_preprocess "
                                       f"-d {dataset}, or check -d and nnUNet_preprocessed")]
    plans_file = os.path.join(base, plans + ".json")
    if not os.path.isdir(base):
        return [Check("dataset", FAIL, f"no preprocessed folder {base}; fix: nnUNetv2_plan_and_preprocess -d "
                                       f"{dataset}")]
    if not os.path.isfile(plans_file):
        others = sorted((f[:-5] for f in os.listdir(base) if f.endswith(".json") and "plans" in f.lower()),
                        key=str.lower)
        return [Check("dataset", FAIL, f"no plans {plans_file} (plans here: {', '.join(others) or 'none'}); fix: "
                                       f"check -p, or nnUNetv2_plan_and_preprocess -d {dataset}")]
    if configuration is None:
        return [Check("dataset", OK, f"{base}: plans {plans} (give -c to check a configuration's data and maps)")]
    try:
        data_folder, label_manager, is_2d, spacing = resolve_dataset(dataset, configuration, plans)
    except (UserError, RuntimeError, ValueError, KeyError, OSError) as err:
        return [Check("dataset", FAIL, f"{plans_file}, configuration {configuration}: "
                                       f"{' '.join(str(err).split())}")]
    cases = list_cases(data_folder) if os.path.isdir(data_folder) else []
    if not cases:
        return [Check("dataset", FAIL, f"no preprocessed cases (*_seg.b2nd) in {data_folder}; fix: "
                                       f"nnUNetv2_plan_and_preprocess -d {dataset} -c {configuration} -p {plans}")]
    checks = [Check("dataset", OK, f"{base}: plans {plans}, configuration {configuration}: {len(cases)} "
                                   f"preprocessed cases in {os.path.basename(data_folder)}")]
    if not maps or label_manager.has_regions:  # the map-based losses are softmax-only
        return checks
    num_classes = label_manager.num_segmentation_heads
    kinds = _map_kinds_needed(parsed, num_classes)
    command = f"nnunet-losses precompute-maps -d {dataset} -c {configuration} -p {plans}"
    auto = _first_training_makes_maps()
    folder = maps_folder(data_folder)
    to_write: List[str] = []  # kinds whose maps are not all up to date
    if parsed is not None and not kinds:
        checks.append(Check("maps", OK, "the trainer reads no precomputed maps (none, or made during training)"))
    for kind in kinds:
        if parsed is None:  # no trainer: report the maps present, nothing fails
            settings = read_manifest(data_folder).get("kinds", {}).get(kind)
            if settings is None:
                checks.append(Check(f"maps {kind}", OK, f"none in {folder} (only trainers with precomputed "
                                                        f"{kind!r} maps read them; {command} --kinds {kind})"))
                to_write.append(kind)
                continue
        try:
            settings = check_maps(data_folder, cases, kind, command, num_classes, is_2d, spacing)
        except (MapsNotReady, RuntimeError) as err:
            message = " ".join(str(err).split())
            to_write.append(kind)
            if parsed is None:
                checks.append(Check(f"maps {kind}", WARN, message))
            elif auto and isinstance(err, MapsNotReady):
                checks.append(Check(f"maps {kind}", WARN, f"{message}, or the first training makes them "
                                                          f"({auto}=f turns that off)"))
            else:
                checks.append(Check(f"maps {kind}", FAIL, message))
            continue
        units = "voxels" if settings["spacing"] is None else f"spacing {settings['spacing']}"
        checks.append(Check(f"maps {kind}", OK, f"up to date for {len(cases)} cases in {folder} (every byte "
                                                f"verified; distances in {units})"))
    checks.append(_disk_check(data_folder, cases, to_write, num_classes))
    return checks


def _disk_check(data_folder: str, cases: List[str], kinds: List[str], num_classes: int) -> Check:
    free = shutil.disk_usage(_nearest_existing(data_folder)).free
    data = _folder_bytes(data_folder)
    if not kinds:
        return Check("disk", OK, f"{_size(free)} free beside {data_folder} ({_size(data)} of preprocessed data); "
                                 f"no maps to write")
    bound = sum(_map_bytes_bound(data_folder, cases, kind, num_classes) for kind in kinds)
    text = (f"{_size(free)} free beside {data_folder} ({_size(data)} of preprocessed data); the {' and '.join(kinds)} "
            f"maps of {len(cases)} cases take at most {_size(bound)} (uncompressed; the files are compressed)")
    if bound > free:
        return Check("disk", WARN, f"{text}: may not fit; fix: free space, or move nnUNet_preprocessed")
    return Check("disk", OK, text)


# --------------------------------------------------------------------------------------------------- all
def run_checks(dataset: Optional[str] = None, configuration: Optional[str] = None, trainer: Optional[str] = None,
               plans: str = "nnUNetPlans") -> List[Check]:
    """Every check, in the order printed."""
    checks = check_versions()
    if any(c.status == FAIL for c in checks[:1]):
        return checks  # without nnU-Net nothing else can be checked
    checks.append(check_device())
    checks += [check_path_variable(v) for v in PATH_VARIABLES]
    parsed, nnunet_trainer = None, False
    if trainer is not None:
        name_check, parsed, nnunet_trainer = check_trainer_name(trainer)
        checks.append(name_check)
    probe = trainer if parsed is not None else PROBE_TRAINER
    checks.append(check_ext_trainer(probe, needed=not nnunet_trainer))
    if dataset is not None:
        if not os.environ.get("nnUNet_preprocessed"):
            checks.append(Check("dataset", FAIL, "nnUNet_preprocessed is not set: the dataset cannot be found"))
        else:  # maps: for our trainers, and for any when no trainer is named
            checks += check_dataset(dataset, configuration, plans, parsed, maps=trainer is None or parsed is not None)
    loss = parsed.family.loss if parsed is not None else "dice_ce" if nnunet_trainer else None
    compiler = check_compiler(loss)
    if compiler is not None:
        checks.append(compiler)
    return checks


def report(checks: List[Check]) -> str:
    fails = sum(c.status == FAIL for c in checks)
    warns = sum(c.status == WARN for c in checks)
    verdict = ("ready" if not fails else "fix the FAIL lines first") + (", see the warn lines" if warns else "")
    return "\n".join([c.line() for c in checks] + [f"{fails} FAIL, {warns} warn: {verdict}"])
