"""`brats convert`: every release layout to an nnU-Net raw dataset; resumable; clear errors."""
import gzip
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import BRATS
from nnunetv2.dataset_conversion.Dataset137_BraTS21 import copy_BraTS_segmentation_and_convert_labels_to_nnUNet

from brats_plugin import convert_release, find_cases, get_release
from brats_plugin.errors import BratsInputError
from brats_plugin.releases import SEQUENCES


def _dataset(folders, dataset_id, name):
    return folders["nnUNet_raw"] / f"Dataset{dataset_id:03d}_{name}"


@pytest.mark.parametrize("key, name", [
    ("2018", "BraTS2018"), ("2019", "BraTS2019"), ("2020", "BraTS2020"), ("2021", "BraTS2021"),
    ("2023-MET", "BraTS2023MET"), ("2024-GLI", "BraTS2024GLI"), ("2024-PED", "BraTS2024PED"),
])
def test_each_release_layout_converts_with_auto_release(key, name, synthetic_source, nnunet_folders):
    source = synthetic_source(key, cases=3)
    explicit = {"2024-GLI": "2024-GLI", "2024-PED": "2024-PED"}.get(key, "auto")  # labels may not tell
    result = convert_release(source, 510, release=explicit, jobs=2, progress=False)
    target = _dataset(nnunet_folders, 510, name)
    assert result.dataset_folder == target and result.release.key == key
    dataset = json.loads((target / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "T1", "1": "T1Gd", "2": "T2", "3": "FLAIR"}
    assert dataset["numTraining"] == 3
    assert dataset["brats"]["release"] == key
    assert dataset["file_ending"] == (".nii" if key == "2020" else ".nii.gz")
    release = get_release(key)
    for case in find_cases(source, with_segmentation=True):
        ours = nib.load(target / "labelsTr" / f"{case.case_id}{dataset['file_ending']}")
        original = np.asanyarray(nib.load(case.segmentation).dataobj)
        assert ours.get_data_dtype() == np.uint8
        expected = np.vectorize(release.to_nnunet.get)(original)
        assert np.array_equal(np.asanyarray(ours.dataobj), expected)
        assert np.array_equal(ours.affine, nib.load(case.sequences["T1"]).affine)
        for channel, sequence in enumerate(SEQUENCES):
            placed = target / "imagesTr" / f"{case.case_id}_{channel:04d}{dataset['file_ending']}"
            assert os.path.samefile(placed, case.sequences[sequence])  # hard link, not a copy


def test_region_and_label_modes_write_nnunet_labels(synthetic_source, nnunet_folders):
    source = synthetic_source("2024-PED", cases=2)
    convert_release(source, 511, release="2024-PED", regions=True, progress=False)
    regions = json.loads((_dataset(nnunet_folders, 511, "BraTS2024PED") / "dataset.json").read_text())
    assert list(regions["labels"]) == ["background", "whole tumor", "tumor core", "enhancing tumor",
                                       "cystic component"]
    assert regions["regions_class_order"] == [1, 2, 4, 3]
    convert_release(source, 512, name="PEDLabels", release="2024-PED", regions=False, progress=False)
    labels = json.loads((_dataset(nnunet_folders, 512, "PEDLabels") / "dataset.json").read_text())
    assert labels["labels"] == {"background": 0, "peritumoral edema": 1, "non-enhancing tumor core": 2,
                                "cystic component": 3, "enhancing tumor": 4}
    assert "regions_class_order" not in labels
    assert labels["brats"]["label_mode"] == "labels"


def test_same_labels_as_nnunet_dataset137(synthetic_source, nnunet_folders, tmp_path):
    source = synthetic_source("2021", cases=3)
    convert_release(source, 513, progress=False)
    for case in find_cases(source, with_segmentation=True):
        theirs = tmp_path / f"{case.case_id}.nii.gz"
        copy_BraTS_segmentation_and_convert_labels_to_nnUNet(str(case.segmentation), str(theirs))
        ours = _dataset(nnunet_folders, 513, "BraTS2021") / "labelsTr" / f"{case.case_id}.nii.gz"
        their_array = sitk.GetArrayFromImage(sitk.ReadImage(str(theirs)))
        our_array = sitk.GetArrayFromImage(sitk.ReadImage(str(ours)))
        assert np.unique(their_array).tolist() == [0, 1, 2, 3]
        assert np.array_equal(our_array, their_array)


def test_test_cases_go_to_imagesTs(synthetic_source, nnunet_folders):
    result = convert_release(synthetic_source("2021", cases=2), 514,
                             test_source=synthetic_source("2021", cases=2, images_only=True, first_index=50),
                             progress=False)
    names = sorted(p.name for p in (result.dataset_folder / "imagesTs").iterdir())
    assert names == [f"BraTS2021_000{i}_{c:04d}.nii.gz" for i in (50, 51) for c in range(4)]
    assert result.test_cases == 2


def test_mixed_endings_give_one_file_ending(synthetic_source, nnunet_folders):
    source = synthetic_source("2021", cases=2)
    t2 = source / "BraTS2021_00001" / "BraTS2021_00001_t2.nii.gz"
    nib.save(nib.load(t2), t2.with_name("BraTS2021_00001_t2.nii"))
    t2.unlink()
    result = convert_release(source, 515, progress=False)
    placed = result.dataset_folder / "imagesTr" / "BraTS2021_00001_0002.nii.gz"
    assert result.placements == {"gzip": 1, "link": 7}
    original = np.asanyarray(nib.load(t2.with_name("BraTS2021_00001_t2.nii")).dataobj)
    assert np.array_equal(np.asanyarray(nib.load(placed).dataobj), original)


def test_case_355_quirk_converts_with_warning(synthetic_source, nnunet_folders, capfd):
    source = synthetic_source("2020", cases=2)
    folder = source / "BraTS20_Training_002"
    (folder / "BraTS20_Training_002_seg.nii").rename(folder / "W39_1998.09.19_Segm.nii")
    completed = subprocess.run(BRATS + ["convert", str(source), "--dataset-id", "516"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "warning: " in completed.stderr and "W39_1998.09.19_Segm.nii: taken as the segmentation" in completed.stderr
    assert (_dataset(nnunet_folders, 516, "BraTS2020") / "labelsTr" / "BraTS20_Training_002.nii").is_file()


def test_rerun_skips_finished_cases_and_clears_partial_files(synthetic_source, nnunet_folders):
    source = synthetic_source("2021", cases=3)
    first = convert_release(source, 517, progress=False)
    assert (first.converted, first.skipped) == (3, 0)
    labels = first.dataset_folder / "labelsTr"
    (labels / "BraTS2021_00002.nii.gz").unlink()
    (labels / ".BraTS2021_00002.nii.gz.part-deadbeef").write_bytes(b"half")
    second = convert_release(source, 517, progress=False)
    assert (second.converted, second.skipped) == (1, 2)
    assert sorted(p.name for p in labels.iterdir()) == [f"BraTS2021_0000{i}.nii.gz" for i in (1, 2, 3)]


def _finished_cases(dataset: Path) -> int:
    labels = dataset / "labelsTr"
    if not labels.is_dir():
        return 0
    return sum(1 for label in labels.glob("*.nii.gz")
               if all((dataset / "imagesTr" / f"{label.name[:-7]}_{c:04d}.nii.gz").exists() for c in range(4)))


@pytest.mark.parametrize("delay", [0.5, 1.0, 1.5, 2.5])
def test_killed_conversion_resumes_to_the_same_result(delay, nnunet_folders, _synthetic_cache):
    """SIGKILL at some moment, then re-run: finished cases are skipped, the result equals a clean run."""
    source = _synthetic_cache("2021", 24, False, 1)
    command = BRATS + ["convert", str(source), "--dataset-id", "518", "-j", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    dataset = _dataset(nnunet_folders, 518, "BraTS2021")
    finished = _finished_cases(dataset)
    visible = [p for p in dataset.rglob("*") if p.is_file() and ".part-" not in p.name]
    assert all(p.name.endswith(".nii.gz") or p.name == "dataset.json" for p in visible)
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{24 - finished} converted, {finished} already done" in resumed.stdout
    clean = convert_release(source, 519, name="Clean", progress=False)
    for folder in ("labelsTr", "imagesTr"):
        names = sorted(p.name for p in (clean.dataset_folder / folder).iterdir())
        assert names == sorted(p.name for p in (dataset / folder).iterdir())
        for name in names:
            assert (dataset / folder / name).read_bytes() == (clean.dataset_folder / folder / name).read_bytes()
    assert json.loads((dataset / "dataset.json").read_text())["numTraining"] == 24
    assert not [p for p in dataset.rglob(".*") if ".part-" in p.name]


def test_overwrite_replaces_stale_cases(synthetic_source, nnunet_folders):
    source = synthetic_source("2021", cases=3)
    result = convert_release(source, 520, progress=False)
    shutil.rmtree(source / "BraTS2021_00003")
    with pytest.raises(BratsInputError, match="holds files of cases not in the source \\(BraTS2021_00003.*--overwrite"):
        convert_release(source, 520, progress=False)
    again = convert_release(source, 520, overwrite=True, progress=False)
    assert again.training_cases == 2
    assert len(list((result.dataset_folder / "labelsTr").iterdir())) == 2


# ---- bad input through the command line: one line, exit 2, nothing half-written ---------------------

def _run(args, env=None):
    return subprocess.run(BRATS + args, capture_output=True, text=True, timeout=120, env=env)


def _assert_input_error(completed, *fragments):
    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("brats: error: "), completed.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_bad_label_in_one_case_fails_cleanly(synthetic_source, nnunet_folders):
    source = synthetic_source("2021", cases=3)
    seg = source / "BraTS2021_00002" / "BraTS2021_00002_seg.nii.gz"
    image = nib.load(seg)
    labels = np.asanyarray(image.dataobj).copy()
    labels[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(labels, image.affine, image.header), seg)
    completed = _run(["convert", str(source), "--dataset-id", "521"])
    _assert_input_error(completed, str(seg), "labels [7] are not BraTS 2021 labels")
    assert not _dataset(nnunet_folders, 521, "BraTS2021").exists()  # other cases were valid: still nothing


@pytest.mark.parametrize("damage, fragments", [
    ("missing", ["BraTS2021_00003: missing FLAIR sequence"]),
    ("shape", ["BraTS2021_00003_flair.nii.gz: shape (40, 48, 30) differs"]),
    ("truncated", ["BraTS2021_00003_flair.nii.gz: truncated or corrupt"]),
    ("header", ["BraTS2021_00003_flair.nii.gz: not a readable NIfTI file"]),
])
def test_damaged_case_is_reported_before_anything_is_written(damage, fragments, synthetic_source, nnunet_folders):
    source = synthetic_source("2021", cases=3)
    flair = source / "BraTS2021_00003" / "BraTS2021_00003_flair.nii.gz"
    if damage == "missing":
        flair.unlink()
    elif damage == "shape":
        nib.save(nib.Nifti1Image(np.zeros((40, 48, 30), np.int16), nib.load(flair).affine), flair)
    elif damage == "truncated":
        flair.write_bytes(flair.read_bytes()[:-2000])
    else:
        raw = bytearray(gzip.decompress(flair.read_bytes()))
        raw[70:72] = (999).to_bytes(2, "little")  # datatype code nibabel does not know
        flair.write_bytes(gzip.compress(bytes(raw)))
    completed = _run(["convert", str(source), "--dataset-id", "522"])
    _assert_input_error(completed, *fragments)
    assert not _dataset(nnunet_folders, 522, "BraTS2021").exists()  # nothing written, not even folders


def test_empty_source(tmp_path, nnunet_folders):
    (tmp_path / "nothing").mkdir()
    _assert_input_error(_run(["convert", str(tmp_path / "nothing"), "--dataset-id", "523"]),
                        "nothing: no BraTS cases found")


def test_dataset_id_used_by_another_name(synthetic_source, nnunet_folders):
    (nnunet_folders["nnUNet_preprocessed"] / "Dataset524_Other").mkdir()
    _assert_input_error(_run(["convert", str(synthetic_source("2021", 1)), "--dataset-id", "524"]),
                        "Dataset524_Other: dataset id 524 is already used")


def test_nnunet_raw_unset(synthetic_source, monkeypatch):
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    _assert_input_error(_run(["convert", str(synthetic_source("2021", 1)), "--dataset-id", "525"], env=env),
                        "nnUNet_raw is not set", "export nnUNet_raw=")


def test_unwritable_output(synthetic_source, nnunet_folders, tmp_path):
    (nnunet_folders["nnUNet_raw"] / "Dataset526_BraTS2021").write_text("a file where a folder should be")
    _assert_input_error(_run(["convert", str(synthetic_source("2021", 1)), "--dataset-id", "526"]),
                        "Dataset526_BraTS2021: exists and is not a folder", "--overwrite")
    completed = _run(["convert", str(synthetic_source("2021", 1)), "--dataset-id", "526", "--overwrite"])
    assert completed.returncode == 0, completed.stderr
    (tmp_path / "plain-file").write_text("x")
    env = dict(os.environ, nnUNet_raw=str(tmp_path / "plain-file" / "raw"))
    _assert_input_error(_run(["convert", str(synthetic_source("2021", 1)), "--dataset-id", "526"], env=env),
                        "nnUNet_raw=", "cannot create it")


def test_unsupported_release_named(synthetic_source, nnunet_folders):
    _assert_input_error(_run(["convert", str(synthetic_source("2021", 1)), "--dataset-id", "527",
                              "--release", "2024-MEN-RT"]), "2024-MEN-RT: not supported")


def test_ambiguous_release_asks_for_release(synthetic_source, nnunet_folders, tmp_path):
    source = synthetic_source("2023-PED", cases=1)
    renamed = tmp_path / "wild"
    shutil.copytree(source, renamed)
    completed = _run(["convert", str(renamed), "--dataset-id", "528"])
    _assert_input_error(completed, "cannot tell the BraTS release", "pass --release")
    assert _run(["convert", str(renamed), "--dataset-id", "528", "--release", "2023-PED"]).returncode == 0


def test_wrong_explicit_release_is_caught_by_labels(synthetic_source, nnunet_folders):
    source = synthetic_source("2023-GLI", cases=1)
    (source / "BraTS-GLI-00001-000").rename(source / "patient1")  # no BraTS naming: only labels can tell
    completed = _run(["convert", str(source), "--dataset-id", "529", "--release", "2021"])
    _assert_input_error(completed, "labels [3] are not BraTS 2021 labels")


def test_shared_real_case_converts_as_2021(nnunet_folders, tmp_path):
    from conftest import SAMPLE_CASE
    completed = _run(["convert", str(SAMPLE_CASE), "--dataset-id", "530", "--release", "2021", "--name", "Real"])
    assert completed.returncode == 0, completed.stderr
    target = _dataset(nnunet_folders, 530, "Real")
    ours = nib.load(target / "labelsTr" / "TCGA-DU-7294.nii.gz")
    theirs = tmp_path / "theirs.nii.gz"
    copy_BraTS_segmentation_and_convert_labels_to_nnUNet(
        str(SAMPLE_CASE / "TCGA-DU-7294_seg-isen20.nii.gz"), str(theirs))
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(theirs))),
                          sitk.GetArrayFromImage(sitk.ReadImage(str(target / "labelsTr" / "TCGA-DU-7294.nii.gz"))))
    assert ours.shape == (240, 240, 155)
    assert np.array_equal(ours.affine, nib.load(SAMPLE_CASE / "TCGA-DU-7294_t1_bet.nii.gz").affine)
    assert Path(target / "imagesTr" / "TCGA-DU-7294_0001.nii.gz").stat().st_size == \
        (SAMPLE_CASE / "TCGA-DU-7294_t1c_bet.nii.gz").stat().st_size


def test_explicit_release_must_fit_brats_names(synthetic_source, nnunet_folders):
    completed = _run(["convert", str(synthetic_source("2021", 1)), "--dataset-id", "531", "--release", "2024-GLI"])
    _assert_input_error(completed, "BraTS2021_00001: named like BraTS 2021", "check --release")
    same_labels = _run(["convert", str(synthetic_source("2018", 1)), "--dataset-id", "532", "--release", "2021"])
    assert same_labels.returncode == 0, same_labels.stderr


def test_unsupported_release_by_its_names(tmp_path, nnunet_folders):
    case = tmp_path / "BraTS-MEN-RT-0001-1"
    case.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), np.eye(4)), case / "BraTS-MEN-RT-0001-1_t1c.nii.gz")
    _assert_input_error(_run(["convert", str(tmp_path), "--dataset-id", "533"]),
                        "BraTS-MEN-RT-0001-1: release 2024-MEN-RT is not supported", "T1Gd image only")


