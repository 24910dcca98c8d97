"""`brats demo` (what `make demo` runs) goes from nothing to a trained model and its predictions."""
import json
import subprocess

import pytest

from conftest import BRATS, SHARED_CASE

pytestmark = pytest.mark.integration


def test_demo_runs_end_to_end(tmp_path):
    output = tmp_path / "demo"
    completed = subprocess.run(BRATS + ["demo", "--output", str(output), "--cases", "5",
                                        "--trainer", "nnUNetTrainerGDL_demo_2epochs", "--also", str(SHARED_CASE)],
                               capture_output=True, text=True, timeout=1200)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    for step in ("[1/5] synthesising", "[2/5] converting", "[3/5] nnUNetv2_plan_and_preprocess",
                 "[4/5] nnUNetv2_train", "Epoch 1", "Generalised Dice score", "[5/5] brats predict --fast: 3 case(s)",
                 "TCGA-DU-7294: ", "Dice on the held-out", "Made:"):
        assert step in completed.stdout
    raw = output / "nnUNet_raw" / "Dataset990_BraTSDemo"
    assert json.loads((raw / "dataset.json").read_text())["numTraining"] == 5
    assert len(list((raw / "imagesTs").iterdir())) == 8
    plans = json.loads((output / "nnUNet_preprocessed" / "Dataset990_BraTSDemo" / "nnUNetPlans.json").read_text())
    assert "3d_fullres" in plans["configurations"]
    model = output / "nnUNet_results" / "Dataset990_BraTSDemo" / "nnUNetTrainerGDL_demo_2epochs__nnUNetPlans__3d_fullres"
    assert (model / "fold_0" / "checkpoint_final.pth").is_file()
    assert "whole tumor" in completed.stdout.split("Dice on the held-out")[1].splitlines()[0]
    predictions = output / "predictions"
    assert sorted(p.name for p in predictions.glob("*.nii.gz")) == [
        "BraTS2021_00006.nii.gz", "BraTS2021_00007.nii.gz", "TCGA-DU-7294.nii.gz"]
    assert len((predictions / "volumes.csv").read_text().splitlines()) == 4
