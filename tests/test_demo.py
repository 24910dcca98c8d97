"""`brats demo` (what `make demo` runs) goes from nothing to nnU-Net plans on a fresh folder."""
import json
import subprocess

import pytest

from conftest import BRATS

pytestmark = pytest.mark.integration


def test_demo_runs_end_to_end(tmp_path):
    output = tmp_path / "demo"
    completed = subprocess.run(BRATS + ["demo", "--output", str(output), "--cases", "2"],
                               capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    for step in ("[1/3] synthesising", "[2/3] converting", "[3/3] nnUNetv2_plan_and_preprocess", "Made:"):
        assert step in completed.stdout
    raw = output / "nnUNet_raw" / "Dataset990_BraTSDemo"
    assert json.loads((raw / "dataset.json").read_text())["numTraining"] == 2
    assert len(list((raw / "imagesTs").iterdir())) == 8
    plans = json.loads((output / "nnUNet_preprocessed" / "Dataset990_BraTSDemo" / "nnUNetPlans.json").read_text())
    assert "3d_fullres" in plans["configurations"]
