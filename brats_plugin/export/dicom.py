"""DICOM export of a segmented case: four MR image series, a DICOM SEG and an optional overlay series.

Layout written below the output folder (one study, one frame of reference)::

    MR_T1/IM0001.dcm ...    one single-frame MR Image Storage instance per slice, per sequence
    MR_T1Gd/ MR_T2/ MR_FLAIR/
    SEG/seg.dcm             BINARY Segmentation Storage (highdicom) referencing the T1 series
    SC/IM0001.dcm ...       optional: RGB Secondary Capture slices of the overlay, "NOT FOR DIAGNOSIS"

Geometry comes from the NIfTI affine (voxel -> RAS mm), turned into DICOM's LPS: slices run along the
array's third axis, DICOM columns along its first and rows along its second, so any spacing and any
oblique orientation survive (a sheared grid, which DICOM cannot describe, is refused). Intensities are
stored as integers with a rescale slope and intercept that keep every voxel within half a step.

Nothing identifies a patient unless the caller says so: without :class:`DicomPatient` values the patient
is a de-identified placeholder named after the case id, with Patient Identity Removed = YES.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from brats_plugin import files
from brats_plugin.errors import BratsInputError
from brats_plugin.export.case import ExportCase
from brats_plugin.export.images import (
    PICTURE_OPACITY,
    PICTURE_SEQUENCE,
    blend_labels,
    intensity_range,
)
from brats_plugin.export.legend import legend
from brats_plugin.geometry import LPS_TO_RAS
from brats_plugin.releases import SEQUENCES, Release
from brats_plugin.version import __version__

#: Sub-folder of each series inside the output folder.
MR_FOLDERS: dict[str, str] = {sequence: f"MR_{sequence}" for sequence in SEQUENCES}
SEG_FOLDER, SEG_FILE = "SEG", "seg.dcm"
SC_FOLDER = "SC"
#: The overlay series looks like the pictures (:mod:`~brats_plugin.export.images`): same sequence,
#: opacity, colours and intensity window.
OVERLAY_SEQUENCE, OVERLAY_OPACITY = PICTURE_SEQUENCE, PICTURE_OPACITY
NOT_FOR_DIAGNOSIS = "NOT FOR DIAGNOSIS"

#: Segmented property type of each tissue kind (:attr:`brats_plugin.releases.Label.tissue`). Necrosis,
#: edema and enhancing lesion are DICOM CID 7168 (brain lesion segmentation types with necrosis); cyst is
#: CID 7159 (lesion segmentation types). No context group has a resection cavity: SNOMED "Operative site"
#: (listed in DICOM PS3.16, CID 6201) names the place of the operation, which the cavity is.
TISSUE_CODES: dict[str, Code] = {
    "necrosis": codes.SCT.Necrosis,  # SCT 6574001
    "edema": codes.SCT.Edema,  # SCT 79654002
    "enhancing": codes.NCIt.EnhancingLesion,  # NCIt C113842
    "cyst": codes.SCT.Cyst,  # SCT 367643001
    "cavity": codes.SCT.OperativeSite,  # SCT 43526002
}
#: Segmented property category of every segment (CID 7150), and the anatomic region (SCT 12738006).
SEGMENT_CATEGORY: Code = codes.SCT.MorphologicallyAbnormalStructure  # SCT 49755003
ANATOMIC_REGION: Code = codes.SCT.Brain

_RAS_TO_LPS = LPS_TO_RAS[:3, :3]  # its own inverse
_SHEAR_TOLERANCE = 1e-4  # |cos| between the in-plane axes above which the grid counts as sheared
_DEIDENTIFICATION_METHOD = "brats_plugin: no patient data exported; placeholders only"
_SERIES_NUMBER_SEG, _SERIES_NUMBER_SC = 100, 200


@dataclass(frozen=True)
class DicomPatient:
    """Patient and study attributes written into every DICOM file.

    Left empty, the patient is a de-identified placeholder: Patient ID is the case id, Patient's Name
    ``Anonymous^<case id>``, and Patient Identity Removed is YES. Giving a patient id or name marks the
    files as identified (Patient Identity Removed = NO).
    """

    patient_id: str | None = None
    patient_name: str | None = None
    study_description: str | None = None
    accession_number: str = ""

    def __post_init__(self) -> None:
        _check_patient(self)  # refused when given, not after a case has been segmented

    @property
    def identified(self) -> bool:
        return self.patient_id is not None or self.patient_name is not None


def write_dicom(case: ExportCase, folder: str | os.PathLike, *, patient: DicomPatient | None = None,
                secondary_capture: bool = False, overwrite: bool = False) -> list[Path]:
    """Write the case's four MR series, its DICOM SEG and (optionally) an RGB overlay series to ``folder``.

    Everything is written into a hidden sibling folder that is renamed to ``folder`` when complete, so
    ``folder`` never holds a partial export. An existing non-empty ``folder`` is an error unless
    ``overwrite``. Returns the files written, under their final names.
    """
    folder = check_export_folder(folder, overwrite)
    patient = patient or DicomPatient()
    geometry = SliceGeometry.from_affine(case.affine, case.shape)
    study = _study_dataset(case, patient)

    with files.staging_folder(folder) as temporary:
        written: list[Path] = []
        t1_slices: list[Dataset] = []
        for number, sequence in enumerate(SEQUENCES, start=1):
            datasets = _mr_series(case.images[sequence], sequence, number, study, geometry)
            written += save_series(datasets, temporary / MR_FOLDERS[sequence])
            if number == 1:
                t1_slices = datasets
        segmentation = _segmentation(case, t1_slices, study)
        written.append(save_dataset(segmentation, temporary / SEG_FOLDER / SEG_FILE))
        if secondary_capture:
            grey = case.images[OVERLAY_SEQUENCE]
            written += save_series(overlay_series(grey, case.labels, case.release, study, geometry),
                                    temporary / SC_FOLDER)
        files.replace_folder(temporary, folder)
    return [folder / path.relative_to(temporary) for path in written]


def check_export_folder(folder: str | os.PathLike, overwrite: bool) -> Path:
    """``folder`` as a Path, refused when it is a file, or a non-empty folder without ``overwrite``; its
    parent is created."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise BratsInputError(f"{folder}: exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise BratsInputError(f"{folder}: folder exists and is not empty (choose another or allow overwriting)")
    files.prepare_output_folder(folder.parent)
    return folder


