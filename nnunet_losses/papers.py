"""The works this package cites, in one table: the four papers whose losses it implements and the works it takes
its baselines and conventions from. Every citation in the package is made from here: the registry's and the trainer
catalogue's paper fields (``nnunet-losses losses`` and ``nnunet-losses trainers``), the ``references`` of the
``nnunet_losses.json`` each trainer writes, and the tables of ``documentation/``.

    >>> from nnunet_losses.papers import cite
    >>> cite("rw", "eq. 4")
    'Valverde & Tohka (Pattern Recognition 2023), eq. 4'

Pure data: imports nothing of the package.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple


@dataclass(frozen=True)
class Paper:
    """One cited work. ``short`` is the form used in running text ("Valverde & Tohka (Pattern Recognition 2023)");
    :meth:`citation` is the full reference."""

    key: str
    authors: Tuple[str, ...]
    title: str
    venue: str  # journal or proceedings with volume and pages, or "manuscript"
    year: int
    short: str
    doi: Optional[str] = None
    arxiv: Optional[str] = None
    note: str = ""  # what else a reader needs: a preprint's equation numbers, a related article

    def identifiers(self) -> str:
        """"doi:... arXiv:...", or a plain statement that the work has neither."""
        ids = [f"doi:{self.doi}"] if self.doi else []
        ids += [f"arXiv:{self.arxiv}"] if self.arxiv else []
        return ", ".join(ids) if ids else "no DOI or arXiv identifier"

    def citation(self) -> str:
        """The full reference: authors, "title", venue, year, identifiers, note."""
        text = f"{', '.join(self.authors)}, \"{self.title}\", {self.venue}, {self.year}, {self.identifiers()}"
        return f"{text}. {self.note}" if self.note else f"{text}."

    def as_dict(self) -> Dict[str, Optional[str]]:
        """What a trainer writes into ``nnunet_losses.json``."""
        return {"key": self.key, "citation": self.citation(), "doi": self.doi, "arxiv": self.arxiv}


PAPERS: Dict[str, Paper] = {p.key: p for p in (
    Paper("combo",
          ("Taghanaki S. A.", "Zheng Y.", "Zhou S. K.", "Georgescu B.", "Sharma P.", "Xu D.", "Comaniciu D.",
           "Hamarneh G."),
          "Combo loss: Handling input and output imbalance in multi-organ segmentation",
          "Computerized Medical Imaging and Graphics 75:24-33", 2019, "Taghanaki et al. (CMIG 2019)",
          doi="10.1016/j.compmedimag.2019.04.005", arxiv="1805.02798",
          note="The loss is eq. 5 of the journal version and eq. 3 of the arXiv preprint."),
    Paper("rw", ("Valverde J. M.", "Tohka J."), "Region-wise loss for biomedical image segmentation",
          "Pattern Recognition 136:109208", 2023, "Valverde & Tohka (Pattern Recognition 2023)",
          doi="10.1016/j.patcog.2022.109208", arxiv="2108.01405"),
    Paper("iou_xy", ("Furtado P.",),
          "Investigation of loss functions for improving deep segmentation of abdominal organs from MRI",
          "manuscript, University of Coimbra", 2021, "Furtado (manuscript 2021)",
          note="A related journal article by the same author (not the same text): Furtado P., \"Testing "
               "Segmentation Popular Loss and Variations in Three Multiclass Medical Imaging Problems\", Journal of "
               "Imaging 7(2):16, 2021, doi:10.3390/jimaging7020016."),
    Paper("topk_dice", ("Hosseini S. M.",), "TopK Dice Loss for Medical Image Segmentation",
          "manuscript, University of Tehran", 2023, "Hosseini (manuscript 2023)"),
    Paper("focal", ("Lin T.-Y.", "Goyal P.", "Girshick R.", "He K.", "Dollár P."),
          "Focal loss for dense object detection", "IEEE International Conference on Computer Vision (ICCV)", 2017,
          "Lin et al. (ICCV 2017)", arxiv="1708.02002"),
    Paper("nnunet", ("Isensee F.", "Jaeger P. F.", "Kohl S. A. A.", "Petersen J.", "Maier-Hein K. H."),
          "nnU-Net: a self-configuring method for deep learning-based biomedical image segmentation",
          "Nature Methods 18:203-211", 2021, "Isensee et al. (Nature Methods 2021)",
          doi="10.1038/s41592-020-01008-z"),
    Paper("boundary", ("Kervadec H.", "Bouchtiba J.", "Desrosiers C.", "Granger E.", "Dolz J.", "Ben Ayed I."),
          "Boundary loss for highly unbalanced segmentation", "Medical Image Analysis 67:101851", 2021,
          "Kervadec et al. (Medical Image Analysis 2021)", doi="10.1016/j.media.2020.101851", arxiv="1812.07032"),
)}

# the four papers whose losses the package implements; the other entries are baselines and conventions
IMPLEMENTED = ("combo", "rw", "iou_xy", "topk_dice")


def cite(key: str, where: str = "") -> str:
    """The short form of paper ``key``, followed by ``where`` (an equation, a section): "Valverde & Tohka (Pattern
    Recognition 2023), eq. 4"."""
    try:
        short = PAPERS[key].short
    except KeyError:
        raise KeyError(f"unknown paper {key!r} (nnunet_losses/papers.py); known: {', '.join(PAPERS)}") from None
    return f"{short}, {where}" if where else short


def cited_in(text: str) -> List[Paper]:
    """The papers whose short form ``text`` contains, in the table's order."""
    return [p for p in PAPERS.values() if p.short in text]
