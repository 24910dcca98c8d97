"""The way back: a label map on the atlas grid -> the same labels on the patient's own T1Gd grid.

``brats preprocess`` keeps, in ``CASE_DIR/preprocessing/``, the T1Gd as acquired and the transform
that maps atlas points into it. A label map is carried back through the inverse of that transform,
resampled onto the native T1Gd's grid (its affine and shape, however oblique or anisotropic) by
interpolating a one-hot of every label linearly and taking, at each native voxel, the label with the
largest weight. Nearest-neighbour labels would give jagged, shifted edges on 5 mm grids; interpolated
one-hots give the boundary where the model put it. Native voxels that the atlas grid does not cover
are background.
"""
from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from brats_plugin import nifti
from brats_plugin.cases import AUXILIARY_FOLDER
from brats_plugin.errors import BratsInputError
from brats_plugin.preprocess.registration import resample_onto, to_sitk

#: What a preprocessed case keeps for the way back, inside ``CASE_DIR/preprocessing/``.
NATIVE_T1GD = "native_t1ce.nii.gz"
TRANSFORMS_FOLDER = "transforms"
ATLAS_TO_T1GD = "t1ce_from_atlas.tfm"


def way_back(case_folder: str | os.PathLike) -> tuple[Path, Path] | None:
    """The native T1Gd and the atlas -> T1Gd transform of a preprocessed case folder, or None."""
    kept = Path(case_folder) / AUXILIARY_FOLDER
    native, transform = kept / NATIVE_T1GD, kept / TRANSFORMS_FOLDER / ATLAS_TO_T1GD
    return (native, transform) if native.is_file() and transform.is_file() else None


def labels_to_native(labels: np.ndarray, affine: np.ndarray, case_folder: str | os.PathLike) -> nib.Nifti1Image:
    """``labels`` (uint8, x y z on the atlas grid ``affine``) on the native T1Gd grid of ``case_folder``."""
    native, t1c_to_atlas = _way_back_read(case_folder)
    reference = to_sitk(native, np.zeros(native.shape[:3], np.float32))
    atlas_grid = nib.Nifti1Image(np.zeros((1, 1, 1), np.float32), affine)
    best = np.zeros(native.shape[:3], np.float32)  # the largest label weight so far, and its label
    total = np.zeros(native.shape[:3], np.float32)  # all labels' weights: the background's is 1 - total
    result = np.zeros(native.shape[:3], np.uint8)
    for value in (int(v) for v in np.unique(labels) if v):
        one_hot = to_sitk(atlas_grid, (labels == value).astype(np.float32))
        weight = np.nan_to_num(resample_onto(reference, one_hot, t1c_to_atlas, linear=True))
        heavier = weight > best
        result[heavier], best[heavier] = value, weight[heavier]
        total += weight
    result[best <= 1.0 - total] = 0  # the background weighs more (1 outside the atlas grid)
    return nifti.like(result, native, np.uint8)


def images_to_native(images: dict[str, np.ndarray], affine: np.ndarray,
                     case_folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """Images on the atlas grid ``affine`` resampled (linearly) onto the native T1Gd grid: float32, 0
    outside the atlas grid. For display beside the native T1Gd (a second interpolation: not for analysis)."""
    native, t1c_to_atlas = _way_back_read(case_folder)
    reference = to_sitk(native, np.zeros(native.shape[:3], np.float32))
    atlas_grid = nib.Nifti1Image(np.zeros((1, 1, 1), np.float32), affine)
    return {name: np.nan_to_num(resample_onto(reference, to_sitk(atlas_grid, voxels.astype(np.float32)),
                                              t1c_to_atlas, linear=True)) for name, voxels in images.items()}


def _way_back_read(case_folder: str | os.PathLike) -> tuple[nib.Nifti1Image, sitk.Transform]:
    """The native T1Gd and the transform from its points to the atlas's, read from ``case_folder``."""
    found = way_back(case_folder)
    if found is None:
        raise BratsInputError(f"{case_folder}: not a preprocessed case (no {AUXILIARY_FOLDER}/{NATIVE_T1GD} and "
                              f"{AUXILIARY_FOLDER}/{TRANSFORMS_FOLDER}/{ATLAS_TO_T1GD})")
    native_file, transform_file = found
    native = nifti.load(native_file)
    try:
        atlas_to_t1c = sitk.ReadTransform(str(transform_file))
    except RuntimeError as error:
        raise BratsInputError(f"{transform_file}: unreadable transform ({str(error).strip().splitlines()[-1]})") \
            from None
    return native, atlas_to_t1c.GetInverse()
