"""`brats demo` (what `make demo` runs) goes from nothing to a trained model that learned, and its predictions;
that model then segments a scanner study (DICOM, skull on) and returns the result onto its own T1Gd.

It runs the demo exactly as `make demo` does (the default trainer and number of cases), so the
learning checked here is the learning a newcomer sees.
"""
import json
import subprocess

import nibabel as nib
import numpy as np
import pytest
from conftest import BRATS, SAMPLE_CASE
from scanner_support import make_phantom, write_phantom_study

from brats_plugin.demo import DEMO_TRAINER as TRAINER
from brats_plugin.preprocess.scanner_study import native_labels
from brats_plugin.releases import get_release

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2700)]  # the demo alone takes 5-8 minutes here


#: An untrained network scores about 0.1 here; a trained one above 0.95 on every region in most runs
#: (benchmarks/demo.py, 25 epochs: 5 of 6 runs). A short CPU run can still, by chance, leave one region
#: behind (seen: WT at 0.36 while TC and ET reached 0.9), so one run must show learning in the mean and the
#: best region; the benchmark measures the reliability over seeds (docs/benchmarks.md).
MIN_MEAN_DICE, MIN_BEST_DICE = 0.5, 0.8


def test_demo_runs_end_to_end_and_learns(tmp_path):
    output = tmp_path / "demo"
    completed = subprocess.run(BRATS + ["demo", "--output", str(output), "--also", str(SAMPLE_CASE)],
                               capture_output=True, text=True, timeout=1800)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    for step in ("[1/6] synthesising", "[2/6] converting", "[3/6] nnUNetv2_plan_and_preprocess",
                 "[4/6] nnUNetv2_train", "Epoch 1", "Generalised Dice score",
                 "[5/6] brats predict --fast --export html,png: 3 held-out case(s)", "1 real case(s)",
                 "TCGA-DU-7294: ", "[6/6] brats evaluate", "Mean Dice on 3 held-out synthetic cases: WT ",
                 "Open a viewer in any browser", "Made:"):
        assert step in completed.stdout
    raw = output / "nnUNet_raw" / "Dataset990_BraTSDemo"
    assert json.loads((raw / "dataset.json").read_text())["numTraining"] == 6
    plans = json.loads((output / "nnUNet_preprocessed" / "Dataset990_BraTSDemo" / "nnUNetPlans.json").read_text())
    assert "3d_fullres" in plans["configurations"]
    model = output / "nnUNet_results" / "Dataset990_BraTSDemo" / f"{TRAINER}__nnUNetPlans__3d_fullres"
    assert (model / "fold_0" / "checkpoint_final.pth").is_file()
    held_out = ["BraTS2021_00007", "BraTS2021_00008", "BraTS2021_00009"]
    predictions = output / "predictions"
    assert sorted(p.name for p in predictions.glob("*.nii.gz")) == [f"{c}.nii.gz" for c in held_out]
    assert len((predictions / "volumes.csv").read_text().splitlines()) == 4
    for case_id in held_out:
        assert (predictions / f"{case_id}_viewer.html").is_file() and (predictions / f"{case_id}_montage.png").is_file()
    assert (output / "real" / "TCGA-DU-7294.nii.gz").is_file()
    assert (output / "real" / "TCGA-DU-7294_viewer.html").is_file()
    rows = (output / "evaluation" / "cases.csv").read_text().splitlines()
    assert rows[0].startswith("case,region,dice,hd95") and {r.split(",")[0] for r in rows[1:]} == set(held_out)
    summary = json.loads((output / "evaluation" / "summary.json").read_text())
    assert summary["cases"] == 3 and summary["unpaired"] == {"prediction_only": [], "reference_only": []}
    dice = {region: summary["statistics"][region]["dice"]["mean"] for region in ("WT", "TC", "ET")}
    assert sum(dice.values()) / 3 >= MIN_MEAN_DICE and max(dice.values()) >= MIN_BEST_DICE, dice

    scanner_dice = segment_a_scanner_study(model, tmp_path)
    assert sum(scanner_dice.values()) / 3 >= MIN_MEAN_DICE and max(scanner_dice.values()) >= MIN_BEST_DICE, \
        scanner_dice


def segment_a_scanner_study(model, folder) -> dict[str, float]:
    """``model`` on a phantom's scanner study (DICOM, skull on, oblique, 5 mm T2/FLAIR), through
    ``brats predict -i STUDY``: every output written; WT/TC/ET Dice on the native T1Gd against the truth."""
    (folder / "phantom").mkdir()
    phantom = make_phantom(folder / "phantom")
    truth = write_phantom_study(phantom, folder / "P30")
    out = folder / "from_the_scanner"
    completed = subprocess.run(BRATS + ["predict", "-i", str(folder / "P30"), "-m", str(model), "-o", str(out),
                                        "--atlas", str(phantom[1]), "--fast", "--export", "dicom,html,png"],
                               capture_output=True, text=True, timeout=1800)
    assert completed.returncode == 0, completed.stderr[-2000:]
    for name in ("P30.nii.gz", "P30_native.nii.gz", "P30.json", "volumes.csv", "P30_dicom/SEG/seg.dcm",
                 "P30_dicom/SR/sr.dcm", "P30_viewer.html", "P30_montage.png", "preprocessed/P30/P30_qc.png"):
        assert (out / name).is_file(), name
    found = np.asarray(nib.load(out / "P30_native.nii.gz").dataobj)
    expected = np.asarray(native_labels(phantom[0].labels, phantom[0].affine, truth).dataobj)
    dice = {}
    for region in get_release("2021").regions:  # against the tumour where the scanner saw it
        a, b = np.isin(found, region.labels), np.isin(expected, region.labels)
        dice[region.abbreviation] = 2 * (a & b).sum() / (a.sum() + b.sum())
    return dice
