"""DICOM export: MR series geometry and intensities, the DICOM SEG read back voxel for voxel, the overlay
series, patient options, atomic writing, and the real validators (dciodvfy, dcentvfy) on every kind of file.
"""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from conftest import SAMPLE_CASE, SMALL_SHAPE
from pydicom.uid import UID

from brats_plugin.cases import find_case
from brats_plugin.dataset_conversion import write_synthetic_release
from brats_plugin.dataset_conversion.synthetic import brats_affine
from brats_plugin.errors import BratsInputError
from brats_plugin.export import dicom
from brats_plugin.export.case import load_export_case
from brats_plugin.export.dicom import (
    MR_FOLDERS,
    SC_FOLDER,
    SEG_FILE,
    SEG_FOLDER,
    TISSUE_CODES,
    DicomPatient,
    SliceGeometry,
    to_stored_pixels,
    write_dicom,
)
from brats_plugin.export.legend import legend
from brats_plugin.releases import RELEASES, SEQUENCES
from brats_plugin.version import __version__

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
OBLIQUE = dict(spacing=(0.9, 1.1, 2.5), rotation_degrees=(12, -7, 20))


def _export_case(root: Path, release: str = "2021", seed: int = 5, **grid):
    [folder] = write_synthetic_release(root, release, 1, shape=SMALL_SHAPE, seed=seed, **grid)
    case = find_case(folder)
    return load_export_case(case, case.segmentation, release)


@pytest.fixture(scope="module", params=["plain", "oblique"])
def exported(request, tmp_path_factory):
    """(case, folder, files): a synthetic case (plain, or oblique and anisotropic) written with an overlay."""
    root = tmp_path_factory.mktemp(f"dicom-{request.param}")
    case = _export_case(root / "source", **(OBLIQUE if request.param == "oblique" else {}))
    files = write_dicom(case, root / "dicom", secondary_capture=True)
    return case, root / "dicom", files


def _series(folder: Path) -> list[pydicom.Dataset]:
    return sorted((pydicom.dcmread(p) for p in folder.glob("*.dcm")), key=lambda ds: int(ds.InstanceNumber))


def _label_of_segment(seg: hd.seg.Segmentation, case) -> np.ndarray:
    """Segment number -> release label value, decoded from the SEG's own segment labels."""
    table = np.zeros(256, dtype=np.uint8)
    for number in seg.get_segment_numbers():
        name = seg.get_segment_description(number).segment_label
        table[number] = next(label.value for label in case.release.labels if label.name == name)
    return table


def _seg_labels_on_t1(folder: Path, case) -> np.ndarray:
    """The SEG read back with highdicom onto the T1 slices it references, as (x, y, z) release labels."""
    seg = hd.seg.segread(folder / SEG_FOLDER / SEG_FILE)
    t1 = _series(folder / MR_FOLDERS["T1"])
    by_slice = seg.get_pixels_by_source_instance([ds.SOPInstanceUID for ds in t1], combine_segments=True)
    return _label_of_segment(seg, case)[by_slice].transpose(2, 1, 0)


# ---- layout -------------------------------------------------------------------------------------------------

def test_writes_four_mr_series_a_seg_and_an_overlay_series(exported):
    case, folder, files = exported
    slices = case.shape[2]
    assert sorted(files) == sorted(p for p in folder.rglob("*") if p.is_file())
    for sequence in SEQUENCES:
        assert len(list((folder / MR_FOLDERS[sequence]).glob("*.dcm"))) == slices
    assert (folder / SEG_FOLDER / SEG_FILE).is_file()
    assert len(list((folder / SC_FOLDER).glob("*.dcm"))) == slices
    assert len(files) == 5 * slices + 1
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


# ---- MR series ----------------------------------------------------------------------------------------------

def _affine_from_slices(slices: list[pydicom.Dataset]) -> np.ndarray:
    """Voxel (column, row, slice) -> LPS mm, rebuilt from the DICOM attributes alone."""
    orientation = np.array(slices[0].ImageOrientationPatient, dtype=float)
    row_spacing, column_spacing = (float(v) for v in slices[0].PixelSpacing)
    positions = np.array([ds.ImagePositionPatient for ds in slices], dtype=float)
    step = (positions[-1] - positions[0]) / (len(slices) - 1)
    assert np.allclose(positions, positions[0] + np.arange(len(slices))[:, None] * step, atol=1e-4)
    affine = np.eye(4)
    affine[:3, 0] = orientation[:3] * column_spacing
    affine[:3, 1] = orientation[3:] * row_spacing
    affine[:3, 2] = step
    affine[:3, 3] = positions[0]
    return affine


