"""Evaluate one case: read and check a predicted and a reference mask, measure every row.

Both masks must be readable 3-D NIfTI label maps on one grid (shape, and affine within the package's
tolerance) holding only the release's label values; any problem is a :class:`BratsInputError`
naming the file. The work runs inside the bounding box of both tumours (plus the margin the lesion
dilations need), which gives the whole image's values at a fraction of the cost.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from brats_plugin import nifti
from brats_plugin.cases import check_image, check_release_labels, labels_present, read_label_values, read_mask
from brats_plugin.errors import BratsInputError
from brats_plugin.evaluation.lesionwise import lesionwise_metrics
from brats_plugin.evaluation.metrics import box_around, generalized_dice_score_of_label_counts, mask_metrics
from brats_plugin.evaluation.pairing import case_id_of_mask
from brats_plugin.evaluation.result import CaseEvaluation, label_row
from brats_plugin.releases import Release


def read_masks(prediction: str | os.PathLike, reference: str | os.PathLike
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prediction labels, reference labels, affine) of two masks checked to share one grid."""
    reference_image = nifti.load(reference)
    check_image(reference_image, read_float_voxels=False)  # label voxels are checked by read_label_values
    return read_mask(prediction, reference_image), read_label_values(reference), reference_image.affine


def evaluate_case(prediction: str | os.PathLike, reference: str | os.PathLike, release: Release, *,
                  lesionwise: bool = False, case_id: str | None = None) -> CaseEvaluation:
    """The metrics of one predicted mask against its reference, in ``release``'s labels.

    Rows: each region of ``release.regions``, each label of ``release.labels``, and the generalised
    Dice score over the labels; with ``lesionwise``, the BraTS 2023 lesion-wise scores of each region
    (the release must have :attr:`~brats_plugin.releases.Release.lesionwise` parameters).
    ``case_id`` defaults to the one the reference file's name gives (:func:`case_id_of_mask`).
    """
    if lesionwise and release.lesionwise is None:
        raise BratsInputError(f"BraTS {release.key} has no lesion-wise parameters (lesion-wise metrics start "
                              "with BraTS 2023); choose a 2023 or 2024 release (--release)")
    prediction, reference = Path(prediction), Path(reference)
    predicted, referenced, affine = read_masks(prediction, reference)
    total = referenced.size
    margin = release.lesionwise.dilation_voxels if lesionwise else 0  # what the lesion dilations need
    box = box_around((predicted != 0) | (referenced != 0), margin) or (slice(0, 1),) * 3
    predicted, referenced = predicted[box], referenced[box]  # every label voxel is inside the box
    check_release_labels(labels_present(predicted), release, prediction)
    check_release_labels(labels_present(referenced), release, reference)
    metrics, lesions = {}, {}
    for region in release.regions:
        in_prediction, in_reference = np.isin(predicted, region.labels), np.isin(referenced, region.labels)
        metrics[region.abbreviation] = mask_metrics(in_prediction, in_reference, affine, total)
        if lesionwise:
            lesions[region.abbreviation] = lesionwise_metrics(in_prediction, in_reference, affine, release.lesionwise)
    counts = []
    for label in release.labels:
        in_prediction, in_reference = predicted == label.value, referenced == label.value
        metrics[label_row(label)] = mask_metrics(in_prediction, in_reference, affine, total)
        counts.append([np.count_nonzero(in_prediction & in_reference), np.count_nonzero(in_prediction),
                       np.count_nonzero(in_reference)])
    return CaseEvaluation(case_id or case_id_of_mask(reference.name), prediction, reference, metrics,
                          generalized_dice_score_of_label_counts(*np.array(counts).T), lesions)
