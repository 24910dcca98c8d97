"""Post-processing: the rules' meaning, tuning on cross-validation sets, ``brats postprocess`` and
``brats predict`` applying a model's rules (the last on models made by the real ``nnUNetv2_train``)."""
from __future__ import annotations

import json
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest
from conftest import BRATS, REGIONS, SMALL_SHAPE
from postprocessing_support import SPECK_VOXELS, TINY_LESION_VOXELS, write_cross_validation, write_probabilities

from brats_plugin import find_case, get_release, write_synthetic_release
from brats_plugin.errors import BratsInputError
from brats_plugin.inference.labels import label_map
from brats_plugin.nnunet_commands import run_nnunet
from brats_plugin.postprocessing import RULES_FILE, PostprocessingRules, load_rules, tune_model
from brats_plugin.postprocessing.rules import region_probabilities


def brats(*arguments, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(BRATS + [str(a) for a in arguments], capture_output=True, text=True, timeout=900, env=env)


# ---- the enhancing-tumour volume rule is nnU-Net v1's apply_brats_threshold --------------------------------

def winners_rule(nnunet_labels: np.ndarray, threshold: int) -> np.ndarray:
    """nnU-Net v1's BraTS 2020 rule as its source states it, in nnU-Net labels (edema 1, necrosis 2,
    enhancing 3): when fewer than ``threshold`` voxels are enhancing, all of them become 2."""
    result = nnunet_labels.copy()
    if np.sum(result == 3) < threshold:
        result[result == 3] = 2
    return result


@pytest.mark.parametrize("release_key", ["2021", "2023-GLI", "2024-PED"])
def test_enhancing_volume_rule_gives_the_winners_masks(release_key):
    release = get_release(release_key)
    to_release = np.zeros(4, np.uint8)
    to_release[1] = release.label_of_tissue("edema").value
    to_release[2] = release.label_of_tissue("necrosis").value
    to_release[3] = release.label_of_tissue("enhancing").value
    rng = np.random.default_rng(3)
    one_mm = np.diag([-1.0, -1.0, 1.0, 1.0])
    compared = 0
    for enhancing in (0, 1, 9, 10, 11, 99, 100, 101, 499, 750):
        masks = np.zeros((30, 30, 30), np.uint8)
        masks[5:25, 5:25, 5:25] = rng.integers(1, 3, size=(20, 20, 20))
        masks.ravel()[rng.choice(masks.size, enhancing, replace=False)] = 3
        for threshold in (0, 10, 100, 500, 750, 1000):
            expected = to_release[winners_rule(masks, threshold)]
            ours, _ = PostprocessingRules(enhancing_min_volume_mm3=threshold).apply(to_release[masks], release, one_mm)
            np.testing.assert_array_equal(ours, expected)
            compared += 1
    assert compared == 60


def test_enhancing_volume_rule_counts_millimetres_on_anisotropic_grids():
    release = get_release("2021")
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[5:15, 5:15, 5:15] = 2
    labels[8:12, 8:12, 8:10] = 4  # 32 voxels of 1 x 1 x 3 mm: 96 mm3
    anisotropic = np.diag([1.0, 1.0, 3.0, 1.0])
    kept, changes = PostprocessingRules(enhancing_min_volume_mm3=90).apply(labels, release, anisotropic)
    assert np.count_nonzero(kept == 4) == 32 and changes == []
    relabelled, changes = PostprocessingRules(enhancing_min_volume_mm3=100).apply(labels, release, anisotropic)
    assert np.count_nonzero(relabelled == 4) == 0 and np.count_nonzero(relabelled == 1) == 32
    assert changes == ["ET 96 mm3 < 100 mm3: 32 voxels -> necrosis"]
    assert np.count_nonzero(labels == 4) == 32  # the input is never changed


def test_small_components_leave_their_region_for_the_label_outside_it():
    release = get_release("2023-GLI")  # NETC 1, SNFH 2, ET 3
    labels = np.zeros((30, 30, 30), np.uint8)
    labels[2:22, 2:22, 2:22] = 2
    labels[6:18, 6:18, 6:18] = 1
    labels[8:16, 8:16, 8:16] = 3
    labels[25:27, 25:27, 25:27] = 2  # an 8-voxel WT speck
    labels[3:5, 3:5, 3:5] = 3  # an 8-voxel ET component inside the edema (WT is one component there)
    rules = PostprocessingRules(min_component_mm3={"WT": 9, "ET": 9})
    cleaned, changes = rules.apply(labels, release, np.eye(4))
    assert (cleaned[25:27, 25:27, 25:27] == 0).all()  # the speck left WT: background
    assert (cleaned[3:5, 3:5, 3:5] == 1).all()  # the small ET left ET: necrosis (as the volume rule)
    assert (cleaned[8:16, 8:16, 8:16] == 3).all()  # the large enhancing core stays
    assert changes == ["WT: 1 component(s) below 9 mm3 removed", "ET: 1 component(s) below 9 mm3 removed"]
    tc_rule = PostprocessingRules(min_component_mm3={"TC": 9})
    core_speck = labels.copy()
    core_speck[25:27, 25:27, 25:27] = 1
    cleaned, _ = tc_rule.apply(core_speck, release, np.eye(4))
    assert (cleaned[25:27, 25:27, 25:27] == 2).all()  # a small core becomes edema


def test_rules_on_a_brats_size_mask_equal_the_rules_on_its_tumour_alone():
    """apply works inside the tumour's box: components touching the box's faces and the image's edge
    are cleaned as on the tumour cut out alone."""
    release = get_release("2021")
    labels = np.zeros((240, 240, 155), np.uint8)
    labels[80:160, 80:160, 50:110] = 2
    labels[100:140, 100:140, 60:100] = 1
    labels[110:130, 110:130, 70:90] = 4
    labels[0:2, 0:2, 0:2] = 2  # a speck in the image's corner: the box reaches the edge
    labels[239, 239, 154] = 4  # a one-voxel enhancing speck in the opposite corner
    rules = PostprocessingRules(0, {"WT": 10, "ET": 10})
    cleaned, changes = rules.apply(labels, release, np.eye(4))
    alone = labels[80:160, 80:160, 50:110]
    cleaned_alone, _ = rules.apply(alone, release, np.eye(4))
    np.testing.assert_array_equal(cleaned[80:160, 80:160, 50:110], cleaned_alone)
    assert np.count_nonzero(cleaned) == np.count_nonzero(alone)  # both specks gone
    assert changes == ["WT: 2 component(s) below 10 mm3 removed"]


# ---- tuning --------------------------------------------------------------------------------------------------

@pytest.fixture
def raw_folder(monkeypatch):
    def point(cross_validation):
        monkeypatch.setenv("nnUNet_raw", str(cross_validation.raw))
        monkeypatch.delenv("nnUNet_preprocessed", raising=False)
        return cross_validation
    return point


@pytest.mark.parametrize("release_key, regions", [("2021", True), ("2023-GLI", False), ("2023-MET", False),
                                                  ("2024-PED", True)])
def test_tuning_removes_specks_and_keeps_tiny_true_lesions(release_key, regions, raw_folder, tmp_path):
    cv = raw_folder(write_cross_validation(tmp_path, release_key, regions=regions, tiny_lesions=True))
    result = tune_model(cv.model)
    size = result.rules.min_component_mm3.get("WT", 0)
    assert size > SPECK_VOXELS, result.table()  # the specks go...
    if release_key == "2023-MET":  # ... and the 36-voxel lesions the metastasis metric scores (above 2 mm3) stay
        assert size <= TINY_LESION_VOXELS, result.table()
    assert result.objective_after > result.objective_before
    assert result.metric == ("legacy" if release_key == "2021" else "lesionwise")
    saved = load_rules(cv.model)
    assert saved is not None and saved.min_component_mm3 == result.rules.min_component_mm3
    assert json.loads((cv.model / RULES_FILE).read_text())["release"] == get_release(release_key).key
    prediction = cv.model / "fold_0" / "validation" / "case_000.nii.gz"
    release = get_release(release_key)
    image = nib.load(prediction)
    cleaned, _ = saved.apply(label_map(release, release).apply(np.asarray(image.dataobj)), release, image.affine)
    assert (cleaned[3:5, 3:5, 3:5] == 0).all()  # a planted speck
    if release_key == "2023-MET":
        assert (cleaned[48:51, 46:49, 5:9] == release.label_of_tissue("enhancing").value).all()


def test_tuning_finds_the_enhancing_volume_rule_for_small_false_enhancing_tumours(raw_folder, tmp_path):
    cv = raw_folder(write_cross_validation(tmp_path, "2021", specks=False, small_false_enhancing=True))
    result = tune_model(cv.model, jobs=2)
    assert 33 < result.rules.enhancing_min_volume_mm3 <= 100, result.table()  # the false ET: a 33-voxel ball
    assert result.after["ET"][0] > result.before["ET"][0] + 0.3
    same, other = result.held_out_gain
    assert other > 0.5 * same > 0  # most of the gain survives on the other half


def test_clean_predictions_keep_no_rule(raw_folder, tmp_path):
    cv = raw_folder(write_cross_validation(tmp_path, "2021", specks=False))
    result = tune_model(cv.model)
    assert result.rules.empty and result.objective_after == result.objective_before
    assert "no rule improves the metric" in result.table()
    assert load_rules(cv.model).empty


def test_tune_and_apply_commands(raw_folder, tmp_path):
    cv = raw_folder(write_cross_validation(tmp_path / "cv", "2021", cases=6))
    dry = brats("postprocess", "tune", cv.model, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "WT components below 10 mm3 removed" in dry.stdout and not (cv.model / RULES_FILE).exists()
    tuned = brats("postprocess", "tune", cv.model, "-j", "2", "--folds", "0", "1")
    assert tuned.returncode == 0, tuned.stderr
    assert f"wrote {cv.model / RULES_FILE}" in tuned.stdout and "split-half check" in tuned.stdout
    # masks in BraTS 2021 labels, as brats predict writes them
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    release = get_release("2021")
    for path in sorted((cv.model / "fold_0" / "validation").glob("*.nii.gz")):
        image = nib.load(path)
        nib.save(nib.Nifti1Image(label_map(release, release).apply(np.asarray(image.dataobj)), image.affine),
                 predictions / path.name)
    applied = brats("postprocess", "apply", predictions, "-m", cv.model, "-o", tmp_path / "cleaned")
    assert applied.returncode == 0, applied.stderr
    assert "WT: 3 component(s) below 10 mm3 removed" in applied.stdout
    for path in predictions.glob("*.nii.gz"):
        before = np.asarray(nib.load(path).dataobj)
        after = nib.load(tmp_path / "cleaned" / path.name)
        assert np.count_nonzero(before != np.asarray(after.dataobj)) == 3 * SPECK_VOXELS
        np.testing.assert_array_equal(after.affine, nib.load(path).affine)
    # a mask whose brats predict report says BraTS 2023 labels (3: enhancing) is read in them
    first = sorted(predictions.glob("*.nii.gz"))[0]
    image = nib.load(first)
    in_2023 = np.asarray(image.dataobj).copy()
    in_2023[in_2023 == 4] = 3
    nib.save(nib.Nifti1Image(in_2023, image.affine), first)
    case_id = first.name.removesuffix(".nii.gz")
    (predictions / f"{case_id}.json").write_text(json.dumps(
        {"kind": "brats_plugin prediction", "case_id": case_id, "volumes": {"release": "2023-GLI"}}))
    again = brats("postprocess", "apply", predictions, "-m", cv.model, "-o", tmp_path / "cleaned_again")
    assert again.returncode == 0, again.stderr
    assert (np.asarray(nib.load(tmp_path / "cleaned_again" / first.name).dataobj) == 3).any()
    # the output may not be the predictions' folder, nor inside it: nothing overwritten, nothing written
    for target in (predictions, predictions / "cleaned"):
        refused = brats("postprocess", "apply", first, "-m", cv.model, "-o", first.parent) if target == predictions \
            else brats("postprocess", "apply", predictions, "-m", cv.model, "-o", target)
        assert refused.returncode == 2 and "write the post-processed masks outside" in refused.stderr
    assert not (predictions / "cleaned").exists()
    np.testing.assert_array_equal(np.asarray(nib.load(first).dataobj), in_2023)


def _damage_prediction(cv):
    (cv.model / "fold_1" / "validation" / "case_001.nii.gz").write_bytes(b"not a nifti")


def _remove_validation(cv):
    shutil.rmtree(cv.model / "fold_1" / "validation")


def _remove_reference(cv):
    (cv.references / "case_002.nii.gz").unlink()


def _foreign_label(cv):
    path = cv.model / "fold_0" / "validation" / "case_000.nii.gz"
    image = nib.load(path)
    labels = np.asarray(image.dataobj).copy()
    labels[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(labels, image.affine), path)


def _other_grid(cv):
    path = cv.model / "fold_0" / "validation" / "case_000.nii.gz"
    image = nib.load(path)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), np.diag([2.0, 2.0, 2.0, 1.0])), path)