def test_mr_geometry_rebuilt_from_dicom_equals_the_nifti_affine_in_lps(exported):
    case, folder, _ = exported
    expected = RAS_TO_LPS @ case.affine
    for sequence in SEQUENCES:
        slices = _series(folder / MR_FOLDERS[sequence])
        assert (slices[0].Columns, slices[0].Rows, len(slices)) == case.shape
        assert np.allclose(_affine_from_slices(slices), expected, atol=1e-4)
        assert float(slices[0].SpacingBetweenSlices) == pytest.approx(case.spacing[2], abs=1e-6)


def test_mr_pixels_are_the_nifti_voxels(exported):
    case, folder, _ = exported
    for sequence in SEQUENCES:
        slices = _series(folder / MR_FOLDERS[sequence])
        volume = np.stack([ds.pixel_array for ds in slices]).transpose(2, 1, 0)
        slope, intercept = float(slices[0].get("RescaleSlope", 1)), float(slices[0].get("RescaleIntercept", 0))
        assert slope == 1 and intercept == 0  # the synthetic images are int16: kept exactly, no rescaling
        assert np.array_equal(volume, case.images[sequence])


def test_float_intensities_survive_within_half_a_quantisation_step(tmp_path):
    case = _export_case(tmp_path / "source")
    rng = np.random.default_rng(0)
    floats = {s: (v * 0.0173 - 4.2 + rng.normal(0, 0.01, v.shape)).astype(np.float32) for s, v in case.images.items()}
    write_dicom(dataclasses.replace(case, images=floats), tmp_path / "dicom")
    for sequence in SEQUENCES:
        slices = _series(tmp_path / "dicom" / MR_FOLDERS[sequence])
        slope, intercept = float(slices[0].RescaleSlope), float(slices[0].RescaleIntercept)
        volume = np.stack([ds.pixel_array for ds in slices]).transpose(2, 1, 0) * slope + intercept
        error = np.abs(volume - floats[sequence].astype(np.float64)).max()
        assert 0 < error <= slope / 2 * (1 + 1e-6)
        assert slope < np.ptp(floats[sequence]) / 65000  # the whole uint16 range is used


@pytest.mark.parametrize("voxels", [np.full((3, 4, 5), 7.25), np.linspace(-1e-3, 2e-3, 60).reshape(3, 4, 5),
                                    np.linspace(-5e4, 9e4, 60).reshape(3, 4, 5)])
def test_stored_pixels_keep_every_value_within_half_a_step(voxels):
    pixels, slope, intercept = to_stored_pixels(voxels)
    assert pixels.dtype == np.uint16
    assert np.abs(pixels * slope + intercept - voxels).max() <= max(slope / 2 * (1 + 1e-6), 1e-12)


def test_window_centre_and_width_cover_the_brain_intensities(exported):
    case, folder, _ = exported
    first = _series(folder / MR_FOLDERS["T2"])[0]
    low = float(first.WindowCenter) - float(first.WindowWidth) / 2
    high = float(first.WindowCenter) + float(first.WindowWidth) / 2
    brain = case.images["T2"][case.images["T2"] > 0]
    assert low <= np.percentile(brain, 5) and np.percentile(brain, 95) <= high


def test_sheared_grids_are_refused():
    affine = np.eye(4)
    affine[0, 1] = 0.3  # the second axis leans towards the first
    with pytest.raises(BratsInputError, match="sheared"):
        SliceGeometry.from_affine(affine, (4, 4, 4))


def test_left_handed_grid_keeps_its_slice_order():
    affine = brats_affine((8, 9, 10), (1.0, 1.0, 2.0))
    affine[:3, 2] *= -1  # slices run downwards
    geometry = SliceGeometry.from_affine(affine, (8, 9, 10))
    assert np.allclose(np.diff(geometry.positions, axis=0), (RAS_TO_LPS @ affine)[:3, 2])


# ---- SEG ----------------------------------------------------------------------------------------------------

