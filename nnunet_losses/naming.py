"""Trainer names that carry hyper-parameters: ``ComboTrainer_a0p5_b0p7_ep300_adam_lr1em4_s1``.

Grammar (tokens joined by ``_``, each at most once, in this order)::

    <Family> [_<loss parameter>...] [_online] [_ep<int>] [_it<int>] [_adam|_sgd] [_lr<number>] [_s<int>]

Numbers: ``p`` for the decimal point, ``em``/``e`` for a negative/positive exponent, no sign, no leading or trailing
zeros: 0.5 -> ``0p5``, 1.5 -> ``1p5``, 50 -> ``50``, 1e-4 -> ``1em4``, 2.5e-4 -> ``2p5em4``. Values below 0.01 are
written with an exponent. Each value has exactly one spelling; any other (``0p50``, ``0p0001``) is refused, with
the canonical name in the message. Giving a default value explicitly is allowed (``ComboTrainer_a0p5``).
No ``__`` ever appears (nnU-Net splits its output folder names on it). Seeds lie in numpy's range, 0 .. 2**32 - 1, and
a name is at most 255 bytes long (it names folders: nnU-Net's output folder, the report's evaluation folder).
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from .catalogue import FAMILIES, MAP_FAMILIES, ONLINE_MAP_FAMILIES, Family, NameParam  # noqa: F401
from .errors import InvalidInput
from .registry import get_spec


class TrainerNameError(InvalidInput):
    """A trainer name that belongs to a family but does not follow the grammar."""


def format_number(value: float) -> str:
    """The one canonical spelling of a non-negative number in a trainer name."""
    value = float(value)
    if value < 0 or not math.isfinite(value):
        raise ValueError(f"trainer names carry finite non-negative numbers, got {value}")
    if value == 0:
        return "0"
    if value < 0.01 or value >= 1e6:
        mantissa, exponent = f"{value:.12e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        exp = int(exponent)
        return mantissa.replace(".", "p") + ("em" if exp < 0 else "e") + str(abs(exp))
    text = f"{value:.12f}".rstrip("0").rstrip(".")
    return text.replace(".", "p")


_NUMBER = re.compile(r"^(\d+)(?:p(\d+))?(?:(em|e)(\d+))?$")


def parse_number(text: str) -> float:
    """Inverse of :func:`format_number`; raises TrainerNameError for a non-canonical spelling."""
    match = _NUMBER.match(text)
    if not match:
        raise TrainerNameError(f"{text!r} is not a number (write 0.5 as 0p5, 1e-4 as 1em4)")
    whole, frac, sign, exp = match.groups()
    literal = whole + ("." + frac if frac else "") + (("e-" if sign == "em" else "e") + exp if sign else "")
    value = float(literal)
    if not math.isfinite(value):
        raise TrainerNameError(f"{text!r} is too large a number")
    canonical = format_number(value)
    if canonical != text:
        raise TrainerNameError(f"{text!r} is not the canonical spelling of {value:g}; write {canonical!r}")
    return value


@dataclass(frozen=True)
class ParsedName:
    family: Family
    loss_params: Dict[str, Any]
    online: bool = False
    epochs: Optional[int] = None
    iterations: Optional[int] = None
    optimizer: Optional[str] = None  # "adam" | "sgd"
    lr: Optional[float] = None
    seed: Optional[int] = None

    def training(self) -> Dict[str, Any]:
        return {"epochs": self.epochs, "iterations_per_epoch": self.iterations, "optimizer": self.optimizer,
                "initial_lr": self.lr, "seed": self.seed, "online_maps": self.online}

    def resolved_optimizer(self) -> str:
        """The name's ``_adam``/``_sgd``, else the family's default, else nnU-Net's SGD."""
        return self.optimizer or self.family.optimizer or "sgd"

    def resolved_lr(self) -> Optional[float]:
        """The name's ``_lr``, else the family's lr for its default optimizer, else 1e-4 for Adam; None: nnU-Net's
        initial lr (1e-2)."""
        if self.lr is not None:
            return self.lr
        optimizer = self.resolved_optimizer()
        if optimizer == self.family.optimizer and self.family.lr is not None:
            return self.family.lr
        return 1e-4 if optimizer == "adam" else None

    def loss_kwargs(self) -> Dict[str, Any]:
        """Loss parameters: the family's fixed ones, its defaults, then what the name spells."""
        return {**self.family.fixed_params, **self.family.default_params, **self.loss_params}


