"""Evaluation: BraTS metrics of predicted masks against reference masks.

Dice, HD95 (mm), sensitivity, specificity and volumes per region (WT/TC/ET) and label; the
generalised Dice score over the labels; optionally the BraTS 2023 lesion-wise Dice and HD95. Written
as ``cases.csv`` and ``summary.json`` by :func:`evaluate_folders` (the ``brats evaluate`` command).
PyTorch is not needed.

Example:
    >>> from brats_plugin.evaluation import evaluate_folders
    >>> result = evaluate_folders("predictions/", "BraTS2021_Training/", "report/")  # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP
    125 case(s), mean Dice WT 0.912, TC 0.851, ET 0.803
"""
from brats_plugin.evaluation.case import evaluate_case
from brats_plugin.evaluation.folders import evaluate_folders
from brats_plugin.evaluation.lesionwise import LESION_PENALTY_MM, LesionwiseMetrics, lesionwise_metrics
from brats_plugin.evaluation.metrics import (
    EMPTY_MASK_HD95_MM,
    MaskMetrics,
    generalized_dice_score_of_label_counts,
    hausdorff95,
    mask_metrics,
    surface_distances,
    voxel_spacing,
)
from brats_plugin.evaluation.pairing import Pairing, case_id_of_mask, pair_masks
from brats_plugin.evaluation.report import format_table, write_report
from brats_plugin.evaluation.result import CaseEvaluation, EvaluationResult

__all__ = [
    "evaluate_case", "evaluate_folders", "LESION_PENALTY_MM", "LesionwiseMetrics", "lesionwise_metrics",
    "EMPTY_MASK_HD95_MM", "MaskMetrics", "generalized_dice_score_of_label_counts", "hausdorff95", "mask_metrics",
    "surface_distances", "voxel_spacing", "Pairing", "case_id_of_mask", "pair_masks", "format_table",
    "write_report", "CaseEvaluation", "EvaluationResult",
]
