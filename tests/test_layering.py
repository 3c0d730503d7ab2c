"""The layering the package promises: the pure core (losses, maps, metrics, stats, the errors, the folder evaluator,
the registry, the catalogue, the name grammar, the synthetic images) imports no nnunetv2 and nothing of nnunet/ (the
glue), and nnunet/ imports nothing above it. Each import runs in a new process in which nothing of the package or of
nnU-Net is imported yet (third-party modules such as torch may be: the ``run_bare_python`` fixture)."""
import ast
import json
import os
import pkgutil
import sys

import pytest

import nnunet_losses

CORE = ["losses", "maps", "metrics", "stats"]
PURE_MODULES = ["errors", "evaluation", "registry", "catalogue", "naming", "papers",
                "synthetic_images"]  # single-file modules of the pure core
GLUE = ("nnunetv2", "nnunet_losses.nnunet")  # what the pure core may not import
ABOVE_NNUNET = ("nnunet_losses.cli", "nnunet_losses.demo", "nnunet_losses.report", "nnunet_losses.experiment",
                "nnunet_losses.doc_tables")


def _modules_after_import(python, modules):
    code = ("import importlib, json, sys\n"
            f"for name in {list(modules)!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    proc = python([sys.executable, "-c", code], check=True, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def _submodules(package):
    pkg = __import__(f"nnunet_losses.{package}", fromlist=["_"])
    return [f"nnunet_losses.{package}"] + [f"nnunet_losses.{package}.{m.name}"
                                          for m in pkgutil.iter_modules(pkg.__path__)]


@pytest.mark.parametrize("package", CORE)
def test_core_imports_no_nnunetv2(package, run_bare_python):
    loaded = _modules_after_import(run_bare_python, _submodules(package))
    assert not {m for m in loaded if m == "nnunetv2" or m.startswith("nnunetv2.")}, package
    assert "batchgeneratorsv2" not in loaded and "dynamic_network_architectures" not in loaded


def _is_glue(module):
    return any(module == g or module.startswith(g + ".") for g in GLUE)


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_import_no_glue(module, run_bare_python):
    loaded = _modules_after_import(run_bare_python, [f"nnunet_losses.{module}"])
    assert not sorted(m for m in loaded if _is_glue(m)), module


def test_errors_import_nothing_of_the_package(run_bare_python):
    """Every module may raise the errors of ``nnunet_losses.errors``: it imports no other module of the package."""
    loaded = _modules_after_import(run_bare_python, ["nnunet_losses.errors"])
    assert sorted(m for m in loaded if m.startswith("nnunet_losses")) == ["nnunet_losses", "nnunet_losses.errors"]


def test_metrics_read_no_files(run_bare_python):
    """The metrics compute on arrays: the folder evaluator (files, JSON, the command line's messages) is outside."""
    loaded = _modules_after_import(run_bare_python, _submodules("metrics"))
    assert "nnunet_losses.evaluation" not in loaded and "nnunet_losses._files" not in loaded


def test_registry_imports_the_glue_only_to_build_a_baseline(run_bare_python):
    """Describing every loss and building a pure one import no glue; a baseline (nnU-Net's class) imports it."""
    code = ("import json, sys\n"
            "from nnunet_losses.registry import build_loss, describe\n"
            "describe(); build_loss('combo'); build_loss('iou_xy', alpha=0.5, beta=1.5)\n"
            "before = sorted(sys.modules)\n"
            "build_loss('dice_ce')\n"
            "print(json.dumps([before, sorted(sys.modules)]))\n")
    proc = run_bare_python([sys.executable, "-c", code], check=True,
                           env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    before, after = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not [m for m in before if _is_glue(m)]
    assert "nnunet_losses.nnunet.baselines" in after and "nnunetv2" in after


def test_nnunet_glue_imports_nothing_above_it(run_bare_python):
    loaded = _modules_after_import(run_bare_python, _submodules("nnunet"))
    above = sorted(m for m in loaded if m.startswith(ABOVE_NNUNET))
    assert not above


def _pure_sources():
    """(path relative to the package, package the file's relative imports resolve in) of every pure source file."""
    root = os.path.dirname(nnunet_losses.__file__)
    for module in PURE_MODULES:
        yield f"{module}.py", "nnunet_losses"
    for package in CORE:
        for dirpath, _, files in os.walk(os.path.join(root, package)):
            rel = os.path.relpath(dirpath, root)
            for name in sorted(f for f in files if f.endswith(".py")):
                yield os.path.join(rel, name), "nnunet_losses." + rel.replace(os.sep, ".")


def _dynamic_imports(tree):
    """(module, line) of every ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if func in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield node.args[0].value, node.lineno


def test_pure_source_never_imports_nnunetv2_or_the_glue():
    """Not even lazily, inside a function: no import of nnunetv2 or nnunet_losses.nnunet (relative ones resolved)
    anywhere in the pure core's source. The registry names the baselines' factories by path instead."""
    root = os.path.dirname(nnunet_losses.__file__)
    offenders = []
    for path, package in _pure_sources():
        with open(os.path.join(root, path)) as f:
            tree = ast.parse(f.read())
        for module, line in [*_imported_modules(tree, package), *_dynamic_imports(tree)]:
            if _is_glue(module):
                offenders.append(f"{path}:{line} imports {module}")
    assert not offenders


def _imported_modules(tree, package):
    """(module, line) of every ``import`` / ``from ... import`` in ``tree``, relative ones resolved in ``package``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = (node.module or "") if node.level == 0 else ".".join(
                parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            names = [base] if node.module else [f"{base}.{alias.name}" for alias in node.names]
            for name in names:
                yield name, node.lineno


def test_nnunet_glue_never_imports_above_it():
    """Not even lazily: no import of cli, demo, report or experiment anywhere in nnunet/'s source."""
    root = os.path.dirname(nnunet_losses.__file__)
    offenders = []
    for name in sorted(os.listdir(os.path.join(root, "nnunet"))):
        if name.endswith(".py"):
            with open(os.path.join(root, "nnunet", name)) as f:
                tree = ast.parse(f.read())
            offenders += [f"nnunet/{name}:{line} imports {module}"
                          for module, line in _imported_modules(tree, "nnunet_losses.nnunet")
                          if module.startswith(ABOVE_NNUNET)]
    assert not offenders


def test_specs_and_trainer_names_import_no_nnunetv2(run_bare_python):
    """Loading an experiment spec (which checks every trainer name), parsing a name and listing the trainers read
    the pure catalogue: neither nnUNetTrainer nor anything else of nnunetv2 is imported."""
    code = ("import contextlib, io, json, sys\n"
            "from nnunet_losses.experiment.config import load_experiment\n"
            "from nnunet_losses.naming import check_name, parse_name\n"
            "from nnunet_losses.catalogue import FAMILIES, MAP_FAMILIES\n"
            "from nnunet_losses.cli import main\n"
            "load_experiment('configs/demo.toml')\n"
            "parse_name('RRWTrainer_online_ep5_adam_lr1em4_s1', FAMILIES, MAP_FAMILIES)\n"
            "check_name('IoUxyTrainer_a0p5_b1p5')\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['trainers']) == 0\n"
            "    assert main(['trainers', '--markdown', 'families']) == 0\n"
            "    assert main(['losses', '--markdown', 'losses']) == 0\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    root = os.path.dirname(os.path.dirname(nnunet_losses.__file__))
    proc = run_bare_python([sys.executable, "-c", code], cwd=root, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert not {m for m in loaded if m == "nnunetv2" or m.startswith("nnunetv2.")}
    assert "nnunet_losses.nnunet.trainers" not in loaded
