"""DICOM SEG and SR in the patient's own study: the tumour on the original T1Gd series.

For a case that ``brats preprocess`` made from a DICOM study, the export goes back into that study
instead of writing new image series:

    SEG/seg.dcm   BINARY Segmentation Storage whose frames lie on the original T1Gd slices (each frame
                  references the T1Gd image at its position), in the study's Frame of Reference, with
                  the patient and study attributes of the source images (copied, never changed)
    SR/sr.dcm     Comprehensive 3D SR, TID 1500 measurement report: the volume (mL, on the native grid)
                  of every release label (TID 1411, referencing its SEG segment) and every region
                  (WT/TC/ET, TID 1501)
    SC/IM0001.dcm optional: RGB Secondary Capture slices of the original T1Gd with the labels blended in,
                  "NOT FOR DIAGNOSIS", for viewers without SEG support

PACS viewers (OHIF, Weasis) overlay a SEG on the series it references, so the radiologist sees the
tumour on the images they read. The labels are those carried back onto the native T1Gd grid
(:mod:`brats_plugin.preprocess.native`); the kept headers (:mod:`brats_plugin.preprocess.source_headers`)
say where each of that grid's slices came from.
"""
from __future__ import annotations

import os
from datetime import datetime
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
    SC_FOLDER,
    SEG_FILE,
    SEG_FOLDER,
    TISSUE_CODES,
    SliceGeometry,
    check_export_folder,
    overlay_series,
    save_dataset,
    save_series,
    segment_number,
    tumour_segmentation,
)
from brats_plugin.preprocess.source_headers import source_slices
from brats_plugin.releases import Release
from brats_plugin.version import __version__
from brats_plugin.volumes import Volumes

SR_FOLDER, SR_FILE = "SR", "sr.dcm"
#: Patient and study attributes the overlay series copies from the T1Gd; those DICOM requires (type 2)
#: are written empty when the source lacks them.
_STUDY_KEYWORDS = ("SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
                   "PatientSex", "PatientAge", "PatientIdentityRemoved", "DeidentificationMethod", "StudyInstanceUID",
                   "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
                   "StudyDescription")
_REQUIRED_EMPTY = {"PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                   "ReferringPhysicianName", "StudyID", "AccessionNumber"}
#: The SEG's series number unless the study's own series reach it; the SR and overlay series follow it.
FIRST_SERIES_NUMBER = 100
#: The device that observes in every report: one UID per version of this software.
DEVICE_OBSERVER_UID = generate_uid(entropy_srcs=["brats_plugin device observer", __version__])
#: Unit of every volume in the report (UCUM).
MILLILITRE = Code("mL", "UCUM", "milliliter")
#: Finding type of each region: the whole and core tumour are neoplasm, the enhancing region a lesion.
REGION_FINDINGS: dict[str, Code] = {"ET": codes.NCIt.EnhancingLesion}


def write_study_dicom(study: OriginalStudy, release: Release, folder: str | os.PathLike, *,
                      secondary_capture: bool = False, overwrite: bool = False) -> list[Path]:
    """Write the SEG, the SR (and with ``secondary_capture`` the overlay series) of ``study`` into
    ``folder``, complete or not at all; return their paths."""
    folder = check_export_folder(folder, overwrite)
    sources, frames = frames_on_source(study.headers, study.labels)
    first = max(FIRST_SERIES_NUMBER, max(study.taken_series_numbers, default=0) + 1)  # SEG, SR, SC
    try:
        seg = tumour_segmentation(sources, frames, release, series_number=first)
        report = measurement_report(seg, study.headers, release, study.volumes, series_number=first + 1)
    except (ValueError, TypeError, AttributeError, KeyError) as error:  # highdicom's checks of the headers
        raise BratsInputError(f"the T1Gd headers (series {sources[0].get('SeriesNumber', '?')}): a SEG and SR "
                              f"cannot be built on them ({type(error).__name__}: {str(error)[:160]})") from None
    with files.staging_folder(folder) as temporary:
        written = [save_dataset(seg, temporary / SEG_FOLDER / SEG_FILE),
                   save_dataset(report, temporary / SR_FOLDER / SR_FILE)]
        if secondary_capture:
            labels = np.asarray(study.labels.dataobj, dtype=np.uint8)
            geometry = SliceGeometry.from_affine(study.labels.affine, labels.shape)
            overlay = overlay_series(study.t1c, labels, release, _study_attributes(study.headers[0]), geometry,
                                     sequence="T1Gd", series_number=first + 2)
            written += save_series(overlay, temporary / SC_FOLDER)
        files.replace_folder(temporary, folder)
    return [folder / path.relative_to(temporary) for path in written]


def _study_attributes(header: Dataset) -> Dataset:
    """The patient and study attributes of a source image, copied as they are, and our equipment's."""
    study = Dataset()
    for keyword in _STUDY_KEYWORDS:
        if keyword in header:
            study[keyword] = header[keyword]
        elif keyword in _REQUIRED_EMPTY:
            setattr(study, keyword, "")
    study.Manufacturer = study.ManufacturerModelName = "brats_plugin"
    study.SoftwareVersions = __version__
    now = datetime.now()
    study.InstanceCreationDate, study.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    return study


# ---- the SEG's frames on the source slices ---------------------------------------------------------------

def frames_on_source(headers: list[Dataset], labels: nib.Nifti1Image) -> tuple[list[Dataset], np.ndarray]:
    """The source images for a SEG and the labels as (frame, row, column) in their frames' order
    (:func:`~brats_plugin.preprocess.source_headers.source_slices`)."""
    voxels = np.asarray(labels.dataobj, dtype=np.uint8)
    sources, slices = source_slices(headers, labels.affine, voxels.shape)
    return sources, np.ascontiguousarray(voxels[:, :, slices].transpose(2, 1, 0))  # (frame, row = y, column = x)


# ---- the measurement report ------------------------------------------------------------------------------

def measurement_report(seg: hd.seg.Segmentation, headers: list[Dataset], release: Release,
                       volumes: Volumes, *, series_number: int) -> hd.sr.Comprehensive3DSR:
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
            uid=DEVICE_OBSERVER_UID, name="brats_plugin", manufacturer_name="brats_plugin", model_name=__version__))
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.LN.BrainMRI,
        imaging_measurements=groups, title=codes.DCM.ImagingMeasurementReport)
    return hd.sr.Comprehensive3DSR(
        evidence=[seg, *headers], content=content, series_instance_uid=generate_uid(), series_number=series_number,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="brats_plugin",
        series_description=f"Tumour volumes ({release.title})"[:64])


def _volume(ml: float, algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=codes.SCT.Volume, value=round(float(ml), 4), unit=MILLILITRE,
                             algorithm_id=algorithm)
