"""Run an experiment's steps on this machine: in order, skipping what is done, trainings on N local workers.

Each training task (train, then evaluate) logs to ``WORK/logs/<trainer>_fold<f>.log``; a failed task does not stop
the others, the report is written from what finished, and the exit status says whether anything failed. The report
stage first moves the evaluations that are not of the spec's matrix and settings out of WORK/evaluation
(:func:`..plan.set_aside_evaluations`). A work folder that cannot be written is refused before anything runs, with
the option that moves it (:func:`writable_folder`).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional

from ..errors import StepFailed
from .config import Experiment, Run
from .plan import (Paths, Step, configuration_problem, evaluations_to_set_aside, prepare_steps, report_step,
                   run_steps, set_aside_evaluations)


class FolderNotWritable(StepFailed):
    """A folder the command writes (work folder, demo root) cannot be created or written: one line naming it and
    the option that moves it."""


def writable_folder(folder: str, option: str, what: str = "work folder") -> str:
    """Create ``folder`` if needed and check that files can be written in it; else :class:`FolderNotWritable`
    naming the folder, why, and ``option``. Returns the folder."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        where = f" ({err.filename})" if err.filename and os.path.abspath(err.filename) != folder else ""
        raise FolderNotWritable(f"the {what} {folder} is not writable: {reason}{where}; choose another with "
                                f"{option}") from None
    return folder


def command_env(base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment of every step (``base``, default this process's): nnU-Net finds our trainers, and the venv's
    commands come first on PATH."""
    from .. import ext_trainers

    env = dict(os.environ if base is None else base)
    env["nnUNet_extTrainer"] = os.path.dirname(os.path.abspath(ext_trainers.__file__))
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def execute(step: Step, log_path: str, env: Dict[str, str]) -> None:
    """Run one step, appending its output to ``log_path``; raise StepFailed naming the log on failure."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"\n$ {step.shell()}\n")
        log.flush()
        proc = subprocess.run(step.command, stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise StepFailed(f"{step.title} failed (exit {proc.returncode}); see {log_path}")


def _status(step: Step) -> str:
    return "done" if step.done() else "refused" if step.refused() else "todo"


def describe(exp: Experiment, paths: Paths, device: str, num_processes: int) -> str:
    """The dry run: every command by stage with its status."""
    lines = [f"# {exp.name}: {exp.paper}", f"# {len(exp.matrix)} trainings = {len(exp.trainers)} trainers x "
             f"{exp.runs} runs x {len(exp.folds)} fold(s); work folder {paths.work}",
             f"export nnUNet_extTrainer={command_env()['nnUNet_extTrainer']}"]
    problem = configuration_problem(exp, paths)
    if problem:
        lines.append(f"# refused: {problem}")
    for step in prepare_steps(exp, paths, num_processes):
        lines.append(f"[{_status(step)}] {step.shell()}")
        if step.refused():
            lines.append(f"#   {step.refused()}")
    for index, run in enumerate(exp.matrix):
        lines.append(f"# task {index}: {run.label} seed {run.seed} fold {run.fold}")
        for step in run_steps(exp, paths, run, device):
            lines.append(f"[{_status(step)}] {step.shell()}")
    for path, why in evaluations_to_set_aside(exp, paths):
        lines.append(f"# set aside before the report: {path} ({why})")
    lines.append(f"[todo] {report_step(exp, paths).shell()}")
    return "\n".join(lines)


def _log_file(paths: Paths, name: str) -> str:
    return os.path.join(paths.work, "logs", f"{name}.log")


def run_prepare(exp: Experiment, paths: Paths, num_processes: int = 1, env: Optional[Dict[str, str]] = None) -> None:
    """The prepare stage, skipping what is done; refused before any step runs when the plans or a file already on
    disk (a split the trainings must not use, another dataset under the id) contradict the spec."""
    env = env or command_env()
    steps = prepare_steps(exp, paths, num_processes)
    problem = configuration_problem(exp, paths) or next(
        (step.refused() for step in steps if not step.done() and step.refused()), None)
    if problem:  # before any step runs: plan_and_preprocess may take hours
        raise StepFailed(problem)
    for step in steps:
        if step.done():
            print(f"[skip] {step.title}: done", flush=True)
            continue
        if step.refused():
            raise StepFailed(step.refused())
        print(f"[run ] {step.title}", flush=True)
        execute(step, _log_file(paths, "prepare"), env)


def run_task(exp: Experiment, paths: Paths, run: Run, device: str, env: Optional[Dict[str, str]] = None) -> str:
    """Train and evaluate one run of the matrix (each skipped when done); returns what happened."""
    env = env or command_env()
    log = _log_file(paths, f"{run.trainer}_fold{run.fold}")
    did = []
    for step in run_steps(exp, paths, run, device):
        if step.done():
            continue
        if step.refused():
            raise StepFailed(step.refused())
        start = time.time()
        execute(step, log, env)
        did.append(f"{step.title.split()[0]} {time.time() - start:.0f}s")
    return ", ".join(did) if did else "done before"


def run_report(exp: Experiment, paths: Paths, env: Optional[Dict[str, str]] = None) -> None:
    """The report of the spec's evaluations, after moving the others aside (never averaged as runs of a loss)."""
    for path, new, why in set_aside_evaluations(exp, paths):
        print(f"[set aside] {path} -> {new}: {why}", flush=True)
    print("[run ] report", flush=True)
    execute(report_step(exp, paths), _log_file(paths, "report"), env or command_env())
    print(f"report: {os.path.join(paths.work, 'report', 'report.md')}", flush=True)


def threads_per_job(jobs: int) -> int:
    """The CPU threads each of ``jobs`` trainings running side by side gets: an equal share of the cores."""
    return max(1, (os.cpu_count() or 1) // jobs)


def run_local(exp: Experiment, paths: Paths, jobs: int = 1, device: str = "cuda", num_processes: int = 1,
              env: Optional[Dict[str, str]] = None) -> int:
    """The whole experiment here: prepare, the trainings on ``jobs`` workers, the report. Returns an exit status.
    ``env``: the steps' environment (default :func:`command_env`); on the CPU with ``jobs`` > 1 it gets
    ``OMP_NUM_THREADS`` = cores / jobs unless it has one."""
    from tqdm import tqdm

    env = dict(env or command_env())
    if device == "cpu" and jobs > 1 and "OMP_NUM_THREADS" not in env:
        # nnUNetv2_train gives torch every core; our trainers honour OMP_NUM_THREADS, so side by side they share them
        env["OMP_NUM_THREADS"] = str(threads_per_job(jobs))
    run_prepare(exp, paths, num_processes, env)
    failures: List[str] = []
    matrix = exp.matrix
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool, \
            tqdm(total=len(matrix), desc="trainings", unit="run", file=sys.stdout) as bar:
        futures = {pool.submit(run_task, exp, paths, run, device, env): run for run in matrix}
        for future, run in futures.items():
            try:
                outcome = future.result()
            except RuntimeError as err:
                outcome = f"FAILED: {err}"
                failures.append(str(err))
            bar.write(f"{run.label} seed {run.seed} fold {run.fold}: {outcome}")
            bar.update()
    run_report(exp, paths, env)
    if failures:
        print(f"{len(failures)} of {len(matrix)} trainings failed; rerun the same command to resume:",
              *failures, sep="\n  ", file=sys.stderr)
        return 1
    return 0
