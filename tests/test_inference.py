"""``brats predict`` and the Segmenter on models made by the real nnU-Net (see ``trained_models``).

The reference for every prediction is the stock ``nnUNetv2_predict`` on the same model, files and
settings: our output must be its label map, in BraTS labels, on the T1 image's exact header.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import BRATS, LABELS, REGIONS, SAMPLE_CASE, SMALL_SHAPE

from brats_plugin import find_case, find_cases, get_release, write_synthetic_release
from brats_plugin.inference import Segmenter, predict_case
from brats_plugin.inference.whole_brain import choose_tile
from brats_plugin.nnunet_commands import run_nnunet
from brats_plugin.releases import SEQUENCES
from brats_plugin.volumes import voxel_volume_ml

pytestmark = pytest.mark.integration


def brats_predict(*arguments: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(BRATS + ["predict", *map(str, arguments)], capture_output=True, text=True, timeout=900,
                          env=env)


def stock_predict(case_folder: Path, model: Path, folds: list[str], dataset: int, environment: dict,
                  work: Path) -> np.ndarray:
    """The stock nnUNetv2_predict label map (nnU-Net labels) of one case, without mirroring."""
    case = find_case(case_folder)
    images = work / "stock_in"
    images.mkdir(parents=True)
    for channel, sequence in enumerate(SEQUENCES):
        os.symlink(case.sequences[sequence], images / f"{case.case_id}_{channel:04d}.nii.gz")
    trainer = model.name.split("__")[0]
    run_nnunet("nnUNetv2_predict", ["-i", str(images), "-o", str(work / "stock_out"), "-d", str(dataset),
                                    "-c", "3d_fullres", "-f", *folds, "-tr", trainer, "-device", "cpu",
                                    "-npp", "0", "-nps", "0", "--disable_tta"],
               env=environment, timeout=900, capture=True)
    return np.asanyarray(nib.load(work / "stock_out" / f"{case.case_id}.nii.gz").dataobj)


def assert_same_header(output: Path, reference: Path) -> None:
    """Voxel for voxel on the reference: shape, affine, qform/sform with codes, pixdim, units; uint8."""
    out, ref = nib.load(output), nib.load(reference)
    assert out.shape == ref.shape
    assert np.array_equal(out.affine, ref.affine)
    for form in ("qform", "sform"):
        assert np.array_equal(getattr(out, f"get_{form}")(), getattr(ref, f"get_{form}")())
        assert int(out.header[f"{form}_code"]) == int(ref.header[f"{form}_code"])
    assert np.array_equal(out.header["pixdim"][1:4], ref.header["pixdim"][1:4])
    assert out.header["xyzt_units"] == ref.header["xyzt_units"]
    assert out.get_data_dtype() == np.uint8


def labels_of(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


@pytest.fixture(scope="module")
def test_case_2021(planned_datasets) -> Path:
    folders, _ = planned_datasets
    return next((folders["nnUNet_raw"].parent / "test-2021").iterdir())


# ---- equal to the stock predictor, on the input's header ------------------------------------------

def test_region_model_two_folds_equals_stock_predict(trained_models, planned_datasets, test_case_2021, tmp_path):
    _, environment = planned_datasets
    model = trained_models["regions"]
    completed = brats_predict("-i", test_case_2021, "-o", tmp_path / "out", "-m", model, "--folds", "1", "2",
                              "--no-mirroring", "--tiling", "nnunet")
    assert completed.returncode == 0, completed.stderr
    ours = labels_of(tmp_path / "out" / f"{test_case_2021.name}.nii.gz")
    stock = stock_predict(test_case_2021, model, ["1", "2"], REGIONS, environment, tmp_path)
    release = get_release("2021")
    assert np.array_equal(ours, np.vectorize(release.from_nnunet.get, otypes=[np.uint8])(stock))
    assert_same_header(tmp_path / "out" / f"{test_case_2021.name}.nii.gz", find_case(test_case_2021).sequences["T1"])
    assert f"{test_case_2021.name}: " in completed.stdout and "WT " in completed.stdout


def test_stock_trainer_label_model_equals_stock_predict(trained_models, planned_datasets, tmp_path):
    folders, environment = planned_datasets
    case_folder = next((folders["nnUNet_raw"].parent / "test-2023-MET").iterdir())
    model = trained_models["labels"]
    segmentation = Segmenter(model, mirroring=False, tiling="nnunet", device="cpu").predict_case(case_folder)
    stock = stock_predict(case_folder, model, ["0"], LABELS, environment, tmp_path)
    release = get_release("2023-MET")
    assert segmentation.release is release
    assert np.array_equal(segmentation.labels, np.vectorize(release.from_nnunet.get, otypes=[np.uint8])(stock))
    assert set(np.unique(segmentation.labels)) == set(release.label_values)


def test_oblique_anisotropic_case_equals_stock_predict_on_its_header(trained_models, planned_datasets, tmp_path):
    _, environment = planned_datasets
    source = tmp_path / "oblique"
    write_synthetic_release(source, "2021", 1, shape=SMALL_SHAPE, spacing=(1.2, 0.9, 1.4),
                            rotation_degrees=(12.0, -7.0, 25.0), seed=5, first_index=77, with_segmentation=False)
    case_folder = next(source.iterdir())
    model = trained_models["regions_stock"]
    completed = brats_predict("-i", case_folder, "-o", tmp_path / "out", "-m", model, "--no-mirroring",
                              "--tiling", "nnunet")
    assert completed.returncode == 0, completed.stderr
    output = tmp_path / "out" / f"{case_folder.name}.nii.gz"
    assert_same_header(output, find_case(case_folder).sequences["T1"])
    stock = stock_predict(case_folder, model, ["0"], REGIONS, environment, tmp_path)
    assert len(np.unique(stock)) == 4
    to_2021 = np.vectorize(get_release("2021").from_nnunet.get, otypes=[np.uint8])
    assert np.array_equal(labels_of(output), to_2021(stock))


def test_real_case_keeps_its_exact_header_and_gets_volumes(trained_models, tmp_path):
    completed = brats_predict("-i", SAMPLE_CASE, "-o", tmp_path / "out", "-m", trained_models["regions"],
                              "--folds", "1", "--fast")
    assert completed.returncode == 0, completed.stderr
    output = tmp_path / "out" / "TCGA-DU-7294.nii.gz"
    assert_same_header(output, SAMPLE_CASE / "TCGA-DU-7294_t1_bet.nii.gz")
    labels = labels_of(output)
    assert set(np.unique(labels)) <= set(get_release("2021").label_values)
    report = json.loads((tmp_path / "out" / "TCGA-DU-7294.json").read_text())
    assert report["volumes"]["regions"]["WT"]["mL"] == pytest.approx(np.count_nonzero(labels) / 1000.0)
    rows = (tmp_path / "out" / "volumes.csv").read_text().splitlines()
    assert rows[0].startswith("case_id,label 1 NCR/NET (mL)") and rows[1].startswith("TCGA-DU-7294,")
    assert report["precision"] == "float32" and report["mirroring_voxel_axes"] == []  # --fast on the CPU


def test_precision_bfloat16_from_the_command_line(trained_models, test_case_2021, tmp_path):
    """Where the CPU computes bfloat16 the run uses it and says so in the report; elsewhere it is refused."""
    import torch

    from brats_plugin.inference.precision import bfloat16_supported
    completed = brats_predict("-i", test_case_2021, "-o", tmp_path / "out", "-m", trained_models["regions_stock"],
                              "--fast", "--precision", "bfloat16", "--device", "cpu")
    if not bfloat16_supported(torch.device("cpu")):
        _assert_refused(completed, "--precision bfloat16", "no bfloat16 arithmetic")
        assert _no_outputs(tmp_path / "out")
        return
    assert completed.returncode == 0, completed.stderr
    report = json.loads((tmp_path / "out" / f"{test_case_2021.name}.json").read_text())
    assert report["precision"] == "bfloat16"
    assert labels_of(tmp_path / "out" / f"{test_case_2021.name}.nii.gz").shape == SMALL_SHAPE


# ---- labels, volumes, probabilities -----------------------------------------------------------------

def test_2021_and_2023_labels_are_the_same_map(trained_models, test_case_2021):
    model = trained_models["regions_stock"]
    as_2021 = Segmenter(model, mirroring=False).predict_case(test_case_2021)
    as_2023 = Segmenter(model, mirroring=False, release="2023").predict_case(test_case_2021)
    assert as_2023.release.key == "2023-GLI"
    assert set(np.unique(as_2021.labels)) == {0, 1, 2, 4}  # every label occurs: the whole map is compared
    assert np.array_equal(as_2023.labels, np.select([as_2021.labels == 4, as_2021.labels == 1, as_2021.labels == 2],
                                                    [3, 1, 2], 0))
    assert as_2021.volumes.regions == pytest.approx(as_2023.volumes.regions)


def test_volumes_count_voxels_times_voxel_volume(trained_models, test_case_2021):
    result = predict_case(test_case_2021, trained_models["regions_stock"], mirroring=False)
    voxel = voxel_volume_ml(result.affine)
    release = result.release
    for region in release.regions:
        expected = np.isin(result.labels, region.labels).sum() * voxel
        assert result.volumes.regions[region.abbreviation] == pytest.approx(expected)
    for value, ml in result.volumes.labels.items():
        assert ml == pytest.approx((result.labels == value).sum() * voxel)
    assert set(result.seconds) == {"read", "preprocess", "network", "export"}


def test_probabilities_agree_with_labels(trained_models, test_case_2021, tmp_path):
    completed = brats_predict("-i", test_case_2021, "-o", tmp_path, "-m", trained_models["regions_stock"], "--fast",
                              "--probabilities")
    assert completed.returncode == 0, completed.stderr
    probabilities = nib.load(tmp_path / f"{test_case_2021.name}_probabilities.nii.gz")
    labels = labels_of(tmp_path / f"{test_case_2021.name}.nii.gz")
    values = np.asanyarray(probabilities.dataobj)
    assert values.shape == (*SMALL_SHAPE, 3) and values.min() >= 0 and values.max() <= 1
    assert np.array_equal(probabilities.affine, nib.load(find_case(test_case_2021).sequences["T1"]).affine)
    # nnU-Net paints regions in regions_class_order: a voxel is tumour if any region is above 0.5, and
    # enhancing (painted last) exactly where that region is
    assert np.array_equal((values > 0.5).any(axis=-1), labels > 0)
    assert np.array_equal(values[..., 2] > 0.5, labels == 4)
    report = json.loads((tmp_path / f"{test_case_2021.name}.json").read_text())
    assert report["probability_channels"] == ["whole tumor", "tumor core", "enhancing tumor"]


# ---- inputs: folders, names, shards, zips -----------------------------------------------------------

def _renamed_case(source: Path, target: Path, case_id: str, names: dict[str, str]) -> Path:
    """A copy of a case folder with other file names (``names``: sequence -> new file name)."""
    case = find_case(source)
    folder = target / case_id
    folder.mkdir(parents=True)
    for sequence, name in names.items():
        shutil.copy(case.sequences[sequence], folder / name)
    return folder


@pytest.fixture
def mixed_folder(test_case_2021, tmp_path) -> Path:
    """Three cases named like BraTS 2021, BraTS 2023 and the TCGA sample, plus one in a sub-folder."""
    root = tmp_path / "mixed"
    _renamed_case(test_case_2021, root, "BraTS2021_00001", {s: f"BraTS2021_00001_{t}.nii.gz" for s, t in
                                                            zip(SEQUENCES, ("t1", "t1ce", "t2", "flair"))})
    _renamed_case(test_case_2021, root, "BraTS-GLI-00002-000", {s: f"BraTS-GLI-00002-000-{t}.nii.gz" for s, t in
                                                                zip(SEQUENCES, ("t1n", "t1c", "t2w", "t2f"))})
    _renamed_case(test_case_2021, root, "TCGA-AB-0003", {s: f"TCGA-AB-0003_{t}_bet.nii.gz" for s, t in
                                                         zip(SEQUENCES, ("t1", "t1c", "t2", "fla"))})
    _renamed_case(test_case_2021, root / "site2", "patient4", {s: f"{t}.nii.gz" for s, t in
                                                               zip(SEQUENCES, ("T1", "T1-Gd", "T2", "FLAIR"))})
    return root


def test_folder_with_mixed_namings(trained_models, mixed_folder, tmp_path):
    out = tmp_path / "out"
    completed = brats_predict("-i", mixed_folder, "-o", out, "-m", trained_models["regions_stock"], "--fast")
    assert completed.returncode == 0, completed.stderr
    ids = ["BraTS-GLI-00002-000", "BraTS2021_00001", "TCGA-AB-0003", "patient4"]
    assert sorted(p.name for p in out.glob("*.nii.gz")) == sorted(f"{i}.nii.gz" for i in ids)
    maps = [labels_of(out / f"{i}.nii.gz") for i in ids]
    assert len(np.unique(maps[0])) == 4 and all(np.array_equal(maps[0], m) for m in maps[1:])  # same images
    assert len((out / "volumes.csv").read_text().splitlines()) == 1 + len(ids)


def test_shards_cover_every_case_once(trained_models, mixed_folder, tmp_path):
    out = tmp_path / "out"
    seen: list[str] = []
    for part in range(3):
        completed = brats_predict("-i", mixed_folder, "-o", out, "-m", trained_models["regions"], "--folds", "1",
                                  "--fast", "--num-parts", "3", "--part-id", part)
        assert completed.returncode == 0, completed.stderr
        seen += [line.split(":")[0] for line in completed.stdout.splitlines() if line.split(":")[0] in
                 ("BraTS-GLI-00002-000", "BraTS2021_00001", "TCGA-AB-0003", "patient4")]
    assert sorted(seen) == ["BraTS-GLI-00002-000", "BraTS2021_00001", "TCGA-AB-0003", "patient4"]
    rows = (out / "volumes.csv").read_text().splitlines()[1:]
    assert sorted(r.split(",")[0] for r in rows) == sorted(seen)  # the last part's table holds all parts


def test_explicit_files_and_an_exported_zip(trained_models, planned_datasets, test_case_2021, tmp_path):
    _, environment = planned_datasets
    archive = tmp_path / "model.zip"
    run_nnunet("nnUNetv2_export_model_to_zip", ["-d", str(REGIONS), "-o", str(archive), "-c", "3d_fullres",
                                                "-tr", "nnUNetTrainerGDL_demo_2epochs", "-f", "1"],
               env=environment, timeout=300, capture=True)
    case = find_case(test_case_2021)
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    completed = brats_predict("--t1", case.sequences["T1"], "--t1c", case.sequences["T1Gd"], "--t2",
                              case.sequences["T2"], "--flair", case.sequences["FLAIR"], "-o", tmp_path / "zip",
                              "-m", archive, "--no-mirroring", env=env)
    assert completed.returncode == 0, completed.stderr
    from_folder = Segmenter(trained_models["regions"], folds=["1"], mirroring=False).predict_case(case)
    assert np.array_equal(labels_of(tmp_path / "zip" / f"{case.case_id}.nii.gz"), from_folder.labels)
    assert len(list((tmp_path / "cache" / "brats_plugin" / "models").iterdir())) == 1  # unpacked once, kept


# ---- bad input: one line, exit status 2, nothing written -------------------------------------------

def _assert_refused(completed: subprocess.CompletedProcess, *phrases: str) -> None:
    assert completed.returncode == 2, completed.stdout + completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("brats: error: "), completed.stderr
    for phrase in phrases:
        assert phrase in lines[0]


def _no_outputs(folder: Path) -> bool:
    return not folder.exists() or not [p for p in folder.iterdir() if p.suffix in (".gz", ".json", ".csv")]


def _damaged_copy(case_folder: Path, tmp_path: Path, pattern: str, damage) -> tuple[Path, Path]:
    """A copy of the case whose file matching ``pattern`` is rewritten as ``damage(voxels, affine, header)``
    returns (or deleted when it returns None); returns (case folder, damaged file)."""
    broken = tmp_path / "case"
    shutil.copytree(case_folder, broken)
    path = next(broken.glob(pattern))
    image = nib.load(path)
    replacement = damage(np.asanyarray(image.dataobj), image.affine.copy(), image.header.copy())
    if replacement is None:
        path.unlink()
    else:
        nib.save(nib.Nifti1Image(*replacement), path)
    return broken, path


def _shifted(voxels, affine, header):
    affine[0, 3] += 2.0
    return voxels, affine, header


def _with_nan(voxels, affine, header):
    voxels = voxels.astype(np.float32)
    voxels[3, 4, 5] = np.nan
    header.set_data_dtype(np.float32)
    return voxels, affine, header


@pytest.mark.parametrize("pattern,damage,phrase", [
    ("*flair*", lambda *image: None, "missing FLAIR"),
    ("*t2.nii.gz", _shifted, "affine differs"),
    ("*t1.nii.gz", _with_nan, ": 1 NaN or infinite voxel"),
])
def test_bad_cases_are_refused_before_anything_is_written(pattern, damage, phrase, trained_models, test_case_2021,
                                                          tmp_path):
    broken, path = _damaged_copy(test_case_2021, tmp_path, pattern, damage)
    completed = brats_predict("-i", broken, "-o", tmp_path / "out", "-m", trained_models["regions"], "--fast")
    _assert_refused(completed, phrase)
    if path.exists():
        assert path.name in completed.stderr
    assert _no_outputs(tmp_path / "out")


@pytest.mark.parametrize("problem", ["not a model", "fold not trained", "missing checkpoint", "no checkpoint"])
def test_bad_models_are_refused(problem, trained_models, test_case_2021, tmp_path):
    model = trained_models["regions"]
    arguments = ["-i", test_case_2021, "-o", tmp_path / "out"]
    if problem == "not a model":
        arguments += ["-m", test_case_2021]
        phrase = "not an nnU-Net model"
    elif problem == "fold not trained":
        arguments += ["-m", model, "--folds", "4"]
        phrase = "fold 4 is not trained"
    else:  # a copy without checkpoint_best.pth
        copy = tmp_path / model.name
        shutil.copytree(model, copy, ignore=shutil.ignore_patterns("checkpoint_best.pth"))
        arguments += ["-m", copy, "--checkpoint", "best"]
        phrase = "no fold has checkpoint_best.pth (is the training finished? try --checkpoint final)"
        if problem == "missing checkpoint":
            arguments += ["--folds", "1"]
            phrase = "checkpoint_best.pth: missing checkpoint of fold 1"
    _assert_refused(brats_predict(*arguments), phrase)
    assert _no_outputs(tmp_path / "out")


def test_unwritable_output_is_refused(trained_models, test_case_2021, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    _assert_refused(brats_predict("-i", test_case_2021, "-o", blocker / "out", "-m", trained_models["regions"]),
                    "cannot write the output")


# ---- --fast: the whole brain in one pass, with the lean U-Net forward ---------------------------------

def _network_inputs(model: Path, case, tiling: str) -> list[tuple]:
    """The spatial shape of every network call while segmenting ``case``."""
    segmenter = Segmenter(model, mirroring=False, tiling=tiling)
    seen: list[tuple] = []
    hook = segmenter._predictor.network.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[2:])))
    assert segmenter.predict_case(case).labels.shape == nib.load(case.sequences["T1"]).shape
    hook.remove()
    return seen


def shrink_whole_brain_budget(model, monkeypatch) -> int:
    """Sets the whole-brain budget (made for a BraTS brain at 32 features) to 2 of ``model``'s planned patches,
    so that a test's 80x96x72 case takes several tiles; returns it in voxels."""
    plans = json.loads((model / "plans.json").read_text())["configurations"]["3d_fullres"]
    budget = 2 * int(np.prod(plans["patch_size"]))
    features = plans["architecture"]["arch_kwargs"]["features_per_stage"][0]
    monkeypatch.setattr("brats_plugin.inference.segmenter.WHOLE_BRAIN_FEATURE_VOXELS", budget * features)
    return budget