# nnU-Net's master adds built-in trainers with these prefixes; built-ins win nnU-Net's lookup over ours
RESERVED_PREFIXES = ("Pretrained", "DynamicPretrained")

GRAMMAR = ("<Family>[_<loss parameters>][_online][_ep<int>][_it<int>][_adam|_sgd][_lr<number>][_s<int>]; "
           "numbers: 0p5 = 0.5, 1em4 = 1e-4")

# The run options after the loss parameters, as the documentation's name-parameter table lists them:
# (token, meaning, what applies when the name has no such token). nnU-Net's defaults: nnUNetTrainer.__init__.
RUN_TOKENS = (
    ("_online", "maps computed in nnU-Net's loader workers after augmentation, normalised over the patch (families "
                "with precomputed maps only)", "maps precomputed beside the data (by the first training or "
                "`nnunet-losses precompute-maps`)"),
    ("_ep<int>", "number of epochs", "nnU-Net's 1000"),
    ("_it<int>", "training iterations per epoch; validation iterations keep nnU-Net's 5:1 ratio",
     "nnU-Net's 250 (50 validation)"),
    ("_adam", "Adam with nnU-Net's weight decay (3e-5) and poly schedule; torch's fused kernel on the CPU and CUDA",
     "the family's optimiser"),
    ("_sgd", "nnU-Net's SGD (momentum 0.99, Nesterov, weight decay 3e-5, poly schedule)", "the family's optimiser"),
    ("_lr<number>", "initial learning rate",
     "the family's for its default optimiser (Adam 1e-3 where Adam is the default), else 1e-4 for Adam and "
     "nnU-Net's 1e-2 for SGD"),
    ("_s<int>", "seed of Python, numpy and torch; runs with different seeds get their own output folders",
     "no seed"),
)


def _format_token(param: NameParam, value: Any) -> str:
    if param.kind == "flag":
        return param.code
    if param.kind == "int":
        return f"{param.code}{int(value)}"
    return f"{param.code}{format_number(value)}"


def format_name(parsed: ParsedName) -> str:
    """The canonical name of a parsed setting (parse(format(x)) == x)."""
    family = parsed.family
    tokens = [family.name]
    for p in family.name_params:
        if p.loss_param in parsed.loss_params:
            value = parsed.loss_params[p.loss_param]
            if p.kind == "flag":
                if value == p.flag_value:
                    tokens.append(p.code)
            else:
                tokens.append(_format_token(p, value))
    if parsed.online:
        tokens.append("online")
    if parsed.epochs is not None:
        tokens.append(f"ep{parsed.epochs}")
    if parsed.iterations is not None:
        tokens.append(f"it{parsed.iterations}")
    if parsed.optimizer is not None:
        tokens.append(parsed.optimizer)
    if parsed.lr is not None:
        tokens.append(f"lr{format_number(parsed.lr)}")
    if parsed.seed is not None:
        tokens.append(f"s{parsed.seed}")
    return "_".join(tokens)


def _parse_int(text: str, what: str) -> int:
    if not re.fullmatch(r"0|[1-9]\d*", text):
        raise TrainerNameError(f"{what} must be a whole number without leading zeros, got {text!r}")
    return int(text)


# The run options after the loss parameters, in the grammar's order; ParsedName has one field of each name.
_RUN_OPTIONS = ("online", "epochs", "iterations", "optimizer", "lr", "seed")


def _family_named(head: str, families: Dict[str, Family]) -> Family:
    """The family a name's first token names; nnU-Net's reserved prefixes and unknown families are errors."""
    if head.startswith(RESERVED_PREFIXES):
        raise TrainerNameError(f"names starting with {' or '.join(RESERVED_PREFIXES)} are nnU-Net's own trainers")
    if head not in families:
        close = difflib.get_close_matches(head, families, n=1, cutoff=0.0)
        raise TrainerNameError(f"unknown trainer family {head!r}" + (f" (did you mean {close[0]}?)" if close else ""))
    return families[head]


def _read_loss_token(token: str, param: NameParam, loss_params: Dict[str, Any]) -> bool:
    """Whether ``token`` spells the loss parameter ``param``; if so, its value is put in ``loss_params``."""
    if param.kind == "flag":
        if token != param.code:
            return False
        if param.loss_param in loss_params:  # e.g. Combo's _pc and _flat
            raise TrainerNameError(f"'{token}' contradicts an earlier token: both set {param.loss_param}")
        loss_params[param.loss_param] = param.flag_value
        return True
    text = token[len(param.code):]
    if not (token.startswith(param.code) and text[:1].isdigit()):
        return False
    loss_params[param.loss_param] = _parse_int(text, param.code) if param.kind == "int" else parse_number(text)
    return True


