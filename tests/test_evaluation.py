"""BraTS metrics: hand-computable masks, the legacy edge cases, lesion-wise scores, pairing across namings,
the report files, agreement with panoptica (the library behind the official brats-evaluation) and with
the trainers' generalised Dice score."""
from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from conftest import SAMPLE_CASE
from scipy import ndimage

from brats_plugin.errors import BratsInputError
from brats_plugin.evaluation import (
    EMPTY_MASK_HD95_MM,
    LESION_PENALTY_MM,
    case_id_of_mask,
    evaluate_case,
    evaluate_folders,
    generalized_dice_score_of_label_counts,
    hausdorff95,
    lesionwise_metrics,
    mask_metrics,
    pair_masks,
    surface_distances,
    voxel_spacing,
)
from brats_plugin.evaluation.metrics import surface
from brats_plugin.releases import LesionwiseParameters, get_release

REAL_SEGMENTATION = SAMPLE_CASE / "TCGA-DU-7294_seg-isen20.nii.gz"


def _affine(spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    return np.diag([*spacing, 1.0])


def _cube(shape=(20, 20, 20), start=(5, 5, 5), size=10) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(s, s + size) for s in start)] = True
    return mask


def _save(array: np.ndarray, path, affine=None) -> None:
    nib.save(nib.Nifti1Image(np.asarray(array, dtype=np.uint8), _affine() if affine is None else affine), path)


def _blobs(shape, seed: int, fraction: float) -> np.ndarray:
    """Random smooth blobs filling about ``fraction`` of the image (some touch its faces)."""
    field = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma=3)
    return field > np.quantile(field, 1 - fraction)


# ---- per-mask metrics on hand-computable masks ------------------------------------------------------

def test_shifted_cube_dice_sensitivity_specificity_and_volumes():
    reference = _cube()  # 1000 voxels in 8000
    prediction = np.roll(reference, 2, axis=0)  # 800 shared, 200 extra, 200 missed
    metrics = mask_metrics(prediction, reference, _affine((0.5, 1.0, 2.0)))  # 1 mm^3 voxels
    assert metrics.dice == pytest.approx(0.8)
    assert metrics.sensitivity == pytest.approx(0.8)
    assert metrics.specificity == pytest.approx(6800 / 7000)
    assert metrics.volume_pred_ml == pytest.approx(1.0)
    assert metrics.volume_ref_ml == pytest.approx(1.0)


def test_specificity_counts_the_whole_image_when_masks_are_a_crop():
    reference, prediction = _cube(), np.roll(_cube(), 2, axis=0)
    assert mask_metrics(prediction, reference, _affine(), total_voxels=1_000_000).specificity == \
        pytest.approx((1_000_000 - 1200) / (1_000_000 - 1000))


@pytest.mark.parametrize("axis, spacing, expected", [
    (2, (1.0, 1.0, 2.5), 10.0), (0, (0.5, 3.0, 3.0), 2.0), (1, (1.0, 0.8, 1.0), 3.2)])
def test_hd95_of_parallel_plates_is_their_distance_in_mm(axis, spacing, expected):
    """Two one-voxel-thick plates 4 voxels apart: every surface voxel is 4 voxels from the other plate."""
    reference = np.zeros((12, 12, 12), dtype=bool)
    index = [slice(3, 8)] * 3
    index[axis] = 2
    reference[tuple(index)] = True
    prediction = np.roll(reference, 4, axis=axis)
    assert hausdorff95(prediction, reference, spacing) == pytest.approx(expected)
    assert mask_metrics(prediction, reference, _affine(spacing)).hd95 == pytest.approx(expected)


