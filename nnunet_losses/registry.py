"""Loss registry: name -> factory with typed, documented parameters and defaults.

    >>> from nnunet_losses.registry import build_loss
    >>> loss = build_loss("combo", alpha=0.5, beta=0.7)

Context that comes from the dataset and the nnU-Net plan rather than from the user (ignore label, region mode, batch
Dice, DDP, class weights) is passed as keyword arguments of :func:`build_loss` too, and is not a loss parameter.
Baselines are nnU-Net's own loss classes (see :mod:`nnunet_losses.nnunet.baselines`). Their specs name the factory
by a path, "module:function", that :func:`build_loss` imports only when such a loss is built: this module imports no
nnunetv2 and nothing of :mod:`nnunet_losses.nnunet` (which imports it), so the core never depends on the glue.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from torch import nn

from . import losses as L
from .losses.iou_xy import check_weights_sum_to_two
from .maps import MapKind
from .errors import InvalidInput, UnknownName
from .papers import PAPERS, Paper, cite, cited_in


class LossParameterError(InvalidInput, TypeError):
    """A loss parameter that does not exist or has the wrong type: a TypeError, as Python raises for a bad keyword
    argument, and an InvalidInput (a ValueError), so that command lines report it in one line like every other bad
    value."""


@dataclass(frozen=True)
class Param:
    """One loss hyper-parameter: name, type, default, meaning, and allowed values."""

    name: str
    type: type
    default: Any
    doc: str
    choices: Optional[Tuple[Any, ...]] = None
    optional: bool = False  # None is an allowed value
    interval: Optional[str] = None  # allowed range of a number, e.g. "(0, 100]", "[0, inf)"

    def validate(self, value: Any, loss: str) -> Any:
        if value is None:
            if self.optional:
                return None
            raise InvalidInput(f"loss {loss!r}: parameter {self.name!r} may not be None")
        if self.type is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        elif self.type is int and isinstance(value, int) and not isinstance(value, bool):
            pass
        elif not isinstance(value, self.type):
            raise LossParameterError(f"loss {loss!r}: parameter {self.name!r} must be {self.type.__name__}, "
                            f"got {type(value).__name__} {value!r}")
        if self.choices is not None and value not in self.choices:
            raise InvalidInput(f"loss {loss!r}: parameter {self.name!r} must be one of {list(self.choices)}, "
                               f"got {value!r}")
        if self.interval is not None and not in_interval(value, self.interval):
            raise InvalidInput(f"loss {loss!r}: parameter {self.name!r} must lie in {self.interval}, got {value!r}")
        return value


def in_interval(value: float, interval: str) -> bool:
    """Whether ``value`` lies in ``interval`` written as in mathematics: "(0, 100]", "[0, 1]", "[0, inf)".
    NaN and infinities lie in no interval (an open ``inf`` end only means "no upper bound")."""
    low, high = (float(v) for v in interval[1:-1].split(","))
    if not math.isfinite(value):
        return False
    above = value > low if interval[0] == "(" else value >= low
    below = value < high if interval[-1] == ")" else value <= high
    return above and below


@dataclass(frozen=True)
class LossContext:
    """What the dataset/plan decides: passed by the trainer, not chosen by the user."""

    ignore_label: Optional[int] = None
    regions: bool = False
    batch_dice: bool = False
    ddp: bool = False
    class_weights: Optional[Sequence[float]] = None


Factory = Callable[[Dict[str, Any], LossContext], nn.Module]  # (validated parameters, context) -> loss


def resolve_factory(factory: Union[Factory, str]) -> Factory:
    """``factory`` itself, or the function a "module:function" path names, importing its module now."""
    if not isinstance(factory, str):
        return factory
    module, _, function = factory.partition(":")
    return getattr(importlib.import_module(module), function)


@dataclass(frozen=True)
class LossSpec:
    name: str
    summary: str
    paper: str
    equation: str
    factory: Union[Factory, str]  # a function, or a "module:function" path imported when the loss is built
    params: Tuple[Param, ...] = ()
    needs_map: Optional[MapKind] = None  # the kind of map passed as third argument (maps.formats)
    supports_regions: bool = True
    needs_class_weights: bool = False
    rule: Optional[Callable[[Dict[str, Any]], None]] = None  # a rule between parameters; raises ValueError
    implementation: str = ""  # the class(es) that compute it, ours or nnU-Net's

    def references(self) -> List[Paper]:
        """The works its paper field and parameter descriptions cite (nnunet_losses/papers.py), in the table's
        order."""
        return cited_in(" ".join([self.paper] + [p.doc for p in self.params]))

    def defaults(self) -> Dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def resolve(self, **params) -> Dict[str, Any]:
        """Defaults overridden by ``params``, validated; unknown names raise with the list of known ones."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise LossParameterError(f"loss {self.name!r} has no parameter(s) {unknown}; its parameters: "
                            f"{sorted(known) or 'none'}")
        values = self.defaults()
        for name, value in params.items():
            values[name] = known[name].validate(value, self.name)
        if self.rule is not None:
            self.rule(values)
        return values


