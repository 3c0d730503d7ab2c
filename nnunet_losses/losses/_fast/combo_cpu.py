"""Speeds up Combo loss (``losses/combo.py``) on the CPU, eager: its softmax sums in one fused C kernel
(``combo_cpu.c``), built on first use. Measured in BENCHMARKS.md, "Loss cost, eager" (the rows "Combo, fused CPU
kernel" and "Combo, PyTorch path", and "Why Combo has a fused CPU kernel").

Combo calls one function here, :func:`sums`: the kernel's sums where it applies (float32 CPU logits, eager, switch
on, kernel built), else None and Combo computes them with ``SoftmaxForegroundSums`` (combo.py, the reference the
kernel is tested against). :func:`description` names the path for ``ComboLoss.implementation``.

Eager PyTorch needs about 22 full-size passes over the logits for Combo's exact ``ln(1 - p)`` (forward and backward,
``SoftmaxForegroundSums``) against about 10 for nnU-Net's DC_and_CE; the kernel reads the logits once forward and
once backward, in blocks that stay in the cache, with the same equations (Taghanaki et al. (CMIG 2019), eq. 5; eq. 3
of the arXiv preprint) and the same gradient. nnU-Net trains eager on a CPU (it compiles only on CUDA): this is the path
that counts there.

The C file is compiled once per machine with the system's C compiler (``$CC``, default ``cc``; ``-O3 -march=native
-fopenmp``, glibc's vector maths ``libmvec``), keyed by a hash of the source, the flags, the compiler and the CPU.

The cache is ``$XDG_CACHE_HOME/nnunet_losses`` (default ``~/.cache/nnunet_losses``), a folder that must belong to
this user and that no one else may write: it is made 0700 (a folder of this user's that others cannot write is
tightened to 0700); one owned by another user or writable by others is refused with a warning and nothing
in it is loaded. Where the cache is refused or cannot be written, the kernel is built in a new private folder
(``tempfile.mkdtemp``, removed at exit) for this process only. Each build compiles to a temporary name in the cache
and renames the result; beside it, ``<kernel>.sha256`` records the SHA-256 of the built library (written
atomically, before the rename). A kernel is loaded only when its bytes match its record: a missing record, a
truncated or otherwise changed library is rebuilt (one build at a time per kernel, under a lock file). Temporary
files of killed builds older than ``2 x BUILD_TIMEOUT_S`` are removed. Without a compiler, when the build fails or
the library lacks the kernel's functions, Combo uses its PyTorch path after one one-line warning naming the cause,
the cache folder and ``nnUNet_losses_fused=f``; with ``nnUNet_losses_fused`` set to a false value (0, false, no,
off, f, n, any case) it always does; on other devices, for other dtypes and under ``torch.compile`` it always does.
"""
from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import torch
from torch.autograd.function import once_differentiable

from ..._args import env_switch

try:
    import fcntl
except ImportError:  # not POSIX: builds are not serialised (the rename still keeps every file whole)
    fcntl = None

SOURCE = Path(__file__).with_name("combo_cpu.c")
SWITCH = "nnUNet_losses_fused"  # a false value (0, false, no, off, f, n): always the PyTorch path
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-shared", "-fPIC")
LIBS = ("-lmvec",)
BUILD_TIMEOUT_S = 300  # a compiler still running after this is stopped; older temporary files are leftovers
_PTR, _I64 = ctypes.c_void_p, ctypes.c_int64


class UnsafeCacheError(OSError):
    """The cache folder belongs to another user or others can write to it: nothing in it is used."""


def _switch() -> str:
    return os.environ.get(SWITCH, "t").strip()


def enabled() -> bool:
    """False when ``nnUNet_losses_fused`` holds a false value (0, false, no, off, f, n; any case), True when unset or
    a true value (1, true, yes, on, t, y); any other value is an error naming the variable."""
    return env_switch(SWITCH)


def _cpu_signature() -> str:
    """The CPU's flags (``-march=native`` code runs only where they match): a shared cache between machines is safe."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), platform.processor())
    except OSError:
        return platform.processor()


def _kernel_name(compiler: str) -> str:
    """``combo_cpu-<hash>``: the hash of the source, the flags, the compiler's version and the CPU."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True,
                             timeout=60).stdout
    key = hashlib.sha256("\0".join([SOURCE.read_text(), *FLAGS, *LIBS, version, _cpu_signature()]).encode())
    return f"combo_cpu-{key.hexdigest()[:16]}"


def _user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nnunet_losses"


def _checked_folder(folder: Path) -> Path:
    """``folder``, made (0700) if missing; refused unless it belongs to this user and no one else can write to it;
    made 0700 if it is looser."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.stat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(f"{folder} is not a folder")
    if hasattr(os, "getuid"):
        if info.st_uid != os.getuid():
            raise UnsafeCacheError(f"{folder} belongs to user id {info.st_uid}, not to this user ({os.getuid()})")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise UnsafeCacheError(f"{folder} can be written by other users (mode {info.st_mode & 0o777:04o})")
        if info.st_mode & 0o777 != 0o700:
            os.chmod(folder, 0o700)
    return folder


def _private_folder() -> Path:
    """A new folder of this process's (0700, an unpredictable name), removed at exit."""
    folder = tempfile.mkdtemp(prefix="nnunet_losses-")
    pid = os.getpid()
    atexit.register(lambda: os.getpid() == pid and shutil.rmtree(folder, ignore_errors=True))
    return Path(folder)


