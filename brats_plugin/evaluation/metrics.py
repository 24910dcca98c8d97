"""Overlap and distance metrics of one binary mask against a reference: Dice, HD95, sensitivity,
specificity, volumes; and the generalised Dice score over several labels.

Definitions (those of BraTS, medpy, panoptica and nnU-Net's BraTS evaluation):

- **Dice** ``2 |P & R| / (|P| + |R|)``.
- **HD95**: the 95th percentile (numpy's linear interpolation) of the *pooled* surface distances in
  both directions: from every surface voxel of the reference to the nearest surface voxel of the
  prediction, and from every surface voxel of the prediction to the nearest of the reference, in
  millimetres. A surface voxel is a voxel of the mask with at least one of its **6 face neighbours**
  outside it (outside the image counts as outside), as in medpy and panoptica (connectivity 1).
- **Sensitivity** ``TP / (TP + FN)``, **specificity** ``TN / (TN + FP)`` over the whole image (1 when
  the reference leaves no voxel outside).
- **Volumes** in millilitres: voxel counts times the voxel volume (|det| of the affine's 3x3 part).
- Empty masks, the legacy BraTS conventions: both empty -> Dice 1, HD95 0, sensitivity 1; one empty
  -> Dice 0, HD95 :data:`EMPTY_MASK_HD95_MM` (the diagonal of BraTS's 240x240x155 mm box),
  sensitivity 0 (a prediction where the reference has nothing).

Distances use the voxel spacing of the image's affine (column norms of its 3x3 part), so anisotropic
images are measured in millimetres. The distance transforms run only over the bounding box of both
masks: outside it neither mask has a voxel, so surfaces and distances are exactly the whole image's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from brats_plugin.geometry import box_around, voxel_spacing, voxel_volume_ml

#: HD95 when exactly one of the masks is empty: sqrt(240^2 + 240^2 + 155^2) mm, the legacy BraTS value.
EMPTY_MASK_HD95_MM = 373.13
#: Surface voxels are those with a face neighbour (6-neighbourhood) outside the mask, as in medpy/panoptica.
SURFACE_STRUCTURE = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class MaskMetrics:
    """The metrics of one predicted mask against its reference."""

    dice: float
    hd95: float  # millimetres
    sensitivity: float
    specificity: float
    volume_pred_ml: float
    volume_ref_ml: float


def surface(mask: np.ndarray) -> np.ndarray:
    """The surface voxels of a boolean mask (a face neighbour outside the mask or the array)."""
    return mask & ~ndimage.binary_erosion(mask, structure=SURFACE_STRUCTURE, border_value=0)


def surface_distances(prediction: np.ndarray, reference: np.ndarray,
                      spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(reference surface -> nearest prediction surface, prediction surface -> nearest reference surface), mm.

    Both masks must be non-empty. One exact Euclidean distance transform per direction
    (:func:`scipy.ndimage.distance_transform_edt` with the voxel spacing as ``sampling``), over the
    bounding box of both masks.
    """
    box = box_around(prediction | reference, margin=0)
    if box is None or not prediction.any() or not reference.any():
        raise ValueError("surface distances need two non-empty masks")
    predicted_surface, reference_surface = surface(prediction[box]), surface(reference[box])
    to_prediction = ndimage.distance_transform_edt(~predicted_surface, sampling=spacing)[reference_surface]
    to_reference = ndimage.distance_transform_edt(~reference_surface, sampling=spacing)[predicted_surface]
    return to_prediction, to_reference


def hausdorff95(prediction: np.ndarray, reference: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """HD95 in millimetres, with the legacy BraTS values for empty masks (0, or :data:`EMPTY_MASK_HD95_MM`)."""
    predicted, referenced = bool(prediction.any()), bool(reference.any())
    if not predicted and not referenced:
        return 0.0
    if not (predicted and referenced):
        return EMPTY_MASK_HD95_MM
    return float(np.percentile(np.concatenate(surface_distances(prediction, reference, spacing)), 95))


def overlap_scores(tp: int, fp: int, fn: int, tn: int) -> tuple[float, float, float]:
    """(Dice, sensitivity, specificity) from voxel counts, with the legacy BraTS values for empty masks."""
    predicted, referenced = tp + fp, tp + fn
    if referenced == 0:
        dice = sensitivity = 1.0 if predicted == 0 else 0.0
    else:
        dice = 2.0 * tp / (predicted + referenced)
        sensitivity = tp / referenced
    specificity = tn / (tn + fp) if tn + fp else 1.0
    return dice, sensitivity, specificity


def mask_metrics(prediction: np.ndarray, reference: np.ndarray, affine: np.ndarray,
                 total_voxels: int | None = None) -> MaskMetrics:
    """Every metric of a boolean prediction against a boolean reference on the grid of ``affine``.

    ``affine``: voxel index -> millimetres (the NIfTI affine; spacing and voxel volume come from it).
    ``total_voxels``: the number of voxels of the whole image when the masks are a crop of it (for
    the specificity; default the masks' own size).

    Example:
        >>> reference = np.zeros((20, 20, 20), bool); reference[5:15, 5:15, 5:15] = True
        >>> prediction = np.roll(reference, 2, axis=0)
        >>> round(mask_metrics(prediction, reference, np.diag([1.0, 1.0, 2.0, 1.0])).dice, 3)
        0.8
    """
    prediction, reference = np.asarray(prediction, dtype=bool), np.asarray(reference, dtype=bool)
    tp = int(np.count_nonzero(prediction & reference))
    predicted, referenced = int(np.count_nonzero(prediction)), int(np.count_nonzero(reference))
    fp, fn = predicted - tp, referenced - tp
    tn = (prediction.size if total_voxels is None else total_voxels) - tp - fp - fn
    dice, sensitivity, specificity = overlap_scores(tp, fp, fn, tn)
    voxel_ml = voxel_volume_ml(affine)
    return MaskMetrics(dice, hausdorff95(prediction, reference, voxel_spacing(affine)), sensitivity, specificity,
                       predicted * voxel_ml, referenced * voxel_ml)


def generalized_dice_score_of_label_counts(intersection: np.ndarray, predicted: np.ndarray,
                                           referenced: np.ndarray) -> float:
    """The generalised Dice score (Sudre et al. 2017) from per-label voxel counts (one entry per label).

        GDS = 2 sum_l w_l |P_l & R_l| / sum_l w_l (|P_l| + |R_l|),   w_l = 1 / |R_l|^2

    The same score as the trainers' ``generalized_dice_score`` (brats_plugin.trainers.generalized_dice,
    weight type "square"), without PyTorch: a label absent from the reference takes the largest finite
    weight; when the reference holds no label at all the score is 1 if nothing is predicted, else 0.
    """
    intersection, predicted, referenced = (np.asarray(a, dtype=np.float64) for a in (intersection, predicted,
                                                                                     referenced))
    if not referenced.any():
        return 1.0 if not predicted.any() else 0.0
    weights = np.zeros_like(referenced)
    present = referenced > 0
    weights[present] = 1.0 / referenced[present] ** 2
    weights[~present] = weights[present].max()
    denominator = float((weights * (referenced + predicted)).sum())
    return 2.0 * float((weights * intersection).sum()) / denominator
