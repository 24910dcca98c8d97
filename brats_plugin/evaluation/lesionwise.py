"""The BraTS 2023 lesion-wise Dice and HD95 of one region (e.g. ET) of one case.

The definition of the official BraTS-2023-Metrics script, with the sub-challenge's
:class:`~brats_plugin.releases.LesionwiseParameters` (dilation, volume threshold):

1. Lesions are 26-connected components. Reference lesions whose dilations (``dilation_voxels``
   iterations of the 18-neighbourhood) touch are merged into one lesion.
2. A predicted component *matches* a reference lesion when it meets that lesion's dilation. Each
   lesion is scored against the union of its matching components: its Dice and HD95, or Dice 0 and
   HD95 :data:`LESION_PENALTY_MM` when nothing matches (a missed lesion).
3. Predicted components that match no reference lesion are false positives: Dice 0, HD95 374 each.
4. Reference lesions of ``volume_threshold_mm3`` or less are left out (whether found or missed).

    lesion-wise Dice = sum(lesion Dice) / (lesions + false positives)
    lesion-wise HD95 = (sum(lesion HD95) + 374 x false positives) / (lesions + false positives)

With no lesion left and no false positive the scores are 1 and 0. Lesion HD95s here are this
package's HD95 (:func:`~brats_plugin.evaluation.metrics.hausdorff95`, voxel surfaces as medpy and
panoptica); the official script measures them with DeepMind's surface-distance library (surface
elements weighted by area), so single-lesion values can differ by a fraction of a voxel.
"""
from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np
from scipy import ndimage

from brats_plugin.evaluation.metrics import hausdorff95
from brats_plugin.geometry import box_around, voxel_spacing, voxel_volume_ml
from brats_plugin.releases import LesionwiseParameters

#: Dice 0 and this HD95 (mm) for every missed lesion and every false-positive component.
LESION_PENALTY_MM = 374.0
#: The dilation neighbourhood of the official script: ``generate_binary_structure(3, 2)`` (18 neighbours).
DILATION_STRUCTURE = ndimage.generate_binary_structure(3, 2)
#: Lesions are 26-connected components (``cc3d.connected_components(..., connectivity=26)``).
LESION_CONNECTIVITY = 26


@dataclass(frozen=True)
class LesionwiseMetrics:
    """Lesion-wise scores of one region, and the lesion counts behind them (thresholded lesions only)."""

    dice: float
    hd95: float  # millimetres
    true_positives: int  # reference lesions above the threshold that some prediction matches
    false_negatives: int  # reference lesions above the threshold that nothing matches
    false_positives: int  # predicted components that match no reference lesion


def lesionwise_metrics(prediction: np.ndarray, reference: np.ndarray, affine: np.ndarray,
                       parameters: LesionwiseParameters) -> LesionwiseMetrics:
    """The lesion-wise scores of a boolean prediction against a boolean reference (see the module).

    ``affine``: voxel index -> millimetres (spacing for the HD95s, voxel volume for the threshold).
    """
    dilation = parameters.dilation_voxels
    spacing, voxel_mm3 = voxel_spacing(affine), voxel_volume_ml(affine) * 1000.0
    box = box_around(prediction | reference, margin=dilation)  # room for every dilation
    if box is None:
        return LesionwiseMetrics(1.0, 0.0, 0, 0, 0)
    prediction, reference = prediction[box], reference[box]
    components = cc3d.connected_components(prediction, connectivity=LESION_CONNECTIVITY)
    lesions = _reference_lesions(reference, dilation)
    matched_components: set[int] = set()
    scores: list[tuple[float, float]] = []
    found = missed = 0
    for lesion_id, lesion_box in enumerate(ndimage.find_objects(lesions), start=1):
        if lesion_box is None:
            continue
        grown = tuple(slice(max(s.start - dilation, 0), min(s.stop + dilation, n))
                      for s, n in zip(lesion_box, lesions.shape))
        lesion_here = lesions[grown] == lesion_id
        reach = _dilate(lesion_here, dilation)
        matches = np.unique(components[grown][reach])
        matches = matches[matches != 0]
        matched_components.update(int(m) for m in matches)
        if np.count_nonzero(lesion_here) * voxel_mm3 <= parameters.volume_threshold_mm3:
            continue  # too small to score, but its matches are no false positives
        if matches.size == 0:
            missed += 1
            scores.append((0.0, LESION_PENALTY_MM))
            continue
        found += 1
        lesion = lesions == lesion_id
        matched = np.isin(components, matches)
        overlap = np.count_nonzero(lesion & matched)
        scores.append((2.0 * overlap / (np.count_nonzero(lesion) + np.count_nonzero(matched)),
                       hausdorff95(matched, lesion, spacing)))
    false_positives = int(components.max()) - len(matched_components)
    count = len(scores) + false_positives
    if count == 0:
        return LesionwiseMetrics(1.0, 0.0, 0, 0, 0)
    dice = sum(d for d, _ in scores) / count
    hd95 = (sum(h for _, h in scores) + LESION_PENALTY_MM * false_positives) / count
    return LesionwiseMetrics(dice, hd95, found, missed, false_positives)


def _reference_lesions(reference: np.ndarray, dilation: int) -> np.ndarray:
    """Reference voxels labelled by lesion: components of the dilated reference, so near lesions merge."""
    merged = cc3d.connected_components(_dilate(reference, dilation), connectivity=LESION_CONNECTIVITY)
    return np.where(reference, merged, 0)


def _dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``mask`` grown by ``iterations`` steps of the 18-neighbourhood (scipy reads 0 as "until stable")."""
    if iterations == 0:
        return mask
    return ndimage.binary_dilation(mask, structure=DILATION_STRUCTURE, iterations=iterations)