def test_whole_brain_tiling_takes_the_brain_at_once_or_in_fewer_network_voxels(trained_models, test_case_2021,
                                                                               tmp_path, monkeypatch):
    model = trained_models["regions_stock"]
    plans = json.loads((model / "plans.json").read_text())["configurations"]["3d_fullres"]
    patch = tuple(plans["patch_size"])
    strides = np.prod(plans["architecture"]["arch_kwargs"]["strides"], axis=0)
    small = _network_inputs(model, find_case(test_case_2021), "whole")  # a brain that fits the budget
    assert len(small) == 1 and np.any(np.array(small[0]) % strides)  # as it is: no padding to the strides
    budget = shrink_whole_brain_budget(model, monkeypatch)
    write_synthetic_release(tmp_path / "big", "2021", 1, shape=(80, 96, 72), seed=3, with_segmentation=False)
    big = find_cases(tmp_path / "big")[0]  # a brain larger than the budget
    tiled, whole = (_network_inputs(model, big, tiling) for tiling in ("nnunet", "whole"))
    assert len(tiled) > 1 and all(shape == patch for shape in tiled)
    assert len(whole) > 1 and all(np.prod(s) <= budget and np.all(np.array(s) >= patch) for s in whole)
    assert sum(map(np.prod, whole)) < sum(map(np.prod, tiled))


