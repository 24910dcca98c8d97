"""Benchmark: ``brats postprocess tune`` over 5 folds of BraTS-size cross-validation predictions, how its time
grows with the number of cases, beside stock nnU-Net's own post-processing search
(``nnunetv2.postprocessing.remove_connected_components.determine_postprocessing``: largest-component
removal judged by Dice) on the same folders; and applying the rules to one BraTS-size case.

The cases are made from the real sample case's segmentation (240x240x155, 1 mm): each reference is it,
shifted by a few voxels; each prediction is the reference shifted by one more voxel along one axis, with
three 8-voxel false-positive specks and, in every third case, the enhancing tumour replaced by a small
false one (the reference's enhancing tumour made necrosis). Tuned with ``-j`` workers (default 2, the
machine's cores); each size is timed once (tuning is minutes, not noise-sized).
Usage: python benchmarks/postprocess.py [--cases 25 50 250] [-j 2] [--no-stock]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from sample_study import machine_and_date

from brats_plugin.cases import to_nnunet_labels
from brats_plugin.inference.labels import label_map
from brats_plugin.postprocessing import load_rules, tune_model
from brats_plugin.releases import get_release

SAMPLE_SEGMENTATION = (Path(__file__).resolve().parents[1] / "tests" / "data" / "TCGA-DU-7294"
                       / "TCGA-DU-7294_seg-isen20.nii.gz")
FOLDS = 5
DATASET = "Dataset881_PostprocessBenchmark"
TRAINER = "nnUNetTrainerGDL__nnUNetPlans__3d_fullres"


def write_cross_validation(root: Path, cases: int) -> Path:
    """The results folder of a BraTS 2021 region model with ``cases`` validation predictions in 5 folds;
    ``root/nnUNet_raw`` holds the references (see the module). Returns the results folder."""
    release = get_release("2021")
    source = nib.load(SAMPLE_SEGMENTATION)
    segmentation = to_nnunet_labels(np.asarray(source.dataobj).astype(np.uint8), release, SAMPLE_SEGMENTATION)
    references = root / "nnUNet_raw" / DATASET / "labelsTr"
    references.mkdir(parents=True)
    model = root / "nnUNet_results" / DATASET / TRAINER
    model.mkdir(parents=True)
    labels, order = release.nnunet_labels(regions=True)
    (model / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1", "1": "T1Gd", "2": "T2", "3": "FLAIR"}, "labels": labels,
        "regions_class_order": order, "numTraining": cases, "file_ending": ".nii.gz",
        "brats": {"release": "2021"}}))
    (model / "plans.json").write_text(json.dumps({"dataset_name": DATASET, "plans_name": "nnUNetPlans",
                                                  "image_reader_writer": "NibabelIO"}))
    edema, necrosis, enhancing = (release.label_of_tissue(t).nnunet for t in ("edema", "necrosis", "enhancing"))
    rng = np.random.default_rng(0)
    for index in range(cases):
        reference = np.roll(segmentation, tuple(rng.integers(-4, 5, size=3)), axis=(0, 1, 2))
        if index % 3 == 2:
            reference[reference == enhancing] = necrosis
        prediction = np.roll(reference, 1, axis=int(rng.integers(0, 3)))
        if index % 3 == 2:
            core = np.argwhere(prediction == necrosis)
            if len(core):
                x, y, z = core[len(core) // 2]
                prediction[x - 1:x + 2, y - 1:y + 2, z - 1:z + 2] = enhancing  # a 27-voxel false ET
        for corner in rng.integers(10, 140, size=(3, 3)):
            prediction[tuple(slice(c, c + 2) for c in corner)] = edema
        fold = model / f"fold_{index % FOLDS}" / "validation"
        fold.mkdir(parents=True, exist_ok=True)
        name = f"BENCH_{index:04d}.nii.gz"
        nib.save(nib.Nifti1Image(prediction, source.affine), fold / name)
        nib.save(nib.Nifti1Image(reference, source.affine), references / name)
    return model


def stock_search_seconds(model: Path, root: Path, jobs: int) -> float:
    """Stock nnU-Net's post-processing search over the same predictions (all folds in one folder)."""
    from nnunetv2.postprocessing.remove_connected_components import determine_postprocessing
    folder = root / "stock_cv"
    folder.mkdir()
    for path in model.glob("fold_*/validation/*.nii.gz"):
        os.link(path, folder / path.name)
    plans = json.loads((model / "plans.json").read_text())
    plans["configurations"] = {}
    started = time.perf_counter()
    determine_postprocessing(str(folder), str(root / "nnUNet_raw" / DATASET / "labelsTr"), plans,
                             str(model / "dataset.json"), num_processes=jobs, keep_postprocessed_files=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, nargs="+", default=[25, 50, 250])
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--no-stock", action="store_true", help="skip stock nnU-Net's search")
    args = parser.parse_args()
    print(f"# post-processing tuning, {machine_and_date()}, -j {args.jobs}")
    print(f"{'cases':>6}{'write (s)':>11}{'tune (s)':>10}{'s/case':>8}{'stock nnU-Net (s)':>19}{'ratio':>7}  rules")
    for cases in args.cases:
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            started = time.perf_counter()
            model = write_cross_validation(root, cases)
            written = time.perf_counter() - started
            os.environ["nnUNet_raw"] = str(root / "nnUNet_raw")
            result = tune_model(model, jobs=args.jobs)
            stock = None if args.no_stock else stock_search_seconds(model, root, args.jobs)
            ratio = f"{result.seconds / stock:>7.2f}" if stock else f"{'-':>7}"
            print(f"{cases:>6}{written:>11.1f}{result.seconds:>10.1f}{result.seconds / cases:>8.2f}"
                  f"{stock if stock else float('nan'):>19.1f}{ratio}  {'; '.join(result.rules.describe()) or '-'}",
                  flush=True)
            rules = load_rules(model)
            image = nib.load(next(model.glob("fold_0/validation/*.nii.gz")))
            nnunet_mask, affine = np.asarray(image.dataobj), image.affine
    release = get_release("2021")
    mask = label_map(release, release).apply(nnunet_mask)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        rules.apply(mask, release, affine)
        times.append(time.perf_counter() - started)
    print(f"applying the rules to one 240x240x155 case: {sorted(times)[2]:.3f} s (median of 5; goal <= 0.5 s)")
    print(result.table())


if __name__ == "__main__":
    main()