def _read_run_token(token: str, option: str, values: Dict[str, Any], head: str,
                    online_families: Tuple[str, ...]) -> bool:
    """Whether ``token`` spells the run option ``option`` (one of ``_RUN_OPTIONS``); if so, its value is put in
    ``values``. ``_online`` is an error outside the families with precomputed maps."""
    if option == "online" and token == "online":
        if head in MAP_FAMILIES and head not in online_families:
            raise TrainerNameError(f"'_online' changes nothing for {head}: {head} builds its map on the training "
                                   "device from the labels, with nothing precomputed")
        if head not in online_families:
            raise TrainerNameError("'_online' applies to the families with precomputed maps only "
                                   f"({', '.join(online_families)})")
        values["online"] = True
    elif option == "epochs" and re.fullmatch(r"ep\d+", token):
        values["epochs"] = _parse_int(token[2:], "ep")
    elif option == "iterations" and re.fullmatch(r"it\d+", token):
        values["iterations"] = _parse_int(token[2:], "it")
    elif option == "optimizer" and token in ("adam", "sgd"):
        values["optimizer"] = token
    elif option == "lr" and token.startswith("lr") and token[2:3].isdigit():
        values["lr"] = parse_number(token[2:])
    elif option == "seed" and re.fullmatch(r"s\d+", token):
        values["seed"] = _parse_int(token[1:], "s")
    else:
        return False
    return True


MAX_SEED = 2**32 - 1  # numpy.random.seed's largest seed (the trainers seed Python, numpy and torch with _s)
MAX_NAME_BYTES = 255  # the longest file or folder name of common file systems (ext4, XFS, APFS, NTFS: NAME_MAX)


def _check_run_values(values: Dict[str, Any]) -> None:
    if values["epochs"] == 0 or values["iterations"] == 0:
        raise TrainerNameError("_ep and _it must be at least 1")
    if values["lr"] is not None and values["lr"] <= 0:
        raise TrainerNameError("_lr must be > 0")
    if values["seed"] is not None and values["seed"] > MAX_SEED:
        raise TrainerNameError(f"seed {values['seed']} is outside [0, {MAX_SEED}] (numpy's seeds, 0 .. 2**32 - 1)")


def check_name_length(name: str, what: str = "trainer name") -> None:
    """A ``what`` that becomes a file or folder name is at most :data:`MAX_NAME_BYTES` bytes (UTF-8); else
    TrainerNameError naming the limit (the file system would answer "File name too long" mid-run)."""
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise TrainerNameError(f"{what} {name[:40]}... is {size} bytes, over the file systems' limit of "
                               f"{MAX_NAME_BYTES} bytes for a file or folder name")


def output_folder_name(trainer: str, plans: str, configuration: str) -> str:
    """nnU-Net's output folder of a training: ``<trainer>__<plans>__<configuration>`` (in nnUNet_results/Dataset)."""
    return f"{trainer}__{plans}__{configuration}"


def parse_output_folder_name(name: str) -> Optional[Tuple[str, str, str]]:
    """``(trainer, plans, configuration)`` of an nnU-Net output folder name, None when ``name`` is not one."""
    parts = name.split("__")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 and all(parts) else None


# nnU-Net's values where a name has no _ep/_it/_lr (nnUNetTrainer.__init__); _it also sets the validation
# iterations to _it // 5, which is nnU-Net's 50 for 250
NNUNET_EPOCHS, NNUNET_ITERATIONS, NNUNET_LR = 1000, 250, 1e-2


def resolved_settings(parsed: "ParsedName") -> Tuple:
    """Everything a name sets, with every default resolved (the family's loss parameters, optimiser and lr,
    nnU-Net's epochs, iterations and lr): two names train the same loss the same way exactly when these are equal
    (``ComboTrainer``, ``ComboTrainer_a0p5`` and ``ComboTrainer_pc`` are one setting)."""
    params = get_spec(parsed.family.loss).resolve(**parsed.loss_kwargs())
    return (parsed.family.loss, tuple(sorted((k, repr(v)) for k, v in params.items())), parsed.online,
            parsed.epochs or NNUNET_EPOCHS, parsed.iterations or NNUNET_ITERATIONS, parsed.resolved_optimizer(),
            parsed.resolved_lr() or NNUNET_LR, parsed.seed)


