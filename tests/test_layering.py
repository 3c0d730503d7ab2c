"""The layering the package promises: the core (losses, maps, metrics, stats) imports no nnunetv2, and nnunet/
(the glue) imports nothing above it. Each import runs in a fresh interpreter, so nothing is imported already."""
import ast
import json
import os
import pkgutil
import subprocess
import sys

import pytest

import nnunet_losses

CORE = ["losses", "maps", "metrics", "stats"]
ABOVE_NNUNET = ("nnunet_losses.cli", "nnunet_losses.demo", "nnunet_losses.report", "nnunet_losses.experiment")


def _modules_after_import(modules):
    code = ("import importlib, json, sys\n"
            f"for name in {list(modules)!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def _submodules(package):
    pkg = __import__(f"nnunet_losses.{package}", fromlist=["_"])
    return [f"nnunet_losses.{package}"] + [f"nnunet_losses.{package}.{m.name}"
                                          for m in pkgutil.iter_modules(pkg.__path__)]


@pytest.mark.parametrize("package", CORE)
def test_core_imports_no_nnunetv2(package):
    loaded = _modules_after_import(_submodules(package))
    assert not {m for m in loaded if m == "nnunetv2" or m.startswith("nnunetv2.")}, package
    assert "batchgeneratorsv2" not in loaded and "dynamic_network_architectures" not in loaded


def test_nnunet_glue_imports_nothing_above_it():
    loaded = _modules_after_import(_submodules("nnunet"))
    above = sorted(m for m in loaded if m.startswith(ABOVE_NNUNET))
    assert not above


def test_core_source_never_imports_nnunetv2():
    """Not even lazily, inside a function: no import of nnunetv2 anywhere in the core's source."""
    root = os.path.dirname(nnunet_losses.__file__)
    offenders = []
    for package in CORE:
        for dirpath, _, files in os.walk(os.path.join(root, package)):
            for name in (f for f in files if f.endswith(".py")):
                path = os.path.join(dirpath, name)
                with open(path) as f:
                    tree = ast.parse(f.read())
                for node in ast.walk(tree):
                    names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                        [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
                    if any(n.split(".")[0] == "nnunetv2" for n in names):
                        offenders.append(f"{os.path.relpath(path, root)}:{node.lineno}")
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


def test_specs_and_trainer_names_import_no_nnunetv2():
    """Loading an experiment spec (which checks every trainer name), parsing a name and listing the trainers read
    the pure catalogue: neither nnUNetTrainer nor anything else of nnunetv2 is imported."""
    code = ("import contextlib, io, json, sys\n"
            "from nnunet_losses.experiment.config import load_experiment\n"
            "from nnunet_losses.nnunet.naming import check_name, parse_name\n"
            "from nnunet_losses.catalogue import FAMILIES, MAP_FAMILIES\n"
            "from nnunet_losses.cli import main\n"
            "load_experiment('configs/demo.toml')\n"
            "parse_name('RRWTrainer_online_ep5_adam_lr1em4_s1', FAMILIES, MAP_FAMILIES)\n"
            "check_name('IoUxyTrainer_a0p5_b1p5')\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['trainers']) == 0\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    root = os.path.dirname(os.path.dirname(nnunet_losses.__file__))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                          env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert not {m for m in loaded if m == "nnunetv2" or m.startswith("nnunetv2.")}
    assert "nnunet_losses.nnunet.trainers" not in loaded
