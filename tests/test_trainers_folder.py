"""The nnUNet_extTrainer folder lives at the top of the repository as trainers/ and ships in the wheel as
nnunet_losses/ext_trainers (pyproject.toml's package-dir mapping); `nnunet-losses trainers-path` prints a folder in
which nnU-Net's own lookup finds the generated trainers, in the editable install and in an installed wheel alike."""
import fnmatch
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIM = "nnunet_losses/ext_trainers/nnunet_losses_trainers.py"

TRAINERS_PATH = "from nnunet_losses.cli import main\nmain(['trainers-path'])\n"
LOOKUP = ("import nnunet_losses\n"
          "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as f\n"
          "cls = f('ComboTrainer_b0p7')\n"
          "print('FOUND', cls.__name__, cls.__module__)\n"
          "print('PACKAGE', nnunet_losses.__file__)\n")


def _setuptools_table():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]


def _python(code, cwd, **env):
    """A fresh interpreter outside the repository, so that the package comes from its installation."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1", **env))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _nnunet_finds_the_trainers(folder, cwd, **env):
    out = _python(LOOKUP, cwd, nnUNet_extTrainer=folder, **env)
    assert f"Using trainer 'ComboTrainer_b0p7' from: {folder}" in out, out
    assert "FOUND ComboTrainer_b0p7 nnunet_losses.nnunet.trainers" in out, out
    return out


def test_the_package_list_names_every_package_and_maps_trainers():
    """A package-dir mapping needs the package list written out: it must hold every folder of nnunet_losses/."""
    from setuptools import find_packages

    table = _setuptools_table()
    assert table["package-dir"] == {"nnunet_losses.ext_trainers": "trainers"}
    found = set(find_packages(REPO, include=["nnunet_losses", "nnunet_losses.*"]))
    assert set(table["packages"]) == found | {"nnunet_losses.ext_trainers"}
    assert os.path.isfile(os.path.join(REPO, "trainers", "nnunet_losses_trainers.py"))
    assert not os.path.exists(os.path.join(REPO, "nnunet_losses", "ext_trainers"))  # one folder, no copy


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel, built from a copy of the sources (the build writes build/ and *.egg-info beside them)."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(os.path.join(REPO, name), src / name)
    for name in ("nnunet_losses", "trainers"):
        shutil.copytree(os.path.join(REPO, name), src / name, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(out), str(src)], check=True, capture_output=True, text=True,
                   env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"))
    (path,) = out.glob("nnunet_losses-*.whl")
    return path


def test_the_wheel_ships_trainers_as_ext_trainers(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        top_level = next(z.read(n).decode() for n in names if n.endswith(".dist-info/top_level.txt"))
    assert SHIM in names and "nnunet_losses/ext_trainers/__init__.py" in names
    for package, patterns in _setuptools_table().get("package-data", {}).items():  # still found with the list
        for pattern in patterns:
            assert fnmatch.filter(names, f"{package.replace('.', '/')}/{pattern}"), (package, pattern)
    assert not [n for n in names if n.startswith("trainers/")]
    assert top_level.split() == ["nnunet_losses"]


@pytest.mark.nnunet
def test_trainers_path_in_an_installed_wheel(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:  # a pure-Python wheel installs as its files unpacked
        z.extractall(site)
    env = {"PYTHONPATH": str(site)}  # ahead of the editable install's finder
    folder = _python(TRAINERS_PATH, tmp_path, **env).strip()
    assert folder == str(site / "nnunet_losses" / "ext_trainers")
    out = _nnunet_finds_the_trainers(folder, tmp_path, **env)
    assert f"PACKAGE {site / 'nnunet_losses' / '__init__.py'}" in out


@pytest.mark.nnunet
def test_trainers_path_in_the_editable_install(tmp_path):
    """`pip install -e .` maps nnunet_losses.ext_trainers onto the repository's trainers/, which trainers-path prints."""
    import nnunet_losses

    script = os.path.join(os.path.dirname(sys.executable), "nnunet-losses")
    if os.path.isfile(script):
        proc = subprocess.run([script, "trainers-path"], capture_output=True, text=True, cwd=tmp_path, check=True)
        folder = proc.stdout.strip()
    else:
        folder = _python(TRAINERS_PATH, tmp_path).strip()
    if os.path.dirname(os.path.abspath(nnunet_losses.__file__)) == os.path.join(REPO, "nnunet_losses"):
        assert folder == os.path.join(REPO, "trainers")
    else:  # the tests run against an installed wheel
        assert folder == os.path.join(os.path.dirname(os.path.abspath(nnunet_losses.__file__)), "ext_trainers")
    _nnunet_finds_the_trainers(folder, tmp_path)