@pytest.mark.parametrize("mirroring,tiling", [(True, "nnunet"), (False, "whole")])
def test_progress_counts_every_network_evaluation_of_every_fold(trained_models, tmp_path, mirroring, tiling):
    """done runs 1..total once per network call; total = tiles x 2^mirrored axes x folds, known from the
    first call (trained_models["regions"] has folds 1 and 2)."""
    write_synthetic_release(tmp_path / "big", "2021", 1, shape=(80, 96, 72), seed=3, with_segmentation=False)
    case = find_cases(tmp_path / "big")[0]
    segmenter = Segmenter(trained_models["regions"], mirroring=mirroring, tiling=tiling, device="cpu")
    calls: list[tuple] = []
    hook = segmenter._predictor.network.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    reported: list[tuple[int, int]] = []
    segmenter.predict_case(case, progress=lambda done, total: reported.append((done, total)))
    hook.remove()
    total = len(calls)
    assert reported == [(done, total) for done in range(1, total + 1)]
    axes = segmenter._predictor.allowed_mirroring_axes if mirroring else ()
    tiles = total // (2 ** len(axes) * 2)
    assert total == tiles * 2 ** len(axes) * 2 and (tiles > 1 if tiling == "nnunet" else tiles >= 1)
    assert segmenter._predictor.on_pass is None  # the callback is the call's, not the segmenter's
    segmenter.predict_case(case)  # and a call without one reports nothing
    assert len(reported) == total


