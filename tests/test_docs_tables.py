"""The tables of documentation/ cannot drift from the code: every block between '<!-- generated: COMMAND -->' and
'<!-- end generated -->' must equal COMMAND's output, and the Python examples of losses.md must run."""
import glob
import os
import re

import pytest

from nnunet_losses import doc_tables
from nnunet_losses.catalogue import FAMILIES, NameParam
from nnunet_losses.naming import RUN_TOKENS
from nnunet_losses.registry import REGISTRY

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "documentation")
PAGES = sorted(glob.glob(os.path.join(DOCS, "*.md")))
EXPECTED = {"trainers.md": ["nnunet-losses trainers --markdown families",
                            "nnunet-losses trainers --markdown name-parameters"],
            "losses.md": ["nnunet-losses losses --markdown losses", "nnunet-losses losses --markdown references"]}


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.mark.parametrize("page", sorted(EXPECTED))
def test_each_page_has_its_generated_tables(page):
    assert [command for command, _ in doc_tables.blocks(_read(os.path.join(DOCS, page)), page)] == EXPECTED[page]


@pytest.mark.parametrize("path", PAGES, ids=[os.path.basename(p) for p in PAGES])
def test_generated_blocks_equal_what_the_code_generates(path):
    problems = doc_tables.stale(path)
    assert not problems, "\n".join(problems)


def test_a_stale_block_names_the_command_that_regenerates_it(tmp_path):
    page = tmp_path / "page.md"
    command = "nnunet-losses trainers --markdown families"
    page.write_text(f"# Title\n\n<!-- generated: {command} -->\n| old | table |\n<!-- end generated -->\n\nprose\n")
    [message] = doc_tables.stale(str(page))
    assert f"regenerate it with `{command}`" in message and str(page) in message
    assert doc_tables.update(str(page)) == 1
    assert not doc_tables.stale(str(page))
    text = page.read_text()
    assert text.startswith("# Title\n\n") and text.endswith("<!-- end generated -->\n\nprose\n")
    assert doc_tables.update(str(page)) == 0


def test_an_unterminated_block_is_refused(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- generated: nnunet-losses losses --markdown losses -->\n| a |\n")
    with pytest.raises(ValueError, match="page.md: 1 '<!-- generated: ... -->' line.*'<!-- end generated -->'"):
        doc_tables.stale(str(page))
    assert page.read_text() == "<!-- generated: nnunet-losses losses --markdown losses -->\n| a |\n"


def test_families_table_has_every_family():
    table = doc_tables.families_markdown()
    rows = [line for line in table.splitlines()[2:]]
    assert [re.match(r"\| `(\w+)` \| `(\w+)` \|", row).groups() for row in rows] == \
        [(f.name, f.loss) for f in FAMILIES.values()]
    assert "`FocalDiceTrainer` | `focal_dice`" in table and "`DiceTopKCETrainer` | `dice_topk_ce`" in table
    assert "| `RRWTrainer` | `rrw` | - | rrw: precomputed" in table and "Adam, lr 1e-3" in table
    # Combo's family default (per-class Dice) differs from the loss's own ("flattened")
    assert "`_pc` dice = per_class (the default), `_flat` dice = flattened (default per_class)" in table


def test_name_parameters_table_has_every_token():
    table = doc_tables.name_parameters_markdown()
    for family in FAMILIES.values():
        for p in family.name_params:
            token = f"`_{p.code}`" if p.kind == "flag" else f"`_{p.code}<number>`"
            assert any(row.startswith(f"| {token} |") and f"`{family.name}`" in row for row in table.splitlines()), \
                (family.name, p.code)
    for token, _, _ in RUN_TOKENS:
        assert f"| `{token}` | every family |" in table
    assert "nnU-Net's 1000" in table and "nnU-Net's 250" in table


def test_losses_table_has_every_registry_loss():
    table = doc_tables.losses_markdown()
    assert [re.match(r"\| `(\w+)` \|", row).group(1) for row in table.splitlines()[2:]] == list(REGISTRY)
    assert "| `combo` | ComboLoss | Taghanaki et al. (CMIG 2019) |" in table
    assert "`dice='flattened'` (`'per_class'`)" in table


def test_markdown_cells_escape_pipes():
    assert doc_tables._cell("_adam|_sgd") == "_adam\\|_sgd"
    assert doc_tables._name_parameter(FAMILIES["FocalTrainer"], NameParam("g", "gamma")) == "`_g<number>` gamma (2.0)"


def test_the_python_examples_of_losses_md_run():
    """Every ```python block of documentation/losses.md, in order, in one namespace."""
    blocks = re.findall(r"```python\n(.*?)```", _read(os.path.join(DOCS, "losses.md")), re.S)
    assert len(blocks) >= 5
    namespace = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"documentation/losses.md, python block {i + 1}", "exec"), namespace)
    assert namespace["value"].ndim == 0
