"""Benchmark: what a scanner study costs beyond today's atlas-space prediction, step by step.

The real sample case is written as a scanner study (benchmarks/sample_study.py) and goes through the
steps that ``brats predict -i STUDY --export dicom`` adds around the network: ``brats preprocess``
(a child process onto the default MNI152 atlas), the mask carried back onto the native T1Gd
(:func:`labels_to_native`), and the SEG + SR (+ overlay series) on the original T1Gd series. The
sample's own segmentation, carried onto the atlas grid through the truth and the kept transform,
stands in for the network's output (the network's time is the same as for any BraTS case: see
benchmarks/predict.py). Prints each step, their sum against the issue's 60 s goal, and the peak memory.
The native mask is also compared with the segmentation where the scanner saw it (Dice per region).
Usage: python benchmarks/back_to_patient.py
"""
from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from sample_study import load_sample_case, machine_and_date, write_sample_study

from brats_plugin.cases import find_case
from brats_plugin.export.case import load_export_case
from brats_plugin.export.study import write_study_dicom
from brats_plugin.preprocess.native import labels_to_native, way_back
from brats_plugin.preprocess.registration import to_sitk
from brats_plugin.preprocess.scanner_study import native_labels
from brats_plugin.releases import get_release

GOAL_SECONDS = 60.0
RELEASE = get_release("2021")


def main() -> None:
    print(machine_and_date())
    sample = load_sample_case()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        truth = write_sample_study(sample, work / "study")
        expected = native_labels(sample.labels, sample.affine, truth)  # the tumour where the scanner saw it
        steps: dict[str, float] = {}

        started = time.perf_counter()
        case_folder = work / "case" / "TCGA-DU-7294"
        completed = subprocess.run([sys.executable, "-m", "brats_plugin.cli", "preprocess", str(work / "study"),
                                    "-o", str(case_folder)], capture_output=True, text=True)
        if completed.returncode:
            sys.exit(completed.stderr)
        steps["brats preprocess (child process)"] = time.perf_counter() - started

        mask = work / "atlas_mask.nii.gz"  # the stand-in for the network's output on the atlas grid
        nib.save(_onto_atlas(expected, case_folder), mask)

        started = time.perf_counter()
        atlas_mask = nib.load(mask)
        native = labels_to_native(np.asarray(atlas_mask.dataobj, np.uint8), atlas_mask.affine, case_folder, RELEASE)
        steps["labels back onto the native T1Gd"] = time.perf_counter() - started

        started = time.perf_counter()
        export_case = load_export_case(find_case(case_folder), mask, RELEASE, native=native)
        steps["reading the case and the kept headers"] = time.perf_counter() - started
        started = time.perf_counter()
        write_study_dicom(export_case.study, RELEASE, work / "dicom")
        steps["SEG + SR on the original T1Gd"] = time.perf_counter() - started
        started = time.perf_counter()
        write_study_dicom(export_case.study, RELEASE, work / "dicom_sc", secondary_capture=True)
        sc_seconds = time.perf_counter() - started

        for step, seconds in steps.items():
            print(f"  {step:<40} {seconds:7.1f} s")
        total = sum(steps.values())
        print(f"  {'total beyond the atlas-space prediction':<40} {total:7.1f} s "
              f"({total / GOAL_SECONDS:.2f}x the {GOAL_SECONDS:g} s goal)")
        print(f"  (SEG + SR + overlay series: {sc_seconds:.1f} s)")
        peak_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"peak memory: preprocess {peak_child:.2f} GiB, back-mapping and export {peak_self:.2f} GiB")
        found = np.asarray(native.dataobj)
        dice = {}
        for region in RELEASE.regions:
            a, b = np.isin(found, region.labels), np.isin(np.asarray(expected.dataobj), region.labels)
            dice[region.abbreviation] = (f"Dice {2 * (a & b).sum() / (a.sum() + b.sum()):.3f}, volume "
                                         f"{a.sum() / b.sum() - 1:+.1%}" if b.any() else "none in this case")
        print("native mask against the segmentation where the scanner saw it (through atlas space and back): "
              + "; ".join(f"{k} {v}" for k, v in dice.items()))


def _onto_atlas(native: nib.Nifti1Image, case_folder: Path) -> nib.Nifti1Image:
    """Labels on the native T1Gd grid -> the case's atlas grid, through the kept transform (nearest)."""
    reference = nib.load(case_folder / "TCGA-DU-7294_t1ce.nii.gz")
    transform = sitk.ReadTransform(str(way_back(case_folder)[1]))
    moving = to_sitk(native, np.asarray(native.dataobj, np.float32))
    grid = to_sitk(reference, np.zeros(reference.shape, np.float32))
    labels = sitk.GetArrayFromImage(sitk.Resample(moving, grid, transform, sitk.sitkNearestNeighbor, 0.0))
    return nib.Nifti1Image(labels.transpose(2, 1, 0).astype(np.uint8), reference.affine)


if __name__ == "__main__":
    main()