@pytest.mark.parametrize("damage, phrase", [
    (_damage_prediction, "case_001.nii.gz: "),
    (_remove_validation, "nnUNetv2_train Dataset880_PP2021 3d_fullres 1 -tr nnUNetTrainer --val --npz"),
    (_remove_reference, "case_002.nii.gz: missing reference"),
    (_foreign_label, "labels [7] are not the nnU-Net labels"),
    (_other_grid, "case_000.nii.gz: "),
])
def test_bad_cross_validations_get_one_line_and_no_rules_file(damage, phrase, raw_folder, tmp_path):
    cv = raw_folder(write_cross_validation(tmp_path, "2021", cases=4))
    damage(cv)
    result = brats("postprocess", "tune", cv.model)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("brats: error:") and phrase in lines[0], result.stderr
    assert not (cv.model / RULES_FILE).exists()


def test_tuning_refuses_fold_all_and_unknown_metrics(raw_folder, tmp_path):
    cv = raw_folder(write_cross_validation(tmp_path, "2021", cases=4))
    with pytest.raises(BratsInputError, match="fold 'all'"):
        tune_model(cv.model, folds=["all"])
    with pytest.raises(BratsInputError, match="--metric lesionwise: BraTS 2021 has no lesion-wise"):
        tune_model(cv.model, metric="lesionwise")
    for malformed in ({"kind": "something else"}, {"kind": "brats_plugin postprocessing", "release": "2021",
                                                     "rules": ["not", "an", "object"]}):
        (cv.model / RULES_FILE).write_text(json.dumps(malformed))
        result = brats("postprocess", "apply", cv.references, "-m", cv.model, "-o", tmp_path / "out")
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and "not a valid post-processing rules file" in lines[0]
    thresholds = PostprocessingRules(region_thresholds={"WT": 0.4})
    (cv.model / RULES_FILE).write_text(json.dumps(thresholds.to_json(get_release("2021"))))
    result = brats("postprocess", "apply", cv.references, "-m", cv.model, "-o", tmp_path / "out")
    assert result.returncode == 2 and "threshold the network's region probabilities" in result.stderr
    assert not (tmp_path / "out").exists()