def parse_name(name: str, families: Dict[str, Family], online_families: Tuple[str, ...] = ()) -> ParsedName:
    """Parse ``name`` against ``families``; raises TrainerNameError (with the grammar) if malformed.

    Returns a ParsedName whose :func:`format_name` equals ``name`` (canonical by construction).
    """
    if "__" in name:
        raise TrainerNameError("a trainer name may not contain '__' (nnU-Net splits folder names on it)")
    check_name_length(name)
    head, *tokens = name.split("_")
    family = _family_named(head, families)
    loss_params: Dict[str, Any] = {}
    values: Dict[str, Any] = {"online": False, "epochs": None, "iterations": None, "optimizer": None,
                              "lr": None, "seed": None}
    # each token is the next stage it spells, in order: a loss parameter (a NameParam) or a run option (its name)
    stages = [*family.name_params, *_RUN_OPTIONS]
    position = 0
    for token in tokens:
        if not token:
            raise TrainerNameError("empty token (two '_' in a row or a trailing '_')")
        matched = False
        while position < len(stages) and not matched:
            stage = stages[position]
            position += 1
            matched = (_read_run_token(token, stage, values, head, online_families) if isinstance(stage, str)
                       else _read_loss_token(token, stage, loss_params))
        if not matched:
            raise TrainerNameError(f"unexpected or out-of-order token {token!r}")
    _check_run_values(values)
    parsed = ParsedName(family=family, loss_params=loss_params, **values)
    assert format_name(parsed) == name, (format_name(parsed), name)
    return parsed


def check_name(name: str, families: Dict[str, Family] = FAMILIES,
               online_families: Tuple[str, ...] = ONLINE_MAP_FAMILIES) -> ParsedName:
    """:func:`parse_name`, then the loss parameters' values checked by their registry spec (ranges, IoU_xy's
    alpha + beta = 2), the one place each is validated; raises TrainerNameError. Imports no nnU-Net."""
    parsed = parse_name(name, families, online_families)
    try:  # refuse out-of-range values (ComboTrainer_a1p5, IoUxyTrainer_a0p5_b1) when the name is looked up
        get_spec(parsed.family.loss).resolve(**parsed.loss_kwargs())
    except (ValueError, TypeError) as err:
        raise TrainerNameError(str(err)) from None
    return parsed


def nearest_valid_name(name: str, families: Dict[str, Family], online_families: Tuple[str, ...] = (),
                       check: Optional[Callable[[str], Any]] = None) -> str:
    """Best guess at what was meant: the closest family, number spellings fixed, tokens reordered, and tokens
    dropped (their defaults) until ``check`` accepts the name (default: :func:`parse_name`; the trainers also
    check the values' ranges, so an out-of-range value falls back to its default)."""
    check = check or (lambda candidate: parse_name(candidate, families, online_families))
    head, *tokens = [t for t in name.replace("__", "_").split("_") if t] or [""]
    if head not in families:
        close = difflib.get_close_matches(head, families, n=1, cutoff=0.0)
        head = close[0] if close else next(iter(families))
    fixed = []
    for token in tokens:
        match = re.match(r"^([a-z]+?)(\d[\dpem]*)$", token)
        if match:
            code, number = match.groups()
            try:
                float_text = number.replace("em", "e-").replace("p", ".")
                fixed.append(code + format_number(float(float_text)))
                continue
            except ValueError:
                pass
        fixed.append(token)
    # try every order of the fixed tokens that parses (few tokens: cheap), else drop the tokens one by one
    import itertools

    fixed = fixed[:6]

    candidates = []
    for r in range(len(fixed), -1, -1):
        for subset in itertools.combinations(fixed, r):
            for order in itertools.permutations(subset):
                candidate = "_".join((head,) + order)
                try:
                    check(candidate)
                    candidates.append(candidate)
                except TrainerNameError:
                    continue
            if candidates:
                break
        if candidates:
            break
    return candidates[0] if candidates else head


def explain(name: str, err: Exception, families: Dict[str, Family], online_families: Tuple[str, ...] = (),
            check: Optional[Callable[[str], Any]] = None) -> str:
    """The message shown for a malformed name: what is wrong, the grammar, the nearest valid name."""
    nearest = nearest_valid_name(name, families, online_families, check)
    return (f"invalid nnunet-losses trainer name {name!r}: {err}\n  grammar: {GRAMMAR}\n"
            f"  nearest valid name: {nearest}\n  list every family with: nnunet-losses trainers")

