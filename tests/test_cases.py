"""Finding cases and their sequences by name, and validating them."""
import gzip
import shutil

import nibabel as nib
import numpy as np
import pytest
from conftest import SAMPLE_CASE

from brats_plugin import cases
from brats_plugin.cases import check_case, find_case, find_cases, identify_file
from brats_plugin.errors import BratsInputError, BratsWarning
from brats_plugin.releases import get_release


@pytest.mark.parametrize("name, case_id, kind", [
    ("BraTS2021_00000_t1.nii.gz", "BraTS2021_00000", "T1"),
    ("BraTS2021_00000_t1ce.nii.gz", "BraTS2021_00000", "T1Gd"),
    ("BraTS2021_00000_flair.nii.gz", "BraTS2021_00000", "FLAIR"),
    ("BraTS2021_00000_seg.nii.gz", "BraTS2021_00000", "seg"),
    ("BraTS20_Training_001_t2.nii", "BraTS20_Training_001", "T2"),
    ("Brats18_CBICA_AAB_1_t1ce.nii.gz", "Brats18_CBICA_AAB_1", "T1Gd"),
    ("BraTS-GLI-00000-000-t1n.nii.gz", "BraTS-GLI-00000-000", "T1"),
    ("BraTS-GLI-00000-000-t1c.nii.gz", "BraTS-GLI-00000-000", "T1Gd"),
    ("BraTS-GLI-00000-000-t2w.nii.gz", "BraTS-GLI-00000-000", "T2"),
    ("BraTS-GLI-00000-000-t2f.nii.gz", "BraTS-GLI-00000-000", "FLAIR"),
    ("TCGA-DU-7294_t1c_bet.nii.gz", "TCGA-DU-7294", "T1Gd"),
    ("TCGA-DU-7294_fla_bet.nii.gz", "TCGA-DU-7294", "FLAIR"),
    ("TCGA-DU-7294_seg-isen20.nii.gz", "TCGA-DU-7294", "seg"),
    ("Patient7-T1-Gd.NII.GZ", "other", "T1Gd"),
    ("patient7 FLAIR.nii", "other", "FLAIR"),
    ("T2-study_t1.nii.gz", "T2-study", "T1"),
    ("W39_1998.09.19_Segm.nii", "BraTS20_Training_355", None),
    ("notes.nii.gz", "x", None),
])
def test_identify_file(name, case_id, kind):
    assert identify_file(name, case_id) == kind


def test_identify_file_refuses_two_kinds_in_one_name():
    with pytest.raises(BratsInputError, match="case_t1_flair.nii.gz: ambiguous.*FLAIR and T1"):
        identify_file("case_t1_flair.nii.gz", "case")


def test_shared_real_case_is_recognised():
    case = find_case(SAMPLE_CASE)
    assert case.case_id == "TCGA-DU-7294"
    assert {k: p.name for k, p in case.sequences.items()} == {
        "T1": "TCGA-DU-7294_t1_bet.nii.gz", "T1Gd": "TCGA-DU-7294_t1c_bet.nii.gz",
        "T2": "TCGA-DU-7294_t2_bet.nii.gz", "FLAIR": "TCGA-DU-7294_fla_bet.nii.gz"}
    assert case.segmentation.name == "TCGA-DU-7294_seg-isen20.nii.gz"
    reference = check_case(case)
    assert reference.shape == (240, 240, 155)


def test_find_cases_walks_hgg_lgg_layout(synthetic_source):
    root = synthetic_source("2018", cases=3)
    assert sorted(p.name for p in root.iterdir()) == ["HGG", "LGG"]
    found = find_cases(root, with_segmentation=True)
    assert [c.case_id for c in found] == ["Brats18_SYN_001_1", "Brats18_SYN_002_1", "Brats18_SYN_003_1"]
    assert all(c.segmentation is not None for c in found)


def test_2020_case_355_segmentation_quirk(synthetic_source):
    root = synthetic_source("2020", cases=1)
    folder = root / "BraTS20_Training_001"
    (folder / "BraTS20_Training_001_seg.nii").rename(folder / "W39_1998.09.19_Segm.nii")
    with pytest.warns(BratsWarning, match="W39_1998.09.19_Segm.nii: taken as the segmentation"):
        case = find_case(folder, with_segmentation=True)
    assert case.segmentation.name == "W39_1998.09.19_Segm.nii"


def _case_folder(synthetic_source, release="2021"):
    root = synthetic_source(release, cases=1)
    return next(p for p in root.rglob("*") if p.is_dir() and not any(q.is_dir() for q in p.iterdir()))


def test_missing_sequence(synthetic_source):
    folder = _case_folder(synthetic_source)
    (folder / f"{folder.name}_t2.nii.gz").unlink()
    with pytest.raises(BratsInputError, match=f"{folder}: missing T2 sequence"):
        find_case(folder)


def test_extra_unknown_nifti(synthetic_source):
    folder = _case_folder(synthetic_source)
    shutil.copy(folder / f"{folder.name}_t2.nii.gz", folder / "scratch.nii.gz")
    with pytest.raises(BratsInputError, match="scratch.nii.gz: unknown NIfTI file"):
        find_case(folder)


def test_two_files_for_one_sequence(synthetic_source):
    folder = _case_folder(synthetic_source)
    shutil.copy(folder / f"{folder.name}_t2.nii.gz", folder / f"{folder.name}_T2W.nii.gz")
    with pytest.raises(BratsInputError, match="both .* read as T2"):
        find_case(folder)


def test_missing_segmentation_when_required(synthetic_source):
    folder = _case_folder(synthetic_source)
    (folder / f"{folder.name}_seg.nii.gz").unlink()
    with pytest.raises(BratsInputError, match="no segmentation file"):
        find_case(folder, with_segmentation=True)


