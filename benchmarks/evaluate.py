"""Benchmark: `brats evaluate`'s metrics against panoptica (the library behind the official brats-evaluation).

The real sample case's segmentation (240x240x155, 1 mm) is compared with a perturbed copy (shifted by
``--shift`` voxels along y, eroded once). Timed, each REPEATS times (median):
  * ours, the whole case: ``evaluate_case`` (read and check both files, WT/TC/ET and every label: Dice,
    HD95, sensitivity, specificity, volumes; generalised Dice score);
  * ours, the regions only: ``mask_metrics`` on the WT/TC/ET masks already in memory;
  * panoptica's metric functions on the same masks: ``Metric.DSC`` and ``Metric.HD95`` (with the spacing);
  * panoptica's semantic evaluator per region (global Dice and HD95, what a panoptica user runs).
Both panoptica paths fail on an empty mask (the sample has no ET), so they and the matching "ours" time
run on the non-empty regions only;
  * ours, lesion-wise: ``lesionwise_metrics`` of the regions with BraTS 2023 GLI's parameters.
Values are printed beside the times so that agreement is visible; ratios are panoptica time / ours.
Usage: python benchmarks/evaluate.py [--repeats 5] [--shift 2]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
from scipy import ndimage

from brats_plugin.evaluation import evaluate_case, lesionwise_metrics, mask_metrics, voxel_spacing
from brats_plugin.releases import get_release

SAMPLE_CASE = Path(__file__).resolve().parents[1] / "tests" / "data" / "TCGA-DU-7294"
REFERENCE = SAMPLE_CASE / "TCGA-DU-7294_seg-isen20.nii.gz"


def median_seconds(work: Callable[[], object], repeats: int) -> tuple[float, object]:
    """The median wall time of ``work`` over ``repeats`` runs, and its last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shift", type=int, default=2, help="voxels along y (default 2)")
    args = parser.parse_args()

    import panoptica
    from panoptica.utils.citation_reminder import disable_citation_reminder
    disable_citation_reminder()

    release = get_release("2021")
    image = nib.load(REFERENCE)
    reference_labels = np.asarray(image.dataobj).astype(np.uint8)
    perturbed = np.roll(reference_labels, args.shift, axis=1)
    perturbed[~ndimage.binary_erosion(perturbed > 0)] = 0
    spacing = voxel_spacing(image.affine)
    regions = {r.abbreviation: (np.isin(perturbed, r.labels), np.isin(reference_labels, r.labels))
               for r in release.regions}
    print(f"{REFERENCE.name}: shape {image.shape}, spacing {spacing}, labels "
          f"{sorted(np.unique(reference_labels).tolist())}; prediction shifted {args.shift} voxels along y, eroded")

    with tempfile.TemporaryDirectory() as folder:
        prediction = Path(folder) / "TCGA-DU-7294.nii.gz"
        nib.save(nib.Nifti1Image(perturbed, image.affine, image.header), prediction)
        case_time, case = median_seconds(lambda: evaluate_case(prediction, REFERENCE, release), args.repeats)
    ours_time, ours = median_seconds(lambda: {name: mask_metrics(p, r, image.affine)
                                              for name, (p, r) in regions.items()}, args.repeats)
    non_empty = {name: masks for name, masks in regions.items() if masks[0].any() and masks[1].any()}
    ours_non_empty_time, _ = median_seconds(lambda: {name: mask_metrics(p, r, image.affine)
                                                     for name, (p, r) in non_empty.items()}, args.repeats)

    def panoptica_functions() -> dict[str, tuple[float, float]]:
        return {name: (panoptica.Metric.DSC(reference_arr=r, prediction_arr=p),
                       panoptica.Metric.HD95(reference_arr=r, prediction_arr=p, voxelspacing=spacing))
                for name, (p, r) in non_empty.items()}

    evaluator = panoptica.Panoptica_Evaluator(
        expected_input=panoptica.InputType.SEMANTIC,
        instance_approximator=panoptica.ConnectedComponentsInstanceApproximator(),
        instance_matcher=panoptica.NaiveThresholdMatching(), instance_metrics=[],
        global_metrics=[panoptica.Metric.DSC, panoptica.Metric.HD95])

    def panoptica_evaluator() -> dict[str, tuple[float, float]]:
        results = {name: evaluator.evaluate(p.astype(np.uint8), r.astype(np.uint8), voxelspacing=spacing)["ungrouped"]
                   for name, (p, r) in non_empty.items()}
        return {name: (result.global_bin_dsc, result.global_bin_hd95) for name, result in results.items()}

    functions_time, functions = median_seconds(panoptica_functions, args.repeats)
    evaluator_time, evaluated = median_seconds(panoptica_evaluator, args.repeats)
    gli = get_release("2023-GLI").lesionwise
    lesion_time, lesions = median_seconds(lambda: {name: lesionwise_metrics(p, r, image.affine, gli)
                                                   for name, (p, r) in regions.items()}, args.repeats)

    print(f"\n{'region':<8}{'ours Dice':>12}{'ours HD95':>11}{'panoptica Dice':>16}{'HD95':>8}"
          f"{'evaluator Dice':>16}{'HD95':>8}{'lesion-wise Dice':>18}{'HD95':>8}")
    for name in regions:
        theirs = functions.get(name, (float("nan"), float("nan")))
        via_evaluator = evaluated.get(name, (float("nan"), float("nan")))
        print(f"{name:<8}{ours[name].dice:>12.6f}{ours[name].hd95:>11.3f}{theirs[0]:>16.6f}{theirs[1]:>8.3f}"
              f"{via_evaluator[0]:>16.6f}{via_evaluator[1]:>8.3f}{lesions[name].dice:>18.4f}"
              f"{lesions[name].hd95:>8.2f}")
    print(f"\nmedian of {args.repeats} runs")
    print(f"  ours, whole case (read + 3 regions + {len(release.labels)} labels + GDS): {case_time * 1000:8.1f} ms")
    print(f"  ours, {len(regions)} regions in memory:                       {ours_time * 1000:8.1f} ms")
    print(f"  ours, {len(non_empty)} non-empty regions in memory:             {ours_non_empty_time * 1000:8.1f} ms")
    print(f"  panoptica metric functions, {len(non_empty)} non-empty regions:   {functions_time * 1000:8.1f} ms")
    print(f"  panoptica semantic evaluator, {len(non_empty)} non-empty regions: {evaluator_time * 1000:8.1f} ms")
    print(f"  ours, lesion-wise ({len(regions)} regions, 2023 GLI parameters): {lesion_time * 1000:8.1f} ms")
    print(f"ratio panoptica functions / ours (non-empty regions): {functions_time / ours_non_empty_time:.1f}x")
    print(f"ratio panoptica evaluator / ours (non-empty regions): {evaluator_time / ours_non_empty_time:.1f}x")
    print(f"ratio panoptica evaluator (non-empty regions) / ours whole case: {evaluator_time / case_time:.1f}x")


if __name__ == "__main__":
    main()