def test_hd95_pools_both_directions_before_the_percentile():
    """Plate of 25 voxels in both; 3 extra reference voxels 10 mm away. Distances: 50 zeros and 3 tens.

    Pooled, the 95th percentile lies at rank 0.95 x 52 = 49.4 of the sorted 53 values: 0.4 x 10 = 4 mm
    (the reference-to-prediction direction alone would give 10 mm).
    """
    prediction = np.zeros((8, 8, 14), dtype=bool)
    prediction[1:6, 1:6, 1] = True
    reference = prediction.copy()
    for x, y in ((1, 1), (3, 3), (5, 5)):
        reference[x, y, 11] = True
    to_prediction, to_reference = surface_distances(prediction, reference, (1.0, 1.0, 1.0))
    assert sorted(to_prediction) == [0.0] * 25 + [10.0] * 3 and list(to_reference) == [0.0] * 25
    assert hausdorff95(prediction, reference, (1.0, 1.0, 1.0)) == pytest.approx(4.0)


def test_surface_voxels_use_the_6_neighbourhood():
    """A 3x3x3 cube without one corner: its centre keeps its 6 face neighbours, so it is not surface."""
    mask = np.zeros((5, 5, 5), dtype=bool)
    mask[1:4, 1:4, 1:4] = True
    mask[1, 1, 1] = False
    assert np.count_nonzero(surface(mask)) == 25 and not surface(mask)[2, 2, 2]
    edge = np.ones((3, 3, 3), dtype=bool)  # the image's outside is outside the mask
    assert np.count_nonzero(surface(edge)) == 26


def test_spacing_comes_from_the_affine_columns():
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.9, 1.1, 3.0])
    assert voxel_spacing(affine) == pytest.approx((0.9, 1.1, 3.0))


@pytest.mark.parametrize("predicted, referenced, dice, hd95, sensitivity", [
    (False, False, 1.0, 0.0, 1.0), (True, False, 0.0, EMPTY_MASK_HD95_MM, 0.0),
    (False, True, 0.0, EMPTY_MASK_HD95_MM, 0.0)])
def test_legacy_brats_values_for_empty_masks(predicted, referenced, dice, hd95, sensitivity):
    empty = np.zeros((20, 20, 20), dtype=bool)
    metrics = mask_metrics(_cube() if predicted else empty, _cube() if referenced else empty, _affine())
    assert (metrics.dice, metrics.hd95, metrics.sensitivity) == (dice, pytest.approx(hd95), sensitivity)
    assert pytest.approx(np.sqrt(240 ** 2 + 240 ** 2 + 155 ** 2), abs=0.01) == EMPTY_MASK_HD95_MM


# ---- generalised Dice score ---------------------------------------------------------------------------

def test_generalized_dice_score_matches_the_trainers_torch_score():
    import torch  # the trainers' score; the evaluation itself never imports torch

    from brats_plugin.trainers.generalized_dice import generalized_dice_score as trainer_score
    rng = np.random.default_rng(3)
    for trial in range(6):
        reference = rng.integers(0, 4, size=(16, 12, 10))
        prediction = np.where(rng.random(reference.shape) < 0.7, reference, rng.integers(0, 4, reference.shape))
        if trial == 4:
            reference[reference == 2] = 0  # a label absent from the reference takes the largest weight
        if trial == 5:
            reference[:] = 0
        labels = (1, 2, 3)
        counts = np.array([[np.sum((prediction == v) & (reference == v)), np.sum(prediction == v),
                            np.sum(reference == v)] for v in labels]).T
        ours = generalized_dice_score_of_label_counts(*counts)
        one_hot = [torch.as_tensor(np.stack([a == v for v in labels]))[None] for a in (prediction, reference)]
        assert ours == pytest.approx(float(trainer_score(*one_hot)[0]), abs=1e-12)


def test_generalized_dice_score_edge_cases():
    assert generalized_dice_score_of_label_counts([0, 0], [0, 0], [0, 0]) == 1.0
    assert generalized_dice_score_of_label_counts([0, 0], [5, 0], [0, 0]) == 0.0
    assert generalized_dice_score_of_label_counts([10, 1], [10, 1], [10, 1]) == 1.0
    # weights 1/100 and 1/1: (2 (10/100 + 0)) / ((20/100) + (1 + 1)) -> the small label dominates
    assert generalized_dice_score_of_label_counts([10, 0], [10, 1], [10, 1]) == pytest.approx(0.2 / 2.2)