def test_the_predict_bar_shows_each_network_pass_and_the_time_left(trained_models, test_case_2021, tmp_path,
                                                                   monkeypatch):
    from brats_plugin.inference import predict
    shown: list[str] = []

    class RecordingBar(predict.tqdm):
        def set_postfix_str(self, text="", refresh=True):
            shown.append(text)
            super().set_postfix_str(text, refresh)

    monkeypatch.setattr(predict, "tqdm", RecordingBar)
    segmenter = Segmenter(trained_models["regions"], mirroring=False, tiling="whole", device="cpu")
    predict.predict_cases([find_case(test_case_2021)], tmp_path / "out", segmenter, progress=True)
    assert [text.split(",")[0] for text in shown] == ["network pass 1/2", "network pass 2/2"]  # 1 tile x 2 folds
    assert re.fullmatch(r"network pass 1/2, about \d+ s left", shown[0]) and shown[1].endswith("about 0 s left")


def _run_recording_dtypes(segmenter: Segmenter, case) -> tuple:
    """``segmenter``'s result for ``case``, the dtypes its first convolution and its network returned, and the
    spatial shape of every network call."""
    import torch
    convolutions, logits, shapes = set(), set(), []
    network = segmenter._predictor.network
    first_conv = next(m for m in network.modules() if isinstance(m, torch.nn.Conv3d))
    def record(module, inputs, output) -> None:  # a hook returning a value would replace the output
        logits.add(output.dtype)
        shapes.append(tuple(inputs[0].shape[2:]))
    hooks = [first_conv.register_forward_hook(lambda m, i, o: convolutions.add(o.dtype)),
             network.register_forward_hook(record)]
    try:
        return segmenter.predict_case(case, probabilities=True), convolutions, logits, shapes
    finally:
        for hook in hooks:
            hook.remove()


