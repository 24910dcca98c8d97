"""DICOM SEG and SR in the patient's own study: the tumour on the original T1Gd series.

For a case that ``brats preprocess`` made from a DICOM study, the export goes back into that study
instead of writing new image series:

    SEG/seg.dcm   BINARY Segmentation Storage whose frames lie on the original T1Gd slices (each frame
                  references the T1Gd image at its position), in the study's Frame of Reference, with
                  the patient and study attributes of the source images (copied, never changed)
    SR/sr.dcm     Comprehensive 3D SR, TID 1500 measurement report: the volume (mL, on the native grid)
                  of every release label (TID 1411, referencing its SEG segment) and every region
                  (WT/TC/ET, TID 1501)

PACS viewers (OHIF, Weasis) overlay a SEG on the series it references, so the radiologist sees the
tumour on the images they read. The labels are those carried back onto the native T1Gd grid
(:mod:`brats_plugin.preprocess.native`); the kept headers (:mod:`brats_plugin.preprocess.source_headers`)
say where each of that grid's slices came from.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from brats_plugin import files
from brats_plugin.errors import BratsInputError
from brats_plugin.export.case import OriginalStudy
from brats_plugin.export.dicom import (
    SEG_FILE,
    SEG_FOLDER,
    TISSUE_CODES,
    save_dataset,
    segment_number,
    tumour_segmentation,
)
from brats_plugin.geometry import LPS_TO_RAS
from brats_plugin.releases import Release
from brats_plugin.version import __version__
from brats_plugin.volumes import Volumes

SR_FOLDER, SR_FILE = "SR", "sr.dcm"
_SERIES_NUMBER_SR = 101
#: Unit of every volume in the report (UCUM).
MILLILITRE = Code("mL", "UCUM", "milliliter")
#: Finding type of each region: the whole and core tumour are neoplasm, the enhancing region a lesion.
REGION_FINDINGS: dict[str, Code] = {"ET": codes.NCIt.EnhancingLesion}
_POSITION_TOLERANCE_MM = 0.1
_ORIENTATION_TOLERANCE = 1e-3


def write_study_dicom(study: OriginalStudy, release: Release, folder: str | os.PathLike, *,
                      overwrite: bool = False) -> list[Path]:
    """Write the SEG and the SR of ``study`` into ``folder`` (complete or not at all); return their paths."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise BratsInputError(f"{folder}: exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise BratsInputError(f"{folder}: folder exists and is not empty (choose another or allow overwriting)")
    files.prepare_output_folder(folder.parent)
    sources, frames = frames_on_source(study.headers, study.labels)
    seg = tumour_segmentation(sources, frames, release)
    report = measurement_report(seg, study.headers, release, study.volumes)
    with files.staging_folder(folder) as temporary:
        written = [save_dataset(seg, temporary / SEG_FOLDER / SEG_FILE),
                   save_dataset(report, temporary / SR_FOLDER / SR_FILE)]
        files.replace_folder(temporary, folder)
    return [folder / path.relative_to(temporary) for path in written]


# ---- the SEG's frames on the source slices ---------------------------------------------------------------

def frames_on_source(headers: list[Dataset], labels: nib.Nifti1Image) -> tuple[list[Dataset], np.ndarray]:
    """The source images for a SEG and the labels as (frame, row, column) in their order.

    Each source slice is matched to a slice of the native grid by its ImagePositionPatient; a header
    that lies on no slice of the grid, or a grid slice without a header, is an error (the case folder
    does not belong to these headers). Single-frame images are ordered along the grid; one enhanced
    multi-frame image keeps its own frame order.
    """
    voxels = np.asarray(labels.dataobj, dtype=np.uint8)
    lps = LPS_TO_RAS @ labels.affine  # voxel -> LPS mm (the flip is its own inverse)
    grid = _Grid(lps[:3, :3], lps[:3, 3], voxels.shape)
    if len(headers) == 1 and int(headers[0].get("NumberOfFrames", 1) or 1) > 1:
        slices = [grid.slice_of(*_frame_geometry(headers[0], index), headers[0])
                  for index in range(int(headers[0].NumberOfFrames))]
        sources = headers
    else:
        if any(int(h.get("NumberOfFrames", 1) or 1) > 1 for h in headers):
            raise BratsInputError("the T1Gd series holds several multi-frame images: a SEG cannot reference it")
        placed = sorted(((grid.slice_of(*_frame_geometry(h, 0), h), h) for h in headers), key=lambda pair: pair[0])
        slices, sources = [k for k, _ in placed], [h for _, h in placed]
    if sorted(slices) != list(range(voxels.shape[2])):
        raise BratsInputError(f"the kept T1Gd headers cover slices {sorted(set(slices))[:5]}... of a grid of "
                              f"{voxels.shape[2]}: they do not belong to this case's native grid")
    frames = np.ascontiguousarray(voxels[:, :, slices].transpose(2, 1, 0))  # (frame, row = y, column = x)
    return sources, frames


