"""Loss registry: name -> factory with typed, documented parameters and defaults.

    >>> from nnunet_losses.registry import build_loss
    >>> loss = build_loss("combo", alpha=0.5, beta=0.7)

Context that comes from the dataset and the nnU-Net plan rather than from the user (ignore label, region mode, batch
Dice, DDP, class weights) is passed as keyword arguments of :func:`build_loss` too, and is not a loss parameter.
Baselines are nnU-Net's own loss classes (see :mod:`nnunet_losses.nnunet.baselines`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from torch import nn

from . import losses as L
from .maps import MapKind


class LossParameterError(TypeError, ValueError):
    """A loss parameter that does not exist or has the wrong type: a TypeError, as Python raises for a bad keyword
    argument, and a ValueError, so that command lines report it in one line like every other bad value."""


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
            raise ValueError(f"loss {loss!r}: parameter {self.name!r} may not be None")
        if self.type is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        elif self.type is int and isinstance(value, int) and not isinstance(value, bool):
            pass
        elif not isinstance(value, self.type):
            raise LossParameterError(f"loss {loss!r}: parameter {self.name!r} must be {self.type.__name__}, "
                            f"got {type(value).__name__} {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"loss {loss!r}: parameter {self.name!r} must be one of {list(self.choices)}, "
                             f"got {value!r}")
        if self.interval is not None and not in_interval(value, self.interval):
            raise ValueError(f"loss {loss!r}: parameter {self.name!r} must lie in {self.interval}, got {value!r}")
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


@dataclass(frozen=True)
class LossSpec:
    name: str
    summary: str
    paper: str
    equation: str
    factory: Callable[[Dict[str, Any], LossContext], nn.Module]
    params: Tuple[Param, ...] = ()
    needs_map: Optional[MapKind] = None  # the kind of map passed as third argument (maps.formats)
    supports_regions: bool = True
    needs_class_weights: bool = False
    extras: Dict[str, Any] = field(default_factory=dict)
    rule: Optional[Callable[[Dict[str, Any]], None]] = None  # a rule between parameters; raises ValueError

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


def _baselines():
    from .nnunet import baselines  # imports nnunetv2; kept out of the pure-PyTorch path

    return baselines


def _dice_partner(ctx: LossContext) -> nn.Module:
    return _baselines().SoftDice(do_bg=False, batch_dice=ctx.batch_dice, ddp=ctx.ddp,
                                 ignore_label=ctx.ignore_label, regions=False)


def _boundary(partner: str):
    def factory(p, ctx):
        partner_loss = (_dice_partner(ctx) if partner == "dice"
                        else _baselines().CrossEntropy(ignore_label=ctx.ignore_label, regions=False))
        schedule = L.AlphaSchedule(kind=p["schedule"], step=p["step"], minimum=p["minimum"])
        return L.DiceBoundaryLoss(partner_loss, schedule, ignore_label=ctx.ignore_label)

    return factory


def _wce(p, ctx):
    if ctx.class_weights is None:
        raise ValueError("loss 'wce' needs class_weights (inverse class frequencies measured on the training cases)")
    return L.WeightedCELoss(ctx.class_weights, ignore_label=ctx.ignore_label, regions=ctx.regions)


_SCHEDULE_PARAMS = (
    Param("schedule", str, "gradual", "gradual: alpha from 1 down by `step` per epoch; equal: partner + RW",
          choices=("gradual", "equal")),
    Param("step", float, 0.01, "decrease of alpha per epoch (gradual)", interval="[0, 1]"),
    Param("minimum", float, 0.01, "lowest alpha (gradual)", interval="[0, 1]"),
)

# RW-Boundary map: eq. 3 of 001 (Kervadec's, inside -(d - 1)) or the RW authors' code (inside -d, eq. 3 minus Y)
_BOUNDARY_MAP = Param("boundary_map", str, "eq3", "eq3: eq. 3 / Kervadec et al., inside -(d - 1); authors: the RW "
                      "authors' code, inside -d (what their Fig. 5 and 6 ran)", choices=("eq3", "authors"))

_TOPK_DICE_K = Param("k", float, 50.0, "percentage of the hardest foreground voxels kept per class",
                     interval="(0, 100]")
_TOPK_CE_K = Param("k", float, 10.0, "percentage of voxels with the highest CE kept (at least one voxel)",
                   interval="(0, 100]")

def _weights_sum_to_two(p: Dict[str, Any]) -> None:
    """IoU_xy's rule alpha + beta = 2 (Furtado, section 2.2), as IoUxyLoss checks it."""
    if abs(p["alpha"] + p["beta"] - 2.0) > 1e-6:
        raise ValueError(f"loss 'iou_xy': alpha + beta must equal 2 (Furtado, section 2.2); got alpha={p['alpha']}, "
                         f"beta={p['beta']} (sum {p['alpha'] + p['beta']}). Examples: (1, 1) = soft IoU, "
                         "(0.5, 1.5) = the paper's best")


