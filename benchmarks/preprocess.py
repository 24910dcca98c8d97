"""Benchmark: `brats preprocess` on a scanner study of the real sample case's size.

The sample case is written as a scanner study (benchmarks/sample_study.py). Then ``brats preprocess`` runs in a child
process onto the default MNI152 atlas, and the script prints the time of each step (reading,
registration, resampling, brain extraction, writing), the child's peak memory, and how far each
sequence's registration to the T1Gd lands from the known truth (mean over brain voxels, mm).

The anchor users would otherwise pick, BrainLes preprocessing (ANTs, the BraTS orchestrator's), cannot
run here: it downloads its atlases and brain-extraction weights at run time, and this machine has no
network beyond package registries; so there is no ratio against it.
Usage: python benchmarks/preprocess.py
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from sample_study import load_sample_case, machine_and_date, write_sample_study

from brats_plugin.preprocess.registration import transform_points

TOKENS = {"T1": "t1", "T2": "t2", "FLAIR": "flair"}


def main() -> None:
    print(machine_and_date())
    sample = load_sample_case()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        started = time.perf_counter()
        truth = write_sample_study(sample, work / "study")
        print(f"study written: {sum(1 for _ in (work / 'study').rglob('*.dcm'))} DICOM files, "
              f"{time.perf_counter() - started:.1f} s (not part of the figures below)")
        started = time.perf_counter()
        completed = subprocess.run([sys.executable, "-m", "brats_plugin.cli", "preprocess", str(work / "study"),
                                    "-o", str(work / "case" / "TCGA-DU-7294")], capture_output=True, text=True)
        wall = time.perf_counter() - started
        if completed.returncode:
            sys.exit(completed.stderr)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # kB -> GiB
        record = json.loads((work / "case" / "TCGA-DU-7294" / "preprocessing" / "preprocess.json").read_text())
        print(f"brats preprocess: {wall:.1f} s wall (interpreter and imports included), peak {peak:.2f} GiB")
        for step, seconds in record["seconds"].items():
            print(f"  {step:<18} {seconds:7.1f} s")
        print("registration to the T1Gd against the truth (mean displacement over brain voxels):")
        transforms = work / "case" / "TCGA-DU-7294" / "preprocessing" / "transforms"
        brain = np.argwhere(sample.images["T1Gd"] > 0)[::200]
        world = brain @ sample.affine[:3, :3].T + sample.affine[:3, 3]
        t1c_points = world @ truth.poses["T1Gd"][:3, :3].T + truth.poses["T1Gd"][:3, 3]
        for sequence, token in TOKENS.items():
            expected = world @ truth.poses[sequence][:3, :3].T + truth.poses[sequence][:3, 3]
            found_transform = sitk.ReadTransform(str(transforms / f"{token}_from_t1ce.tfm"))
            found = transform_points(found_transform, t1c_points)
            print(f"  {sequence:<6} {np.linalg.norm(found - expected, axis=1).mean():.2f} mm")
        print(f"final metrics: {record['registration']['final_metric']}")
        print("anchor: BrainLes preprocessing (ANTs) cannot run here (downloads atlases and weights at run time)")


if __name__ == "__main__":
    main()