def _frame_geometry(header: Dataset, index: int) -> tuple[np.ndarray, np.ndarray]:
    """ImagePositionPatient and ImageOrientationPatient of a frame (classic or enhanced image)."""
    if "PerFrameFunctionalGroupsSequence" in header:
        frame = header.PerFrameFunctionalGroupsSequence[index]
        shared = header.SharedFunctionalGroupsSequence[0]
        position = (frame.get("PlanePositionSequence") or shared.PlanePositionSequence)[0].ImagePositionPatient
        orientation = (frame.get("PlaneOrientationSequence")
                       or shared.PlaneOrientationSequence)[0].ImageOrientationPatient
    else:
        position, orientation = header.ImagePositionPatient, header.ImageOrientationPatient
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
        if np.abs(orientation - directions.T.ravel()).max() > _ORIENTATION_TOLERANCE:
            raise BratsInputError(f"{where}: its orientation differs from the native T1Gd grid's")
        if (int(header.get("Columns", -1)), int(header.get("Rows", -1))) != self.shape[:2]:
            raise BratsInputError(f"{where}: its size differs from the native T1Gd grid's")
        index = np.linalg.solve(self.axes, position - self.origin)
        k = int(round(index[2]))
        off = np.linalg.norm(self.axes @ (index - np.array([0.0, 0.0, k])))
        if off > _POSITION_TOLERANCE_MM or not 0 <= k < self.shape[2]:
            raise BratsInputError(f"{where}: lies on no slice of the native T1Gd grid ({off:.2f} mm off)")
        return k


# ---- the measurement report ------------------------------------------------------------------------------

def measurement_report(seg: hd.seg.Segmentation, headers: list[Dataset], release: Release,
                       volumes: Volumes) -> hd.sr.Comprehensive3DSR:
    """A TID 1500 report of ``volumes``: one group per label (referencing its segment), one per region."""
    algorithm = hd.sr.AlgorithmIdentification(name="brats_plugin", version=__version__)
    source_series = hd.sr.SourceSeriesForSegmentation(headers[0].SeriesInstanceUID)
    groups: list = []
    for label in release.labels:
        referenced = hd.sr.ReferencedSegment(seg.SOPClassUID, seg.SOPInstanceUID, segment_number(release, label.value),
                                             source_series=source_series)
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=label.name[:64]),
            referenced_segment=referenced, finding_type=TISSUE_CODES[label.tissue],
            algorithm_id=algorithm, measurements=[_volume(volumes.labels[label.value], algorithm)]))
    for region in release.regions:
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(),
                                                         identifier=f"{region.name} ({region.abbreviation})"[:64]),
            finding_type=REGION_FINDINGS.get(region.abbreviation, codes.SCT.Neoplasm), algorithm_id=algorithm,
            measurements=[_volume(volumes.regions[region.abbreviation], algorithm)]))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="brats_plugin", manufacturer_name="brats_plugin", model_name=__version__))
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.LN.BrainMRI,
        imaging_measurements=groups, title=codes.DCM.ImagingMeasurementReport)
    return hd.sr.Comprehensive3DSR(
        evidence=[seg, *headers], content=content, series_instance_uid=generate_uid(), series_number=_SERIES_NUMBER_SR,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="brats_plugin",
        series_description=f"Tumour volumes ({release.title})"[:64])


def _volume(ml: float, algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=codes.SCT.Volume, value=round(float(ml), 4), unit=MILLILITRE,
                             algorithm_id=algorithm)
