"""New Python processes without the seconds of imports: a server interpreter imports the heavy modules once (torch,
scipy, the package's command line), then forks a child for each command. The child is a process of its own, as
``subprocess.run`` makes it: its environment, working folder, standard input (empty), captured output and exit
status are the command's, and a crash ends only the child.

What differs from a new interpreter: the preloaded modules are imported already (each server is checked to hold
none of the modules a test says must not be there before the command runs, e.g. ``nnunetv2``, which reads nnU-Net's
environment variables when it is imported), and the interpreter's flags are the server's (``-W`` options are
applied in the child). Commands it runs: ``[sys.executable, ("-W", OPTION)..., "-c", CODE, ARGS...]``,
``[sys.executable, SCRIPT.py, ARGS...]`` and a console script of this environment, ``[BIN/NAME, ARGS...]``.
"""
from __future__ import annotations

import io
import json
import locale
import os
import signal
import subprocess
import sys
import tempfile
import threading
from importlib import metadata
from typing import Mapping, Optional, Sequence

_SERVER = r'''
import importlib, json, os, sys


def child(request, channels):
    import builtins, runpy, threading, types, warnings
    for channel in channels:
        channel.close()
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(os.open(request["stdout"], os.O_WRONLY | os.O_TRUNC), 1)
    os.dup2(os.open(request["stderr"], os.O_WRONLY | os.O_TRUNC), 2)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.dont_write_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    sys.warnoptions[:] = request["warnings"]
    warnings._processoptions(request["warnings"])
    kind, target, args = request["kind"], request["target"], request["args"]
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    try:
        if kind == "code":
            sys.argv = ["-c", *args]
            exec(compile(target, "<string>", "exec"), main.__dict__)
        elif kind == "script":
            sys.argv = [target, *args]
            sys.path[0] = os.path.dirname(target)
            runpy.run_path(target, run_name="__main__")
        else:  # a console script: NAME = module:function
            module, function = request["entry_point"].split(":")
            sys.argv = [target, *args]
            sys.path[0] = os.path.dirname(target)
            sys.exit(getattr(importlib.import_module(module), function)())
        code = 0
    except SystemExit as exit:
        code = exit.code
        if code is None:
            code = 0
        elif not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
    except BaseException:
        kind_, value, tb = sys.exc_info()
        sys.excepthook(kind_, value.with_traceback(tb.tb_next), tb.tb_next)  # without this function's frame
        code = 1
    try:
        threading._shutdown()
    except Exception:
        pass
    import atexit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code & 0xFF)


def serve(preload, requests, replies):
    # the server's own output goes nowhere: a child's output is its files
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    for name in preload:
        importlib.import_module(name)
    replies.write(json.dumps(sorted(sys.modules)) + "\n")
    replies.flush()
    derived = {}  # name -> (its requests, its replies): servers forked from this one that preloaded more
    for line in requests:
        request = json.loads(line)
        via = request.pop("via", None)
        if via is not None:  # relayed to a derived server, started by the first request for it
            if via not in derived:
                to_it, its_requests = os.pipe()
                its_replies, from_it = os.pipe()
                if os.fork() == 0:
                    try:
                        for channel in (requests, replies, *(c for pair in derived.values() for c in pair)):
                            channel.close()
                        os.close(its_requests)
                        os.close(its_replies)
                        serve(request["preload"], os.fdopen(to_it, "r"), os.fdopen(from_it, "w"))
                    except BaseException:
                        import traceback
                        traceback.print_exc()
                    finally:
                        os._exit(0)
                os.close(to_it)
                os.close(from_it)
                derived[via] = (os.fdopen(its_requests, "w"), os.fdopen(its_replies, "r"))
                replies.write(derived[via][1].readline())
                replies.flush()
                continue
            forward, back = derived[via]
            forward.write(json.dumps(request) + "\n")
            forward.flush()
            for _ in range(2):  # its pid, then its exit status
                replies.write(back.readline())
                replies.flush()
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            try:
                child(request, (requests, replies, *(c for pair in derived.values() for c in pair)))
            finally:
                os._exit(70)
        replies.write(json.dumps({"pid": pid}) + "\n")
        replies.flush()
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        replies.flush()


serve(json.loads(sys.argv[1]), os.fdopen(os.dup(0), "r"), os.fdopen(os.dup(1), "w"))
'''

BIN = os.path.dirname(sys.executable)


def _console_scripts():
    return {entry.name: entry.value for entry in metadata.entry_points(group="console_scripts")}


