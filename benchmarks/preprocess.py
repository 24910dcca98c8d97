"""Benchmark: `brats preprocess` on a scanner study of the real sample case's size.

The sample case (240x240x155, 1 mm, brain only) is given a skull and scalp, posed in the scanner and
written as DICOM the way a scanner acquires it: 3-D T1 and T1Gd at 1 mm (192x240x176), 2-D T2 at
0.45x0.45x5 mm (448x512x30) and FLAIR at 0.5x0.5x5 mm (384x448x30), tilted 4-20 degrees, plus a
localizer, a diffusion and a derived series to be ignored. Then ``brats preprocess`` runs in a child
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
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from brats_plugin.cases import find_case
from brats_plugin.preprocess.registration import transform_points
from brats_plugin.preprocess.scanner_study import default_specs, rigid, write_scanner_study

SAMPLE_CASE = Path(__file__).resolve().parents[1] / "tests" / "data" / "TCGA-DU-7294"
SCANNER_GRIDS = {"T1": ((1.0, 1.0, 1.0), (192, 240, 176)), "T1Gd": ((1.0, 1.0, 1.0), (192, 240, 176)),
                 "T2": ((0.45, 0.45, 5.0), (448, 512, 30)), "FLAIR": ((0.5, 0.5, 5.0), (384, 448, 30))}
TOKENS = {"T1": "t1", "T2": "t2", "FLAIR": "flair"}


def main() -> None:
    print(f"{platform.node()}, {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"{date.today().isoformat()}")
    case = find_case(SAMPLE_CASE)
    first = nib.load(case.sequences["T1"])
    images = {s: np.asarray(nib.load(p).dataobj, dtype=np.float32) for s, p in case.sequences.items()}
    centre = (first.affine @ np.append((np.array(first.shape) - 1) / 2, 1))[:3]
    specs = [replace(s, spacing=SCANNER_GRIDS[s.sequence][0], shape=SCANNER_GRIDS[s.sequence][1])
             if s.sequence else s for s in default_specs()]
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        started = time.perf_counter()
        truth = write_scanner_study(work / "study", images, first.affine, specs=specs,
                                    head_pose=rigid((5.0, -3.0, 7.0), (4.0, -6.0, 9.0), centre))
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
        brain = np.argwhere(images["T1Gd"] > 0)[::200]
        world = brain @ first.affine[:3, :3].T + first.affine[:3, 3]
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