def _record(kernel: Path) -> Path:
    return kernel.with_name(kernel.name + ".sha256")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verified(kernel: Path) -> bool:
    """Whether ``kernel`` exists and its bytes match the SHA-256 recorded when it was built."""
    try:
        recorded = _record(kernel).read_text().split()
        return bool(recorded) and recorded[0] == _sha256(kernel)
    except OSError:
        return False


def _remove_leftovers(folder: Path) -> None:
    """Remove the temporary files of builds killed before their rename (older than a build can take)."""
    cutoff = time.time() - 2 * BUILD_TIMEOUT_S
    for path in folder.iterdir():
        name = path.name
        leftover = (name.startswith("combo_cpu-") and ".tmp" in name) or (name.startswith("tmp") and
                                                                            name.endswith(".so"))
        try:
            if leftover and path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:  # removed meanwhile by another process
            pass


@contextmanager
def _build_lock(kernel: Path):
    """One build of ``kernel`` at a time (between processes); released when its holder ends, even by a kill."""
    if fcntl is None:
        yield
        return
    with open(kernel.with_name(kernel.stem + ".lock"), "a") as lock:
        deadline = time.monotonic() + 2 * BUILD_TIMEOUT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{lock.name} is still locked by another build after "
                                       f"{2 * BUILD_TIMEOUT_S} s") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _temporary(path: Path) -> str:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".tmp", dir=path.parent)
    os.close(fd)
    return tmp


def _build(compiler: str, kernel: Path) -> None:
    """Compile the kernel to a temporary file beside ``kernel``, record its SHA-256 (atomically), then rename it to
    ``kernel``: a reader never sees half a file, and a kill leaves only a temporary file."""
    tmp = _temporary(kernel)
    tmp_record = None
    try:
        try:
            build = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", tmp, *LIBS], capture_output=True,
                                   text=True, timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{compiler} took more than {BUILD_TIMEOUT_S} s") from None
        if build.returncode:
            lines = [line.strip() for line in build.stderr.splitlines() if line.strip()]
            raise RuntimeError(f"{compiler} failed: {' | '.join(lines)[-400:]}")
        tmp_record = _temporary(_record(kernel))
        Path(tmp_record).write_text(_sha256(Path(tmp)) + "\n")
        os.replace(tmp_record, _record(kernel))
        os.replace(tmp, kernel)
    finally:
        for path in (tmp, tmp_record):
            if path and os.path.exists(path):
                os.remove(path)


def _cached_kernel(compiler: str, folder: Path, name: str) -> Path:
    """The verified kernel in ``folder``, built first if it is missing, has no record or does not match it."""
    kernel = folder / f"{name}.so"
    _remove_leftovers(folder)
    if _verified(kernel):
        return kernel
    with _build_lock(kernel):
        if not _verified(kernel):  # not built by another process meanwhile
            _build(compiler, kernel)
    if not _verified(kernel):
        raise RuntimeError(f"{kernel} does not match its record {_record(kernel).name} after the build")
    return kernel


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    """The kernel's signatures; a RuntimeError naming the function if the library lacks one."""
    try:
        lib.combo_forward.argtypes = [_PTR, _PTR, _PTR, _I64, _I64, _I64, ctypes.c_int, _PTR]
        lib.combo_backward.argtypes = [_PTR, _PTR, _PTR, _I64, _I64, _I64, ctypes.c_int, _PTR, _PTR, _PTR, _PTR]
    except AttributeError as err:  # ctypes: "<path>: undefined symbol: combo_forward"
        raise RuntimeError(f"the library lacks the kernel's functions ({err})") from None
    lib.combo_forward.restype = lib.combo_backward.restype = ctypes.c_int
    return lib


