"""A phantom posed in a scanner: the atlas-space phantom, its T1Gd as the atlas, and studies of it.

Shared by the tests of ``brats preprocess`` and of the way back into the study.
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from brats_plugin.dataset_conversion.synthetic import synthesize_case
from brats_plugin.preprocess.scanner_study import StudyTruth, rigid, write_scanner_study
from brats_plugin.releases import get_release

PHANTOM_SHAPE = (110, 128, 100)  # 1 mm: a brain with room for skull and scalp
HEAD_POSE = (6.0, -4.0, 9.0), (5.0, -7.0, 12.0)  # degrees, mm: the head in the scanner


def make_phantom(folder: Path):
    """A phantom in atlas space, its T1Gd written as the atlas file, and its centre (RAS mm)."""
    case = synthesize_case(get_release("2021"), "P1", shape=PHANTOM_SHAPE, seed=3)
    atlas = folder / "atlas_t1c.nii.gz"
    nib.save(nib.Nifti1Image(case.images["T1Gd"].astype(np.float32), case.affine), atlas)
    centre = (case.affine @ np.append((np.array(PHANTOM_SHAPE) - 1) / 2, 1))[:3]
    return case, atlas, centre


def write_phantom_study(phantom, folder: Path, **options) -> StudyTruth:
    """The phantom's head at :data:`HEAD_POSE` in a scanner, written as a DICOM study into ``folder``."""
    case, _, centre = phantom
    return write_scanner_study(folder, case.images, case.affine, head_pose=rigid(*HEAD_POSE, centre), **options)