# ---- on models made by the real nnUNetv2_train ---------------------------------------------------------------

@pytest.mark.integration
def test_tune_reads_real_nnunet_validation_folders(trained_models, tmp_path):
    """nnUNetv2_train wrote fold_1/validation and fold_2/validation; the references are the raw labelsTr."""
    model = tmp_path / trained_models["regions"].name
    shutil.copytree(trained_models["regions"], model)
    result = brats("postprocess", "tune", model, "--folds", "1", "2")
    assert result.returncode == 0, result.stderr
    assert "cross-validation cases (folds 1, 2), BraTS 2021, legacy metric" in result.stdout
    rules = json.loads((model / RULES_FILE).read_text())
    assert rules["tuning"]["cases"] == sum(len(list((model / f"fold_{f}" / "validation").glob("*.nii.gz")))
                                           for f in ("1", "2")) > 0


@pytest.mark.integration
def test_predict_applies_the_models_rules_unless_told_not_to(trained_models, tmp_path):
    """The stock model of random weights paints every label; a rule relabelling any enhancing tumour below
    1 L shows in the mask, in <case>.json, and goes away with --no-postprocessing."""
    model = tmp_path / "model"
    shutil.copytree(trained_models["regions_stock"], model)
    (case_folder,) = write_synthetic_release(tmp_path / "cases", "2021", 1, shape=SMALL_SHAPE, seed=5)
    plain = brats("predict", "-i", case_folder, "-o", tmp_path / "plain", "-m", model, "--fast")
    assert plain.returncode == 0, plain.stderr
    assert "post-processing: none" in plain.stdout
    case_id = find_case(case_folder).case_id
    before = np.asarray(nib.load(tmp_path / "plain" / f"{case_id}.nii.gz").dataobj)
    assert np.count_nonzero(before == 4) > 0
    rules = PostprocessingRules(enhancing_min_volume_mm3=1e6)
    (model / RULES_FILE).write_text(json.dumps(rules.to_json(get_release("2021"))))
    ruled = brats("predict", "-i", case_folder, "-o", tmp_path / "ruled", "-m", model, "--fast")
    assert ruled.returncode == 0, ruled.stderr
    assert "post-processing: enhancing tumour below 1e+06 mm3 in all -> necrosis" in ruled.stdout
    after = np.asarray(nib.load(tmp_path / "ruled" / f"{case_id}.nii.gz").dataobj)
    assert np.count_nonzero(after == 4) == 0
    np.testing.assert_array_equal(after, np.where(before == 4, 1, before))
    report = json.loads((tmp_path / "ruled" / f"{case_id}.json").read_text())
    assert report["postprocessing"]["changes"][0].endswith(f"{np.count_nonzero(before == 4)} voxels -> necrosis")
    assert report["volumes"]["regions"]["ET"]["mL"] == 0
    skipped = brats("predict", "-i", case_folder, "-o", tmp_path / "skipped", "-m", model, "--fast",
                    "--no-postprocessing")
    assert skipped.returncode == 0, skipped.stderr
    assert "post-processing: off" in skipped.stdout
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "skipped" / f"{case_id}.nii.gz").dataobj), before)