def test_empty_source_and_duplicate_ids(tmp_path, synthetic_source):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BratsInputError, match="empty: no BraTS cases found"):
        find_cases(tmp_path / "empty")
    root = synthetic_source("2021", cases=1)
    shutil.copytree(root / "BraTS2021_00001", root / "again" / "BraTS2021_00001")
    with pytest.raises(BratsInputError, match="duplicate case id BraTS2021_00001"):
        find_cases(root)


# ---- validation -------------------------------------------------------------------------------------

def _rewrite(path, array=None, affine=None, dtype=None):
    image = nib.load(path)
    array = np.asanyarray(image.dataobj) if array is None else array
    new = nib.Nifti1Image(array.astype(dtype or array.dtype), image.affine if affine is None else affine)
    nib.save(new, path)


@pytest.fixture
def case_folder(synthetic_source):
    return _case_folder(synthetic_source)


def _check(folder):
    return check_case(find_case(folder), read_all_voxels=False)


def test_valid_case_passes(case_folder):
    assert _check(case_folder).shape == (40, 48, 36)


def test_shapes_differ(case_folder):
    path = case_folder / f"{case_folder.name}_flair.nii.gz"
    _rewrite(path, np.zeros((40, 48, 35), np.int16))
    with pytest.raises(BratsInputError, match=r"_flair.nii.gz: shape \(40, 48, 35\) differs from .*_t1.nii.gz"):
        _check(case_folder)


def test_affines_differ_beyond_tolerance(case_folder):
    path = case_folder / f"{case_folder.name}_t2.nii.gz"
    affine = nib.load(path).affine.copy()
    affine[0, 3] += 0.5
    _rewrite(path, affine=affine)
    with pytest.raises(BratsInputError, match="_t2.nii.gz: affine differs from .* by up to 0.5 mm"):
        _check(case_folder)


def test_affines_within_tolerance_pass(case_folder):
    path = case_folder / f"{case_folder.name}_t2.nii.gz"
    affine = nib.load(path).affine.copy()
    affine[0, 3] += 1e-5
    _rewrite(path, affine=affine)
    _check(case_folder)


def test_4d_image(case_folder):
    path = case_folder / f"{case_folder.name}_t1ce.nii.gz"
    _rewrite(path, np.zeros((40, 48, 36, 2), np.int16))
    with pytest.raises(BratsInputError, match="_t1ce.nii.gz: 4-D image"):
        _check(case_folder)


def test_nan_voxels(case_folder):
    path = case_folder / f"{case_folder.name}_t1.nii.gz"
    array = np.asanyarray(nib.load(path).dataobj).astype(np.float32)
    array[3, 4, 5] = np.nan
    array[3, 4, 6] = np.inf
    _rewrite(path, array)
    with pytest.raises(BratsInputError, match="_t1.nii.gz: 2 NaN or infinite voxels"):
        _check(case_folder)


def test_truncated_gzip(case_folder):
    path = case_folder / f"{case_folder.name}_t2.nii.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(BratsInputError, match="_t2.nii.gz: truncated or corrupt"):
        _check(case_folder)


def test_corrupt_gzip_body_found_when_reading_all_voxels(case_folder):
    path = case_folder / f"{case_folder.name}_t2.nii.gz"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(BratsInputError, match="_t2.nii.gz: truncated or corrupt"):
        check_case(find_case(case_folder), read_all_voxels=True)


def test_text_file_with_nifti_name(case_folder):
    path = case_folder / f"{case_folder.name}_t2.nii.gz"
    path.write_text("this is not an image\n")
    with pytest.raises(BratsInputError, match="_t2.nii.gz: not a readable NIfTI file"):
        _check(case_folder)


def test_gzip_of_text_with_nifti_name(case_folder):
    path = case_folder / f"{case_folder.name}_t2.nii.gz"
    path.write_bytes(gzip.compress(b"hello " * 100))
    with pytest.raises(BratsInputError, match="_t2.nii.gz: not a readable NIfTI file"):
        _check(case_folder)


# ---- segmentations ----------------------------------------------------------------------------------

def test_labels_outside_release(case_folder):
    path = case_folder / f"{case_folder.name}_seg.nii.gz"
    labels = np.asanyarray(nib.load(path).dataobj).copy()
    labels[0, 0, 0] = 3
    _rewrite(path, labels)
    with pytest.raises(BratsInputError, match=r"_seg.nii.gz: labels \[3\] are not BraTS 2021 labels \[0, 1, 2, 4\]"):
        cases.to_nnunet_labels(cases.read_label_values(path), get_release("2021"), path)


def test_integral_float_labels_are_fine_but_fractions_are_not(case_folder):
    path = case_folder / f"{case_folder.name}_seg.nii.gz"
    labels = np.asanyarray(nib.load(path).dataobj).astype(np.float64)
    _rewrite(path, labels)
    values = cases.read_label_values(path)
    assert values.dtype == np.uint8 and set(cases.labels_present(values)) == {0, 1, 2, 4}
    labels[1, 1, 1] = 0.5
    _rewrite(path, labels)
    with pytest.raises(BratsInputError, match="_seg.nii.gz: segmentation holds non-integer values"):
        cases.read_label_values(path)


def test_unsupported_release_named_by_folder(tmp_path):
    folder = tmp_path / "BraTS-MEN-RT-0001-1"
    folder.mkdir()
    (folder / "BraTS-MEN-RT-0001-1_t1c.nii.gz").write_bytes(b"")
    with pytest.raises(BratsInputError, match="2024-MEN-RT is not supported"):
        find_case(folder)
