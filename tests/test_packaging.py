"""pyproject.toml declares every package the code imports (not only those nnunetv2 happens to bring along)."""
import ast
import importlib.metadata
import os
import re
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _imported_top_level_modules(folder):
    modules = set()
    for root, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(root, name)) as f:
                    tree = ast.parse(f.read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        modules.update(a.name.split(".")[0] for a in node.names)
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                        modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"nnunet_losses", "tomli"}


def _normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_declared():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    declared = {_normalise(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) for r in project["dependencies"]}
    distributions = importlib.metadata.packages_distributions()
    for module in sorted(_imported_top_level_modules(os.path.join(REPO, "nnunet_losses"))):
        names = {_normalise(d) for d in distributions.get(module, [module])}
        assert names & declared, f"nnunet_losses imports {module} (distribution {names}) but pyproject.toml lacks it"
    assert "edt>=3.0" in project["dependencies"]  # LGPL from 3.0.0; GPL-3.0 before
    assert any(r.startswith("tomli") and "python_version < '3.11'" in r for r in project["dependencies"])


def test_the_combo_kernel_source_ships_in_the_package():
    """combo_cpu.c is compiled on first use from the installed package, so a wheel must carry it."""
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        package_data = tomllib.load(f)["tool"]["setuptools"]["package-data"]
    from nnunet_losses.losses._fast import combo_cpu

    assert combo_cpu.SOURCE.name in package_data["nnunet_losses.losses._fast"] and combo_cpu.SOURCE.is_file()