@functools.lru_cache(maxsize=None)
def library() -> Optional[ctypes.CDLL]:
    """The compiled kernel, built on first call; None (after one warning naming the cause) if it cannot be built."""
    compiler = os.environ.get("CC", "cc")
    where = "no cache folder yet"
    try:
        name = _kernel_name(compiler)
        try:
            folder = _checked_folder(_user_cache())
        except UnsafeCacheError as err:
            warnings.warn(f"nnunet-losses: the kernel cache is not used: {err}; Combo's fused CPU kernel is built "
                          f"in a private folder for this process instead (delete that folder: it is made again "
                          f"with mode 0700; or set XDG_CACHE_HOME to a folder of yours, or {SWITCH}=f for the "
                          f"PyTorch path)", stacklevel=2)
            folder = None
        except (OSError, RuntimeError):  # no home, a file in the way, a read-only disk: a private folder
            folder = None
        kernel = None
        if folder is not None:
            where = str(folder)
            try:
                kernel = _cached_kernel(compiler, folder, name)
            except OSError:  # the cache cannot be written: a private folder
                kernel = None
        if kernel is None:
            folder = _private_folder()
            where = str(folder)
            kernel = _cached_kernel(compiler, folder, name)
        lib = _declare(ctypes.CDLL(str(kernel)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        cause = " ".join(str(err).split())
        warnings.warn(f"nnunet-losses: Combo's fused CPU kernel is unavailable ({cause}; cache {where}); using its "
                      f"PyTorch path, which is correct but 2-4x slower on the CPU (BENCHMARKS.md). Set {SWITCH}=f "
                      f"to silence this.", stacklevel=2)
        return None
    return lib


def applies(logits: torch.Tensor) -> bool:
    """Whether Combo's sums for these logits run in the kernel: float32 on the CPU, eager, switch on, kernel built."""
    return (logits.device.type == "cpu" and logits.dtype == torch.float32 and not torch.compiler.is_compiling()
            and enabled() and library() is not None)


def sums(logits: torch.Tensor, labels: torch.Tensor, mask: Optional[torch.Tensor]):
    """Combo's sums ``(pos, neg, inter, sum_p, sum_t)`` from the kernel (:class:`FusedSoftmaxForegroundSums`), or None
    where it does not apply (:func:`applies`): the caller then computes them in PyTorch."""
    if not applies(logits):
        return None
    return FusedSoftmaxForegroundSums.apply(logits, labels, mask)


def description() -> str:
    """One line for a training log: which implementation Combo's sums use on the CPU."""
    if not enabled():
        return f"PyTorch ops ({SWITCH}={_switch()})"
    return "fused C kernel (combo_cpu.c)" if library() is not None else "PyTorch ops (the C kernel did not build)"


_PID = os.getpid()


def _threads() -> int:
    """torch's intra-op threads; one in a forked child, where an OpenMP pool inherited from the parent would hang."""
    return torch.get_num_threads() if os.getpid() == _PID else 1


def _shape(logits: torch.Tensor):
    batch, channels = logits.shape[:2]
    return batch, channels, logits[0, 0].numel()


def _ptr(t: Optional[torch.Tensor]):
    return None if t is None else t.data_ptr()


class FusedSoftmaxForegroundSums(torch.autograd.Function):
    """``SoftmaxForegroundSums`` (combo.py) in the C kernel: the same inputs, outputs and gradient, and a fifth
    output without gradient, ``sum_t[b, c - 1] = sum_i m t_c`` (the Dice's label counts; ``class_counts`` otherwise).

    Sums accumulate in float32 within blocks of 512 voxels and in float64 across blocks: within 1e-6 (relative) of
    float64 over a 2 x 128^3 batch, as the PyTorch path (tested).
    """

    @staticmethod
    def forward(ctx, logits, labels, mask):
        if logits.device.type != "cpu" or logits.dtype != torch.float32:
            raise TypeError(f"Combo's fused kernel takes float32 CPU logits, got {logits.dtype} on {logits.device}")
        x = logits.contiguous()
        batch, channels, n_vox = _shape(x)
        if labels.numel() != batch * n_vox or (mask is not None and mask.numel() != batch * n_vox):
            raise ValueError(f"Combo's fused kernel: labels {tuple(labels.shape)} and mask "
                             f"{None if mask is None else tuple(mask.shape)} must have (B, 1, *spatial) of the logits "
                             f"{tuple(logits.shape)}")
        labels = labels.to(torch.int64).contiguous()  # the kernel reads int64 labels and float32 masks
        m = None if mask is None else mask.to(torch.float32).contiguous()
        sums = torch.zeros(2 + 3 * batch * channels, dtype=torch.float64)
        if library().combo_forward(x.data_ptr(), labels.data_ptr(), _ptr(m), batch, channels, n_vox, _threads(),
                                   sums.data_ptr()):
            raise MemoryError("Combo's fused CPU kernel could not allocate its work space")
        ctx.save_for_backward(x, labels, m)
        sums = sums.float()
        inter, sum_p, sum_t = sums[2:].view(3, batch, channels)[:, :, 1:]
        ctx.mark_non_differentiable(sum_t)
        return sums[0], sums[1], inter, sum_p, sum_t

    @staticmethod
    @once_differentiable
    def backward(ctx, g_pos, g_neg, g_inter, g_sum_p, _):
        x, labels, m = ctx.saved_tensors
        batch, channels, n_vox = _shape(x)
        g_pos_neg = torch.stack([g_pos, g_neg]).float().contiguous()
        pad = torch.nn.functional.pad
        g_inter = pad(g_inter.float(), (1, 0)).contiguous()
        g_sum_p = pad(g_sum_p.float(), (1, 0)).contiguous()
        grad = torch.empty_like(x)
        if library().combo_backward(x.data_ptr(), labels.data_ptr(), _ptr(m), batch, channels, n_vox, _threads(),
                                    g_pos_neg.data_ptr(), g_inter.data_ptr(), g_sum_p.data_ptr(), grad.data_ptr()):
            raise MemoryError("Combo's fused CPU kernel could not allocate its work space")
        return grad, None, None
