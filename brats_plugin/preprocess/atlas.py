"""The template the preprocessed case lives on: MNI152 (ICBM 2009a) from the nilearn wheel, or any file.

The default is the ICBM 2009a nonlinear symmetric T1 template that the nilearn wheel ships
(``nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz``, 197x233x189 at 1 mm,
brain only). It is read from the installed package's files without importing nilearn and without any
download. ``--atlas PATH`` takes any T1 template instead (e.g. SRI24's, the BraTS 2017-2023 space):
the output grid is then that file's. The brain mask is the template's non-zero voxels (templates are
brain-extracted), or a mask file given beside it.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from brats_plugin import nifti
from brats_plugin.errors import BratsInputError

MNI152 = "mni152"
MNI152_FILE = Path("datasets") / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


@dataclass(frozen=True)
class Atlas:
    """A T1 template and its brain mask, on the template's grid."""

    name: str
    path: Path
    image: nib.Nifti1Image  # float32 voxels
    brain_mask: np.ndarray  # bool, the template's grid


def load_atlas(which: str | os.PathLike = MNI152) -> Atlas:
    """``"mni152"`` (the packaged ICBM 2009a T1) or the path of a T1 template NIfTI."""
    if str(which).lower() == MNI152:
        path, name = _packaged_mni152(), "MNI152 ICBM 2009a nonlinear symmetric (nilearn)"
    else:
        path, name = Path(which), Path(which).name
    image = nifti.load(path)
    if len(image.shape) != 3:
        raise BratsInputError(f"{path}: an atlas must be a 3-D image, not {len(image.shape)}-D")
    voxels = np.asarray(nifti.read_array(path), dtype=np.float32)
    if not np.isfinite(voxels).all() or not (voxels > 0).any():
        raise BratsInputError(f"{path}: an atlas needs finite values and a non-zero brain")
    return Atlas(name, path, nib.Nifti1Image(voxels, image.affine, image.header), voxels > 0)


def _packaged_mni152() -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise BratsInputError("--atlas mni152 needs the nilearn package (pip install nilearn), which ships the "
                              "MNI152 template; or pass --atlas PATH")
    path = Path(next(iter(spec.submodule_search_locations))) / MNI152_FILE
    if not path.is_file():
        raise BratsInputError(f"{path}: the MNI152 template is missing from the installed nilearn; reinstall it "
                              "or pass --atlas PATH")
    return path
