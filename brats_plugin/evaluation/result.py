"""What an evaluation found: per case and row (region, label, generalised Dice), and their statistics.

A *row* is one line of ``cases.csv`` for a case: each evaluation region of the release (``WT``,
``TC``, ``ET``), each label (``label 1 NCR/NET``, ...) and ``GDS``, the generalised Dice score over
the labels (in the ``dice`` column).
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from brats_plugin.evaluation.lesionwise import LesionwiseMetrics
from brats_plugin.evaluation.metrics import MaskMetrics
from brats_plugin.releases import Label, Release

#: The row holding the generalised Dice score over the release's labels.
GDS_ROW = "GDS"
#: Columns of every region and label row, in ``cases.csv`` order.
METRICS: tuple[str, ...] = ("dice", "hd95", "sensitivity", "specificity", "volume_pred_ml", "volume_ref_ml")
#: Columns added by the lesion-wise evaluation (region rows only).
LESIONWISE_METRICS: tuple[str, ...] = ("lesionwise_dice", "lesionwise_hd95", "lesions_tp", "lesions_fn",
                                       "lesions_fp")


def label_row(label: Label) -> str:
    """The row name of a label, e.g. ``label 4 ET`` (distinct from the region ``ET``)."""
    return f"label {label.value} {label.abbreviation}"


@dataclass(frozen=True)
class CaseEvaluation:
    """The metrics of one case."""

    case_id: str
    prediction: Path
    reference: Path
    metrics: dict[str, MaskMetrics]  # row name (regions, then labels) -> metrics
    generalized_dice: float
    lesionwise: dict[str, LesionwiseMetrics] = field(default_factory=dict)  # region -> scores, if asked

    @functools.cached_property
    def rows(self) -> dict[str, dict[str, float | int]]:
        """Row name -> column -> value, in ``cases.csv`` order (absent columns are left out); made once."""
        rows: dict[str, dict[str, float | int]] = {name: asdict(m) for name, m in self.metrics.items()}
        for name, scores in self.lesionwise.items():
            rows[name].update(zip(LESIONWISE_METRICS, (scores.dice, scores.hd95, scores.true_positives,
                                                       scores.false_negatives, scores.false_positives)))
        rows[GDS_ROW] = {"dice": self.generalized_dice}
        return rows


@dataclass(frozen=True)
class EvaluationResult:
    """Every evaluated case, the cases that could not be paired, and where the report went."""

    release: Release
    cases: list[CaseEvaluation]
    prediction_only: list[str] = field(default_factory=list)
    reference_only: list[str] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # NIfTI files that were not label masks
    lesionwise: bool = False
    report: dict[str, Path] = field(default_factory=dict)  # "cases.csv" / "summary.json" -> path, if written

    @property
    def row_names(self) -> list[str]:
        """Regions, then labels, then ``GDS``."""
        return ([r.abbreviation for r in self.release.regions] + [label_row(label) for label in self.release.labels]
                + [GDS_ROW])

    def values(self, row: str, metric: str) -> np.ndarray:
        """One metric of one row over the cases that have it (float64)."""
        found = (case.rows.get(row, {}).get(metric) for case in self.cases)
        return np.array([value for value in found if value is not None], dtype=np.float64)

    def statistics(self, row: str, metric: str) -> dict[str, float | int] | None:
        """mean, std (population, ddof 0), median, 25th and 75th percentile and count; None without values."""
        return describe(self.values(row, metric))

    def mean(self, metric: str) -> dict[str, float]:
        """Row -> mean of ``metric`` over the cases, for the rows that have it."""
        found = {row: self.values(row, metric) for row in self.row_names}
        return {row: float(v.mean()) for row, v in found.items() if v.size}

    def mean_dice(self) -> dict[str, float]:
        """Evaluation region -> mean Dice, e.g. ``{"WT": 0.91, "TC": 0.85, "ET": 0.80}``."""
        means = self.mean("dice")
        return {r.abbreviation: means[r.abbreviation] for r in self.release.regions if r.abbreviation in means}

    def summary(self) -> str:
        """One line: ``3 cases, mean Dice WT 0.912, TC 0.851, ET 0.803``."""
        dice = ", ".join(f"{region} {value:.3f}" for region, value in self.mean_dice().items())
        return f"{len(self.cases)} case(s), mean Dice {dice}"


def describe(values: np.ndarray) -> dict[str, float | int] | None:
    """Summary statistics of a set of values; None when there are none."""
    if values.size == 0:
        return None
    p25, median, p75 = np.percentile(values, [25, 50, 75])
    return {"mean": float(values.mean()), "std": float(values.std()), "median": float(median),
            "p25": float(p25), "p75": float(p75), "n": int(values.size)}
