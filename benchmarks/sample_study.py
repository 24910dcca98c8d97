"""The real sample case as a scanner study, shared by the preprocessing benchmarks (and their first line:
the machine and the date).

The sample case (240x240x155, 1 mm, brain only) gets a skull and scalp, is posed in the scanner and
written as DICOM the way a scanner acquires it: 3-D T1 and T1Gd at 1 mm (192x240x176), 2-D T2 at
0.45x0.45x5 mm (448x512x30) and FLAIR at 0.5x0.5x5 mm (384x448x30), tilted 4-20 degrees, plus a
localizer, a diffusion and a derived series to be ignored.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import nibabel as nib
import numpy as np

from brats_plugin.cases import find_case
from brats_plugin.preprocess.scanner_study import StudyTruth, default_specs, rigid, write_scanner_study

SAMPLE_CASE = Path(__file__).resolve().parents[1] / "tests" / "data" / "TCGA-DU-7294"
#: Spacing (mm) and shape of each sequence's scanner grid.
SCANNER_GRIDS = {"T1": ((1.0, 1.0, 1.0), (192, 240, 176)), "T1Gd": ((1.0, 1.0, 1.0), (192, 240, 176)),
                 "T2": ((0.45, 0.45, 5.0), (448, 512, 30)), "FLAIR": ((0.5, 0.5, 5.0), (384, 448, 30))}
#: Degrees and mm: the head in the scanner.
HEAD_POSE = (5.0, -3.0, 7.0), (4.0, -6.0, 9.0)


def machine_and_date() -> str:
    """What every figure is printed with: the machine is shared and its speed varies from day to day."""
    return f"{platform.node()}, {os.cpu_count()} cores, {platform.processor() or platform.machine()}, " \
           f"{date.today().isoformat()}"


@dataclass
class SampleCase:
    images: dict[str, np.ndarray]  # sequence -> float32 voxels on the sample's BraTS grid
    labels: np.ndarray  # uint8, the sample's segmentation
    affine: np.ndarray  # the BraTS grid's voxel -> RAS mm
    head_pose: np.ndarray  # 4x4, where the head sits in the scanner


def load_sample_case() -> SampleCase:
    case = find_case(SAMPLE_CASE)
    first = nib.load(case.sequences["T1"])
    images = {s: np.asarray(nib.load(p).dataobj, dtype=np.float32) for s, p in case.sequences.items()}
    labels = np.asarray(nib.load(case.segmentation).dataobj, dtype=np.uint8)
    centre = (first.affine @ np.append((np.array(first.shape) - 1) / 2, 1))[:3]
    return SampleCase(images, labels, first.affine, rigid(*HEAD_POSE, centre))


def scanner_specs() -> list:
    """The default study's series on :data:`SCANNER_GRIDS`."""
    return [replace(s, spacing=SCANNER_GRIDS[s.sequence][0], shape=SCANNER_GRIDS[s.sequence][1])
            if s.sequence else s for s in default_specs()]


def write_sample_study(sample: SampleCase, folder: Path) -> StudyTruth:
    """The sample case as a DICOM study in ``folder``; the truth of every series' pose and grid."""
    return write_scanner_study(folder, sample.images, sample.affine, specs=scanner_specs(),
                               head_pose=sample.head_pose)
