"""benchmarks/gpu.py, the GPU check: what can run here runs (no GPU exists where this is developed).

Without CUDA the script must say so and exit 0; with ``--device cpu --tiny`` it runs every step (nnU-Net's
training loop for both our trainers, the loss under autocast, the iteration timing, the predict commands
against nnU-Net's) on small synthetic cases, so the day a GPU runs it, only the device is new.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


def _run(*arguments: str, **environment: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, timeout=1500,
                          env=dict(os.environ, **environment))


def test_without_cuda_the_gpu_check_says_so_and_exits_0():
    completed = _run(CUDA_VISIBLE_DEVICES="")
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "no CUDA device here" in completed.stdout and "| check |" not in completed.stdout


@pytest.mark.integration
def test_every_step_of_the_gpu_check_runs_on_the_cpu(tmp_path):
    completed = _run("--device", "cpu", "--tiny", "--work", str(tmp_path / "gpu"))
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    rows = dict(re.findall(r"^\| (.+?) \| (.+) \|$", completed.stdout, re.MULTILINE)[1:])  # after the header
    trained = [key for key in rows if key.startswith("train nnUNetTrainer")]
    assert [key.split()[1] for key in trained] == ["nnUNetTrainerGDL", "nnUNetTrainerGDLCE"]
    for key in trained:  # nnU-Net's own loop ran and logged finite losses (learning needs the GPU's epochs)
        first, last = map(float, re.search(r"train loss (\S+) -> (\S+),", rows[key]).groups())
        assert 0 < first < 2 and 0 < last < 2 and "autocast off, torch.compile off" in rows[key]
    assert rows["GDL under bfloat16 autocast"].startswith("ok")
    iteration = next(value for key, value in rows.items() if key.startswith("training iteration"))
    assert 0.2 < float(re.search(r"ratio (\S+)$", iteration).group(1)) < 5
    predictions = [value for key, value in rows.items() if key.startswith("predict ")]
    assert len(predictions) == 2 and all(re.search(r"ratio \d+\.\d\d", value) for value in predictions)
    for setting in ("ours_default", "ours_fast", "stock_default", "stock_fast"):  # every command wrote its mask
        assert len(list((tmp_path / "gpu" / "predictions" / setting).glob("*.nii.gz"))) == 1, setting