def test_seg_read_back_on_the_t1_slices_is_the_mask_voxel_for_voxel(exported):
    case, folder, _ = exported
    assert len(np.unique(case.labels)) == 4  # background and the three tumour labels
    assert np.array_equal(_seg_labels_on_t1(folder, case), case.labels)


def test_seg_geometry_read_by_highdicom_lies_on_the_nifti_grid(exported):
    """highdicom's own volume (its affine from the SEG's plane positions) maps onto the mask's voxels."""
    case, folder, _ = exported
    seg = hd.seg.segread(folder / SEG_FOLDER / SEG_FILE)
    volume = seg.get_volume(combine_segments=True)
    to_voxels = np.linalg.inv(RAS_TO_LPS @ case.affine) @ volume.affine  # volume index -> our voxel index
    assert np.allclose(to_voxels, np.rint(to_voxels), atol=1e-4)
    to_voxels = np.rint(to_voxels).astype(int)
    assert sorted(np.abs(to_voxels[:3, :3]).sum(axis=0)) == [1, 1, 1]  # a permutation of the axes
    index = np.indices(volume.spatial_shape).reshape(3, -1)
    x, y, z = to_voxels[:3, :3] @ index + to_voxels[:3, 3:]
    labels_there = case.labels[x, y, z]
    assert np.array_equal(_label_of_segment(seg, case)[volume.array.reshape(-1)], labels_there)
    assert labels_there.any()


def test_seg_describes_every_label_with_its_codes_colour_and_algorithm(exported):
    case, folder, _ = exported
    seg = hd.seg.segread(folder / SEG_FOLDER / SEG_FILE)
    assert seg.SegmentationType == "BINARY"
    assert seg.FrameOfReferenceUID == _series(folder / MR_FOLDERS["T1"])[0].FrameOfReferenceUID
    assert case.release.title in seg.SeriesDescription
    entries = legend(case.release)
    assert seg.get_segment_numbers() == list(range(1, len(entries) + 1))
    for number, entry in enumerate(entries, start=1):
        item = seg.SegmentSequence[number - 1]
        assert item.SegmentLabel == entry.name
        tissue = case.release.label(entry.value).tissue
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == TISSUE_CODES[tissue].value
        category = item.SegmentedPropertyCategoryCodeSequence[0]
        assert (category.CodingSchemeDesignator, category.CodeValue) == ("SCT", "49755003")
        assert (item.AnatomicRegionSequence[0].CodingSchemeDesignator,
                item.AnatomicRegionSequence[0].CodeValue) == ("SCT", "12738006")
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        assert item.SegmentAlgorithmName == "brats_plugin"
        algorithm = item.SegmentationAlgorithmIdentificationSequence[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("brats_plugin", __version__)
        assert list(item.RecommendedDisplayCIELabValue) == list(hd.color.CIELabColor.from_rgb(*entry.colour).value)


def test_the_codes_of_the_issue():
    assert (TISSUE_CODES["necrosis"].scheme_designator, TISSUE_CODES["necrosis"].value) == ("SCT", "6574001")
    assert (TISSUE_CODES["edema"].scheme_designator, TISSUE_CODES["edema"].value) == ("SCT", "79654002")
    assert (TISSUE_CODES["enhancing"].scheme_designator, TISSUE_CODES["enhancing"].value) == ("NCIt", "C113842")


def test_every_tissue_of_every_release_has_a_code():
    tissues = {label.tissue for release in RELEASES.values() for label in release.labels}
    assert tissues <= set(TISSUE_CODES)


@pytest.mark.parametrize("release", ["2024-GLI", "2024-PED", "2023-MET"])
def test_releases_with_other_labels_round_trip(tmp_path, release):
    case = _export_case(tmp_path / "source", release, seed=1)
    write_dicom(case, tmp_path / "dicom")
    assert np.array_equal(_seg_labels_on_t1(tmp_path / "dicom", case), case.labels)
    seg = hd.seg.segread(tmp_path / "dicom" / SEG_FOLDER / SEG_FILE)
    assert [item.SegmentLabel for item in seg.SegmentSequence] == [label.name for label in case.release.labels]


def test_absent_labels_keep_their_segment_and_an_empty_mask_still_writes(tmp_path):
    case = _export_case(tmp_path / "source")
    without_edema = np.where(case.labels == case.release.label_of_tissue("edema").value, 0, case.labels)
    for name, labels in (("absent", without_edema.astype(np.uint8)), ("empty", np.zeros_like(case.labels))):
        changed = dataclasses.replace(case, labels=labels)
        write_dicom(changed, tmp_path / name)
        seg = hd.seg.segread(tmp_path / name / SEG_FOLDER / SEG_FILE)
        assert len(seg.SegmentSequence) == len(case.release.labels)
        assert np.array_equal(_seg_labels_on_t1(tmp_path / name, changed), labels)


# ---- one study, UIDs, patient -------------------------------------------------------------------------------

def _all_datasets(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.rglob("*.dcm"))]