_RW = "Valverde & Tohka, Region-wise loss (001)"
_SPECS = (
    LossSpec("combo", "Combo loss: alpha * weighted BCE - (1 - alpha) * Dice, foreground channels",
             "Taghanaki et al., Combo loss (000/002)", "eq. 5 (000) / eq. 3 (002)",
             lambda p, c: L.ComboLoss(alpha=p["alpha"], beta=p["beta"], smooth=p["smooth"], dice=p["dice"],
                                      batch_dice=c.batch_dice, regions=c.regions, ignore_label=c.ignore_label,
                                      ddp=c.ddp),
             (Param("alpha", float, 0.5, "weight of the cross-entropy term (1 - alpha: Dice)", interval="[0, 1]"),
              Param("beta", float, 0.5, "weight of false negatives in the cross-entropy (1 - beta: false positives)",
                    interval="[0, 1]"),
              Param("smooth", float, 1.0, "Dice smoothing S", interval="[0, inf)"),
              Param("dice", str, "flattened", "one Dice over all foreground channels, or their per-class mean",
                    choices=("flattened", "per_class")))),
    LossSpec("rrw", "Region-wise loss with rectified RW maps", _RW, "eq. 1 with maps of eq. 4",
             lambda p, c: L.RegionWiseLoss(ignore_label=c.ignore_label, regions=c.regions),
             needs_map="rrw", supports_regions=False),
    LossSpec("rw_boundary", "Region-wise loss with boundary (signed distance) maps", _RW, "eq. 1 with maps of eq. 3",
             lambda p, c: L.RegionWiseLoss(ignore_label=c.ignore_label, regions=c.regions), (_BOUNDARY_MAP,),
             needs_map="boundary", supports_regions=False),
    LossSpec("rw_ac", "Region-wise loss with active-contour maps Z = 1 - Y", _RW, "eq. 1, section 3.2",
             lambda p, c: L.RegionWiseLoss(ignore_label=c.ignore_label, regions=c.regions),
             needs_map="ac", supports_regions=False),
    LossSpec("dice_boundary", "alpha * Dice + (1 - alpha) * RW-Boundary (Boundary loss)", _RW,
             "section 4.1 and 4.3", _boundary("dice"), _SCHEDULE_PARAMS + (_BOUNDARY_MAP,), needs_map="boundary",
             supports_regions=False),
    LossSpec("ce_boundary", "alpha * CE + (1 - alpha) * RW-Boundary (the paper's CE variant)", _RW, "section 4.3",
             _boundary("ce"), _SCHEDULE_PARAMS + (_BOUNDARY_MAP,), needs_map="boundary", supports_regions=False),
    LossSpec("iou_xy", "1 - mean_c TP / (TP + alpha FP + beta FN), alpha + beta = 2",
             "Furtado, loss functions for abdominal MRI (003)", "section 2.2, IoU_xy",
             lambda p, c: L.IoUxyLoss(alpha=p["alpha"], beta=p["beta"],
                                      include_background=p["include_background"], batch_dice=c.batch_dice,
                                      regions=c.regions, ignore_label=c.ignore_label, ddp=c.ddp),
             (Param("alpha", float, 1.0, "weight of false positives", interval="[0, 2]"),
              Param("beta", float, 1.0, "weight of false negatives (alpha + beta = 2)", interval="[0, 2]"),
              Param("include_background", bool, True, "average over the background class too (the paper)")),
             rule=_weights_sum_to_two),
    LossSpec("wce", "cross-entropy weighted by inverse class frequency", "Furtado (003)", "section 2.2, crossE",
             _wce, supports_regions=False, needs_class_weights=True),
    LossSpec("topk_dice", "CE + TopK Dice (the paper's training loss)", "Hosseini, TopK Dice (004)",
             "eq. 7 + CE",
             lambda p, c: L.CEAndTopKDiceLoss(k=p["k"], regions=c.regions, ignore_label=c.ignore_label),
             (_TOPK_DICE_K,)),
    LossSpec("topk_dice_only", "TopK Dice alone", "Hosseini, TopK Dice (004)", "eq. 7",
             lambda p, c: L.TopKDiceLoss(k=p["k"], regions=c.regions, ignore_label=c.ignore_label),
             (_TOPK_DICE_K,)),
    LossSpec("focal", "focal loss (softmax; sigmoid for regions)", "Lin et al.; baseline of 000 and 001",
             "FL = -alpha_t (1 - p_t)^gamma ln p_t",
             lambda p, c: L.FocalLoss(gamma=p["gamma"], alpha=p["alpha"], regions=c.regions,
                                      ignore_label=c.ignore_label),
             (Param("gamma", float, 2.0, "focusing parameter", interval="[0, inf)"),
              Param("alpha", float, None, "None: no balancing (001); 0.25 as in 000", optional=True,
                    interval="[0, 1]"))),
    LossSpec("focal_dice", "soft Dice + focal loss (baseline of 004, DiceFocal)", "Hosseini (004); Lin et al.",
             "nnU-Net soft Dice + FL",
             lambda p, c: _baselines().DiceAndFocal(
                 L.FocalLoss(gamma=p["gamma"], alpha=p["alpha"], regions=c.regions, ignore_label=c.ignore_label),
                 c.batch_dice, c.ddp, c.ignore_label, c.regions),
             (Param("gamma", float, 2.0, "focusing parameter", interval="[0, inf)"),
              Param("alpha", float, None, "None: no balancing; 0.25 as Lin et al.", optional=True,
                    interval="[0, 1]"))),
    LossSpec("dice_ce", "nnU-Net's default Dice + CE (baseline)", "nnU-Net v2", "DC_and_CE_loss",
             lambda p, c: _baselines().nnunet_dice_ce(c.batch_dice, c.ddp, c.ignore_label, c.regions)),
    LossSpec("dice", "soft Dice with background (nnU-Net's class; Furtado's dice)", "nnU-Net v2 / 003",
             "MemoryEfficientSoftDiceLoss(do_bg=True)",
             lambda p, c: _baselines().SoftDice(True, c.batch_dice, c.ddp, c.ignore_label, c.regions)),
    LossSpec("dice_nobg", "soft Dice without background (Furtado's diceBK)", "Furtado (003) / nnU-Net v2",
             "MemoryEfficientSoftDiceLoss(do_bg=False)",
             lambda p, c: _baselines().SoftDice(False, c.batch_dice, c.ddp, c.ignore_label, c.regions)),
    LossSpec("ce", "cross-entropy (nnU-Net's class)", "nnU-Net v2", "RobustCrossEntropyLoss",
             lambda p, c: _baselines().CrossEntropy(c.ignore_label, c.regions)),
    LossSpec("topk_ce", "TopK cross-entropy (nnU-Net's class)", "nnU-Net v2; baseline of 004", "TopKLoss",
             lambda p, c: _baselines().nnunet_topk_ce(p["k"], c.ignore_label, c.regions),
             (_TOPK_CE_K,), supports_regions=False),
    LossSpec("dice_topk_ce", "TopK CE + soft Dice (nnU-Net's class; baseline of 004, DiceTopK)",
             "nnU-Net v2; baseline of 004", "DC_and_topk_loss",
             lambda p, c: _baselines().nnunet_dice_topk_ce(p["k"], c.batch_dice, c.ddp, c.ignore_label, c.regions),
             (_TOPK_CE_K,), supports_regions=False),
)