# ---- geometry -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SliceGeometry:
    """Where each slice of the array lies in DICOM patient coordinates (LPS, mm).

    Columns of a DICOM slice follow the array's first axis, rows its second, slices its third.
    """

    orientation: tuple[float, ...]  # Image Orientation (Patient): row direction, then column direction
    pixel_spacing: tuple[float, float]  # (between rows, between columns) = (axis 1, axis 0) spacing
    slice_spacing: float
    positions: np.ndarray  # (slices, 3) Image Position (Patient) of each slice's first voxel
    columns: int
    rows: int

    @classmethod
    def from_affine(cls, affine: np.ndarray, shape: tuple[int, int, int]) -> SliceGeometry:
        """The slices of an array of ``shape`` whose voxel -> RAS mm map is ``affine``."""
        lps = _RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)[:3, :]
        axes, origin = lps[:, :3], lps[:, 3]
        spacing = np.linalg.norm(axes, axis=0)
        if np.any(spacing == 0) or abs(np.linalg.det(axes)) < 1e-12:
            raise BratsInputError(f"affine {affine.tolist()}: singular voxel axes, no DICOM geometry")
        row_direction, column_direction = axes[:, 0] / spacing[0], axes[:, 1] / spacing[1]
        if abs(float(row_direction @ column_direction)) > _SHEAR_TOLERANCE:
            raise BratsInputError("the image grid is sheared (its first two axes are not perpendicular); "
                                  "DICOM images cannot describe it")
        positions = origin + np.arange(shape[2])[:, None] * axes[:, 2]
        return cls(tuple(float(v) for v in (*row_direction, *column_direction)),
                   (float(spacing[1]), float(spacing[0])), float(spacing[2]), positions, shape[0], shape[1])

    @property
    def normal(self) -> np.ndarray:
        """The unit normal of the slice planes (row direction x column direction)."""
        return np.cross(self.orientation[:3], self.orientation[3:])

    def patient_orientation(self) -> list[str]:
        """Patient Orientation (0020,0020): anatomical letters of the row and column directions."""
        return [_direction_letters(self.orientation[:3]), _direction_letters(self.orientation[3:])]