# ---- lesion-wise ----------------------------------------------------------------------------------------

GLI = LesionwiseParameters(dilation_voxels=3, volume_threshold_mm3=50.0)
MET = LesionwiseParameters(dilation_voxels=1, volume_threshold_mm3=2.0)


def test_lesionwise_found_missed_and_false_positive_lesions():
    shape = (60, 30, 30)
    reference = _cube(shape, (5, 10, 10), 5) | _cube(shape, (25, 10, 10), 5)  # two lesions of 125 voxels
    prediction = _cube(shape, (5, 10, 10), 5) | _cube(shape, (48, 10, 10), 4)  # first found; a false positive
    scores = lesionwise_metrics(prediction, reference, _affine(), GLI)
    assert (scores.true_positives, scores.false_negatives, scores.false_positives) == (1, 1, 1)
    assert scores.dice == pytest.approx((1.0 + 0.0 + 0.0) / 3)
    assert scores.hd95 == pytest.approx((0.0 + LESION_PENALTY_MM + LESION_PENALTY_MM) / 3)


def test_lesionwise_dilation_merges_near_reference_lesions_per_sub_challenge():
    shape = (40, 20, 20)
    reference = _cube(shape, (5, 5, 5), 5) | _cube(shape, (14, 5, 5), 5)  # 4 empty voxels between them
    prediction = _cube(shape, (5, 5, 5), 5)
    merged = lesionwise_metrics(prediction, reference, _affine(), GLI)  # dilation 3: one lesion of 250 voxels
    assert (merged.true_positives, merged.false_negatives, merged.dice) == (1, 0, pytest.approx(250 / 375))
    apart = lesionwise_metrics(prediction, reference, _affine(), MET)  # dilation 1: two lesions
    assert (apart.true_positives, apart.false_negatives, apart.false_positives) == (1, 1, 0)
    assert apart.dice == pytest.approx(0.5) and apart.hd95 == pytest.approx(LESION_PENALTY_MM / 2)


def test_lesionwise_match_within_the_dilation_and_volume_threshold_in_mm3():
    shape = (40, 20, 20)
    reference = _cube(shape, (5, 5, 5), 3)  # 27 voxels
    near = _cube(shape, (10, 5, 5), 3)  # 2 voxels away: within GLI's dilation of 3
    iso = lesionwise_metrics(near, reference, _affine(), GLI)  # 27 mm^3 <= 50: left out, its match no FP
    assert (iso.dice, iso.hd95, iso.true_positives, iso.false_positives) == (1.0, 0.0, 0, 0)
    thick = lesionwise_metrics(near, reference, _affine((1.0, 1.0, 2.0)), GLI)  # 54 mm^3 > 50: scored
    assert (thick.true_positives, thick.false_positives, thick.dice) == (1, 0, 0.0)
    assert thick.hd95 == pytest.approx(5.0)  # the facing plates are 5 voxels apart along x (1 mm)


def test_lesionwise_empty_masks():
    empty = np.zeros((10, 10, 10), dtype=bool)
    scores = lesionwise_metrics(empty, empty, _affine(), GLI)
    assert (scores.dice, scores.hd95) == (1.0, 0.0)
    only_prediction = lesionwise_metrics(_cube((10, 10, 10), (2, 2, 2), 3), empty, _affine(), GLI)
    assert (only_prediction.dice, only_prediction.hd95, only_prediction.false_positives) == (0.0, LESION_PENALTY_MM, 1)