REGISTRY: Dict[str, LossSpec] = {spec.name: spec for spec in _SPECS}


def get_spec(name: str) -> LossSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        import difflib

        near = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise KeyError(f"unknown loss {name!r}.{hint} Known losses: {', '.join(sorted(REGISTRY))}") from None


def build_loss(name: str, *, ignore_label: Optional[int] = None, regions: bool = False, batch_dice: bool = False,
               ddp: bool = False, class_weights: Optional[Sequence[float]] = None, **params) -> nn.Module:
    """Build the loss ``name`` with ``params`` (validated against its spec) in the given dataset context."""
    spec = get_spec(name)
    if regions and not spec.supports_regions:
        raise ValueError(f"loss {name!r} does not support region-based (sigmoid) datasets: {spec.summary}")
    values = spec.resolve(**params)
    ctx = LossContext(ignore_label=ignore_label, regions=regions, batch_dice=batch_dice, ddp=ddp,
                      class_weights=class_weights)
    return spec.factory(values, ctx)


def describe() -> str:
    """A plain-text table of every loss: name, paper, equation, parameters with defaults."""
    lines = []
    for spec in REGISTRY.values():
        lines.append(f"{spec.name}: {spec.summary}")
        lines.append(f"    paper: {spec.paper}; {spec.equation}")
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
    return "\n".join(lines)