def test_bfloat16_runs_the_network_in_bfloat16_on_the_same_tiles(trained_models, test_case_2021, tmp_path,
                                                                   monkeypatch):
    """Convolutions compute in bfloat16, the logits come back in float32, the labels stay close to float32's,
    and the tiles are float32's (a larger tile would change the labels more than the precision does). A
    CPU without bfloat16 arithmetic refuses the setting instead."""
    import torch

    from brats_plugin.errors import BratsInputError
    from brats_plugin.inference.precision import bfloat16_supported
    model = trained_models["regions_stock"]
    shrink_whole_brain_budget(model, monkeypatch)
    if not bfloat16_supported(torch.device("cpu")):
        with pytest.raises(BratsInputError, match="no bfloat16 arithmetic"):
            Segmenter(model, device="cpu", precision="bfloat16")
        return
    segmenters = {p: Segmenter(model, device="cpu", mirroring=False, tiling="whole", precision=p)
                  for p in ("float32", "bfloat16")}
    small = find_case(test_case_2021)  # one tile in either precision: only the arithmetic differs
    results = {}
    for precision, segmenter in segmenters.items():
        results[precision], convolutions, logits, _ = _run_recording_dtypes(segmenter, small)
        assert convolutions == {torch.bfloat16 if precision == "bfloat16" else torch.float32}
        assert logits == {torch.float32}
    assert results["bfloat16"].probabilities.dtype == np.float32
    assert 0 < np.abs(results["bfloat16"].probabilities - results["float32"].probabilities).max() < 0.5
    for region in get_release("2021").regions:
        masks = [np.isin(results[p].labels, region.labels) for p in ("float32", "bfloat16")]
        assert 2 * np.count_nonzero(masks[0] & masks[1]) / (masks[0].sum() + masks[1].sum()) > 0.95, region
    write_synthetic_release(tmp_path / "big", "2021", 1, shape=(80, 96, 72), seed=3, with_segmentation=False)
    big = find_cases(tmp_path / "big")[0]  # more than the whole-brain budget: several tiles
    tiles = {p: _run_recording_dtypes(segmenter, big)[3] for p, segmenter in segmenters.items()}
    assert len(tiles["float32"]) > 1 and tiles["bfloat16"] == tiles["float32"]  # the same tiles, only cheaper


