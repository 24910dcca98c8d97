"""``brats export`` and ``brats predict --export``: the exports land beside the mask, bad input is refused."""
from __future__ import annotations

import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import BRATS, SMALL_SHAPE

from brats_plugin import find_case, write_synthetic_release
from brats_plugin.errors import BratsInputError
from brats_plugin.export.formats import FORMATS, parse_formats


def brats(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run(BRATS + [str(a) for a in arguments], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def labelled_case(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export-case")
    return write_synthetic_release(root, "2021", 1, shape=SMALL_SHAPE, seed=4)[0]


def test_export_writes_every_format(labelled_case, tmp_path):
    case = find_case(labelled_case)
    result = brats("export", labelled_case, case.segmentation, "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        pattern.format(case_id=case.case_id) for pattern in FORMATS.values())
    assert len(list((out / f"{case.case_id}_dicom").rglob("*.dcm"))) == 4 * SMALL_SHAPE[2] + 1
    assert (out / f"{case.case_id}_montage.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / f"{case.case_id}.gif").read_bytes()[:4] == b"GIF8"
    assert "<html" in (out / f"{case.case_id}_viewer.html").read_text().lower()
    again = brats("export", labelled_case, case.segmentation, "-o", out, "--format", "png")  # replaces
    assert again.returncode == 0, again.stderr


def test_format_names():
    assert parse_formats("png, HTML,png") == ("png", "html")
    with pytest.raises(BratsInputError, match="choose from dicom, html, png, gif"):
        parse_formats("jpeg")


def test_export_refuses_bad_input(labelled_case, tmp_path):
    case = find_case(labelled_case)
    image = nib.load(case.segmentation)
    labels = np.asanyarray(image.dataobj)

    def refused(mask: Path, *extra, output=tmp_path / "out") -> str:
        result = brats("export", labelled_case, mask, "-o", output, "--format", "png", *extra)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
        return result.stderr

    shifted = tmp_path / "shifted.nii.gz"
    affine = image.affine.copy()
    affine[0, 3] += 5
    nib.save(nib.Nifti1Image(labels, affine), shifted)
    assert f"{shifted}: affine differs" in refused(shifted)
    smaller = tmp_path / "smaller.nii.gz"
    nib.save(nib.Nifti1Image(labels[:-2], image.affine), smaller)
    assert f"{smaller}: shape" in refused(smaller)
    foreign = tmp_path / "foreign.nii.gz"
    nib.save(nib.Nifti1Image(np.where(labels == 4, 7, labels).astype(np.uint8), image.affine, image.header), foreign)
    assert "labels [7] are not BraTS 2021 labels" in refused(foreign, "--release", "2021")
    assert "--format 'tiff'" in brats("export", labelled_case, case.segmentation, "-o", tmp_path, "--format",
                                      "tiff").stderr
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where a folder would go")
    assert "cannot write the exports here" in refused(case.segmentation, output=blocker / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.integration
def test_predict_with_exports(trained_models, tmp_path):
    source = write_synthetic_release(tmp_path / "in", "2023-MET", 1, shape=SMALL_SHAPE, seed=8,
                                     with_segmentation=False)[0]
    out = tmp_path / "predictions"
    result = brats("predict", "-i", source, "-o", out, "-m", trained_models["labels"], "--no-mirroring",
                   "--device", "cpu", "--export", "html,png,dicom", "--patient-id", "P-1", "--patient-name", "Doe^J")
    assert result.returncode == 0, result.stderr
    case_id = source.name
    for name in ("html", "png", "dicom"):
        assert (out / FORMATS[name].format(case_id=case_id)).exists()
    import pydicom
    seg = pydicom.dcmread(next((out / f"{case_id}_dicom").rglob("SEG/*.dcm")))
    assert (seg.PatientID, str(seg.PatientName)) == ("P-1", "Doe^J")
    skipped = brats("predict", "-i", source, "-o", out, "-m", trained_models["labels"], "--device", "cpu",
                    "--export", "html,png,dicom", "--skip-existing")
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout
