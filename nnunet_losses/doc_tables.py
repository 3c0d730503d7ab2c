"""The tables of ``documentation/`` generated from the code: the trainer families and their name parameters from
the catalogue (:mod:`nnunet_losses.catalogue`, :mod:`nnunet_losses.naming`), the losses and the works they
cite from the registry (:mod:`nnunet_losses.registry`, :mod:`nnunet_losses.papers`).

``nnunet-losses trainers --markdown families|name-parameters`` and ``nnunet-losses losses --markdown
losses|references`` print them. In a page each sits between two marker lines naming the command that prints it::

    <!-- generated: nnunet-losses trainers --markdown families -->
    | family | ...
    <!-- end generated -->

``python -m nnunet_losses.doc_tables documentation/*.md`` rewrites every such block with the command's output;
``--check`` only lists the blocks that differ (tests/test_docs_tables.py does the same).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import sys
from typing import Dict, List, Sequence, Tuple

from ._files import atomic_write_text
from .catalogue import FAMILIES, Family, NameParam, map_source
from .maps import DEVICE, ONLINE, PRECOMPUTED
from .naming import RUN_TOKENS
from .registry import REGISTRY, Param, cited_by, get_spec

BEGIN = "<!-- generated: {command} -->"
END = "<!-- end generated -->"
_BLOCK = re.compile(r"^<!-- generated: (?P<command>[^\n]*?) -->\n(?P<body>.*?)^<!-- end generated -->$",
                    re.S | re.M)
NNUNET_SGD = "nnU-Net's SGD, lr 1e-2"


def _cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell: pipes escaped, no line breaks."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _number(value: float) -> str:
    """1e-3 rather than 0.001: the way learning rates are written."""
    mantissa, exponent = f"{value:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _value(value) -> str:
    return "none" if value is None else str(value)


def _token(p: NameParam) -> str:
    return f"`_{p.code}`" if p.kind == "flag" else f"`_{p.code}<{'int' if p.kind == 'int' else 'number'}>`"


def _defaults(family: Family) -> Dict[str, object]:
    return {**get_spec(family.loss).defaults(), **family.fixed_params, **family.default_params}


def _name_parameter(family: Family, p: NameParam) -> str:
    default = _defaults(family)[p.loss_param]
    if p.kind != "flag":
        return f"{_token(p)} {p.loss_param} ({_value(default)})"
    if p.flag_value == default:
        return f"{_token(p)} {p.loss_param} = {_value(p.flag_value)} (the default)"
    return f"{_token(p)} {p.loss_param} = {_value(p.flag_value)} (default {_value(default)})"


# where a family's map is made (catalogue.map_source), in the families table
_MADE = {PRECOMPUTED: "precomputed beside the data by the first training (or `nnunet-losses precompute-maps`)",
         ONLINE: "computed in the loader workers",
         DEVICE: "built on the training device from each scale's labels"}


def _maps(family: Family) -> str:
    source = map_source(family)
    if source is not None:
        online = f"; `_online`: {_MADE[ONLINE]}" if source.online_option else ""
        return f"{source.kind}: {_MADE[source.made]}{online}"
    if get_spec(family.loss).needs_class_weights:
        return "none (class weights: inverse class frequency of the fold's training cases)"
    return "none"


def _optimizer(family: Family) -> str:
    if family.optimizer == "adam":
        return f"Adam, lr {_number(family.lr)} (`_sgd`: {NNUNET_SGD})"
    if family.optimizer == "sgd":
        return f"SGD, lr {_number(family.lr)}" if family.lr else NNUNET_SGD
    return NNUNET_SGD


def families_markdown() -> str:
    """One row per trainer family: its registry loss, the loss parameters its name spells with their defaults, the
    maps it needs and where they come from, and its default optimiser."""
    rows = []
    for family in FAMILIES.values():
        params = ", ".join(_name_parameter(family, p) for p in family.name_params) or "-"
        rows.append((f"`{family.name}`", f"`{family.loss}`", params, _maps(family), _optimizer(family)))
    return _table(("family", "loss (registry)", "name parameters (default)", "maps", "optimiser by default"), rows)


def _range(param: Param) -> str:
    if param.choices is not None:
        return " or ".join(map(_value, param.choices))
    if param.interval is not None:
        return param.interval
    return {bool: "flag", str: "text"}.get(param.type, param.type.__name__)


def name_parameters_markdown() -> str:
    """Every token a trainer name can carry: the loss parameters (families that share a token with the same
    meaning, range and default on one row), then the run options every family takes."""
    rows: Dict[Tuple[str, ...], List[str]] = {}
    for family in FAMILIES.values():
        spec = get_spec(family.loss)
        params = {p.name: p for p in spec.params}
        for p in family.name_params:
            param, default = params[p.loss_param], _defaults(family)[p.loss_param]
            if p.kind == "flag":
                meaning = f"sets {p.loss_param} = {_value(p.flag_value)} ({p.loss_param}: {param.doc})"
                allowed = "-"
            else:
                meaning = f"{p.loss_param}: {param.doc}"
                allowed = _range(param)
            key = (_token(p), meaning, allowed, _value(default))
            rows.setdefault(key, []).append(f"`{family.name}`")
    table = [(token, ", ".join(families), meaning, allowed, default)
             for (token, meaning, allowed, default), families in rows.items()]
    table += [(f"`{token}`", "every family", meaning, "-", default) for token, meaning, default in RUN_TOKENS]
    return _table(("token", "families", "meaning", "range", "default"), table)


def _parameters(spec) -> str:
    parts = []
    for p in spec.params:
        text = f"`{p.name}={p.default!r}`"
        if p.choices is not None:
            text += " (" + " or ".join(f"`{c!r}`" for c in p.choices if c != p.default) + ")"
        elif p.interval is not None:
            text += f" in {p.interval}"
        parts.append(text)
    if spec.needs_map:
        parts.append(f"map: {spec.needs_map}")
    if spec.needs_class_weights:
        parts.append("class weights from the training cases")
    return ", ".join(parts) or "-"


def losses_markdown() -> str:
    """One row per registry loss: its class, paper, equation, parameters with defaults, region support."""
    rows = [(f"`{spec.name}`", spec.implementation, spec.paper, spec.equation, _parameters(spec),
             "yes" if spec.supports_regions else "no") for spec in REGISTRY.values()]
    return _table(("registry name", "class", "paper", "equation", "parameters (defaults)", "regions"), rows)


def references_markdown() -> str:
    """Every work the registry cites: its short form and full reference (nnunet_losses/papers.py)."""
    rows = [(p.short, p.citation()) for p in cited_by(REGISTRY.values())]
    return _table(("cited as", "reference"), rows)


TRAINER_TABLES = {"families": families_markdown, "name-parameters": name_parameters_markdown}
LOSS_TABLES = {"losses": losses_markdown, "references": references_markdown}


def generate(command: str) -> str:
    """What ``command`` (an ``nnunet-losses ... --markdown ...`` command line) prints, without the final newline."""
    from .cli import main

    argv = shlex.split(command)
    if argv[:1] != ["nnunet-losses"] or "--markdown" not in argv:
        raise ValueError(f"{command!r} is not an 'nnunet-losses ... --markdown TABLE' command")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(argv[1:])
    if status != 0:
        raise ValueError(f"{command!r} failed with exit status {status}")
    return out.getvalue().rstrip("\n")


def blocks(text: str, where: str = "<text>") -> List[Tuple[str, str]]:
    """(command, body) of every generated block of a page, body without its final newline; a begin marker without
    its end marker is an error naming ``where``."""
    found = [(m.group("command"), m.group("body").rstrip("\n")) for m in _BLOCK.finditer(text)]
    begins = len(re.findall(r"^<!-- generated: ", text, re.M))
    if begins != len(found) or len(re.findall(r"^<!-- end generated -->$", text, re.M)) != len(found):
        raise ValueError(f"{where}: {begins} '<!-- generated: ... -->' line(s) but {len(found)} complete block(s); "
                         f"each needs its own '{END}' line")
    return found


def stale(path: str) -> List[str]:
    """One message per block of ``path`` that differs from what its command prints now."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [f"{path}: the block '{BEGIN.format(command=command)}' differs from what the code generates; "
            f"regenerate it with `{command}` (its output goes between the markers) or "
            f"`python -m nnunet_losses.doc_tables {path}`"
            for command, body in blocks(text, path) if body != generate(command)]


def update(path: str) -> int:
    """Rewrite every generated block of ``path`` with its command's output; returns how many changed."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    blocks(text, path)  # refuses unterminated blocks before anything is written
    changed = 0

    def replace(match: re.Match) -> str:
        nonlocal changed
        body = generate(match.group("command"))
        changed += body != match.group("body").rstrip("\n")
        return f"{BEGIN.format(command=match.group('command'))}\n{body}\n{END}"

    new = _BLOCK.sub(replace, text)
    if new != text:
        atomic_write_text(path, new)
    return changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnunet_losses.doc_tables",
                                     description="Regenerate the blocks between '<!-- generated: COMMAND -->' and "
                                                 f"'{END}' in Markdown pages with COMMAND's output.")
    parser.add_argument("pages", nargs="+", help="Markdown files, e.g. documentation/*.md")
    parser.add_argument("--check", action="store_true", help="change nothing; list the stale blocks (exit 1)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            messages = [m for page in args.pages for m in stale(page)]
            print("\n".join(messages) or "every generated block is up to date")
            return 1 if messages else 0
        for page in args.pages:
            print(f"{page}: {update(page)} block(s) regenerated")
    except (OSError, ValueError) as err:
        print(f"python -m nnunet_losses.doc_tables: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
