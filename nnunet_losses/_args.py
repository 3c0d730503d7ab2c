"""Argument types and on/off environment switches shared by the command lines, the converters and the trainers."""
from __future__ import annotations

import argparse
import os

from .errors import InvalidInput


def positive_int(text: str) -> int:
    """A whole number >= 1 (process, job and step counts), else argparse's one-line error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


FALSE = ("0", "false", "no", "off", "f", "n")
TRUE = ("1", "true", "yes", "on", "t", "y", "")


def env_switch(name: str, default: bool = True) -> bool:
    """An on/off environment variable in nnU-Net's style (``nnUNet_compile=f``): a false value (0, false, no, off,
    f, n) or a true value (1, true, yes, on, t, y), in any case; unset gives ``default``; anything else is a
    ValueError naming the variable."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in FALSE:
        return False
    if value in TRUE:
        return True
    raise InvalidInput(f"{name}={raw!r}: expected a false value ({', '.join(FALSE)}) or a true value "
                       f"({', '.join(v for v in TRUE if v)}), in any case")