def _direction_letters(direction: tuple[float, ...]) -> str:
    """``L``/``R``, ``P``/``A``, ``H``/``F`` for the components of an LPS direction, largest first."""
    letters = [("L", "R"), ("P", "A"), ("H", "F")]
    order = sorted(range(3), key=lambda axis: -abs(direction[axis]))
    return "".join(letters[axis][0 if direction[axis] > 0 else 1] for axis in order if abs(direction[axis]) > 1e-3)


def _ds(value: float) -> str:
    """A number as a DICOM decimal string (at most 16 characters)."""
    return format_number_as_ds(float(value))


def _ds_list(values) -> list[str]:
    return [_ds(v) for v in values]


# ---- attributes shared by every file ---------------------------------------------------------------------

def _check_patient(patient: DicomPatient) -> None:
    """Refuse option values DICOM cannot hold (length limits, backslashes, control characters)."""
    for option, value, limit in (("patient id", patient.patient_id, 64), ("patient name", patient.patient_name, 64),
                                 ("study description", patient.study_description, 64),
                                 ("accession number", patient.accession_number, 16)):
        if value is None:
            continue
        if len(value) > limit:
            raise BratsInputError(f"{option} {value!r}: longer than DICOM's {limit} characters")
        if "\\" in value or any(ord(c) < 32 for c in value):
            raise BratsInputError(f"{option} {value!r}: backslashes and control characters are not allowed")


def _placeholder(text: str, limit: int = 64) -> str:
    """Text safe for a DICOM LO/PN value: no backslash, caret or control characters, at most ``limit``."""
    return "".join(c if c.isprintable() and c not in "\\^=" else "_" for c in text)[:limit]


def _study_dataset(case: ExportCase, patient: DicomPatient) -> Dataset:
    """Patient, study, frame-of-reference and equipment attributes shared by every series."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: names given by the user may hold any letter
    ds.PatientID = patient.patient_id if patient.patient_id is not None else _placeholder(case.case_id)
    ds.PatientName = (patient.patient_name if patient.patient_name is not None
                      else f"Anonymous^{_placeholder(case.case_id)}")
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.PatientIdentityRemoved = "NO" if patient.identified else "YES"
    if not patient.identified:
        ds.DeidentificationMethod = _DEIDENTIFICATION_METHOD
    ds.StudyInstanceUID = generate_uid()
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.StudyID = ""
    ds.AccessionNumber = patient.accession_number
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = (patient.study_description if patient.study_description is not None
                           else f"Brain tumour segmentation ({case.release.title})"[:64])
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "brats_plugin"
    ds.ManufacturerModelName = "brats_plugin"
    ds.SoftwareVersions = __version__
    now = datetime.now()
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    return ds


def _series_dataset(study: Dataset, sop_class: str, modality: str, number: int, description: str) -> Dataset:
    ds = Dataset()
    ds.update(study)
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = number
    ds.SeriesDescription = description[:64]
    ds.SeriesDate = ""
    ds.SeriesTime = ""
    ds.BodyPartExamined = "BRAIN"
    ds.ContentDate = ""
    ds.ContentTime = ""
    return ds


# ---- MR image series -------------------------------------------------------------------------------------

def _mr_series(voxels: np.ndarray, sequence: str, number: int, study: Dataset,
               geometry: SliceGeometry) -> list[Dataset]:
    """One MR Image Storage dataset per slice of ``voxels`` (x, y, z), pixel data included."""
    stored, slope, intercept = to_stored_pixels(voxels)
    centre, width = _window(voxels)
    template = _series_dataset(study, MRImageStorage, "MR", number, sequence)
    template.ImageType = ["DERIVED", "SECONDARY", "OTHER"]  # resampled and skull-stripped by BraTS
    template.PatientPosition = ""  # unknown after BraTS preprocessing
    template.ScanningSequence = "RM"  # research mode: the acquisition is unknown after BraTS preprocessing
    template.SequenceVariant = "NONE"
    template.ScanOptions = ""
    template.MRAcquisitionType = ""
    template.EchoTime = ""
    template.EchoTrainLength = ""
    template.RepetitionTime = ""
    template.SliceThickness = _ds(geometry.slice_spacing)
    template.SpacingBetweenSlices = _ds(geometry.slice_spacing)
    template.PixelSpacing = _ds_list(geometry.pixel_spacing)
    template.ImageOrientationPatient = _ds_list(geometry.orientation)
    template.PatientOrientation = ""
    template.BurnedInAnnotation = "NO"
    template.SamplesPerPixel = 1
    template.PhotometricInterpretation = "MONOCHROME2"
    template.Rows, template.Columns = geometry.rows, geometry.columns
    template.BitsAllocated = template.BitsStored = 16
    template.HighBit = 15
    template.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
    if (slope, intercept) != (1.0, 0.0):  # the classic MR IOD lacks rescaling, but readers apply it
        template.RescaleSlope, template.RescaleIntercept = _ds(slope), _ds(intercept)
        template.RescaleType = "US"  # unspecified: MR intensities have no physical unit
    template.WindowCenter, template.WindowWidth = _ds(centre), _ds(width)
    by_slice = np.ascontiguousarray(stored.transpose(2, 1, 0))  # (slice, row = y, column = x)
    normal = geometry.normal
    datasets = []
    for index, position in enumerate(geometry.positions):
        ds = Dataset()
        ds.update(template)  # the template's elements are shared, never mutated: per-slice ones are new
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = _ds_list(position)
        ds.SliceLocation = _ds(position @ normal)
        ds.PixelData = by_slice[index].tobytes()
        datasets.append(ds)
    return datasets


def to_stored_pixels(voxels: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Integer pixels and (slope, intercept) with ``voxels ~= slope * pixels + intercept``.

    Whole numbers that fit int16 are kept exactly (slope 1, intercept 0); anything else is spread over
    uint16, the error then at most half a step (``slope / 2``). Slope and intercept are the values of
    their DICOM decimal strings, so a reader applies exactly the mapping used here.
    """
    low, high = float(voxels.min()), float(voxels.max())
    if low >= -32768 and high <= 32767 and np.array_equal(voxels, np.rint(voxels)):
        return voxels.astype(np.int16), 1.0, 0.0
    intercept = float(_ds(low))
    slope = float(_ds((high - intercept) / 65534)) or 1.0  # one spare step absorbs the rounding of the strings
    pixels = np.rint((voxels.astype(np.float64) - intercept) / slope)  # float32 arithmetic would blur the steps
    return np.clip(pixels, 0, 65535).astype(np.uint16), slope, intercept