# ---- region probability thresholds ---------------------------------------------------------------------------

def test_probability_thresholds_move_voxels_into_and_out_of_regions():
    release = get_release("2021")
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[2:8, 2:8, 2:8] = 2
    labels[4:6, 4:6, 4:6] = 4
    probabilities = np.zeros((3, 10, 10, 10), np.float32)
    probabilities[0][labels != 0] = 0.9
    probabilities[0][1, 2:8, 2:8] = 0.4  # WT likely enough at 0.3
    probabilities[1][labels == 4] = 0.9
    probabilities[2][labels == 4] = 0.6  # ET not sure enough at 0.7
    rules = PostprocessingRules(region_thresholds={"WT": 0.3, "ET": 0.7})
    cleaned, changes = rules.apply(labels, release, np.eye(4), probabilities)
    assert (cleaned[1, 2:8, 2:8] == 2).all()  # entered WT: edema
    assert (cleaned[4:6, 4:6, 4:6] == 1).all()  # left ET: necrosis, still in TC
    assert changes == ["WT probability above 0.3: 36 voxels in, 0 out", "ET probability above 0.7: 0 voxels in, 8 out"]
    with pytest.raises(BratsInputError, match="threshold the network's region probabilities"):
        rules.apply(labels, release, np.eye(4))


