"""``--emit slurm``: three batch scripts and a submitter, chained by job dependencies.

* ``prepare.sbatch``: plan/preprocess, split, maps (``reproduce CONFIG --stage prepare``);
* ``train.sbatch``: a job array, one task per training of the matrix (``reproduce CONFIG --task $SLURM_ARRAY_TASK_ID``:
  train with ``--c``, then evaluate), after ``prepare`` succeeded;
* ``report.sbatch``: tables and plots after every array task ended (``afterany``: the report states what is
  missing rather than waiting forever on a failed task);
* ``submit.sh``: submits the three with ``sbatch --parsable`` and prints the job ids.

The scripts call this same command, so a resubmission resumes: finished trainings and evaluations are skipped.
Every path is quoted: for the shell in the commands (``shlex``), for sbatch's own parser in the ``#SBATCH`` lines
(double quotes, backslash escapes; ``%`` doubled in the log paths, where sbatch reads ``%j`` and the like), so that a
work folder with spaces, quotes, ``#`` or ``%`` works.
"""
from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass
from typing import List, Optional

from .._files import atomic_write_text
from .config import Experiment
from .plan import Paths


@dataclass
class SlurmOptions:
    partition: Optional[str] = None
    account: Optional[str] = None
    time: str = "48:00:00"
    gpus: int = 1
    cpus: int = 8
    mem: str = "64G"
    max_parallel: Optional[int] = None
    setup: str = ""


_SBATCH_PLAIN = re.compile(r"[A-Za-z0-9_.,:/=+@%-]+")


def sbatch_quote(value: str) -> str:
    """``value`` as one argument of an ``#SBATCH`` line: as is when plain, else in double quotes with ``\\``, ``"``
    and ``#`` escaped by a backslash (sbatch's parser, src/sbatch/opt.c ``_get_argument``: quotes group, a
    backslash escapes the next character, an unescaped ``#`` starts a comment)."""
    value = str(value)
    if _SBATCH_PLAIN.fullmatch(value):
        return value
    return '"' + re.sub(r'([\\"#])', r"\\\1", value) + '"'


def sbatch_file_pattern(folder: str, name: str) -> str:
    """A log path for ``--output``: ``folder`` with ``%`` doubled (sbatch replaces ``%j``, ``%A``... in it), then
    ``name`` with its patterns."""
    return folder.replace("%", "%%") + "/" + name


def _header(name: str, opts: SlurmOptions, log: str, gpus: int, time: str, array: str = "") -> List[str]:
    options = [("job-name", name), ("output", log), ("time", time), ("cpus-per-task", opts.cpus), ("mem", opts.mem)]
    if gpus:
        options.append(("gres", f"gpu:{gpus}"))
    if opts.partition:
        options.append(("partition", opts.partition))
    if opts.account:
        options.append(("account", opts.account))
    if array:
        options.append(("array", array))
    return ["#!/bin/bash"] + [f"#SBATCH --{key}={sbatch_quote(value)}" for key, value in options] + \
        ["set -euo pipefail"]


def _environment(paths: Paths, opts: SlurmOptions) -> List[str]:
    lines = [f"export nnUNet_raw={shlex.quote(paths.raw)}",
             f"export nnUNet_preprocessed={shlex.quote(paths.preprocessed)}",
             f"export nnUNet_results={shlex.quote(paths.results)}",
             f"export PATH={shlex.quote(os.path.dirname(sys.executable))}:$PATH"]
    if opts.setup:
        lines.append(opts.setup)
    return lines


def emit_slurm(exp: Experiment, paths: Paths, opts: SlurmOptions, device: str = "cuda",
               num_processes: int = 8) -> str:
    """Write the scripts into ``WORK/slurm``; returns the path of ``submit.sh``."""
    folder = os.path.join(paths.work, "slurm")
    os.makedirs(os.path.join(paths.work, "logs"), exist_ok=True)
    os.makedirs(folder, exist_ok=True)
    base = ["nnunet-losses", "reproduce", exp.path, "--work-dir", paths.work, "--device", device]
    logs = os.path.join(paths.work, "logs")
    count = len(exp.matrix)
    array = f"0-{count - 1}" + (f"%{opts.max_parallel}" if opts.max_parallel else "")
    scripts = {
        "prepare.sbatch": _header(f"{exp.name}-prepare", opts, sbatch_file_pattern(logs, "slurm-prepare-%j.out"), 0,
                                  "24:00:00")
        + _environment(paths, opts) + [shlex.join(base + ["--stage", "prepare", "-np", str(num_processes)])],
        "train.sbatch": _header(f"{exp.name}-train", opts, sbatch_file_pattern(logs, "slurm-train-%A_%a.out"),
                                opts.gpus, opts.time, array)
        + _environment(paths, opts) + [shlex.join(base + ["--task"]) + " \"$SLURM_ARRAY_TASK_ID\""],
        "report.sbatch": _header(f"{exp.name}-report", opts, sbatch_file_pattern(logs, "slurm-report-%j.out"), 0,
                                 "02:00:00")
        + _environment(paths, opts) + [shlex.join(base + ["--stage", "report"])],
    }
    for name, lines in scripts.items():
        atomic_write_text(os.path.join(folder, name), "\n".join(lines) + "\n", 0o755)
    q = lambda name: shlex.quote(os.path.join(folder, name))  # noqa: E731
    submit = ["#!/bin/bash", f"# {exp.name}: {count} trainings as one job array, then the report", "set -euo pipefail",
              f"prepare=$(sbatch --parsable {q('prepare.sbatch')})",
              f"train=$(sbatch --parsable --dependency=afterok:$prepare {q('train.sbatch')})",
              f"report=$(sbatch --parsable --dependency=afterany:$train {q('report.sbatch')})",
              'echo "submitted: prepare $prepare, train array $train, report $report"']
    path = os.path.join(folder, "submit.sh")
    atomic_write_text(path, "\n".join(submit) + "\n", 0o755)
    return path
