"""The optimiser each loss of a report trained with, and the reference each loss is tested against.

A report may have several reference labels (``--reference DiceCE,DiceCE_adam``; a spec's ``reference = ["DiceCE",
"DiceCE_adam"]``), typically nnU-Net's default loss trained with each optimiser the other losses use: the optimiser
changes the result of a short training as much as the loss can, so a loss trained with Adam is tested against the
reference trained with Adam. Each loss is tested against the reference whose trainer uses the same optimiser
(nnU-Net's SGD or Adam, read from the trainer name with the family's defaults resolved, as ``nnunet-losses trainers``
lists them), the one with the same initial learning rate where several do; a loss whose optimiser no reference uses
is tested against the first reference. With one reference every loss is tested against it, as before. The tables
show each row's optimiser and the caption says which reference each loss was tested against.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

Optimiser = Tuple[str, float]  # ("sgd" | "adam", initial learning rate)


def trainer_optimiser(trainer: str) -> Optional[Optimiser]:
    """(optimiser, initial lr) a trainer name of this package resolves to; None for a name outside its grammar."""
    from ..catalogue import FAMILIES, ONLINE_MAP_FAMILIES
    from ..naming import NNUNET_LR, parse_name

    try:
        parsed = parse_name(trainer, FAMILIES, ONLINE_MAP_FAMILIES)
    except (ValueError, KeyError):  # TrainerNameError, or a family this package does not have
        return None
    return parsed.resolved_optimizer(), parsed.resolved_lr() or NNUNET_LR


def _lr_text(lr: float) -> str:
    mantissa, exponent = f"{lr:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def optimiser_text(optimiser: Optional[Optimiser]) -> str:
    """``SGD 1e-2``, ``Adam 1e-3``; ``unknown`` for a trainer outside the name grammar."""
    if optimiser is None:
        return "unknown"
    name, lr = optimiser
    return f"{'SGD' if name == 'sgd' else 'Adam' if name == 'adam' else name} {_lr_text(lr)}"


def reference_labels(reference: Union[None, str, Sequence[str]]) -> List[str]:
    """The reference labels of ``--reference`` (one label, or several separated by commas) or of a list."""
    if reference is None:
        return []
    parts = reference.split(",") if isinstance(reference, str) else list(reference)
    return [part.strip() for part in parts if part.strip()]


def label_optimisers(trainers: Dict[str, str]) -> Dict[str, Optional[Optimiser]]:
    """{label: optimiser} of ``{label: trainer name}`` (a seed token ``_s<N>`` is allowed)."""
    return {label: trainer_optimiser(trainer) for label, trainer in trainers.items()}


def tested_against(used: Dict[str, Optional[Optimiser]], references: Sequence[str]) -> Dict[str, str]:
    """{label: the reference it is tested against} for every label of ``used`` (its optimiser); a reference maps to
    itself. ``references``: labels of ``used``, the first one the fallback."""
    out = {}
    for label, optimiser in used.items():
        if label in references:
            out[label] = label
            continue
        same = [r for r in references if optimiser is not None and used[r] is not None and used[r][0] == optimiser[0]]
        exact = [r for r in same if used[r] == optimiser]
        out[label] = (exact or same or list(references))[0]
    return out


def pairing_text(used: Dict[str, Optional[Optimiser]], against: Dict[str, str]) -> str:
    """The caption's account of the tests: which losses were tested against which reference, and any loss tested
    against a reference with another optimiser or learning rate."""
    groups: Dict[str, List[str]] = {}
    for label, reference in against.items():
        if label != reference:
            groups.setdefault(reference, []).append(label)
    parts = [f"{', '.join(labels)} against {reference} ({optimiser_text(used[reference])})"
             for reference, labels in groups.items()]
    other = [label for label, reference in against.items()
             if label != reference and (used[label] is None or used[label] != used[reference])]
    text = "each loss is tested against the reference with its optimiser: " + "; ".join(parts)
    if other:
        text += (f"; {', '.join(f'{label} ({optimiser_text(used[label])})' for label in other)}: no reference with "
                 "the same optimiser and learning rate")
    return text
