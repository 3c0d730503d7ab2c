"""Atomic text files: written to a temporary name in the same folder, then renamed, so that a reader (or a resumed
job) never sees half a file."""
from __future__ import annotations

import os
from typing import Optional


def atomic_write_text(path: str, text: str, mode: Optional[int] = None) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)
    return path