def _window(voxels: np.ndarray) -> tuple[float, float]:
    """Window centre and width spanning the pictures' intensity range (:func:`images.intensity_range`)."""
    low, high = intensity_range(voxels)
    return (low + high) / 2, high - low


# ---- segmentation ----------------------------------------------------------------------------------------

def _segmentation(case: ExportCase, t1_slices: list[Dataset], study: Dataset) -> hd.seg.Segmentation:
    """The case's labels on the exported T1 series, with the export's de-identification marks."""
    seg = tumour_segmentation(t1_slices, case.labels.transpose(2, 1, 0), case.release,
                              manufacturer=study.Manufacturer, model_name=study.ManufacturerModelName)
    for keyword in ("PatientIdentityRemoved", "DeidentificationMethod", "StudyDescription", "BodyPartExamined"):
        if keyword in study:
            setattr(seg, keyword, study[keyword].value)
    return seg


def tumour_segmentation(source_images: list[Dataset], frames: np.ndarray, release: Release, *,
                        manufacturer: str = "brats_plugin", model_name: str = "brats_plugin",
                        series_number: int = _SERIES_NUMBER_SEG) -> hd.seg.Segmentation:
    """A BINARY DICOM SEG of release labels on ``source_images``, one segment per release label.

    ``frames``: the labels as (frame, row, column), one frame per source image (or per frame of one
    multi-frame source image), in their order. Every label of the release is described, present or
    not, so that segment numbers mean the same labels in every case of a release (:func:`segment_number`);
    empty frames are left out. Patient, study and frame of reference come from the source images.
    """
    algorithm = hd.AlgorithmIdentificationSequence(name="brats_plugin", version=__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    segments = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=entry.name[:64],
            segmented_property_category=SEGMENT_CATEGORY,
            segmented_property_type=TISSUE_CODES[release.label(entry.value).tissue],
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
            anatomic_regions=[ANATOMIC_REGION],
            display_color=hd.color.CIELabColor.from_rgb(*entry.colour))
        for number, entry in enumerate(legend(release), start=1)
    ]
    segment_of_value = np.zeros(256, dtype=np.uint8)
    for entry in legend(release):
        segment_of_value[entry.value] = segment_number(release, entry.value)
    numbers = segment_of_value[frames]
    return hd.seg.Segmentation(
        source_images=source_images, pixel_array=numbers, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments, series_instance_uid=generate_uid(), series_number=series_number,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=manufacturer,
        manufacturer_model_name=model_name, software_versions=__version__,
        device_serial_number="none", content_label="BRATS",
        content_description=f"Tumour labels of {release.title}"[:64],
        series_description=f"Tumour segmentation ({release.title})"[:64],
        omit_empty_frames=bool(numbers.any()))


