"""What every export starts from: a case's four sequences and a label mask, checked against each other.

An :class:`ExportCase` holds the voxels once (float32 sequences, uint8 labels), the geometry
reference (the T1 image, whose header the mask must match), the release whose labels the mask uses,
and the label volumes. The DICOM, HTML and picture writers all read it and nothing else. A case that
``brats preprocess`` made from a DICOM study also holds that study (:class:`OriginalStudy`): the labels
on its T1Gd series and that series' headers, which the DICOM export writes its SEG and SR against.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset

from brats_plugin import nifti
from brats_plugin.cases import Case, check_release_labels, labels_present, read_case_voxels, read_mask
from brats_plugin.errors import BratsInputError
from brats_plugin.geometry import voxel_spacing
from brats_plugin.preprocess.native import images_to_native, labels_to_native, way_back
from brats_plugin.preprocess.pipeline import study_series_numbers
from brats_plugin.preprocess.source_headers import read_headers
from brats_plugin.release_choice import resolve_release
from brats_plugin.releases import SEQUENCES, Release
from brats_plugin.volumes import Volumes, measure_volumes


@dataclass(frozen=True)
class OriginalStudy:
    """A case's labels on the T1Gd series the scanner acquired, with that series' DICOM headers."""

    headers: list[Dataset]  # one per T1Gd file, pixel data left out
    labels: nib.Nifti1Image  # uint8 release labels on the native T1Gd grid
    volumes: Volumes  # of ``labels``: the clinical figures
    t1c: np.ndarray  # float32 voxels of the T1Gd as acquired, on the same grid
    folder: Path  # the preprocessed case folder (its transforms carry the other sequences there)
    taken_series_numbers: frozenset[int] = frozenset()  # the study's own series: new ones number above them


@dataclass(frozen=True)
class ExportCase:
    """A case and its segmentation, ready to export."""

    case_id: str
    reference: nib.Nifti1Image  # the T1 image: the grid (shape, affine, header) of every volume here
    images: dict[str, np.ndarray]  # sequence name (:data:`SEQUENCES`) -> float32 voxels (x, y, z)
    labels: np.ndarray  # uint8 voxels (x, y, z) in ``release``'s label values
    release: Release
    volumes: Volumes
    preprocessed: bool = False  # made by ``brats preprocess`` (from DICOM or from NIfTI files)
    study: OriginalStudy | None = None  # made by ``brats preprocess`` from a DICOM study

    @property
    def affine(self) -> np.ndarray:
        """Voxel index -> RAS millimetres (NIfTI convention)."""
        return self.reference.affine

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.labels.shape

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in millimetres along the three array axes (from the affine, not pixdim)."""
        return voxel_spacing(self.affine)


def load_export_case(case: Case, mask: str | os.PathLike, release: str | Release | None = None, *,
                     native: nib.Nifti1Image | None = None) -> ExportCase:
    """Read and check a case and its mask; raise :class:`BratsInputError` naming the file at fault.

    The mask must lie on the T1 image's grid (same shape, affine within tolerance) and hold only the
    release's labels. ``release``: a :class:`Release` is taken as it is (the caller wrote the mask in it:
    ``brats predict``, the app); a key (a user's ``--release``) or None is decided by
    :func:`~brats_plugin.release_choice.resolve_release` from the case id and the labels found, with
    BraTS 2021's conventions assumed (and a warning) when those fit several releases.

    For a case preprocessed from a DICOM study, ``native`` is the mask on the native T1Gd grid
    (``brats predict`` made it); None: the mask is carried there now (:func:`labels_to_native`).
    """
    mask = Path(mask)
    reference, voxels = read_case_voxels(case)
    labels = read_mask(mask, reference)
    found = set(labels_present(labels))
    if not isinstance(release, Release):
        release = resolve_release(release, [case.case_id], mask, lambda: [(mask, found)], assume_default=True)
    check_release_labels(found, release, mask)
    labels = labels.astype(np.uint8, copy=False)
    headers = read_headers(case.folder)
    study = None
    if headers is not None:
        native = native if native is not None else labels_to_native(labels, reference.affine, case.folder, release)
        native_labels = np.asarray(native.dataobj, dtype=np.uint8)
        native_t1c = np.asarray(nifti.read_array(way_back(case.folder)[0]), dtype=np.float32)
        study = OriginalStudy(headers, native, measure_volumes(native_labels, release, native.affine), native_t1c,
                              case.folder, frozenset(study_series_numbers(case.folder)))
    return ExportCase(case.case_id, reference, dict(zip(SEQUENCES, voxels)), labels, release,
                      measure_volumes(labels, release, reference.affine), way_back(case.folder) is not None, study)


def on_native_grid(case: ExportCase) -> ExportCase:
    """A case preprocessed from a study, as pictures show it: on the native T1Gd grid (the T1Gd as
    acquired, the other sequences carried there from the atlas grid for display), with the native labels
    and volumes. Its DICOM export would not be the study's: use it for the viewer and pictures only."""
    study = case.study
    if study is None:
        raise BratsInputError(f"{case.case_id}: not preprocessed from a DICOM study, no native grid to show")
    carried = images_to_native({s: case.images[s] for s in SEQUENCES if s != "T1Gd"}, case.affine, study.folder)
    images = {sequence: study.t1c if sequence == "T1Gd" else carried[sequence] for sequence in SEQUENCES}
    labels = np.asarray(study.labels.dataobj, dtype=np.uint8)
    return ExportCase(case.case_id, nib.Nifti1Image(study.t1c, study.labels.affine), images, labels, case.release,
                      study.volumes)