_BASELINES = "nnunet_losses.nnunet.baselines"


def _baseline(function: str) -> str:
    """The path of a factory of nnU-Net's baselines, imported (with nnunetv2) only when the loss is built."""
    return f"{_BASELINES}:{function}"


def _boundary(partner: str) -> Factory:
    """alpha * partner + (1 - alpha) * RW-Boundary, the partner (nnU-Net's Dice or CE) built by the path ``partner``."""
    def factory(p, ctx):
        partner_loss = resolve_factory(partner)(p, ctx)
        schedule = L.AlphaSchedule(kind=p["schedule"], step=p["step"], minimum=p["minimum"])
        return L.DiceBoundaryLoss(partner_loss, schedule, ignore_label=ctx.ignore_label)

    return factory


def _wce(p, ctx):
    if ctx.class_weights is None:
        raise InvalidInput("loss 'wce' needs class_weights (inverse class frequencies measured on the training cases)")
    return L.WeightedCELoss(ctx.class_weights, ignore_label=ctx.ignore_label, regions=ctx.regions)


_SCHEDULE_PARAMS = (
    Param("schedule", str, "gradual", "gradual: alpha from 1 down by `step` per epoch; equal: partner + RW",
          choices=("gradual", "equal")),
    Param("step", float, 0.01, "decrease of alpha per epoch (gradual)", interval="[0, 1]"),
    Param("minimum", float, 0.01, "lowest alpha (gradual)", interval="[0, 1]"),
)

# RW-Boundary map: eq. 3 of Valverde & Tohka (Kervadec et al.'s, inside -(d - 1)) or the RW authors' code (inside
# -d, eq. 3 minus Y)
_BOUNDARY_MAP = Param("boundary_map", str, "eq3", f"eq3: eq. 3, the map of {cite('boundary')}, inside -(d - 1); "
                      "authors: the RW authors' code, inside -d (what their Fig. 5 and 6 ran)",
                      choices=("eq3", "authors"))

_TOPK_DICE_K = Param("k", float, 50.0, "percentage of the hardest foreground voxels kept per class",
                     interval="(0, 100]")
_TOPK_CE_K = Param("k", float, 10.0, "percentage of voxels with the highest CE kept (at least one voxel)",
                   interval="(0, 100]")

def _weights_sum_to_two(p: Dict[str, Any]) -> None:
    """IoU_xy's rule alpha + beta = 2, the one IoUxyLoss checks."""
    check_weights_sum_to_two(p["alpha"], p["beta"], owner="loss 'iou_xy'")