def test_mirroring_along_one_voxel_axis_takes_two_passes_flipped_along_it(trained_models, test_case_2021, tmp_path):
    """--mirroring 0 mirrors along the images' first voxel axis (the network input's last axis) only."""
    import torch
    inputs: list[torch.Tensor] = []
    segmenter = Segmenter(trained_models["regions_stock"], mirroring=(0,), tiling="whole", device="cpu")
    hook = segmenter._predictor.network.register_forward_hook(lambda m, i, o: inputs.append(i[0].clone()))
    one_axis = segmenter.predict_case(find_case(test_case_2021), probabilities=True)
    hook.remove()
    assert len(inputs) == 2 and torch.equal(inputs[1], torch.flip(inputs[0], (4,)))
    unmirrored = Segmenter(trained_models["regions_stock"], mirroring=False, tiling="whole",
                           device="cpu").predict_case(find_case(test_case_2021), probabilities=True)
    assert not np.array_equal(one_axis.probabilities, unmirrored.probabilities)  # the mirrored pass took part
    tumour = [labels > 0 for labels in (one_axis.labels, unmirrored.labels)]  # flipped back: the same tumour
    assert 2 * np.count_nonzero(tumour[0] & tumour[1]) / (tumour[0].sum() + tumour[1].sum()) > 0.8
    completed = brats_predict("-i", test_case_2021, "-o", tmp_path / "out", "-m", trained_models["regions_stock"],
                              "--mirroring", "0,3")
    assert completed.returncode == 2 and "--mirroring: '0,3': voxel axes are 0, 1 and 2" in completed.stderr
    assert _no_outputs(tmp_path / "out")