def test_region_probabilities_of_label_models_sum_their_labels():
    release = get_release("2021")  # nnU-Net labels: edema 1, necrosis 2, enhancing 3
    softmax = np.array([0.1, 0.2, 0.3, 0.4]).reshape(4, 1, 1, 1) * np.ones((4, 2, 2, 2))
    regions = region_probabilities(softmax, release, region_based=False)
    np.testing.assert_allclose(regions[:, 0, 0, 0], [0.9, 0.7, 0.4])
    sigmoids = np.random.default_rng(0).random((3, 2, 2, 2))
    np.testing.assert_array_equal(region_probabilities(sigmoids, release, region_based=True), sigmoids)


@pytest.mark.parametrize("release_key, regions", [("2021", True), ("2023-GLI", False)])
def test_tuning_lowers_the_whole_tumour_threshold_to_take_missed_voxels(release_key, regions, raw_folder, tmp_path):
    cv = raw_folder(write_cross_validation(tmp_path, release_key, regions=regions, specks=False))
    write_probabilities(cv, regions=regions)
    result = tune_model(cv.model)
    assert 0 < result.rules.region_thresholds.get("WT", 0) < 0.4, result.table()  # the missed voxels: 0.4
    assert result.after["WT"][0] > result.before["WT"][0]
    assert load_rules(cv.model).region_thresholds == result.rules.region_thresholds


