"""The way back: a label map on the atlas grid -> the same labels on the patient's own T1Gd grid.

``brats preprocess`` keeps, in ``CASE_DIR/preprocessing/``, the T1Gd as acquired and the transform
that maps atlas points into it. A label map is carried back through the inverse of that transform,
resampled onto the native T1Gd's grid (its affine and shape, however oblique or anisotropic) by
interpolating a one-hot of every label linearly and choosing, at each native voxel, region by region
from the outside in (tumour or not, then core or edema, then enhancing or not), the heaviest.
Nearest-neighbour labels would give jagged, shifted edges on 5 mm grids; interpolated one-hots give the
boundary where the model put it. Native voxels that the atlas grid does not cover
are background.
"""
from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from brats_plugin import nifti
from brats_plugin.cases import AUXILIARY_FOLDER
from brats_plugin.errors import BratsInputError
from brats_plugin.preprocess.registration import resample_onto, to_sitk
from brats_plugin.releases import Release

#: What a preprocessed case keeps for the way back, inside ``CASE_DIR/preprocessing/``.
NATIVE_T1GD = "native_t1ce.nii.gz"
TRANSFORMS_FOLDER = "transforms"
ATLAS_TO_T1GD = "t1ce_from_atlas.tfm"


def way_back(case_folder: str | os.PathLike) -> tuple[Path, Path] | None:
    """The native T1Gd and the atlas -> T1Gd transform of a preprocessed case folder, or None."""
    kept = Path(case_folder) / AUXILIARY_FOLDER
    native, transform = kept / NATIVE_T1GD, kept / TRANSFORMS_FOLDER / ATLAS_TO_T1GD
    return (native, transform) if native.is_file() and transform.is_file() else None


def labels_to_native(labels: np.ndarray, affine: np.ndarray, case_folder: str | os.PathLike,
                     release: Release) -> nib.Nifti1Image:
    """``labels`` (uint8, x y z on the atlas grid ``affine``, in ``release``'s labels) on the native T1Gd
    grid of ``case_folder``. The release's regions (WT, TC, ET, and those outside them such as 2024 GLI's
    resection cavity) are decided from the outside in (see :func:`choose_nested`) so that each keeps its
    volume."""
    native, t1c_to_atlas = _way_back_read(case_folder)
    reference = to_sitk(native, np.zeros(native.shape[:3], np.float32))
    atlas_grid = nib.Nifti1Image(np.zeros((1, 1, 1), np.float32), affine)
    weights = {}
    for value in (int(v) for v in np.unique(labels) if v):
        one_hot = to_sitk(atlas_grid, (labels == value).astype(np.float32))
        weights[value] = np.nan_to_num(resample_onto(reference, one_hot, t1c_to_atlas, linear=True))
    weights[0] = np.clip(1.0 - sum(weights.values(), np.zeros(native.shape[:3], np.float32)), 0.0, 1.0)
    regions = [region.labels for region in release.training_regions]
    return nifti.like(choose_nested(weights, regions), native, np.uint8)


def choose_nested(weights: dict[int, np.ndarray], regions: Sequence[Collection[int]]) -> np.ndarray:
    """The label of every voxel from interpolated one-hot ``weights`` (label -> array), region by region.

    A plain argmax over labels shrinks regions made of several labels: at a whole tumour's edge, edema
    0.35 + necrosis 0.30 against background 0.35 is tumour (0.65), yet no single label outweighs the
    background, and on 5 mm grids such edges are many voxels. So the choice descends the nesting of
    ``regions``: at each step a voxel goes to the heaviest of the largest disjoint regions inside the
    current one and the single labels left over (ties: the lower label), until one label is left. Only
    voxels with some label weight are decided; the rest (almost all) are background.
    """
    groups = [frozenset(r).intersection(weights) for r in regions]
    shape = next(iter(weights.values())).shape
    result = np.zeros(shape, np.uint8)

    def descend(node: frozenset[int], voxels: np.ndarray) -> None:
        if len(node) == 1 or not voxels.size:
            result.flat[voxels] = min(node)
            return
        children: list[frozenset[int]] = []
        for group in sorted({g for g in groups if g and g < node}, key=lambda g: (-len(g), min(g))):
            if not any(group & child for child in children):  # the largest first: nested ones come later
                children.append(group)
        children = sorted(children + [frozenset({v}) for v in node - set().union(*children)], key=min)
        mass = np.stack([sum(weights[v].flat[voxels] for v in child) for child in children])
        chosen = np.argmax(mass, axis=0)
        for index, child in enumerate(children):
            descend(child, voxels[chosen == index])

    descend(frozenset(weights), np.flatnonzero(weights[0] < 1) if 0 in weights else np.arange(result.size))
    return result


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
