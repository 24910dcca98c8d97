"""Synthetic phantoms: release layouts and labels, MRI-like contrast, geometry, determinism."""
import nibabel as nib
import numpy as np
import pytest

from brats_plugin import find_cases, get_release, synthesize_case, write_synthetic_release
from brats_plugin.dataset_conversion.synthetic import brats_affine

SHAPE = (48, 56, 40)


def _mean(case, sequence, release, tissue):
    return case.images[sequence][case.labels == release.label_of_tissue(tissue).value].mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tumour_contrast_follows_mri(seed):
    release = get_release("2021")
    case = synthesize_case(release, "x", shape=SHAPE, seed=seed)
    brain = (case.images["T1"] > 0) & (case.labels == 0)
    white = np.median(case.images["T1Gd"][brain])
    assert _mean(case, "T1Gd", release, "enhancing") > 1.3 * white  # enhancing: bright on T1Gd
    assert _mean(case, "T1Gd", release, "necrosis") < 0.6 * white  # necrosis: dark on T1Gd
    for sequence in ("T2", "FLAIR"):  # edema: bright on T2 and FLAIR
        assert _mean(case, sequence, release, "edema") > 1.4 * np.median(case.images[sequence][brain])
    assert all(image.dtype == np.int16 and image.min() >= 0 for image in case.images.values())
    assert set(np.unique(case.labels)) == {0, 1, 2, 4}


def test_tumour_lies_inside_the_brain_and_differs_between_seeds():
    release = get_release("2023-GLI")
    a = synthesize_case(release, "a", shape=SHAPE, seed=1)
    b = synthesize_case(release, "b", shape=SHAPE, seed=2)
    assert not (a.labels[a.images["T1"] == 0]).any()
    assert not np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.labels, synthesize_case(release, "a", shape=SHAPE, seed=1).labels)


def test_release_specific_tissues():
    ped = get_release("2024-PED")
    labels = set()
    for seed in range(4):
        labels |= set(np.unique(synthesize_case(ped, "p", shape=SHAPE, seed=seed).labels).tolist())
    assert labels == {0, 1, 2, 3, 4}  # ET 1, NET 2, cyst 3, edema 4
    gli = get_release("2024-GLI")
    cavity = set()
    for seed in range(4):
        cavity |= set(np.unique(synthesize_case(gli, "g", shape=SHAPE, seed=seed).labels).tolist())
    assert 4 in cavity


def test_affine_is_brats_lps_and_can_be_oblique_and_anisotropic():
    assert np.array_equal(brats_affine((240, 240, 155), (1, 1, 1)),
                          np.array([[-1, 0, 0, 0], [0, -1, 0, 239], [0, 0, 1, 0], [0, 0, 0, 1.0]]))
    oblique = brats_affine(SHAPE, (0.9, 0.9, 3.0), (10, 0, 25))
    assert np.allclose(np.linalg.norm(oblique[:3, :3], axis=0), (0.9, 0.9, 3.0))
    off_diagonal = oblique[:3, :3] - np.diag(np.diag(oblique[:3, :3]))
    assert np.abs(off_diagonal).max() > 0.1  # really oblique
    straight = brats_affine(SHAPE, (0.9, 0.9, 3.0))
    centre = (np.array(SHAPE) - 1) / 2
    assert np.allclose(oblique[:3, :3] @ centre + oblique[:3, 3], straight[:3, :3] @ centre + straight[:3, 3])


def test_anisotropic_case_keeps_anatomy_in_millimetres():
    release = get_release("2021")
    fine = synthesize_case(release, "f", shape=(48, 48, 48), spacing=(1, 1, 1), seed=4)
    coarse = synthesize_case(release, "c", shape=(48, 48, 16), spacing=(1, 1, 3), seed=4)
    fine_count, coarse_count = np.count_nonzero(fine.labels), np.count_nonzero(coarse.labels)
    assert abs(fine_count - 3 * coarse_count) < 0.15 * fine_count


def test_written_files_follow_release_naming(tmp_path):
    write_synthetic_release(tmp_path / "a", "2023-GLI", 1, shape=SHAPE)
    assert sorted(p.name for p in (tmp_path / "a" / "BraTS-GLI-00001-000").iterdir()) == [
        f"BraTS-GLI-00001-000-{t}.nii.gz" for t in ("seg", "t1c", "t1n", "t2f", "t2w")]
    write_synthetic_release(tmp_path / "b", "2020", 1, shape=SHAPE, with_segmentation=False)
    assert sorted(p.name for p in (tmp_path / "b" / "BraTS20_Training_001").iterdir()) == [
        f"BraTS20_Training_001_{t}.nii" for t in ("flair", "t1", "t1ce", "t2")]
    image = nib.load(tmp_path / "b" / "BraTS20_Training_001" / "BraTS20_Training_001_t1.nii")
    assert image.get_data_dtype() == np.int16 and image.header["sform_code"] == 1 and image.header["qform_code"] == 1
    assert find_cases(tmp_path / "b", with_segmentation=False)[0].case_id == "BraTS20_Training_001"


def test_same_seed_same_bytes(tmp_path):
    write_synthetic_release(tmp_path / "a", "2021", 2, shape=SHAPE, seed=5)
    write_synthetic_release(tmp_path / "b", "2021", 2, shape=SHAPE, seed=5)
    for path in (tmp_path / "a").rglob("*.nii.gz"):
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()