def test_release_table_holds_the_2023_lesionwise_parameters():
    expected = {"2023-GLI": (3, 50), "2023-SSA": (3, 50), "2023-MEN": (1, 50), "2023-MET": (1, 2),
                "2023-PED": (3, 50), "2024-GLI": (3, 50), "2024-PED": (3, 50)}
    for key, (dilation, threshold) in expected.items():
        parameters = get_release(key).lesionwise
        assert (parameters.dilation_voxels, parameters.volume_threshold_mm3) == (dilation, threshold)
    assert get_release("2021").lesionwise is None


# ---- agreement with panoptica ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def panoptica():
    import panoptica
    from panoptica.utils.citation_reminder import disable_citation_reminder
    disable_citation_reminder()
    return panoptica


def _panoptica_global(panoptica, prediction: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Global binary Dice and HD95 of panoptica's semantic evaluator (it measures them at 1 mm)."""
    evaluator = panoptica.Panoptica_Evaluator(
        expected_input=panoptica.InputType.SEMANTIC,
        instance_approximator=panoptica.ConnectedComponentsInstanceApproximator(),
        instance_matcher=panoptica.NaiveThresholdMatching(),
        instance_metrics=[], global_metrics=[panoptica.Metric.DSC, panoptica.Metric.HD95])
    result = evaluator.evaluate(prediction.astype(np.uint8), reference.astype(np.uint8))["ungrouped"]
    return result.global_bin_dsc, result.global_bin_hd95


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dice_and_hd95_agree_with_panoptica_on_random_blobs(panoptica, seed):
    shape = (48, 40, 36)
    reference, prediction = _blobs(shape, seed, 0.08), _blobs(shape, seed + 100, 0.1) | _blobs(shape, seed, 0.05)
    dice, hd95 = _panoptica_global(panoptica, prediction, reference)
    ours = mask_metrics(prediction, reference, _affine())
    assert ours.dice == pytest.approx(dice, abs=1e-6)
    assert ours.hd95 == pytest.approx(hd95, abs=0.1)
    # anisotropic spacing: panoptica's evaluator ignores it for global metrics, its metric functions take it
    spacing = (0.7, 1.2, 3.1)
    theirs = panoptica.Metric.HD95(reference_arr=reference, prediction_arr=prediction, voxelspacing=spacing)
    assert mask_metrics(prediction, reference, _affine(spacing)).hd95 == pytest.approx(theirs, abs=0.1)
    assert panoptica.Metric.DSC(reference_arr=reference, prediction_arr=prediction) == pytest.approx(dice)


def test_real_case_agrees_with_panoptica(panoptica, tmp_path):
    image = nib.load(REAL_SEGMENTATION)
    labels = np.asarray(image.dataobj).astype(np.uint8)
    perturbed = np.roll(labels, 3, axis=1)
    perturbed[~ndimage.binary_erosion(perturbed > 0, iterations=2)] = 0
    nib.save(nib.Nifti1Image(perturbed, image.affine, image.header), tmp_path / "TCGA-DU-7294.nii.gz")
    case = evaluate_case(tmp_path / "TCGA-DU-7294.nii.gz", REAL_SEGMENTATION, get_release("2021"))
    reference, prediction = labels > 0, perturbed > 0
    theirs = panoptica.Metric.HD95(reference_arr=reference, prediction_arr=prediction,
                                   voxelspacing=voxel_spacing(image.affine))
    assert case.metrics["WT"].dice == pytest.approx(
        panoptica.Metric.DSC(reference_arr=reference, prediction_arr=prediction), abs=1e-6)
    assert case.metrics["WT"].hd95 == pytest.approx(theirs, abs=0.1) and case.metrics["WT"].hd95 > 0


def test_panoptica_defaults_differ_for_empty_masks(panoptica):
    """Why the evaluation sets the legacy BraTS values itself: panoptica's Dice of two empty masks is 0."""
    empty = np.zeros((8, 8, 8), dtype=bool)
    assert panoptica.Metric.DSC(reference_arr=empty, prediction_arr=empty) == 0.0
    assert mask_metrics(empty, empty, _affine()).dice == 1.0


# ---- pairing ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, case_id", [
    ("BraTS-GLI-00000-000-seg.nii.gz", "BraTS-GLI-00000-000"), ("BraTS-GLI-00000-000.nii.gz", "BraTS-GLI-00000-000"),
    ("BraTS2021_00000_seg.nii.gz", "BraTS2021_00000"), ("BraTS2021_00000.nii.gz", "BraTS2021_00000"),
    ("TCGA-DU-7294_seg-isen20.nii.gz", "TCGA-DU-7294"), ("BraTS20_Training_001_seg.nii", "BraTS20_Training_001"),
    ("Brats18_TCIA01_123_1_seg.nii.gz", "Brats18_TCIA01_123_1"), ("BraTS2021_00007_pred.nii.gz", "BraTS2021_00007"),
    ("BraTS-MET-00012-000-label.nii.gz", "BraTS-MET-00012-000"), ("case7.nii.gz", "case7")])