def test_tuning_without_every_cases_probabilities_says_why_it_skips_thresholds(raw_folder, tmp_path):
    cv = raw_folder(write_cross_validation(tmp_path, "2021", specks=False))
    write_probabilities(cv, regions=True, missing=1)
    result = tune_model(cv.model)
    assert not result.rules.region_thresholds
    assert "note: probability thresholds not searched: 1 of 8 validation cases have no probabilities" in result.table()
    (cv.model / "fold_0" / "validation" / "case_002.npz").write_bytes(b"damaged")
    (cv.model / "fold_0" / "validation" / "case_000.npz").write_bytes(b"damaged")
    damaged = brats("postprocess", "tune", cv.model)
    assert damaged.returncode == 2 and "case_000.npz: unreadable nnU-Net probabilities" in damaged.stderr


@pytest.mark.integration
def test_predict_thresholds_the_networks_own_probabilities(trained_models, tmp_path):
    """The ruled mask equals the rules applied by hand to the unruled run's mask and probabilities."""
    model = tmp_path / "model"
    shutil.copytree(trained_models["regions_stock"], model)
    (case_folder,) = write_synthetic_release(tmp_path / "cases", "2021", 1, shape=SMALL_SHAPE, seed=6)
    case_id = find_case(case_folder).case_id
    release = get_release("2021")
    rules = PostprocessingRules(region_thresholds={"WT": 0.3, "ET": 0.6})
    (model / RULES_FILE).write_text(json.dumps(rules.to_json(release)))
    runs = {}
    for name, extra in (("ruled", []), ("plain", ["--no-postprocessing"])):
        run = brats("predict", "-i", case_folder, "-o", tmp_path / name, "-m", model, "--fast", "--probabilities",
                    *extra)
        assert run.returncode == 0, run.stderr
        runs[name] = [np.asarray(nib.load(tmp_path / name / f"{case_id}{suffix}").dataobj)
                      for suffix in (".nii.gz", "_probabilities.nii.gz")]
    (ruled, ruled_channels), (plain, channels) = runs["ruled"], runs["plain"]
    np.testing.assert_array_equal(ruled_channels, channels)  # the same network output, also written when ruled
    regions = region_probabilities(np.moveaxis(channels, -1, 0), release, region_based=True)
    expected, changes = rules.apply(plain, release, np.eye(4), regions)
    assert changes and not np.array_equal(expected, plain)  # the rules do change this mask
    np.testing.assert_array_equal(ruled, expected)
    report = json.loads((tmp_path / "ruled" / f"{case_id}.json").read_text())
    assert report["postprocessing"]["changes"] == changes


@pytest.mark.integration
def test_tune_reads_probabilities_written_by_nnunetv2_train(trained_models, planned_datasets, tmp_path):
    """nnUNetv2_train --val --npz writes fold_1/validation/*.npz; tune reads them (their axis order: the shape
    check of a 40x48x36 grid would refuse a wrong one) and searches the thresholds."""
    _, environment = planned_datasets
    results = tmp_path / "nnUNet_results"
    model = results / trained_models["regions"].parent.name / trained_models["regions"].name
    shutil.copytree(trained_models["regions"], model)
    environment = {**environment, "nnUNet_results": str(results)}
    run_nnunet("nnUNetv2_train", [str(REGIONS), "3d_fullres", "1", "-tr", model.name.split("__")[0], "--val", "--npz",
                                  "-device", "cpu"], env=environment, timeout=900, capture=True)
    assert list((model / "fold_1" / "validation").glob("*.npz"))
    result = brats("postprocess", "tune", model, "--folds", "1", env=environment)
    assert result.returncode == 0, result.stderr
    assert "reading" in result.stdout and "and probabilities" in result.stdout
    assert "WT probability threshold:" in result.stdout and "not searched" not in result.stdout