class PreloadedPython:
    """A server interpreter that has imported ``preload``; :meth:`run` runs a command in a fork of it. None of the
    modules named in ``absent`` (or their submodules) may be loaded by the preloading."""

    def __init__(self, preload: Sequence[str] = (), absent: Sequence[str] = ()):
        self._errors = tempfile.TemporaryFile()
        self._process = subprocess.Popen([sys.executable, "-c", _SERVER, json.dumps(list(preload))],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errors,
                                         text=True)
        self._lock = threading.Lock()
        self._scripts = _console_scripts()
        self._via = None
        self._derived = 0
        self.modules = set(json.loads(self._reply_line()))
        self._check(preload, absent)

    def _check(self, preload, absent):
        loaded = sorted(m for m in self.modules if any(m == a or m.startswith(a + ".") for a in absent))
        if loaded:
            if self._via is None:
                self.close()
            raise RuntimeError(f"preloading {list(preload)} loaded {loaded}, which must be imported by the "
                               "command itself")

    def derived(self, preload: Sequence[str], absent: Sequence[str] = ()) -> "PreloadedPython":
        """A server forked from this one that has imported ``preload`` as well (this one's imports are not done
        twice); it ends with this one."""
        other = object.__new__(PreloadedPython)
        other.__dict__.update(self.__dict__)
        self._derived += 1
        other._via = f"{self._via or 'server'}.{self._derived}"
        with self._lock:
            self._process.stdin.write(json.dumps({"via": other._via, "preload": list(preload)}) + "\n")
            self._process.stdin.flush()
            other.modules = set(json.loads(self._reply_line()))
        other._check(preload, absent)
        return other

    def _reply_line(self) -> str:
        line = self._process.stdout.readline()
        if not line:
            self._errors.seek(0)
            raise RuntimeError("the preloaded Python server ended: "
                               + self._errors.read().decode(errors="replace")[-3000:])
        return line

    def _request(self, argv: Sequence[str]) -> dict:
        argv = [str(a) for a in argv]
        program = argv[0]
        if program == sys.executable:
            options, rest = [], argv[1:]
            while rest[:1] == ["-W"]:
                options.append(rest[1])
                rest = rest[2:]
            if rest[:1] == ["-c"]:
                return {"kind": "code", "target": rest[1], "args": rest[2:], "warnings": options}
            if rest and rest[0].endswith(".py"):
                return {"kind": "script", "target": os.path.abspath(rest[0]), "args": rest[1:],
                        "warnings": options}
        elif os.path.dirname(program) == BIN and os.path.basename(program) in self._scripts:
            return {"kind": "console", "target": program, "args": argv[1:], "warnings": [],
                    "entry_point": self._scripts[os.path.basename(program)]}
        raise ValueError(f"not a command the preloaded Python runs: {argv[:3]}")

    def run(self, argv: Sequence[str], env: Optional[Mapping[str, str]] = None, cwd=None,
            timeout: Optional[float] = None, check: bool = False) -> subprocess.CompletedProcess:
        """``subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
        check=check)``."""
        request = self._request(argv)
        with self._lock, tempfile.TemporaryDirectory() as folder:
            request.update(env=dict(os.environ if env is None else env), cwd=os.path.abspath(cwd or os.getcwd()),
                           stdout=os.path.join(folder, "stdout"), stderr=os.path.join(folder, "stderr"))
            if self._via is not None:
                request["via"] = self._via
            for name in ("stdout", "stderr"):
                open(request[name], "wb").close()
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            pid = json.loads(self._reply_line())["pid"]
            timer = None
            if timeout is not None:
                timer = threading.Timer(timeout, os.kill, (pid, signal.SIGKILL))
                timer.start()
            returncode = json.loads(self._reply_line())["returncode"]
            if timer is not None:
                timer.cancel()
            out, err = (_text(os.path.join(folder, name)) for name in ("stdout", "stderr"))
        if timer is not None and timer.finished.is_set() and returncode == -signal.SIGKILL:
            raise subprocess.TimeoutExpired(list(argv), timeout, out, err)
        if check and returncode != 0:
            raise subprocess.CalledProcessError(returncode, list(argv), out, err)
        return subprocess.CompletedProcess(list(argv), returncode, out, err)

    def close(self):
        """Ends the server and those derived from it (it holds nothing to save: killed, it needs no seconds to
        unload its modules; a derived server ends when its pipe from this one closes)."""
        if self._via is not None:
            return
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process.stdin.close()
        self._process.stdout.close()
        self._errors.close()


def _text(path: str) -> str:
    """The file's bytes decoded as ``subprocess.run(..., text=True)`` decodes a pipe (universal newlines)."""
    with open(path, "rb") as f:
        return io.TextIOWrapper(io.BytesIO(f.read()), encoding=locale.getpreferredencoding(False)).read()