def test_one_study_one_frame_of_reference_and_valid_unique_uids(exported):
    _, folder, _ = exported
    datasets = _all_datasets(folder)
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    assert len({ds.FrameOfReferenceUID for ds in datasets if "FrameOfReferenceUID" in ds}) == 1
    assert len({ds.SeriesInstanceUID for ds in datasets}) == len(SEQUENCES) + 2
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(datasets)
    for ds in datasets:
        for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
            assert UID(uid).is_valid
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def test_without_options_the_patient_is_a_deidentified_placeholder(exported):
    case, folder, _ = exported
    for ds in _all_datasets(folder):
        assert ds.PatientID == case.case_id
        assert str(ds.PatientName) == f"Anonymous^{case.case_id}"
        assert ds.PatientBirthDate == "" and ds.PatientSex == ""
        assert ds.PatientIdentityRemoved == "YES" and ds.DeidentificationMethod
        assert ds.StudyDate == "" and ds.AccessionNumber == ""


def test_patient_options_reach_every_file(tmp_path):
    case = _export_case(tmp_path / "source")
    patient = DicomPatient(patient_id="12345", patient_name="Müller^Jörg", study_description="Follow-up MRI",
                           accession_number="ACC42")
    write_dicom(case, tmp_path / "dicom", patient=patient, secondary_capture=True)
    for ds in _all_datasets(tmp_path / "dicom"):
        assert (ds.PatientID, str(ds.PatientName)) == ("12345", "Müller^Jörg")
        assert (ds.StudyDescription, ds.AccessionNumber) == ("Follow-up MRI", "ACC42")
        assert ds.PatientIdentityRemoved == "NO" and "DeidentificationMethod" not in ds


@pytest.mark.parametrize("options, message", [
    ({"patient_id": "x" * 65}, "patient id"),
    ({"patient_name": "Doe\\Jane"}, "backslash"),
    ({"accession_number": "12345678901234567"}, "16 characters"),
])
def test_option_values_dicom_cannot_hold_are_refused(options, message):
    with pytest.raises(BratsInputError, match=message):  # when given, before any work
        DicomPatient(**options)


# ---- atomic writing -----------------------------------------------------------------------------------------

def test_existing_folder_is_kept_unless_overwrite(tmp_path):
    case = _export_case(tmp_path / "source")
    target = tmp_path / "dicom"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(BratsInputError, match="not empty"):
        write_dicom(case, target)
    assert (target / "keep.txt").read_text() == "mine"
    files = write_dicom(case, target, overwrite=True)
    assert not (target / "keep.txt").exists()
    assert sorted(files) == sorted(p for p in target.rglob("*") if p.is_file())


def test_a_failure_half_way_leaves_nothing_behind(tmp_path, monkeypatch):
    case = _export_case(tmp_path / "source")
    previous = write_dicom(case, tmp_path / "dicom")

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(dicom, "_segmentation", broken)  # after the four MR series were written
    with pytest.raises(OSError, match="disk full"):
        write_dicom(case, tmp_path / "dicom", overwrite=True)
    assert sorted(p for p in (tmp_path / "dicom").rglob("*") if p.is_file()) == sorted(previous)
    with pytest.raises(OSError, match="disk full"):
        write_dicom(case, tmp_path / "other")
    assert not (tmp_path / "other").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ---- secondary capture --------------------------------------------------------------------------------------