@pytest.mark.parametrize("damage", ["empty-file", "huge-label", "rgb"])
def test_damaged_segmentation_in_auto_mode(damage, synthetic_source, nnunet_folders):
    """2023/2024 GLI share names, so auto mode reads labels first: damage there is a one-line error too."""
    source = synthetic_source("2023-GLI", cases=2)
    seg = source / "BraTS-GLI-00002-000" / "BraTS-GLI-00002-000-seg.nii.gz"
    affine = nib.load(seg).affine
    if damage == "empty-file":
        seg.write_bytes(b"")
    elif damage == "huge-label":
        labels = np.asanyarray(nib.load(seg).dataobj).astype(np.float32)
        labels[0, 0, 0] = 1e12
        nib.save(nib.Nifti1Image(labels, affine), seg)
    else:
        rgb = np.zeros((40, 48, 36), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
        nib.save(nib.Nifti1Image(rgb, affine), seg)
    completed = _run(["convert", str(source), "--dataset-id", "534"])
    _assert_input_error(completed, str(seg))


def test_auto_release_reads_labels_for_shared_names(synthetic_source, nnunet_folders):
    result = convert_release(synthetic_source("2023-GLI", cases=2), 535, progress=False)
    assert result.release.key == "2023-GLI"
    result = convert_release(synthetic_source("2024-GLI", cases=4), 536, progress=False)
    assert result.release.key == "2024-GLI"  # a resection cavity (label 4) is labelled in some case