def test_the_cpu_default_is_left_right_mirroring_over_whole_brain_tiles(trained_models, test_case_2021, tmp_path):
    """With no setting chosen, a CPU run mirrors along voxel axis 0 only, over whole-brain tiles: the same
    probabilities as asking for them, and the command line says and records which settings ran."""
    model = trained_models["regions_stock"]
    default = Segmenter(model, device="cpu")
    assert default.settings == {"precision": "float32", "mirroring_voxel_axes": [0], "tiling": "whole"}
    chosen = Segmenter(model, mirroring=(0,), tiling="whole", device="cpu")
    case = find_case(test_case_2021)
    assert np.array_equal(default.predict_case(case, probabilities=True).probabilities,
                          chosen.predict_case(case, probabilities=True).probabilities)
    completed = brats_predict("-i", test_case_2021, "-o", tmp_path / "out", "-m", model, "--device", "cpu")
    assert completed.returncode == 0, completed.stderr
    assert "prediction: mirroring along voxel axes 0, whole-brain tiles, float32" in completed.stdout
    report = json.loads((tmp_path / "out" / f"{test_case_2021.name}.json").read_text())
    assert report["mirroring_voxel_axes"] == [0] and report["tiling"] == "whole"
    nnunet = brats_predict("-i", test_case_2021, "-o", tmp_path / "nnunet", "-m", model, "--device", "cpu",
                           "--mirroring", "all", "--tiling", "nnunet")  # nnU-Net's exact behaviour, on request
    assert nnunet.returncode == 0, nnunet.stderr
    report = json.loads((tmp_path / "nnunet" / f"{test_case_2021.name}.json").read_text())
    assert report["mirroring_voxel_axes"] == [0, 1, 2] and report["tiling"] == "nnunet"