def test_case_ids_across_namings(name, case_id):
    assert case_id_of_mask(name) == case_id


def _prediction_folder(source, folder, case_ids, extra=()):
    """A folder like ``brats predict``'s: <case>.nii.gz masks, <case>.json, probabilities, volumes.csv."""
    folder.mkdir()
    for case_id in case_ids:
        shutil.copy(next((source / case_id).glob("*seg.nii.gz")), folder / f"{case_id}.nii.gz")
        (folder / f"{case_id}.json").write_text("{}")
    for case_id in extra:
        shutil.copy(next((source / case_ids[0]).glob("*seg.nii.gz")), folder / f"{case_id}.nii.gz")
    image = nib.load(folder / f"{case_ids[0]}.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((*image.shape, 3), np.float32), image.affine),
             folder / f"{case_ids[0]}_probabilities.nii.gz")
    (folder / "volumes.csv").write_text("case_id\n")
    return folder


def test_pairing_a_prediction_folder_with_a_release_folder_lists_unpaired_cases(synthetic_source, tmp_path):
    source = synthetic_source("2021", cases=3)
    predictions = _prediction_folder(source, tmp_path / "pred", ["BraTS2021_00001", "BraTS2021_00002"],
                                     extra=["BraTS2021_00099"])
    pairing = pair_masks(predictions, source)
    assert list(pairing.pairs) == ["BraTS2021_00001", "BraTS2021_00002"]
    assert pairing.pairs["BraTS2021_00001"] == (predictions / "BraTS2021_00001.nii.gz",
                                                source / "BraTS2021_00001" / "BraTS2021_00001_seg.nii.gz")
    assert pairing.prediction_only == ["BraTS2021_00099"] and pairing.reference_only == ["BraTS2021_00003"]
    assert pairing.skipped == [predictions / "BraTS2021_00001_probabilities.nii.gz"]


def test_pairing_errors_name_the_sources(synthetic_source, tmp_path):
    source = synthetic_source("2021", cases=1)
    other = tmp_path / "other"
    other.mkdir()
    _save(np.zeros((4, 4, 4)), other / "unrelated_case.nii.gz")
    with pytest.raises(BratsInputError, match=f"no case pairs between {other}.*unrelated_case.*{source}"):
        pair_masks(other, source)
    _save(np.zeros((4, 4, 4)), other / "unrelated_case_seg.nii.gz")
    with pytest.raises(BratsInputError, match="two masks for case unrelated_case"):
        pair_masks(other, source)
    with pytest.raises(BratsInputError, match="no such file or folder"):
        pair_masks(tmp_path / "missing", source)


def test_two_files_pair_whatever_their_names(tmp_path):
    _save(_cube(), tmp_path / "my_prediction.nii.gz")
    _save(_cube(), tmp_path / "BraTS2021_00005_seg.nii.gz")
    pairing = pair_masks(tmp_path / "my_prediction.nii.gz", tmp_path / "BraTS2021_00005_seg.nii.gz")
    assert list(pairing.pairs) == ["BraTS2021_00005"]


