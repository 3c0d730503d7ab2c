"""Combo loss's softmax sums on the CPU in one fused C kernel (``combo_cpu.c``), built on first use.

Eager PyTorch needs about 22 full-size passes over the logits for Combo's exact ``ln(1 - p)`` (forward and backward,
``SoftmaxForegroundSums``) against about 10 for nnU-Net's DC_and_CE; the kernel reads the logits once forward and
once backward, in blocks that stay in the cache, with the same equations (Taghanaki et al. (CMIG 2019), eq. 5; eq. 3
of the arXiv preprint) and the same gradient. nnU-Net trains eager on a CPU (it compiles only on CUDA): this is the path
that counts there.

The C file is compiled once per machine with the system's C compiler (``$CC``, default ``cc``; ``-O3 -march=native
-fopenmp``, glibc's vector maths ``libmvec``) into ``$XDG_CACHE_HOME/nnunet_losses`` (default ``~/.cache``; if that
cannot be written, a folder in the temporary directory), keyed by a hash of the source, the flags, the compiler and
the CPU. Without a compiler, or with ``nnUNet_losses_fused=f``, Combo uses its PyTorch path (one warning says why);
on other devices, for other dtypes and under ``torch.compile`` it always does.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch.autograd.function import once_differentiable

SOURCE = Path(__file__).with_name("combo_cpu.c")
SWITCH = "nnUNet_losses_fused"  # f / false / 0: always the PyTorch path
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-shared", "-fPIC")
LIBS = ("-lmvec",)
_PTR, _I64 = ctypes.c_void_p, ctypes.c_int64


def enabled() -> bool:
    """False when ``nnUNet_losses_fused`` says f, false or 0 (nnU-Net's spelling for its own switches)."""
    return os.environ.get(SWITCH, "t").strip().lower() not in ("f", "false", "0")


def _cpu_signature() -> str:
    """The CPU's flags (``-march=native`` code runs only where they match): a shared cache between machines is safe."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), platform.processor())
    except OSError:
        return platform.processor()


def _cache_dirs():
    """Where the built kernel is kept: the user's cache, else (not writable) a folder of this user's in /tmp."""
    yield Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nnunet_losses"
    yield Path(tempfile.gettempdir()) / f"nnunet_losses-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def _build(compiler: str, path: Path) -> None:
    """Compile the kernel to ``path`` through a temporary file (a concurrent build never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    try:
        build = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", tmp, *LIBS], capture_output=True, text=True)
        if build.returncode:
            raise RuntimeError(f"{compiler} failed: {build.stderr.strip()[-400:]}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@functools.lru_cache(maxsize=None)
def library() -> Optional[ctypes.CDLL]:
    """The compiled kernel, built on first call; None (after one warning naming the cause) if it cannot be built."""
    compiler = os.environ.get("CC", "cc")
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
        key = hashlib.sha256("\0".join([SOURCE.read_text(), *FLAGS, *LIBS, version, _cpu_signature()]).encode())
        name = f"combo_cpu-{key.hexdigest()[:16]}.so"
        for folder in _cache_dirs():
            path = folder / name
            try:
                if not path.exists():
                    _build(compiler, path)
                break
            except OSError as err:  # a cache that cannot be written: the next folder
                failure = err
        else:
            raise failure
        lib = ctypes.CDLL(str(path))
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        warnings.warn(f"nnunet-losses: Combo's fused CPU kernel is unavailable ({err}); using its PyTorch path, "
                      f"which is correct but 2-4x slower on the CPU (BENCHMARKS.md). Set {SWITCH}=f to silence this.",
                      stacklevel=2)
        return None
    lib.combo_forward.argtypes = [_PTR, _PTR, _PTR, _I64, _I64, _I64, ctypes.c_int, _PTR]
    lib.combo_backward.argtypes = [_PTR, _PTR, _PTR, _I64, _I64, _I64, ctypes.c_int, _PTR, _PTR, _PTR, _PTR]
    lib.combo_forward.restype = lib.combo_backward.restype = ctypes.c_int
    return lib


def applies(logits: torch.Tensor) -> bool:
    """Whether Combo's sums for these logits run in the kernel: float32 on the CPU, eager, switch on, kernel built."""
    return (logits.device.type == "cpu" and logits.dtype == torch.float32 and not torch.compiler.is_compiling()
            and enabled() and library() is not None)


def description() -> str:
    """One line for a training log: which implementation Combo's sums use on the CPU."""
    if not enabled():
        return f"PyTorch ops ({SWITCH}=f)"
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
