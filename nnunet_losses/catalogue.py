"""The trainer families: which loss each nnU-Net trainer family trains and which loss parameters its name spells
(the grammar is :mod:`nnunet_losses.naming`). Pure data beside the loss registry, importable without nnU-Net:
validating an experiment spec, planning its maps and ``nnunet-losses trainers`` read it without importing
``nnUNetTrainer``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from .maps import MapSource
from .papers import cite
from .registry import get_spec


@dataclass(frozen=True)
class NameParam:
    """A loss parameter spelled in the name: ``<code><value>`` (``a0p5``) or a bare flag word (``equal``)."""

    code: str
    loss_param: str
    kind: str = "number"  # "number" | "int" | "flag"
    flag_value: Any = None  # for kind="flag": the value the flag sets
    map_kind: Optional[str] = None  # for kind="flag": the map kind (maps.KINDS) the flag makes the loss take


@dataclass(frozen=True)
class Family:
    """A trainer family: its class-name head, the registry loss it trains, and the parameters its name spells."""

    name: str  # e.g. "ComboTrainer"
    loss: str  # registry name
    doc: str
    name_params: Tuple[NameParam, ...] = ()
    fixed_params: Dict[str, Any] = field(default_factory=dict)  # loss params fixed by the family
    example: str = ""
    # the family's defaults where the name says nothing (docs/learning.md has the evidence for each one)
    default_params: Dict[str, Any] = field(default_factory=dict)  # loss params; a name token overrides them
    optimizer: Optional[str] = None  # "adam" | "sgd" when the name has no _adam/_sgd (None: nnU-Net's SGD)
    lr: Optional[float] = None  # initial lr of that default optimizer when the name has no _lr


_A = NameParam("a", "alpha")
_B = NameParam("b", "beta")
_K = NameParam("k", "k")
_EQUAL = NameParam("equal", "schedule", kind="flag", flag_value="equal")
# the RW authors' code's boundary map (inside -d) instead of eq. 3's (inside -(d - 1))
_AUTHORS = NameParam("authors", "boundary_map", kind="flag", flag_value="authors", map_kind="boundary_authors")

FAMILIES: Dict[str, Family] = {f.name: f for f in (
    Family("ComboTrainer", "combo", f"Combo loss ({cite('combo', 'eq. 5')}); a = alpha, b = beta; per-class mean "
           "Dice by default (docs/learning.md), flat = the paper's one Dice over all foreground channels pooled, pc = "
           "per-class (explicit)",
           (_A, _B, NameParam("pc", "dice", kind="flag", flag_value="per_class"),
            NameParam("flat", "dice", kind="flag", flag_value="flattened")),
           example="ComboTrainer_a0p5_b0p7", default_params={"dice": "per_class"}),
    Family("RRWTrainer", "rrw", f"Region-wise loss with rectified maps ({cite('rw', 'eq. 4')}); Adam 1e-3 unless "
           "the name says otherwise: _lr1em4 = the RW authors' code, _adam_lr1em5 = the paper, _sgd = nnU-Net's SGD "
           "(docs/learning.md)", example="RRWTrainer_online", optimizer="adam", lr=1e-3),
    Family("RWBoundaryTrainer", "rw_boundary", f"Region-wise loss with boundary maps ({cite('rw', 'eq. 3')}); "
           "authors = the RW authors' code's map (inside -d)", (_AUTHORS,), example="RWBoundaryTrainer_authors_online"),
    Family("RWACTrainer", "rw_ac", f"Region-wise loss with active-contour maps ({cite('rw', 'section 3.2')})"),
    Family("DiceBoundaryTrainer", "dice_boundary",
           "alpha Dice + (1 - alpha) RW-Boundary, alpha 1 -> 0.01 by 0.01 per epoch; equal = Dice + RW-Boundary; "
           "authors = the RW authors' boundary map; Adam 1e-3 unless the name says otherwise (_sgd = nnU-Net's "
           "SGD, _adam_lr1em5 = the RW paper; docs/learning.md)", (_EQUAL, _AUTHORS),
           example="DiceBoundaryTrainer_equal_online", optimizer="adam", lr=1e-3),
    Family("CEBoundaryTrainer", "ce_boundary",
           f"as DiceBoundaryTrainer with CE as the partner ({cite('rw', 'section 4.3')})",
           (_EQUAL, _AUTHORS)),
    Family("IoUxyTrainer", "iou_xy", f"IoU_xy ({cite('iou_xy', 'section 2.2')}); a = FP weight, b = FN weight, "
           "a + b = 2; nobg = no background; Adam 1e-3 unless the name says otherwise (_sgd = nnU-Net's SGD; "
           "docs/learning.md)",
           (_A, _B, NameParam("nobg", "include_background", kind="flag", flag_value=False)),
           example="IoUxyTrainer_a0p5_b1p5", optimizer="adam", lr=1e-3),
    Family("DiceNoBGTrainer", "dice_nobg", f"soft Dice without background, the diceBK of {cite('iou_xy')}"),
    Family("WCETrainer", "wce",
           f"CE weighted by inverse class frequency of the training cases ({cite('iou_xy', 'section 2.2')})"),
    Family("TopKDiceTrainer", "topk_dice", f"CE + TopK Dice ({cite('topk_dice', 'eq. 7')}); k = percentage kept",
           (_K,), example="TopKDiceTrainer_k50"),
    Family("TopKCETrainer", "topk_ce", "nnU-Net's TopK cross-entropy; k = percentage kept", (_K,),
           example="TopKCETrainer_k10"),
    Family("FocalTrainer", "focal", "focal loss; g = gamma, a = alpha (default: none)",
           (NameParam("g", "gamma"), _A), example="FocalTrainer_g2"),
    Family("FocalDiceTrainer", "focal_dice",
           f"soft Dice + focal loss (the DiceFocal baseline of {cite('topk_dice')}); g = gamma, a = alpha",
           (NameParam("g", "gamma"), _A), example="FocalDiceTrainer_g2"),
    Family("DiceTopKCETrainer", "dice_topk_ce",
           f"nnU-Net's TopK CE + Dice (the DiceTopK baseline of {cite('topk_dice')}); k = percentage kept",
           (_K,), example="DiceTopKCETrainer_k10"),
    Family("DiceTrainer", "dice", "baseline: soft Dice with background (nnU-Net's class)"),
    Family("DiceCETrainer", "dice_ce", "baseline: nnU-Net's default Dice + CE", example="DiceCETrainer_ep300"),
    Family("CETrainer", "ce", "baseline: cross-entropy (nnU-Net's class)"),
)}


def map_source(trainer: Union[str, Family, Any], online: bool = False,
               loss_params: Optional[Mapping[str, Any]] = None) -> Optional[MapSource]:
    """The map a trainer's loss takes and where it is made (None: no map); what the trainers, the experiment plan
    (which maps to precompute), ``nnunet-losses trainers`` and the documentation's tables go by.

    ``trainer``: a parsed trainer name (:class:`~nnunet_losses.naming.ParsedName`: its family, loss
    parameters and ``_online``), or a family (or its name) with ``online`` and ``loss_params``. The kind is the
    registry loss's ``needs_map``, or the ``map_kind`` of a name flag that is set (``_authors``:
    ``boundary_authors``); the place is the kind's row in :data:`nnunet_losses.maps.KINDS`, moved to the loader
    workers by ``_online`` where that applies (:meth:`~nnunet_losses.maps.MapSource.of`).
    """
    if hasattr(trainer, "family"):  # a parsed trainer name
        trainer, online, loss_params = trainer.family, trainer.online, trainer.loss_params
    family = FAMILIES[trainer] if isinstance(trainer, str) else trainer
    kind = get_spec(family.loss).needs_map
    if kind is None:
        return None
    params = {**family.fixed_params, **family.default_params, **(loss_params or {})}  # what the loss is given
    for p in family.name_params:
        if p.map_kind is not None and p.loss_param in params and params[p.loss_param] == p.flag_value:
            kind = p.map_kind
    return MapSource.of(kind, online)


MAP_FAMILIES = tuple(name for name in FAMILIES if map_source(name) is not None)
# `_online` computes a precomputed map in the loader workers instead; for the others (RW-AC's 1 - Y, built on the
# training device from the labels) the option would change nothing
ONLINE_MAP_FAMILIES = tuple(name for name in MAP_FAMILIES if map_source(name).online_option)