# ---- cases and folders ---------------------------------------------------------------------------------

def test_evaluate_case_rows_regions_labels_and_lesionwise(tmp_path):
    reference = np.zeros((30, 30, 30), dtype=np.uint8)
    reference[5:20, 5:20, 5:20] = 2  # edema
    reference[8:16, 8:16, 8:16] = 1  # non-enhancing core
    reference[10:14, 10:14, 10:14] = 3  # enhancing
    prediction = reference.copy()
    prediction[10:14, 10:14, 10:14] = 1  # enhancing called core: ET missed, TC and WT right
    spacing = (1.0, 1.0, 2.0)
    _save(reference, tmp_path / "BraTS-MET-00001-000-seg.nii.gz", _affine(spacing))
    _save(prediction, tmp_path / "BraTS-MET-00001-000.nii.gz", _affine(spacing))
    release = get_release("2023-MET")
    case = evaluate_case(tmp_path / "BraTS-MET-00001-000.nii.gz", tmp_path / "BraTS-MET-00001-000-seg.nii.gz",
                         release, lesionwise=True)
    assert case.case_id == "BraTS-MET-00001-000"
    assert list(case.metrics) == ["WT", "TC", "ET", "label 1 NETC", "label 2 SNFH", "label 3 ET"]
    assert case.metrics["WT"].dice == 1.0 and case.metrics["TC"].dice == 1.0
    assert (case.metrics["ET"].dice, case.metrics["ET"].hd95) == (0.0, EMPTY_MASK_HD95_MM)
    assert case.metrics["ET"].volume_ref_ml == pytest.approx(64 * 2 / 1000)
    assert case.metrics["label 1 NETC"].dice == pytest.approx(2 * 448 / (448 + 512))
    assert case.lesionwise["WT"].dice == 1.0 and case.lesionwise["ET"].false_negatives == 1
    assert case.lesionwise["ET"].hd95 == LESION_PENALTY_MM and set(case.lesionwise) == {"WT", "TC", "ET"}
    counts = np.array([[448, 512, 448], [15 ** 3 - 512, 15 ** 3 - 512, 15 ** 3 - 512], [0, 0, 64]]).T
    assert case.generalized_dice == pytest.approx(generalized_dice_score_of_label_counts(*counts))


def test_evaluate_folders_writes_the_report(synthetic_source, tmp_path):
    source = synthetic_source("2021", cases=3)
    predictions = _prediction_folder(source, tmp_path / "pred", ["BraTS2021_00001", "BraTS2021_00002"])
    labels = nib.load(predictions / "BraTS2021_00002.nii.gz")
    worse = np.asarray(labels.dataobj).copy()
    worse[ndimage.binary_erosion(worse > 0, iterations=2) == 0] = 0  # a thinner tumour for case 2
    nib.save(nib.Nifti1Image(worse, labels.affine, labels.header), predictions / "BraTS2021_00002.nii.gz")
    with pytest.warns(UserWarning, match="with a reference only, not evaluated: BraTS2021_00003"):
        result = evaluate_folders(predictions, source, tmp_path / "report")
    assert result.release.key == "2021" and [c.case_id for c in result.cases] == ["BraTS2021_00001",
                                                                                 "BraTS2021_00002"]
    perfect, thinner = result.cases
    assert all(m.dice == 1.0 and m.hd95 == 0.0 for m in perfect.metrics.values())
    assert thinner.metrics["WT"].dice < 1.0 and thinner.metrics["WT"].hd95 > 0.0
    assert result.mean_dice() == {r: pytest.approx((1.0 + thinner.metrics[r].dice) / 2) for r in ("WT", "TC", "ET")}
    lines = (tmp_path / "report" / "cases.csv").read_text().splitlines()
    assert lines[0] == "case,region,dice,hd95,sensitivity,specificity,volume_pred_ml,volume_ref_ml"
    assert len(lines) == 1 + 2 * 7  # WT TC ET, three labels, GDS per case
    assert lines[1].startswith("BraTS2021_00001,WT,1,0,1,1,")
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["unpaired"] == {"prediction_only": [], "reference_only": ["BraTS2021_00003"]}
    wt = summary["statistics"]["WT"]["dice"]
    assert wt["n"] == 2 and wt["mean"] == pytest.approx(result.mean_dice()["WT"])
    assert wt["median"] == pytest.approx(wt["mean"]) and wt["p25"] <= wt["p75"]
    assert set(summary["statistics"]["GDS"]) == {"dice"}
    assert not [p for p in (tmp_path / "report").iterdir() if p.name.startswith(".")]  # no partial files


