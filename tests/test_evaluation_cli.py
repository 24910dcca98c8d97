"""`brats evaluate` end to end: the real command on small synthetic releases, its files and exit codes."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess

import nibabel as nib
import numpy as np
from conftest import BRATS


def _run(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([*BRATS, "evaluate", *arguments], capture_output=True, text=True, timeout=120)


def _predictions(source, folder, case_ids, shift: int = 0):
    """Reference segmentations copied as ``<case>.nii.gz`` predictions, optionally shifted by voxels."""
    folder.mkdir()
    for case_id in case_ids:
        image = nib.load(next((source / case_id).glob("*seg.nii.gz")))
        labels = np.roll(np.asarray(image.dataobj), shift, axis=0)
        nib.save(nib.Nifti1Image(labels, image.affine, image.header), folder / f"{case_id}.nii.gz")
    return folder


def test_evaluate_writes_cases_csv_and_summary_and_prints_a_table(synthetic_source, tmp_path):
    source = synthetic_source("2021", cases=3)
    predictions = _predictions(source, tmp_path / "pred", ["BraTS2021_00001", "BraTS2021_00002"], shift=1)
    completed = _run(str(predictions), str(source), "-o", str(tmp_path / "report"))
    assert completed.returncode == 0, completed.stderr
    assert "brats: warning: 1 case(s) with a reference only, not evaluated: BraTS2021_00003" in completed.stderr
    assert "BraTS 2021 (RSNA-ASNR-MICCAI): 2 case(s) evaluated" in completed.stdout
    assert "with a reference only (not evaluated): BraTS2021_00003" in completed.stdout
    with open(tmp_path / "report" / "cases.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["case"], r["region"]) for r in rows[:7]] == [
        ("BraTS2021_00001", region) for region in
        ("WT", "TC", "ET", "label 1 NCR/NET", "label 2 ED", "label 4 ET", "GDS")]
    wt = rows[0]
    assert 0.5 < float(wt["dice"]) < 1.0 and float(wt["hd95"]) == 1.0  # shifted by one 1-mm voxel
    assert float(wt["volume_pred_ml"]) == float(wt["volume_ref_ml"]) > 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["release"] == "2021" and summary["cases"] == 2
    assert set(summary["statistics"]["WT"]["dice"]) == {"mean", "std", "median", "p25", "p75", "n"}


def test_evaluate_lesionwise_on_a_2023_release(synthetic_source, tmp_path):
    source = synthetic_source("2023-MET", cases=2)
    predictions = _predictions(source, tmp_path / "pred", ["BraTS-MET-00001-000", "BraTS-MET-00002-000"])
    completed = _run(str(predictions), str(source), "--lesionwise", "-o", str(tmp_path / "report"))
    assert completed.returncode == 0, completed.stderr
    assert "LW Dice" in completed.stdout
    with open(tmp_path / "report" / "cases.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    regions = [r for r in rows if r["region"] in ("WT", "TC", "ET")]
    assert all(float(r["lesionwise_dice"]) == 1.0 and float(r["lesionwise_hd95"]) == 0.0 for r in regions)
    assert all(r["lesions_fp"] == "0" and r["lesions_fn"] == "0" for r in regions)
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["release"] == "2023-MET"
    assert summary["lesionwise_parameters"] == {"dilation_voxels": 1, "volume_threshold_mm3": 2.0}


def test_bad_input_exits_2_with_one_line(synthetic_source, tmp_path):
    source = synthetic_source("2021", cases=1)
    predictions = _predictions(source, tmp_path / "pred", ["BraTS2021_00001"])
    image = nib.load(predictions / "BraTS2021_00001.nii.gz")
    cropped = np.asarray(image.dataobj)[:-1]
    nib.save(nib.Nifti1Image(cropped, image.affine), predictions / "BraTS2021_00001.nii.gz")
    for arguments, message in (
        ([str(predictions), str(source)], "BraTS2021_00001.nii.gz: shape"),
        ([str(predictions), str(source), "--release", "2030"], "release '2030' is unknown"),
        ([str(source), str(tmp_path / "nothing")], "nothing: no such file or folder"),
        ([str(predictions), str(source), "--release", "2023-GLI"], "named like BraTS 2021"),
    ):
        completed = _run(*arguments, "-o", str(tmp_path / "report"))
        assert completed.returncode == 2, (arguments, completed.stderr)
        assert completed.stderr.startswith("brats: error: ") and message in completed.stderr
        assert len(completed.stderr.strip().splitlines()) == 1 and "Traceback" not in completed.stderr
    shutil.rmtree(predictions)
    predictions.mkdir()
    (predictions / "BraTS2021_00042.nii.gz").write_bytes((source / "BraTS2021_00001" /
                                                           "BraTS2021_00001_seg.nii.gz").read_bytes())
    completed = _run(str(predictions), str(source), "-o", str(tmp_path / "other_report"))
    assert completed.returncode == 2 and "no case pairs between" in completed.stderr
    assert not (tmp_path / "other_report").exists()  # refused before anything is written