def test_overlay_series_is_rgb_marked_not_for_diagnosis_with_the_label_colours(exported):
    case, folder, _ = exported
    slices = _series(folder / SC_FOLDER)
    first = slices[0]
    assert first.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert first.PhotometricInterpretation == "RGB" and first.SamplesPerPixel == 3
    assert "NOT FOR DIAGNOSIS" in first.SeriesDescription and first.ImageComments == "NOT FOR DIAGNOSIS"
    row_spacing, column_spacing = dicom.SliceGeometry.from_affine(case.affine, case.shape).pixel_spacing
    ratio = [int(v) for v in first.get("PixelAspectRatio", [1, 1])]
    assert ratio[0] / ratio[1] == pytest.approx(row_spacing / column_spacing, rel=1e-3)
    rgb = np.stack([ds.pixel_array for ds in slices])  # (slice, row, column, 3)
    labels = case.labels.transpose(2, 1, 0)
    below_text = np.zeros(labels.shape, dtype=bool)
    below_text[:, 14:, :] = True  # the burned-in text occupies the first rows
    grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    assert grey[(labels == 0) & below_text].all()
    for entry in legend(case.release):
        inside = (labels == entry.value) & below_text
        mean = rgb[inside].mean(axis=0)
        # the blended colour leans the way the legend colour does (e.g. green edema: G above R and B)
        assert np.argmax(mean - mean.mean()) == np.argmax(np.array(entry.colour) - np.mean(entry.colour))
    assert (rgb[:, :14, :, :] == 255).all(axis=-1).any(axis=(1, 2)).all()  # white text on every slice


# ---- the real validators ------------------------------------------------------------------------------------

def _dciodvfy_errors(path: Path) -> list[str]:
    completed = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (completed.stdout + completed.stderr).splitlines() if line.startswith("Error")]


def test_dciodvfy_reports_no_error_on_any_kind_of_file(exported):
    _, folder, _ = exported
    samples = [folder / MR_FOLDERS[s] / "IM0002.dcm" for s in SEQUENCES]
    samples += [folder / SEG_FOLDER / SEG_FILE, folder / SC_FOLDER / "IM0001.dcm"]
    for path in samples:
        assert _dciodvfy_errors(path) == [], path


def test_dciodvfy_does_report_a_broken_file(exported, tmp_path):
    _, folder, _ = exported
    ds = pydicom.dcmread(folder / MR_FOLDERS["T1"] / "IM0002.dcm")
    del ds.PixelSpacing
    ds.save_as(tmp_path / "broken.dcm")
    assert _dciodvfy_errors(tmp_path / "broken.dcm")


def _dcentvfy(paths: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run(["dcentvfy", *map(str, paths)], capture_output=True, text=True, timeout=120)


def test_dcentvfy_finds_every_file_consistent(exported):
    _, folder, files = exported
    completed = _dcentvfy(files)
    assert completed.returncode == 0 and "Error" not in completed.stdout + completed.stderr, completed.stderr


def test_dcentvfy_does_report_an_inconsistent_patient(exported, tmp_path):
    _, folder, _ = exported
    copy = shutil.copytree(folder, tmp_path / "copy")
    ds = pydicom.dcmread(copy / MR_FOLDERS["T2"] / "IM0003.dcm")
    ds.PatientName = "Someone^Else"
    ds.save_as(copy / MR_FOLDERS["T2"] / "IM0003.dcm")
    completed = _dcentvfy(sorted(copy.rglob("*.dcm")))
    assert completed.returncode != 0 and "PatientName" in completed.stderr


# ---- the real sample case -----------------------------------------------------------------------------------

def test_real_case_round_trips(tmp_path):
    case_folder = find_case(SAMPLE_CASE)
    case = load_export_case(case_folder, SAMPLE_CASE / "TCGA-DU-7294_seg-isen20.nii.gz", "2021")
    write_dicom(case, tmp_path / "dicom")
    assert np.array_equal(_seg_labels_on_t1(tmp_path / "dicom", case), case.labels)
    slices = _series(tmp_path / "dicom" / MR_FOLDERS["FLAIR"])
    assert np.allclose(_affine_from_slices(slices), RAS_TO_LPS @ case.affine, atol=1e-4)
    slope, intercept = float(slices[0].get("RescaleSlope", 1)), float(slices[0].get("RescaleIntercept", 0))
    volume = np.stack([ds.pixel_array for ds in slices]).transpose(2, 1, 0) * slope + intercept
    assert np.abs(volume - case.images["FLAIR"]).max() <= slope / 2 * (1 + 1e-6)