_COMBO, _RW, _FURTADO, _HOSSEINI = cite("combo"), cite("rw"), cite("iou_xy"), cite("topk_dice")
_LIN, _NNUNET = cite("focal"), cite("nnunet")
_SPECS = (
    LossSpec("combo", "Combo loss: alpha * weighted BCE - (1 - alpha) * Dice, foreground channels", _COMBO,
             "eq. 5 (eq. 3 of arXiv:1805.02798)",
             lambda p, c: L.ComboLoss(alpha=p["alpha"], beta=p["beta"], smooth=p["smooth"], dice=p["dice"],
                                      batch_dice=c.batch_dice, regions=c.regions, ignore_label=c.ignore_label,
                                      ddp=c.ddp),
             (Param("alpha", float, 0.5, "weight of the cross-entropy term (1 - alpha: Dice)", interval="[0, 1]"),
              Param("beta", float, 0.5, "weight of false negatives in the cross-entropy (1 - beta: false positives)",
                    interval="[0, 1]"),
              Param("smooth", float, 1.0, "Dice smoothing S", interval="[0, inf)"),
              Param("dice", str, "flattened", "flattened: the paper's one Dice over all foreground channels "
                    "pooled; per_class: the mean of one Dice per foreground class (ComboTrainer's default)",
                    choices=("flattened", "per_class"))),
             implementation="ComboLoss"),
    LossSpec("rrw", "Region-wise loss with rectified RW maps", _RW, "eq. 1 with maps of eq. 4",
             lambda p, c: L.RegionWiseLoss(ignore_label=c.ignore_label, regions=c.regions),
             needs_map="rrw", supports_regions=False, implementation="RegionWiseLoss + maps.rrw_map"),
    LossSpec("rw_boundary", "Region-wise loss with boundary (signed distance) maps", _RW, "eq. 1 with maps of eq. 3",
             lambda p, c: L.RegionWiseLoss(ignore_label=c.ignore_label, regions=c.regions), (_BOUNDARY_MAP,),
             needs_map="boundary", supports_regions=False,
             implementation="RegionWiseLoss + maps.boundary_map (authors: maps.boundary_map_authors)"),
    LossSpec("rw_ac", "Region-wise loss with active-contour maps Z = 1 - Y", _RW, "eq. 1, section 3.2",
             lambda p, c: L.RegionWiseLoss(ignore_label=c.ignore_label, regions=c.regions),
             needs_map="ac", supports_regions=False, implementation="RegionWiseLoss + maps.ac_map"),
    LossSpec("dice_boundary", "alpha * Dice + (1 - alpha) * RW-Boundary (Boundary loss)", _RW,
             "sections 4.1 and 4.3", _boundary(_baseline("build_boundary_dice_partner")),
             _SCHEDULE_PARAMS + (_BOUNDARY_MAP,), needs_map="boundary", supports_regions=False,
             implementation="DiceBoundaryLoss (nnU-Net's soft Dice partner) + AlphaSchedule"),
    LossSpec("ce_boundary", "alpha * CE + (1 - alpha) * RW-Boundary (the paper's CE variant)", _RW, "section 4.3",
             _boundary(_baseline("build_boundary_ce_partner")), _SCHEDULE_PARAMS + (_BOUNDARY_MAP,),
             needs_map="boundary", supports_regions=False,
             implementation="DiceBoundaryLoss (nnU-Net's CE partner) + AlphaSchedule"),
    LossSpec("iou_xy", "1 - mean_c TP / (TP + alpha FP + beta FN), alpha + beta = 2", _FURTADO,
             "section 2.2, IoU_xy",
             lambda p, c: L.IoUxyLoss(alpha=p["alpha"], beta=p["beta"],
                                      include_background=p["include_background"], batch_dice=c.batch_dice,
                                      regions=c.regions, ignore_label=c.ignore_label, ddp=c.ddp),
             (Param("alpha", float, 1.0, "weight of false positives", interval="[0, 2]"),
              Param("beta", float, 1.0, "weight of false negatives (alpha + beta = 2)", interval="[0, 2]"),
              Param("include_background", bool, True, "average over the background class too (the paper)")),
             rule=_weights_sum_to_two, implementation="IoUxyLoss"),
    LossSpec("wce", "cross-entropy weighted by inverse class frequency", _FURTADO, "section 2.2, crossE",
             _wce, supports_regions=False, needs_class_weights=True,
             implementation="WeightedCELoss + inverse_frequency_weights"),
    LossSpec("topk_dice", "CE + TopK Dice (the paper's training loss)", _HOSSEINI, "eq. 7 + CE",
             lambda p, c: L.CEAndTopKDiceLoss(k=p["k"], regions=c.regions, ignore_label=c.ignore_label),
             (_TOPK_DICE_K,), implementation="CEAndTopKDiceLoss"),
    LossSpec("topk_dice_only", "TopK Dice alone", _HOSSEINI, "eq. 7",
             lambda p, c: L.TopKDiceLoss(k=p["k"], regions=c.regions, ignore_label=c.ignore_label),
             (_TOPK_DICE_K,), implementation="TopKDiceLoss"),
    LossSpec("focal", "focal loss (softmax; sigmoid for regions)",
             f"{_LIN}; a baseline in {_COMBO} and {_RW}", "FL = -alpha_t (1 - p_t)^gamma ln p_t",
             lambda p, c: L.FocalLoss(gamma=p["gamma"], alpha=p["alpha"], regions=c.regions,
                                      ignore_label=c.ignore_label),
             (Param("gamma", float, 2.0, "focusing parameter", interval="[0, inf)"),
              Param("alpha", float, None, "None: no balancing (as Valverde & Tohka); 0.25 as Taghanaki et al.",
                    optional=True, interval="[0, 1]")),
             implementation="FocalLoss"),
    LossSpec("focal_dice", "soft Dice + focal loss (DiceFocal)", f"DiceFocal baseline of {_HOSSEINI}; {_LIN}",
             "nnU-Net's soft Dice + FL",
             _baseline("build_focal_dice"),
             (Param("gamma", float, 2.0, "focusing parameter", interval="[0, inf)"),
              Param("alpha", float, None, "None: no balancing; 0.25 as Lin et al.", optional=True,
                    interval="[0, 1]")),
             implementation="nnU-Net's MemoryEfficientSoftDiceLoss (no background) + FocalLoss"),
    LossSpec("dice_ce", "nnU-Net's default Dice + CE (baseline)", _NNUNET, "nnU-Net's default loss",
             _baseline("build_dice_ce"),
             implementation="nnU-Net's DC_and_CE_loss (DC_and_BCE_loss for regions)"),
    LossSpec("dice", "soft Dice with background (nnU-Net's class; Furtado's dice)", f"{_NNUNET}; {_FURTADO}",
             "soft Dice with background (Furtado: dice)",
             _baseline("build_dice"), implementation="nnU-Net's MemoryEfficientSoftDiceLoss(do_bg=True)"),
    LossSpec("dice_nobg", "soft Dice without background (Furtado's diceBK)", f"{_FURTADO}; {_NNUNET}",
             "soft Dice without background (Furtado: diceBK)",
             _baseline("build_dice_nobg"), implementation="nnU-Net's MemoryEfficientSoftDiceLoss(do_bg=False)"),
    LossSpec("ce", "cross-entropy (nnU-Net's class)", _NNUNET, "cross-entropy", _baseline("build_ce"),
             implementation="nnU-Net's RobustCrossEntropyLoss"),
    LossSpec("topk_ce", "TopK cross-entropy (nnU-Net's class)", f"{_NNUNET}; a baseline in {_HOSSEINI}",
             "CE of the k% hardest voxels",
             _baseline("build_topk_ce"),
             (_TOPK_CE_K,), supports_regions=False,
             implementation="nnU-Net's TopKLoss (keeping at least one voxel)"),
    LossSpec("dice_topk_ce", "TopK CE + soft Dice (nnU-Net's class; DiceTopK)",
             f"{_NNUNET}; DiceTopK baseline of {_HOSSEINI}", "TopK CE + soft Dice without background",
             _baseline("build_dice_topk_ce"),
             (_TOPK_CE_K,), supports_regions=False, implementation="nnU-Net's DC_and_topk_loss"),
)