def test_lean_unet_gives_the_networks_own_output(trained_models, monkeypatch):
    import torch

    from brats_plugin.inference import lean_unet
    network = Segmenter(trained_models["regions_stock"], device="cpu")._predictor.network
    assert isinstance(network, lean_unet.LeanUNet)
    torch.manual_seed(0)
    x = torch.randn(1, 4, 48, 64, 48)
    with torch.inference_mode():
        own = network.network(x)
        assert torch.equal(network(x), own)
        # in slabs, oneDNN may pick other kernels for the thinner inputs: the same sums, rounded otherwise
        for slab_bytes in (1, 5 * 64 * 64 * 48 * 4):  # every decoder stage in slabs of one plane; of a few
            monkeypatch.setattr(lean_unet, "SLAB_BYTES", slab_bytes)
            assert torch.allclose(network(x), own, rtol=0, atol=1e-4)


def test_lean_unet_takes_any_input_size(trained_models):
    """A size that is no multiple of the network's strides: nnU-Net's own forward cannot join its skips,
    the lean one gives logits of the input's size, and its valid part near the volume's centre agrees with
    the padded input's (the same image in a little more zero background)."""
    import torch
    network = Segmenter(trained_models["regions_stock"], device="cpu")._predictor.network
    torch.manual_seed(0)
    x = torch.zeros(1, 4, 48, 64, 48)
    x[:, :, 4:41, 5:58, 6:45] = torch.randn(1, 4, 37, 53, 39)
    odd = x[:, :, :41, :58, :45]
    with torch.inference_mode():
        with pytest.raises(RuntimeError):
            network.network(odd)
        logits = network(odd)
        assert logits.shape[2:] == odd.shape[2:] and torch.isfinite(logits).all()
        padded = network(x)[:, :, :41, :58, :45]
    agreement = (logits.argmax(1) == padded.argmax(1)).float().mean()
    assert agreement > 0.9


@pytest.mark.parametrize("shape,divisors,planned,budget,any_size,expected", [
    # the real case's cropped brain under a BraTS-sized plan: whole (padded to the strides, or as it is
    # for a network that takes any size, which fits where the padded brain does not), else within the budget
    ((131, 162, 129), [16, 32, 32], [112, 160, 128], None, False, [144, 192, 160]),
    ((131, 162, 129), [16, 32, 32], [112, 160, 128], None, True, [131, 162, 129]),
    ((131, 162, 129), [16, 32, 32], [112, 160, 128], 131 * 162 * 129, True, [131, 162, 129]),
    ((131, 162, 129), [16, 32, 32], [112, 160, 128], int(1.6 * 112 * 160 * 128), False, [112, 192, 160]),
    ((131, 162, 129), [16, 32, 32], [112, 160, 128], int(1.6 * 112 * 160 * 128), True, [131, 162, 129]),
    ((131, 162, 129), [16, 32, 32], [112, 160, 128], 131 * 162 * 129 - 1, True, [112, 162, 129]),  # just short
    ((60, 100, 100), [32, 32, 32], [96, 96, 96], 10, True, [60, 96, 96]),  # a tile no larger than the volume
    ((64, 64, 64), [32, 32, 32], [64, 64, 64], 64**3, False, [64, 64, 64]),
    ((100, 100, 100), [32, 32, 32], [64, 64, 64], 128 * 128 * 64, False, [64, 128, 128]),  # never below planned
    ((100, 100, 100), [32, 32, 32], [96, 96, 96], 10, True, [96, 96, 96]),  # nothing fits: the planned patch
])
def test_choose_tile(shape, divisors, planned, budget, any_size, expected):
    assert choose_tile(shape, divisors, planned, budget, any_size=any_size) == expected
