"""What ``nnunet-losses report`` can tabulate and draw: the names that specs, the command line and the report share."""
from __future__ import annotations

from ..metrics.case import METRICS

# per-case metrics a table can show (volumes are per-case records, not compared)
REPORT_METRICS = tuple(m for m in METRICS if not m.startswith("vol_"))
# box: per-case values per class; cdf: final mean Dice of each run (RW paper Fig. 5); curves: validation pseudo Dice
PLOTS = ("box", "cdf", "curves")
# the table's mean column over classes: nnU-Net's mean of the class means, or the mean over cases of case means
MEANS = ("per-class", "per-case")
