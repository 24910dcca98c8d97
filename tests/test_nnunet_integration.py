"""What `brats convert` writes passes nnU-Net's own `nnUNetv2_plan_and_preprocess --verify_dataset_integrity`."""
import json
import subprocess

import pytest

from brats_plugin import convert_release
from brats_plugin.nnunet_commands import nnunet_executable, small_machine_environment

pytestmark = pytest.mark.integration


def test_plan_and_preprocess_verifies_converted_datasets(synthetic_source, nnunet_folders):
    convert_release(synthetic_source("2021", cases=3), 601, regions=True,
                    test_source=synthetic_source("2021", cases=1, images_only=True, first_index=90), progress=False)
    convert_release(synthetic_source("2020", cases=3), 602, regions=False, progress=False)
    env = small_machine_environment()
    completed = subprocess.run(
        [nnunet_executable("nnUNetv2_plan_and_preprocess"), "-d", "601", "602", "--verify_dataset_integrity",
         "-c", "3d_fullres", "-np", "1"],
        capture_output=True, text=True, timeout=900, env=env)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "Error" not in completed.stdout
    for dataset, name in ((601, "BraTS2021"), (602, "BraTS2020")):
        preprocessed = nnunet_folders["nnUNet_preprocessed"] / f"Dataset{dataset}_{name}"
        plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
        assert "3d_fullres" in plans["configurations"]
        cases = sorted(p.name for p in (preprocessed / "nnUNetPlans_3d_fullres").glob("*_seg.b2nd"))
        assert len(cases) == 3, cases
    fingerprint = json.loads((nnunet_folders["nnUNet_preprocessed"] / "Dataset602_BraTS2020"
                              / "dataset_fingerprint.json").read_text())
    assert len(fingerprint["foreground_intensity_properties_per_channel"]) == 4
