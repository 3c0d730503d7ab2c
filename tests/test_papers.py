"""The table of cited works (nnunet_losses/papers.py) and where it is used: the registry's and the catalogue's paper
fields, the output of `nnunet-losses losses` and `trainers`, and the references a trainer writes into
nnunet_losses.json."""
import json
import re

import pytest

from nnunet_losses.catalogue import FAMILIES
from nnunet_losses.cli import main
from nnunet_losses.papers import IMPLEMENTED, PAPERS, cite, cited_in
from nnunet_losses.registry import REGISTRY

# a bare three-digit code 000-004 standing for a paper (alone, in parentheses or joined by a slash), not part of a
# longer number such as a decimal or an exponent
PRIVATE_CODE = re.compile(r"(?<![\w.\-])00[0-4](?![\w.])")


def _output(capsys, argv):
    assert main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", [["losses"], ["trainers"], ["losses", "--markdown", "losses"],
                                  ["losses", "--markdown", "references"], ["trainers", "--markdown", "families"],
                                  ["trainers", "--markdown", "name-parameters"]])
def test_cli_output_has_no_private_paper_code(capsys, argv):
    out = _output(capsys, argv)
    assert not PRIVATE_CODE.findall(out), PRIVATE_CODE.findall(out)


@pytest.mark.parametrize("argv", [["losses"], ["trainers"]])
def test_cli_output_cites_each_paper_by_doi_or_title(capsys, argv):
    out = _output(capsys, argv)
    for key in IMPLEMENTED:
        paper = PAPERS[key]
        assert (paper.doi and paper.doi in out) or paper.title in out, key
        assert paper.short in out, key
    assert "doi:10.1016/j.patcog.2022.109208" in out and "arXiv:1805.02798" in out


def test_the_four_papers():
    assert PAPERS["combo"].doi == "10.1016/j.compmedimag.2019.04.005" and PAPERS["combo"].arxiv == "1805.02798"
    assert PAPERS["rw"].doi == "10.1016/j.patcog.2022.109208" and PAPERS["rw"].arxiv == "2108.01405"
    for key in ("iou_xy", "topk_dice"):  # manuscripts: no identifier is claimed
        assert PAPERS[key].doi is None and PAPERS[key].arxiv is None
        assert "no DOI or arXiv identifier" in PAPERS[key].citation()
    # Furtado's journal article is named as related, not as the cited text
    assert "related journal article" in PAPERS["iou_xy"].note and "10.3390/jimaging7020016" in PAPERS["iou_xy"].note
    assert "eq. 5 of the journal version and eq. 3 of the arXiv preprint" in PAPERS["combo"].citation()


@pytest.mark.parametrize("paper", list(PAPERS.values()), ids=list(PAPERS))
def test_every_entry_is_complete(paper):
    assert paper.authors and paper.title and paper.venue and 1990 < paper.year < 2100 and paper.short
    assert paper.doi is None or re.fullmatch(r"10\.\d{4,}/\S+", paper.doi)
    assert paper.arxiv is None or re.fullmatch(r"\d{4}\.\d{4,5}", paper.arxiv)
    assert cited_in(paper.short) == [paper]  # no short form contains another
    assert str(paper.year) in paper.short


def test_every_loss_and_family_cites_a_paper_of_the_table():
    for spec in REGISTRY.values():
        assert spec.references(), spec.name
        assert not PRIVATE_CODE.search(f"{spec.paper} {spec.equation} {[p.doc for p in spec.params]}"), spec.name
    for family in FAMILIES.values():
        assert not PRIVATE_CODE.search(family.doc), family.name
    assert [p.key for p in REGISTRY["focal"].references()] == ["combo", "rw", "focal"]
    assert {p.key for spec in REGISTRY.values() for p in spec.references()} == set(PAPERS)  # none unused


def test_cite():
    assert cite("rw", "eq. 4") == "Valverde & Tohka (Pattern Recognition 2023), eq. 4"
    assert cite("combo") == "Taghanaki et al. (CMIG 2019)"
    with pytest.raises(KeyError, match="unknown paper 'x' .*papers.py"):
        cite("x")


def test_trainer_settings_name_the_papers_with_their_identifiers(tmp_path, make_trainer):
    """nnunet_losses.json: the short citation and equation, and the full reference, DOI and arXiv id of each work."""
    trainer = make_trainer("RRWTrainer_ep3")
    trainer.output_folder = str(tmp_path / "fold_0")
    (tmp_path / "fold_0").mkdir()
    trainer.loss_params, trainer.loss_context = {}, {"ignore_label": None}
    settings = json.load(open(trainer.write_settings()))
    assert settings["paper"] == "Valverde & Tohka (Pattern Recognition 2023)"
    assert settings["equation"] == "eq. 1 with maps of eq. 4"
    assert settings["references"] == [{"key": "rw", "citation": PAPERS["rw"].citation(),
                                       "doi": "10.1016/j.patcog.2022.109208", "arxiv": "2108.01405"}]
    assert "Region-wise loss for biomedical image segmentation" in settings["references"][0]["citation"]