def test_release_is_told_from_names_and_labels(tmp_path):
    reference = _cube().astype(np.uint8) * 2
    reference[8:10, 8:10, 8:10] = 4  # resection cavity: only BraTS 2024 GLI has label 4 with 2023 naming
    _save(reference, tmp_path / "BraTS-GLI-00001-000-seg.nii.gz")
    _save(reference, tmp_path / "BraTS-GLI-00001-000.nii.gz")
    result = evaluate_folders(tmp_path / "BraTS-GLI-00001-000.nii.gz", tmp_path / "BraTS-GLI-00001-000-seg.nii.gz",
                              None)
    assert result.release.key == "2024-GLI" and "label 4 RC" in result.cases[0].metrics


# ---- bad input -------------------------------------------------------------------------------------------

def test_masks_on_different_grids_name_both_files(tmp_path):
    _save(_cube(), tmp_path / "ref.nii.gz")
    _save(_cube((20, 20, 21)), tmp_path / "pred.nii.gz")
    with pytest.raises(BratsInputError, match=r"pred.nii.gz: shape \(20, 20, 21\) differs from ref.nii.gz"):
        evaluate_case(tmp_path / "pred.nii.gz", tmp_path / "ref.nii.gz", get_release("2021"))
    _save(_cube(), tmp_path / "pred.nii.gz", _affine((1.0, 1.0, 1.5)))
    with pytest.raises(BratsInputError, match="pred.nii.gz: affine differs from ref.nii.gz"):
        evaluate_case(tmp_path / "pred.nii.gz", tmp_path / "ref.nii.gz", get_release("2021"))


def test_labels_outside_the_release_and_unreadable_files(tmp_path):
    _save(_cube(), tmp_path / "ref.nii.gz")
    _save(_cube().astype(np.uint8) * 3, tmp_path / "pred.nii.gz")
    with pytest.raises(BratsInputError, match=r"pred.nii.gz: labels \[3\] are not BraTS 2021 labels"):
        evaluate_case(tmp_path / "pred.nii.gz", tmp_path / "ref.nii.gz", get_release("2021"))
    (tmp_path / "pred.nii.gz").write_bytes(b"not a nifti at all")
    with pytest.raises(BratsInputError, match="pred.nii.gz: not a readable NIfTI"):
        evaluate_case(tmp_path / "pred.nii.gz", tmp_path / "ref.nii.gz", get_release("2021"))


def test_lesionwise_needs_a_release_with_parameters(tmp_path):
    _save(_cube(), tmp_path / "BraTS2021_00001.nii.gz")
    with pytest.raises(BratsInputError, match="BraTS 2021 has no lesion-wise parameters"):
        evaluate_folders(tmp_path / "BraTS2021_00001.nii.gz", tmp_path / "BraTS2021_00001.nii.gz", None,
                         lesionwise=True)


def test_unwritable_report_folder_is_refused_before_any_work(tmp_path):
    _save(_cube(), tmp_path / "BraTS2021_00001.nii.gz")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(BratsInputError, match="a_file/report: cannot write the report there"):
        evaluate_folders(tmp_path / "BraTS2021_00001.nii.gz", tmp_path / "BraTS2021_00001.nii.gz",
                         tmp_path / "a_file" / "report")
