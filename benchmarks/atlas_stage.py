"""Benchmark: the last stage of the T1Gd -> atlas registration: rigid, rigid + scale, or affine?

The sample case as a scanner study (benchmarks/sample_study.py). Its T1Gd is registered to MNI152
three ways: rigid (6 parameters), similarity (rigid + one isotropic scale, 7) and affine (12, the
pipeline's). For each the script prints:
- seconds and the final metric (Mattes mutual information, lower is better);
- what the transform does to a tumour: its volume on the atlas grid relative to the patient's
  (1 / det of the linear part) and its shape's distortion, the largest over the smallest stretch of
  the linear part (1.00: the shape is kept; the affine may shear and stretch);
- the QC figure: the fraction of the atlas's brain interior on the T1Gd's head (>= 0.93 passes);
- the WT of the sample's segmentation carried onto the atlas grid, against the affine's (Dice), and its
  volume there.
Usage: python benchmarks/atlas_stage.py
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from sample_study import load_sample_case, machine_and_date, write_sample_study

from brats_plugin.preprocess import choose_series, read_series, scan_study
from brats_plugin.preprocess.atlas import MNI152, load_atlas
from brats_plugin.preprocess.qc import head_mask
from brats_plugin.preprocess.registration import ATLAS_STAGES, brain_interior, register_to_atlas, resample_onto, to_sitk
from brats_plugin.preprocess.scanner_study import native_labels

WT_LABELS = (1, 2, 4)  # the sample's segmentation is in BraTS 2017-2022 labels


def main() -> None:
    print(machine_and_date())
    sample = load_sample_case()
    atlas = load_atlas(MNI152)
    reference = to_sitk(atlas.image)
    interior = brain_interior(atlas.brain_mask, reference.GetSpacing())
    with tempfile.TemporaryDirectory() as work:
        truth = write_sample_study(sample, Path(work) / "study")
        picked, _ = choose_series(scan_study(Path(work) / "study"))
        t1c = read_series(picked["T1Gd"])
    moving = to_sitk(t1c)
    tumour = native_labels(sample.labels, sample.affine, truth)  # on the native T1Gd grid
    wt = to_sitk(tumour, np.isin(np.asarray(tumour.dataobj), WT_LABELS).astype(np.float32))
    atlas_voxel_ml = abs(np.linalg.det(atlas.image.affine[:3, :3])) / 1000
    native_ml = float(sitk.GetArrayViewFromImage(wt).sum()) * abs(np.linalg.det(tumour.affine[:3, :3])) / 1000
    print(f"WT on the native T1Gd: {native_ml:.1f} mL")
    print(f"{'last stage':<11} {'seconds':>8} {'metric':>8} {'volume x':>9} {'distortion':>10} {'brain on head':>13} "
          f"{'WT atlas mL':>11}")
    results = {}
    for stage in ATLAS_STAGES:
        started = time.perf_counter()
        registration = register_to_atlas(reference, atlas.brain_mask, moving, last_stage=stage)
        seconds = time.perf_counter() - started
        linear = np.asarray(registration.transform.GetMatrix()).reshape(3, 3)  # atlas -> T1Gd
        stretches = np.linalg.svd(linear, compute_uv=False)
        head = head_mask(np.nan_to_num(resample_onto(reference, moving, registration.transform, linear=True)))
        on_head = float((interior & head).sum() / interior.sum())
        carried = sitk.Resample(wt, reference, registration.transform, sitk.sitkNearestNeighbor, 0.0)
        results[stage] = sitk.GetArrayFromImage(carried).transpose(2, 1, 0) > 0.5
        atlas_ml = results[stage].sum() * atlas_voxel_ml
        print(f"{stage:<11} {seconds:8.1f} {registration.metric:8.4f} {1 / abs(np.linalg.det(linear)):9.3f} "
              f"{stretches.max() / stretches.min():10.3f} {on_head:13.1%} {atlas_ml:11.1f}")
    affine_wt = results["affine"]
    for stage in ATLAS_STAGES[:-1]:
        dice = 2 * (results[stage] & affine_wt).sum() / (results[stage].sum() + affine_wt.sum())
        print(f"WT Dice, {stage} against affine (atlas grid): {dice:.3f}")


if __name__ == "__main__":
    main()
