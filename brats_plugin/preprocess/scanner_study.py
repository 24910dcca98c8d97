"""Synthetic studies as a scanner writes them: DICOM series on oblique, anisotropic grids, and the truth.

For the tests and benchmarks of ``brats preprocess``: a case in atlas space (a phantom, or the real
sample case) is given a skull and scalp, posed in the scanner (a head rotation and shift, plus a little
motion between series), and sampled onto each series' own grid: 3-D T1 and T1Gd at about 1 mm, 2-D T2
and FLAIR with 5 mm slices (4 mm thick, 1 mm gap), tilted 10-25 degrees, shifted fields of view. Each
series is written as classic single-frame MR DICOM with the tags real scanners fill (timing, sequence,
acquisition type, contrast agent, acquisition order), optionally compressed; a localizer, a diffusion
series and a derived series that must be ignored are written beside them.

The truth returned is every series' pose (atlas millimetres -> scanner millimetres, RAS) and grid, so
a test knows where each voxel of the preprocessed case must come from.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from scipy import ndimage

from brats_plugin.errors import BratsInputError
from brats_plugin.geometry import LPS_TO_RAS, rotation_matrix, voxel_spacing
from brats_plugin.releases import SEQUENCES

#: Relative intensity of skull (bone, dark) and scalp (fat, bright on T1) per sequence.
SKULL = dict(zip(SEQUENCES, (0.10, 0.10, 0.08, 0.08)))
SCALP = dict(zip(SEQUENCES, (1.30, 1.30, 0.95, 0.90)))


@dataclass(frozen=True)
class SeriesSpec:
    """How a scanner acquires one series: grid, tilt, timing and naming."""

    sequence: str | None  # None: a series to ignore (its ``kind`` says which)
    description: str
    spacing: tuple[float, float, float]  # in-plane x, in-plane y, slice (mm)
    shape: tuple[int, int, int]
    tilt_degrees: tuple[float, float, float] = (0.0, 0.0, 0.0)  # grid rotation about x, y, z
    slice_thickness: float | None = None  # < slice spacing for 2-D series with gaps
    repetition_time: float = 500.0
    echo_time: float = 10.0
    inversion_time: float | None = None
    acquisition_type: str = "3D"
    scanning_sequence: str = "GR"
    contrast_agent: str = ""
    kind: str = "ORIGINAL"  # ORIGINAL, LOCALIZER, DERIVED, DIFFUSION
    left_handed: bool = False  # slices step against the row x column normal (and are stored in that order)
    enhanced: bool = False  # one enhanced multi-frame MR file instead of a file per slice


@dataclass
class StudyTruth:
    """Where every written series lies: its pose and grid, and the DICOM folder."""

    folder: Path
    poses: dict[str, np.ndarray] = field(default_factory=dict)  # sequence -> atlas RAS -> scanner RAS (4x4)
    grids: dict[str, np.ndarray] = field(default_factory=dict)  # sequence -> voxel -> scanner RAS (4x4)
    series_numbers: dict[str, int] = field(default_factory=dict)
    shapes: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # sequence -> grid shape (voxels)


def default_specs(*, named: bool = True) -> list[SeriesSpec]:
    """A typical brain-tumour protocol: 3-D T1 and T1Gd, 2-D T2 and FLAIR, plus three series to ignore.

    ``named=False`` leaves SeriesDescription empty, so that only parameters tell the sequences apart.
    """
    def name(text: str) -> str:
        return text if named else ""
    return [
        SeriesSpec(None, "AAHead_Scout", (1.6, 1.6, 8.0), (96, 96, 3), kind="LOCALIZER"),
        SeriesSpec("T1", name("t1_mprage_sag"), (1.0, 1.0, 1.0), (100, 120, 96), (4.0, 12.0, 3.0),
                   repetition_time=2000.0, echo_time=2.9, inversion_time=900.0, scanning_sequence="GR\\IR"),
        SeriesSpec("T2", name("t2_tse_tra"), (0.6, 0.6, 5.0), (180, 200, 22), (14.0, -3.0, 5.0),
                   slice_thickness=4.0, repetition_time=5000.0, echo_time=95.0, acquisition_type="2D",
                   scanning_sequence="SE", left_handed=True),
        SeriesSpec("FLAIR", name("t2_tirm_tra_dark-fluid"), (0.7, 0.7, 5.0), (160, 180, 22), (20.0, 4.0, -6.0),
                   slice_thickness=4.0, repetition_time=9000.0, echo_time=85.0, inversion_time=2500.0,
                   acquisition_type="2D", scanning_sequence="SE\\IR"),
        SeriesSpec(None, "ep2d_diff_b1000", (1.8, 1.8, 5.0), (64, 64, 20), kind="DIFFUSION",
                   repetition_time=6000.0, echo_time=90.0, acquisition_type="2D", scanning_sequence="EP"),
        SeriesSpec("T1Gd", name("t1_mprage_sag_post"), (1.0, 1.0, 1.0), (100, 120, 96), (-6.0, 10.0, 2.0),
                   repetition_time=2000.0, echo_time=2.9, inversion_time=900.0, scanning_sequence="GR\\IR",
                   contrast_agent="Gadobutrol" if named else ""),
        SeriesSpec(None, "t1_mprage_post_MPR_cor", (1.0, 1.0, 3.0), (100, 100, 20), kind="DERIVED"),
    ]


def add_skull(images: dict[str, np.ndarray], spacing: tuple[float, float, float]) -> dict[str, np.ndarray]:
    """The head around a brain-only case: 7 mm of dark CSF and skull, then 6 mm of bright scalp."""
    brain = next(iter(images.values())) != 0
    distance = ndimage.distance_transform_edt(~brain, sampling=spacing)
    skull, scalp = ~brain & (distance <= 7.0), (distance > 7.0) & (distance <= 13.0)
    result = {}
    for sequence, voxels in images.items():
        typical = float(np.median(voxels[brain]))
        head = voxels.astype(np.float32).copy()
        head[skull] = SKULL[sequence] * typical
        head[scalp] = SCALP[sequence] * typical
        result[sequence] = head
    return result


def rigid(degrees: tuple[float, float, float], shift_mm: tuple[float, float, float],
          centre: np.ndarray) -> np.ndarray:
    """A 4x4 rigid transform: rotation about ``centre``, then a shift."""
    transform = np.eye(4)
    transform[:3, :3] = rotation_matrix(degrees)
    transform[:3, 3] = centre - transform[:3, :3] @ centre + np.asarray(shift_mm)
    return transform


def write_scanner_study(folder: str | os.PathLike, images: dict[str, np.ndarray], affine: np.ndarray, *,
                        specs: list[SeriesSpec] | None = None, head_pose: np.ndarray | None = None,
                        motion_seed: int = 0, transfer_syntax: str = ExplicitVRLittleEndian,
                        skull: bool = True) -> StudyTruth:
    """Write the study of a case in atlas space (``images`` per sequence on ``affine``'s grid) into ``folder``.

    ``head_pose``: atlas -> scanner (4x4, RAS mm); each series gets that pose plus its own small motion
    (up to 1.5 degrees and 1.5 mm, seeded). Returns the truth.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specs = specs or default_specs()
    spacing = voxel_spacing(affine)
    heads = add_skull(images, spacing) if skull else {k: v.astype(np.float32) for k, v in images.items()}
    centre = (affine @ np.append((np.array(next(iter(images.values())).shape) - 1) / 2, 1))[:3]
    head_pose = np.eye(4) if head_pose is None else head_pose
    rng = np.random.default_rng(motion_seed)
    study = _study_dataset()
    truth = StudyTruth(folder)
    for number, spec in enumerate(specs, start=1):
        motion = rigid(tuple(rng.uniform(-1.5, 1.5, 3)), tuple(rng.uniform(-1.5, 1.5, 3)), centre)
        pose = head_pose @ motion
        grid = _grid(spec, pose @ np.append(centre, 1))
        source = heads[spec.sequence or "T1Gd"]
        voxels = _sample(source, affine, pose, grid, spec)
        if spec.kind == "DIFFUSION":
            voxels = voxels * 0.4
        _write_series(folder / f"series_{number:02d}", voxels, grid, spec, number, study, transfer_syntax)
        if spec.sequence:
            truth.poses[spec.sequence], truth.grids[spec.sequence] = pose, grid
            truth.series_numbers[spec.sequence], truth.shapes[spec.sequence] = number, tuple(spec.shape)
    return truth


#: Phantoms for ``brats synth --scanner``: a brain of adult size with room for skull and scalp (1 mm),
#: and scanner grids whose fields of view hold the whole posed head: spacing (mm) and shape per sequence.
SCANNER_PHANTOM_SHAPE = (150, 180, 150)
SCANNER_GRIDS = {"T1": ((1.0, 1.0, 1.0), (180, 220, 180)), "T1Gd": ((1.0, 1.0, 1.0), (180, 220, 180)),
                 "T2": ((0.9, 0.9, 5.0), (210, 250, 36)), "FLAIR": ((0.9, 0.9, 5.0), (210, 250, 36))}


def write_scanner_studies(output: str | os.PathLike, cases: int = 1, *, seed: int = 0, first_index: int = 1,
                          shape: tuple[int, int, int] = SCANNER_PHANTOM_SHAPE) -> list[Path]:
    """``brats synth --scanner``: phantom studies as a scanner writes them, with their truth.

    Case ``k`` gets ``OUT/<id>/dicom/`` (the study: :func:`write_scanner_study`, head posed by up to 12
    degrees and 10 mm), ``OUT/<id>/truth/`` (:func:`write_truth`) and ``OUT/<id>/atlas_space/`` (the
    phantom's four images and labels where they were made: the answer ``brats preprocess --atlas`` can
    be checked against). Returns the case folders.
    """
    from brats_plugin.dataset_conversion.synthetic import synthesize_case
    from brats_plugin.releases import get_release
    if cases < 1:
        raise BratsInputError(f"--cases {cases}: need at least one study")
    release = get_release("2021")
    folders = []
    for index in range(first_index, first_index + cases):
        case = synthesize_case(release, f"Scanner_{index:05d}", shape=shape, seed=seed + index)
        rng = np.random.default_rng(seed + index)
        centre = (case.affine @ np.append((np.array(shape) - 1) / 2, 1))[:3]
        pose = rigid(tuple(rng.uniform(-12, 12, 3)), tuple(rng.uniform(-10, 10, 3)), centre)
        folder = Path(output) / case.case_id
        specs = [replace(spec, spacing=SCANNER_GRIDS[spec.sequence][0], shape=SCANNER_GRIDS[spec.sequence][1])
                 if spec.sequence else spec for spec in default_specs()]
        truth = write_scanner_study(folder / "dicom", case.images, case.affine, specs=specs, head_pose=pose,
                                    motion_seed=seed + index)
        write_truth(folder / "truth", truth, case.labels, case.affine)
        (folder / "atlas_space").mkdir(parents=True, exist_ok=True)
        for sequence, voxels in case.images.items():
            nib.save(nib.Nifti1Image(voxels, case.affine), folder / "atlas_space" / f"{sequence}.nii.gz")
        nib.save(nib.Nifti1Image(case.labels, case.affine), folder / "atlas_space" / "labels.nii.gz")
        folders.append(folder)
    return folders


def native_labels(labels: np.ndarray, affine: np.ndarray, truth: StudyTruth, sequence: str = "T1Gd"
                  ) -> nib.Nifti1Image:
    """The labels of a case in atlas space (on ``affine``'s grid) where they lie on one series' own grid."""
    grid = truth.grids[sequence]
    shape = tuple(int(n) for n in truth.shapes[sequence])
    to_source = np.linalg.inv(affine) @ np.linalg.inv(truth.poses[sequence]) @ grid
    index = np.indices(shape, dtype=np.float32).reshape(3, -1)
    points = to_source[:3, :3] @ index + to_source[:3, 3:4]
    voxels = ndimage.map_coordinates(labels, points, order=0, cval=0).reshape(shape).astype(np.uint8)
    return nib.Nifti1Image(voxels, grid)


def write_truth(folder: str | os.PathLike, truth: StudyTruth, labels: np.ndarray, affine: np.ndarray) -> None:
    """``truth.json`` (every series' pose and grid, RAS mm) and the T1Gd-grid labels, into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"convention": "poses map atlas RAS mm to scanner RAS mm; grids map voxel indices to scanner RAS mm",
              "series": {sequence: {"SeriesNumber": truth.series_numbers[sequence],
                                    "pose": truth.poses[sequence].round(6).tolist(),
                                    "grid": truth.grids[sequence].round(6).tolist(),
                                    "shape": list(truth.shapes[sequence])} for sequence in truth.poses}}
    (folder / "truth.json").write_text(json.dumps(record, indent=2) + "\n")
    nib.save(native_labels(labels, affine, truth), folder / "t1ce_native_labels.nii.gz")


def _grid(spec: SeriesSpec, centre: np.ndarray) -> np.ndarray:
    """Voxel -> scanner RAS of a series: tilted, centred a little off the head."""
    grid = np.eye(4)
    grid[:3, :3] = rotation_matrix(spec.tilt_degrees) @ np.diag(spec.spacing)
    if spec.left_handed:
        grid[:3, 2] *= -1
    offset = np.array([3.0, -4.0, 2.0])  # fields of view are never centred exactly on the head
    grid[:3, 3] = centre[:3] + offset - grid[:3, :3] @ ((np.array(spec.shape) - 1) / 2)
    return grid


def _sample(source: np.ndarray, source_affine: np.ndarray, pose: np.ndarray, grid: np.ndarray,
            spec: SeriesSpec) -> np.ndarray:
    """The series' voxels: the posed head sampled at each voxel, averaged over the slice thickness."""
    to_source = np.linalg.inv(source_affine) @ np.linalg.inv(pose) @ grid
    thickness = spec.slice_thickness or spec.spacing[2]
    offsets = np.linspace(-0.4, 0.4, 5) * thickness / spec.spacing[2] if thickness > 1.5 else [0.0]
    total = np.zeros(spec.shape, np.float32)
    index = np.indices(spec.shape, dtype=np.float32).reshape(3, -1)
    for offset in offsets:
        shifted = index.copy()
        shifted[2] += offset
        points = to_source[:3, :3] @ shifted + to_source[:3, 3:4]
        total += ndimage.map_coordinates(source, points, order=1, cval=0.0).reshape(spec.shape)
    return total / len(offsets)


def _study_dataset() -> Dataset:
    study = Dataset()
    study.PatientName, study.PatientID, study.PatientBirthDate, study.PatientSex = "Phantom^Scanner", "PH0001", "", "O"
    study.StudyInstanceUID, study.FrameOfReferenceUID = generate_uid(), generate_uid()
    study.StudyDate, study.StudyTime, study.StudyID, study.AccessionNumber = "20261202", "080000", "1", "A0001"
    study.ReferringPhysicianName = ""
    return study


def _write_series(folder: Path, voxels: np.ndarray, grid: np.ndarray, spec: SeriesSpec, number: int,
                  study: Dataset, transfer_syntax: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lps = LPS_TO_RAS @ grid
    row_direction = lps[:3, 0] / spec.spacing[0]
    column_direction = lps[:3, 1] / spec.spacing[1]
    series_uid = generate_uid()
    pixels = np.clip(np.rint(voxels), 0, 32767).astype(np.uint16)
    if spec.enhanced:
        _write_enhanced(folder, pixels, lps, row_direction, column_direction, spec, number, study, series_uid)
        return
    image_type = {"ORIGINAL": ["ORIGINAL", "PRIMARY", "M", "NONE"], "LOCALIZER": ["ORIGINAL", "PRIMARY", "LOCALIZER"],
                  "DERIVED": ["DERIVED", "SECONDARY", "MPR"], "DIFFUSION": ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"]}
    for instance, k in enumerate(range(spec.shape[2]), start=1):
        ds = Dataset()
        ds.update(study)
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, generate_uid()
        ds.Modality, ds.Manufacturer, ds.MagneticFieldStrength = "MR", "brats_plugin phantom scanner", 3.0
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = series_uid, number, instance
        ds.SeriesDescription = ds.ProtocolName = spec.description
        ds.SeriesTime = ds.AcquisitionTime = f"{8 + number // 6:02d}{(number * 7) % 60:02d}00"
        ds.ImageType = image_type[spec.kind]
        ds.RepetitionTime, ds.EchoTime = spec.repetition_time, spec.echo_time
        if spec.inversion_time:
            ds.InversionTime = spec.inversion_time
        ds.ScanningSequence, ds.SequenceVariant = spec.scanning_sequence.split("\\"), ["SK", "SP"]
        ds.MRAcquisitionType = spec.acquisition_type
        if spec.contrast_agent:
            ds.ContrastBolusAgent = spec.contrast_agent
        if spec.kind == "DIFFUSION":
            ds.DiffusionBValue = 1000.0
        ds.ImageOrientationPatient = [float(f"{v:.8f}") for v in (*row_direction, *column_direction)]
        ds.ImagePositionPatient = [float(f"{v:.6f}") for v in lps[:3, 3] + k * lps[:3, 2]]
        ds.PixelSpacing = [spec.spacing[1], spec.spacing[0]]  # between rows, between columns
        ds.SliceThickness = spec.slice_thickness or spec.spacing[2]
        ds.SpacingBetweenSlices = spec.spacing[2]
        ds.Rows, ds.Columns = spec.shape[1], spec.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.ascontiguousarray(pixels[:, :, k].T).tobytes()  # (rows, columns)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = MRImageStorage, \
            ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        if transfer_syntax != ExplicitVRLittleEndian:
            ds.compress(transfer_syntax)
        ds.save_as(folder / f"IM{instance:04d}.dcm", enforce_file_format=True)


def _write_enhanced(folder: Path, pixels: np.ndarray, lps: np.ndarray, row_direction: np.ndarray,
                    column_direction: np.ndarray, spec: SeriesSpec, number: int, study: Dataset,
                    series_uid: str) -> None:
    """The series as one Enhanced MR Image (multi-frame): geometry in the functional groups."""
    enhanced_mr = "1.2.840.10008.5.1.4.1.1.4.1"
    ds = Dataset()
    ds.update(study)
    ds.SOPClassUID, ds.SOPInstanceUID = enhanced_mr, generate_uid()
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = "MR", series_uid, number, 1
    ds.SeriesDescription = ds.ProtocolName = spec.description
    ds.SeriesTime = ds.AcquisitionTime = f"{8 + number // 6:02d}{(number * 7) % 60:02d}00"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.MRAcquisitionType = spec.acquisition_type
    if spec.contrast_agent:
        ds.ContrastBolusAgent = spec.contrast_agent
    timing, measures, orientation, value = Dataset(), Dataset(), Dataset(), Dataset()
    timing.RepetitionTime = spec.repetition_time
    measures.PixelSpacing = [spec.spacing[1], spec.spacing[0]]
    measures.SliceThickness = spec.slice_thickness or spec.spacing[2]
    orientation.ImageOrientationPatient = [float(f"{v:.8f}") for v in (*row_direction, *column_direction)]
    value.RescaleSlope, value.RescaleIntercept, value.RescaleType = 1, 0, "US"
    echo = Dataset()
    echo.EffectiveEchoTime = spec.echo_time
    shared = Dataset()
    shared.MRTimingAndRelatedParametersSequence, shared.PixelMeasuresSequence = [timing], [measures]
    shared.PlaneOrientationSequence, shared.PixelValueTransformationSequence = [orientation], [value]
    shared.MREchoSequence = [echo]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for k in range(spec.shape[2]):
        position, frame = Dataset(), Dataset()
        position.ImagePositionPatient = [float(f"{v:.6f}") for v in lps[:3, 3] + k * lps[:3, 2]]
        frame.PlanePositionSequence = [position]
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.NumberOfFrames = spec.shape[2]
    ds.Rows, ds.Columns = spec.shape[1], spec.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.ascontiguousarray(pixels.transpose(2, 1, 0)).tobytes()  # (frames, rows, columns)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = enhanced_mr, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(folder / "IM0001.dcm", enforce_file_format=True)
