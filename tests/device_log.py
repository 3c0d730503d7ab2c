"""A dispatch logger that sees every operator with the devices of its inputs and outputs: the host reads and the
CPU -> device copies of the code run under it (tests/test_gpu_path.py)."""
from __future__ import annotations

from typing import List

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

HOST_READS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default,
              torch.ops.aten.equal.default, torch.ops.aten.item.default}


class DeviceLog(TorchDispatchMode):
    """Records host reads and CPU -> device copies (any operator that takes a CPU tensor of one element or more and
    returns a tensor on another device; CPU scalars of zero dimensions travel as kernel arguments)."""

    def __init__(self):
        super().__init__()
        self.host_reads: List[str] = []
        self.copies: List[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in HOST_READS:
            self.host_reads.append(str(func))
        out = func(*args, **kwargs)
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if (any(t.device.type == "cpu" and t.dim() > 0 for t in inputs)
                and any(t.device.type != "cpu" for t in outputs)):
            self.copies.append(str(func))
        return out