def segment_number(release: Release, value: int) -> int:
    """The SEG segment number of a release label value: its place in the release's legend, from 1."""
    return 1 + [entry.value for entry in legend(release)].index(value)


# ---- secondary capture -----------------------------------------------------------------------------------

def overlay_series(grey: np.ndarray, labels: np.ndarray, release: Release, study: Dataset,
                   geometry: SliceGeometry, sequence: str = OVERLAY_SEQUENCE,
                   series_number: int = _SERIES_NUMBER_SC) -> list[Dataset]:
    """RGB Secondary Capture slices of ``grey`` (x, y, z; the ``sequence``) with ``labels`` blended in,
    marked not for diagnosis; patient and study attributes from ``study``, one per slice of ``geometry``."""
    template = _series_dataset(study, SecondaryCaptureImageStorage, "OT", series_number,
                               f"Tumour overlay on {sequence} - {NOT_FOR_DIAGNOSIS}")
    for keyword in ("FrameOfReferenceUID", "PositionReferenceIndicator"):
        if keyword in template:
            del template[keyword]  # not part of the Secondary Capture IOD
    template.ConversionType = "WSD"
    template.ImageType = ["DERIVED", "SECONDARY"]
    template.PatientOrientation = geometry.patient_orientation()
    template.BurnedInAnnotation = "NO"  # the burned-in text identifies nobody
    template.RecognizableVisualFeatures = "NO"
    template.ImageComments = NOT_FOR_DIAGNOSIS
    template.SamplesPerPixel = 3
    template.PhotometricInterpretation = "RGB"
    template.PlanarConfiguration = 0
    template.Rows, template.Columns = geometry.rows, geometry.columns
    template.BitsAllocated = template.BitsStored = 8
    template.HighBit = 7
    template.PixelRepresentation = 0
    row_spacing, column_spacing = geometry.pixel_spacing
    if not np.isclose(row_spacing, column_spacing, rtol=1e-6):
        ratio = Fraction(row_spacing / column_spacing).limit_denominator(1000)  # integers (VR IS)
        template.PixelAspectRatio = [ratio.numerator, ratio.denominator]
    rgb = _overlay_rgb(grey, labels, release)
    shadow, letters = _text_masks(NOT_FOR_DIAGNOSIS, geometry.rows, geometry.columns)
    rgb[:, shadow] = 0
    rgb[:, letters] = 255
    datasets = []
    for index in range(rgb.shape[0]):
        ds = Dataset()
        ds.update(template)
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = index + 1
        ds.PixelData = rgb[index].tobytes()
        datasets.append(ds)
    return datasets


def _overlay_rgb(grey: np.ndarray, labels: np.ndarray, release: Release) -> np.ndarray:
    """``grey`` windowed to 8 bits with the label colours blended in: (slice, row, column, 3)."""
    centre, width = _window(grey)
    scale = np.float32(255 / width)
    windowed = np.clip((grey.transpose(2, 1, 0) - np.float32(centre - width / 2)) * scale, 0, 255)
    return blend_labels(windowed, labels.transpose(2, 1, 0), release, OVERLAY_OPACITY)


def _text_masks(text: str, rows: int, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Where ``text`` (white, with a dark shadow) covers a slice's top left corner: (shadow, letters)."""
    masks = []
    for corner in ((3, 2), (2, 1)):
        image = Image.new("1", (columns, rows))
        ImageDraw.Draw(image).text(corner, text, fill=1)
        masks.append(np.asarray(image, dtype=bool))
    return masks[0], masks[1]


# ---- writing ---------------------------------------------------------------------------------------------

def save_series(datasets: list[Dataset], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    digits = max(4, len(str(len(datasets))))
    return [save_dataset(ds, folder / f"IM{index:0{digits}d}.dcm") for index, ds in enumerate(datasets, start=1)]


def save_dataset(ds: Dataset, path: Path) -> Path:
    """Write ``ds`` as a DICOM Part 10 file (preamble, file meta, explicit VR little endian)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