REGISTRY: Dict[str, LossSpec] = {spec.name: spec for spec in _SPECS}


def get_spec(name: str) -> LossSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        import difflib

        near = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise UnknownName(f"unknown loss {name!r}.{hint} Known losses: {', '.join(sorted(REGISTRY))}") from None


def build_loss(name: str, *, ignore_label: Optional[int] = None, regions: bool = False, batch_dice: bool = False,
               ddp: bool = False, class_weights: Optional[Sequence[float]] = None, **params) -> nn.Module:
    """Build the loss ``name`` with ``params`` (validated against its spec) in the given dataset context."""
    spec = get_spec(name)
    if regions and not spec.supports_regions:
        raise InvalidInput(f"loss {name!r} does not support region-based (sigmoid) datasets: {spec.summary}")
    values = spec.resolve(**params)
    ctx = LossContext(ignore_label=ignore_label, regions=regions, batch_dice=batch_dice, ddp=ddp,
                      class_weights=class_weights)
    return resolve_factory(spec.factory)(values, ctx)


def describe() -> str:
    """A plain-text list of every loss: name, paper, equation, class, parameters with defaults; then the full
    reference of every work cited."""
    lines = []
    for spec in REGISTRY.values():
        lines.append(f"{spec.name}: {spec.summary}")
        lines.append(f"    paper: {spec.paper}")
        lines.append(f"    equation: {spec.equation}")
        lines.append(f"    class: {spec.implementation}")
        extra = []
        if spec.needs_map:
            extra.append(f"map: {spec.needs_map}")
        if not spec.supports_regions:
            extra.append("label datasets only")
        if spec.needs_class_weights:
            extra.append("needs class weights")
        if extra:
            lines.append("    " + "; ".join(extra))
        for p in spec.params:
            choices = f" (one of {', '.join(map(str, p.choices))})" if p.choices else ""
            choices += f" (in {p.interval})" if p.interval else ""
            lines.append(f"    {p.name} = {p.default!r}{choices}: {p.doc}")
    lines += ["", references_text(cited_by(REGISTRY.values()))]
    return "\n".join(lines)


def cited_by(specs) -> List[Paper]:
    """Every work the given specs cite, once each, in the table's order (nnunet_losses/papers.py)."""
    keys = {p.key for spec in specs for p in spec.references()}
    return [p for p in PAPERS.values() if p.key in keys]


def references_text(papers: Sequence[Paper]) -> str:
    """"References:" and one line per work: its short form, then its full reference."""
    return "\n".join(["References:"] + [f"  {p.short}: {p.citation()}" for p in papers])
