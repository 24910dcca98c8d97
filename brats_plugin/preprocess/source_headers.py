"""The T1Gd series' DICOM headers, kept with a preprocessed case so that results can go back into the study.

A DICOM SEG that PACS viewers overlay on the patient's T1Gd must reference that series' SOP instances,
share its Frame of Reference and carry its patient and study attributes. ``brats preprocess`` keeps,
for a DICOM study, the header of every image of the chosen T1Gd series (pixel data left out, a few kB
each) in ``CASE_DIR/preprocessing/t1ce_dicom/``, so that the export works later without the study at
hand. These headers identify the patient exactly as the study does: the case folder is as private as
the study it came from.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from brats_plugin.cases import AUXILIARY_FOLDER
from brats_plugin.errors import BratsInputError
from brats_plugin.geometry import LPS_TO_RAS
from brats_plugin.preprocess.identify import MR_IMAGE_CLASSES
from brats_plugin.preprocess.series import Series
from brats_plugin.preprocess.volume import ORIENTATION_TOLERANCE, POSITION_TOLERANCE_MM

#: Where a preprocessed case keeps the T1Gd series' headers, inside ``CASE_DIR/preprocessing/``.
SOURCE_HEADERS_FOLDER = "t1ce_dicom"
#: Enhanced (multi-frame) MR image storage.
ENHANCED_CLASSES = MR_IMAGE_CLASSES - {"1.2.840.10008.5.1.4.1.1.4"}


def read_series_headers(series: Series) -> list[Dataset]:
    """The header of every file of ``series``, without pixel data."""
    return [source.read(pixels=False) for source in series.files]


def keep_headers(headers: list[Dataset], folder: Path) -> None:
    """Write ``headers`` into ``folder`` (created) as explicit VR little endian files."""
    folder.mkdir(parents=True)
    digits = max(4, len(str(len(headers))))
    for index, dataset in enumerate(headers, start=1):
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # no pixels left to be compressed
        try:
            pydicom.dcmwrite(folder / f"IM{index:0{digits}d}.dcm", dataset, implicit_vr=False, little_endian=True,
                             enforce_file_format=True)
        except (ValueError, TypeError, OverflowError) as error:
            raise BratsInputError(f"T1Gd image {dataset.get('SOPInstanceUID', index)}: cannot keep its header "
                                  f"({str(error)[:120]})") from None


def source_slices(headers: list[Dataset], affine: np.ndarray, shape: tuple[int, ...]) -> tuple[list[Dataset],
                                                                                                list[int]]:
    """The source images a SEG references and, for each of their frames in order, its slice of the native
    T1Gd grid (``affine``, ``shape``), matched by ImagePositionPatient with the reader's tolerance.

    Classic single-frame images come back ordered along the grid; one enhanced (multi-frame) image keeps
    its frame order. Raises :class:`BratsInputError` when a header lies on no slice of the grid, a slice
    has no header, or the series is several enhanced files (highdicom references one multi-frame source).
    """
    lps = LPS_TO_RAS @ np.asarray(affine, float)  # voxel -> LPS mm (the flip is its own inverse)
    grid = _Grid(lps[:3, :3], lps[:3, 3], tuple(int(n) for n in shape[:3]))
    enhanced = [h for h in headers if str(h.get("SOPClassUID", "")) in ENHANCED_CLASSES
                or "PerFrameFunctionalGroupsSequence" in h]
    if enhanced and len(headers) > 1:
        raise BratsInputError(f"the T1Gd series is {len(headers)} files of enhanced MR images: a SEG on it is not "
                              "supported (one multi-frame file, or classic single-frame images, are)")
    if enhanced:
        frames = int(headers[0].get("NumberOfFrames", 1) or 1)
        sources, slices = headers, [grid.slice_of(*_frame_geometry(headers[0], i), headers[0]) for i in range(frames)]
    else:
        placed = sorted(((grid.slice_of(*_frame_geometry(h, None), h), h) for h in headers), key=lambda p: p[0])
        slices, sources = [k for k, _ in placed], [h for _, h in placed]
    if sorted(slices) != list(range(grid.shape[2])):
        raise BratsInputError(f"the T1Gd headers cover {len(set(slices))} of the {grid.shape[2]} slices of the native "
                              "grid: they do not belong to this case (preprocess the study again)")
    return sources, slices


def _frame_geometry(header: Dataset, frame: int | None) -> tuple[np.ndarray, np.ndarray]:
    """ImagePositionPatient and ImageOrientationPatient of a classic image (``frame`` None) or of one
    frame of an enhanced image (per-frame groups, else the shared ones)."""
    if frame is None:
        return np.asarray(header.ImagePositionPatient, float), np.asarray(header.ImageOrientationPatient, float)
    groups = header.PerFrameFunctionalGroupsSequence[frame]
    shared = header.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in header else Dataset()
    position = (groups.get("PlanePositionSequence") or shared.PlanePositionSequence)[0].ImagePositionPatient
    orientation = (groups.get("PlaneOrientationSequence") or shared.PlaneOrientationSequence)[0].ImageOrientationPatient
    return np.asarray(position, float), np.asarray(orientation, float)


@dataclass(frozen=True)
class _Grid:
    axes: np.ndarray  # (3, 3) voxel steps in LPS mm, one column per array axis
    origin: np.ndarray  # LPS mm of voxel (0, 0, 0)
    shape: tuple[int, int, int]

    def slice_of(self, position: np.ndarray, orientation: np.ndarray, header: Dataset) -> int:
        """The grid slice a source image lies on; raise when it lies on none."""
        where = f"T1Gd image {header.get('SOPInstanceUID', '?')}"
        directions = self.axes[:, :2] / np.linalg.norm(self.axes[:, :2], axis=0)
        if np.abs(orientation - directions.T.ravel()).max() > ORIENTATION_TOLERANCE:
            raise BratsInputError(f"{where}: its orientation differs from the native T1Gd grid's")
        if (int(header.get("Columns", -1)), int(header.get("Rows", -1))) != self.shape[:2]:
            raise BratsInputError(f"{where}: its size differs from the native T1Gd grid's")
        index = np.linalg.solve(self.axes, position - self.origin)
        k = int(round(index[2]))
        off = np.abs(self.axes @ (index - np.array([0.0, 0.0, k])))
        if off.max() > POSITION_TOLERANCE_MM or not 0 <= k < self.shape[2]:
            raise BratsInputError(f"{where}: lies on no slice of the native T1Gd grid ({off.max():.2f} mm off)")
        return k


def came_from_dicom(case_folder: str | os.PathLike) -> bool:
    """Whether a case folder was preprocessed from a DICOM study (it keeps the T1Gd's headers)."""
    return (Path(case_folder) / AUXILIARY_FOLDER / SOURCE_HEADERS_FOLDER).is_dir()


def read_headers(case_folder: str | os.PathLike) -> list[Dataset] | None:
    """The kept T1Gd headers of a preprocessed case, or None when the case did not come from DICOM."""
    if not came_from_dicom(case_folder):
        return None
    folder = Path(case_folder) / AUXILIARY_FOLDER / SOURCE_HEADERS_FOLDER
    headers = []
    for path in sorted(folder.glob("*.dcm")):
        try:
            headers.append(pydicom.dcmread(path))
        except Exception as error:  # pydicom raises many types for damaged files
            raise BratsInputError(f"{path}: cannot read this kept T1Gd header ({type(error).__name__}: "
                                  f"{str(error)[:120]})") from None
    if not headers:
        raise BratsInputError(f"{folder}: no T1Gd headers in it (damaged case folder: preprocess the study again)")
    return headers
