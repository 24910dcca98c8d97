"""`brats preprocess`: scanner studies (DICOM, skull on, oblique, anisotropic) -> BraTS-ready cases.

The studies are written by pydicom from phantoms posed in the scanner with known transforms
(brats_plugin.preprocess.scanner_study), so every test knows where each voxel must land.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from dataclasses import replace

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import BRATS
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless
from scanner_support import HEAD_POSE, PHANTOM_SHAPE, make_phantom, write_phantom_study

from brats_plugin.cases import find_case
from brats_plugin.dataset_conversion.synthetic import synthesize_case
from brats_plugin.errors import BratsInputError, BratsWarning
from brats_plugin.nnunet_commands import run_nnunet, small_machine_environment, with_extension_trainers
from brats_plugin.preprocess import choose_series, preprocess, read_series, scan_study
from brats_plugin.preprocess.registration import transform_points
from brats_plugin.preprocess.scanner_study import add_skull, default_specs, rigid, write_scanner_study
from brats_plugin.releases import get_release

TOKENS = {"T1": "t1", "T1Gd": "t1ce", "T2": "t2", "FLAIR": "flair"}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """A phantom in atlas space, its T1Gd as the atlas file, and its centre."""
    return make_phantom(tmp_path_factory.mktemp("phantom"))


def _study(phantom, folder, **options):
    return write_phantom_study(phantom, folder, **options)


def _flip_last_axis(grid: np.ndarray, slices: int) -> np.ndarray:
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1, slices - 1
    return grid @ flip


def test_series_read_with_the_scanners_geometry(phantom, tmp_path):
    """Oblique, anisotropic (5 mm slices) and left-handed grids come back as the scanner wrote them."""
    truth = _study(phantom, tmp_path / "study")
    picked, _ = choose_series(scan_study(tmp_path / "study"))
    for sequence, series in picked.items():
        image = read_series(series)
        grid = truth.grids[sequence]
        if np.linalg.det(grid[:3, :3]) < 0:  # stored against the normal: read sorted along it
            assert np.allclose(image.affine, _flip_last_axis(grid, image.shape[2]), atol=1e-3), sequence
        else:
            assert np.allclose(image.affine, grid, atol=1e-3), sequence
    assert np.linalg.det(truth.grids["T2"][:3, :3]) < 0  # the protocol holds a left-handed series


@pytest.mark.parametrize("named", [True, False])
def test_series_identified_by_names_or_by_parameters_alone(phantom, tmp_path, named):
    truth = _study(phantom, tmp_path / "study", specs=default_specs(named=named))
    picked, decisions = choose_series(scan_study(tmp_path / "study"))
    assert {s: series.number for s, series in picked.items()} == truth.series_numbers
    ignored = {d.series.description: d.reason for d in decisions if d.sequence is None}
    assert ignored["AAHead_Scout"] == "localizer"
    assert "diffusion" in ignored["ep2d_diff_b1000"]
    assert "derived" in ignored["t1_mprage_post_MPR_cor"]
    if not named:  # no contrast record and no names: the acquisition order decides, and says so
        assert "later of two" in next(d.reason for d in decisions if d.sequence == "T1Gd")


def test_enhanced_multiframe_series_read_like_single_frames(phantom, tmp_path):
    specs = [s for s in default_specs() if s.sequence in ("T2", "FLAIR")]
    _study(phantom, tmp_path / "classic", specs=specs)
    _study(phantom, tmp_path / "enhanced", specs=[replace(s, enhanced=True) for s in specs])
    classic, enhanced = (scan_study(tmp_path / name) for name in ("classic", "enhanced"))
    for one, many in zip(classic, enhanced):
        assert len(many.files) == 1 and many.frames == one.frames
        assert (many.repetition_time, many.echo_time) == (one.repetition_time, one.echo_time)
        single, multi = read_series(one), read_series(many)
        assert np.allclose(single.affine, multi.affine, atol=1e-5)
        assert np.array_equal(np.asarray(single.dataobj), np.asarray(multi.dataobj))


@pytest.mark.parametrize("syntax", [JPEGLSLossless, JPEG2000Lossless, RLELossless],
                         ids=["jpeg-ls", "jpeg2000", "rle"])
def test_compressed_series_read_like_uncompressed(phantom, tmp_path, syntax):
    specs = [s for s in default_specs() if s.sequence == "FLAIR"]
    _study(phantom, tmp_path / "plain", specs=specs)
    _study(phantom, tmp_path / "packed", specs=specs, transfer_syntax=syntax)
    plain, packed = (read_series(scan_study(tmp_path / name)[0]) for name in ("plain", "packed"))
    assert np.array_equal(plain.affine, packed.affine)
    assert np.array_equal(np.asarray(plain.dataobj), np.asarray(packed.dataobj))


def _preprocess_cli(*arguments, timeout=600):
    return subprocess.run(BRATS + ["preprocess", *map(str, arguments)], capture_output=True, text=True,
                          timeout=timeout)


def test_ambiguous_or_missing_series_exit_2_with_the_table_and_a_choice(phantom, tmp_path):
    specs = default_specs()
    t1c = next(s for s in specs if s.sequence == "T1Gd")
    _study(phantom, tmp_path / "two", specs=specs + [replace(t1c, description="t1_vibe_post_tra",
                                                             acquisition_type="3D")])
    completed = _preprocess_cli(tmp_path / "two", "-o", tmp_path / "out")
    assert completed.returncode == 2
    assert "cannot choose the four sequences: 2 T1Gd series (choose with --t1c SERIES_NUMBER)" in completed.stderr
    assert "t1_vibe_post_tra" in completed.stderr and "taken as" in completed.stderr  # the table
    assert not (tmp_path / "out").exists()
    series = scan_study(tmp_path / "two")
    picked, _ = choose_series(series, {"T1Gd": "8"})
    assert picked["T1Gd"].description == "t1_vibe_post_tra"

    _study(phantom, tmp_path / "three", specs=[s for s in specs if s.sequence != "FLAIR"])
    completed = _preprocess_cli(tmp_path / "three", "-o", tmp_path / "out")
    assert completed.returncode == 2 and "no FLAIR series (choose with --flair SERIES_NUMBER)" in completed.stderr


def test_a_case_id_that_reads_as_a_sequence_needs_its_own_folder_name(phantom, tmp_path):
    """Case folders are read with their folder name as the case id: another id must not read as a sequence."""
    _study(phantom, tmp_path / "study", specs=[s for s in default_specs() if s.sequence == "T2"])
    completed = _preprocess_cli(tmp_path / "study", "-o", tmp_path / "out" / "patient", "--case-id", "post_t1gd")
    assert completed.returncode == 2
    assert "--case-id post_t1gd: reads as T1Gd in a file name" in completed.stderr
    assert "out/post_t1gd" in completed.stderr
    assert not (tmp_path / "out").exists()


def test_broken_series_are_refused_in_one_line(phantom, tmp_path):
    specs = [s for s in default_specs() if s.sequence == "T2"]
    _study(phantom, tmp_path / "gap", specs=specs)
    slices = sorted((tmp_path / "gap").rglob("*.dcm"))
    slices[len(slices) // 2].unlink()
    with pytest.raises(BratsInputError, match="irregular slice spacing.*a slice is missing"):
        read_series(scan_study(tmp_path / "gap")[0])

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.txt").write_text("no images here")
    with pytest.raises(BratsInputError, match="no DICOM files found"):
        scan_study(tmp_path / "empty")

    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as archive:
        archive.writestr("../../etc/escape.dcm", b"x")
    with pytest.raises(BratsInputError, match="points outside the archive"):
        scan_study(tmp_path / "evil.zip")

    _study(phantom, tmp_path / "two_studies" / "a", specs=specs)  # each call writes a study of its own
    _study(phantom, tmp_path / "two_studies" / "b", specs=specs)
    with pytest.raises(BratsInputError, match="holds 2 studies or patients"):
        scan_study(tmp_path / "two_studies")

    only_ct = tmp_path / "ct"
    only_ct.mkdir()
    from pydicom import examples
    examples.ct.save_as(only_ct / "ct.dcm")
    with pytest.raises(BratsInputError, match="no T1 series") as refused:
        choose_series(scan_study(only_ct))
    assert "not MR (CT)" in str(refused.value)


def _displacement(truth, case, transforms, sequence: str) -> float:
    """Mean distance (mm) over brain voxels between where the transforms and the truth put each voxel."""
    brain = np.argwhere(case.images["T1Gd"] > 0)[::40]
    world = brain @ case.affine[:3, :3].T + case.affine[:3, 3]
    expected = world @ truth.poses[sequence][:3, :3].T + truth.poses[sequence][:3, 3]
    to_atlas = sitk.ReadTransform(str(transforms / "t1ce_from_atlas.tfm"))
    chain = to_atlas if sequence == "T1Gd" else sitk.CompositeTransform(
        [sitk.ReadTransform(str(transforms / f"{TOKENS[sequence]}_from_t1ce.tfm")), to_atlas])
    return float(np.linalg.norm(transform_points(chain, world) - expected, axis=1).mean())


def test_preprocess_puts_every_sequence_where_the_truth_says(phantom, tmp_path):
    case, atlas, _ = phantom
    truth = _study(phantom, tmp_path / "study")
    shutil.make_archive(str(tmp_path / "study"), "zip", tmp_path / "study")
    completed = _preprocess_cli(tmp_path / "study.zip", "-o", tmp_path / "cases" / "P1", "--atlas", atlas)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "approximate" in completed.stderr  # no brain extraction given: the atlas's brain, with a warning
    folder = tmp_path / "cases" / "P1"
    transforms = folder / "preprocessing" / "transforms"
    for sequence in TOKENS:
        assert _displacement(truth, case, transforms, sequence) < 1.0, sequence
    found = find_case(folder)  # brats predict reads the folder as it is
    assert found.case_id == "P1" and found.segmentation is None
    output = nib.load(found.sequences["T1Gd"])
    assert output.shape == PHANTOM_SHAPE and np.allclose(output.affine, case.affine)
    brain = np.asanyarray(nib.load(folder / "preprocessing" / "brain_mask.nii.gz").dataobj) > 0
    truth_brain = case.images["T1Gd"] > 0
    assert 2 * (brain & truth_brain).sum() / (brain.sum() + truth_brain.sum()) > 0.85
    native = nib.load(folder / "preprocessing" / "native_t1ce.nii.gz")
    assert np.allclose(native.affine, truth.grids["T1Gd"], atol=1e-3)
    from PIL import Image
    with Image.open(folder / "P1_qc.png") as picture:  # three planes of the four sequences
        assert picture.mode == "RGB" and picture.width > 3 * PHANTOM_SHAPE[0] and picture.height > 2 * 100
        colours = {tuple(c) for c in np.asarray(picture).reshape(-1, 3)}
    assert (0, 220, 255) in colours and (255, 220, 0) in colours  # the T1Gd's edges and the mask's outline
    record = (folder / "preprocessing" / "preprocess.json").read_text()
    assert '"SeriesNumber": 6' in record and "final_metric" in record
    overlap = json.loads(record)["registration"]["overlap"]
    assert len(overlap) == 4 and min(overlap.values()) > 0.95, overlap

    again = _preprocess_cli(tmp_path / "study.zip", "-o", folder, "--atlas", atlas)
    assert again.returncode == 2 and "exists and is not empty" in again.stderr


def test_skull_stripped_inputs_are_detected_and_nifti_inputs_work(phantom, tmp_path):
    case, atlas, _ = phantom
    _study(phantom, tmp_path / "study", skull=False)
    picked, _ = choose_series(scan_study(tmp_path / "study"))
    for sequence, series in picked.items():
        nib.save(read_series(series), tmp_path / f"{TOKENS[sequence]}.nii.gz")
    result = preprocess(None, tmp_path / "cases" / "P2", atlas=atlas,
                        series={s: str(tmp_path / f"{TOKENS[s]}.nii.gz") for s in TOKENS})
    assert "look skull-stripped" in result.brain_mask_source
    brain = np.asanyarray(nib.load(tmp_path / "cases" / "P2" / "preprocessing" / "brain_mask.nii.gz").dataobj) > 0
    truth_brain = case.images["T1Gd"] > 0
    assert 2 * (brain & truth_brain).sum() / (brain.sum() + truth_brain.sum()) > 0.9

    # no original DICOM series to put a SEG on: the DICOM export stays on the atlas grid, and says so
    nib.save(nib.Nifti1Image(case.labels.astype(np.uint8), case.affine), tmp_path / "mask.nii.gz")
    completed = subprocess.run(BRATS + ["export", str(tmp_path / "cases" / "P2"), str(tmp_path / "mask.nii.gz"), "-o",
                                        str(tmp_path / "out"), "--format", "dicom", "--release", "2021"],
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr
    assert "preprocessed from NIfTI files, so no original DICOM series to put a SEG on" in completed.stderr
    assert (tmp_path / "out" / "P2_dicom" / "MR_T1Gd").is_dir() and (tmp_path / "out" / "P2_dicom" / "SEG").is_dir()


def test_a_given_brain_mask_is_carried_onto_the_atlas_grid(phantom, tmp_path):
    case, atlas, _ = phantom
    _study(phantom, tmp_path / "stripped", skull=False)  # the same protocol and motion: the same grids
    native = read_series(choose_series(scan_study(tmp_path / "stripped"))[0]["T1Gd"])
    mask_file = tmp_path / "native_brain.nii.gz"
    nib.save(nib.Nifti1Image((np.asarray(native.dataobj) > 0).astype(np.uint8), native.affine), mask_file)
    _study(phantom, tmp_path / "study")
    result = preprocess(tmp_path / "study", tmp_path / "cases" / "P3", atlas=atlas, brain_mask=mask_file)
    assert result.brain_mask_source.startswith("given")
    brain = np.asanyarray(nib.load(tmp_path / "cases" / "P3" / "preprocessing" / "brain_mask.nii.gz").dataobj) > 0
    truth_brain = case.images["T1Gd"] > 0
    assert 2 * (brain & truth_brain).sum() / (brain.sum() + truth_brain.sum()) > 0.95

    wrong = tmp_path / "wrong_grid.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((10, 10, 10), np.uint8), np.eye(4)), wrong)
    completed = _preprocess_cli(tmp_path / "study", "-o", tmp_path / "cases" / "P4", "--atlas", atlas,
                                "--brain-mask", wrong)
    assert completed.returncode == 2 and "must lie on the native T1Gd's grid" in completed.stderr
    assert not (tmp_path / "cases" / "P4").exists()


@pytest.mark.integration
@pytest.mark.timeout(1800)  # three studies preprocessed and five predictions (and the models, if trained here)
def test_brats_predict_takes_the_preprocessed_case_as_it_is_and_returns_it_to_the_native_grid(
        phantom, tmp_path, trained_models):
    _, atlas, _ = phantom
    _study(phantom, tmp_path / "study")
    with pytest.warns(BratsWarning, match="approximate"):
        preprocess(tmp_path / "study", tmp_path / "cases" / "P5", atlas=atlas)
    for source in (tmp_path / "cases" / "P5", tmp_path / "cases"):  # one case folder, or a folder of cases
        completed = subprocess.run(BRATS + ["predict", "-i", str(source), "-o", str(tmp_path / "out"), "-m",
                                            str(trained_models["regions"]), "--fast", "--device", "cpu"],
                                   capture_output=True, text=True, timeout=900)
        assert completed.returncode == 0, completed.stderr[-2000:]
        mask = nib.load(tmp_path / "out" / "P5.nii.gz")
        assert mask.shape == PHANTOM_SHAPE
    native = nib.load(tmp_path / "out" / "P5_native.nii.gz")
    t1c = nib.load(tmp_path / "cases" / "P5" / "preprocessing" / "native_t1ce.nii.gz")
    assert native.shape == t1c.shape and np.allclose(native.affine, t1c.affine)
    report = json.loads((tmp_path / "out" / "P5.json").read_text())
    assert "clinical" in report["native"]["about"] and set(report["native"]["volumes"]["regions"]) == {"WT", "TC", "ET"}
    header = (tmp_path / "out" / "volumes.csv").read_text().splitlines()[0]
    assert "WT (mL)" in header and "WT native clinical (mL)" in header

    # a DICOM study straight into brats predict: preprocessed into OUT/preprocessed/<id>, then segmented
    shutil.make_archive(str(tmp_path / "P11"), "zip", tmp_path / "study")
    study_out = tmp_path / "study_out"
    arguments = ["predict", "-o", str(study_out), "--fast", "--device", "cpu", "-m",
                 str(trained_models["regions_stock"])]  # initial weights: every label somewhere
    study = ["-i", str(tmp_path / "P11.zip"), "--atlas", str(atlas)]
    completed = subprocess.run(BRATS + arguments + study + ["--export", "dicom"], capture_output=True, text=True,
                               timeout=900)
    assert completed.returncode == 0, completed.stderr[-2000:]
    # the DICOM export of a study is a SEG and an SR in that study (tests/test_study_export.py checks them)
    exported = sorted(p.relative_to(study_out / "P11_dicom").as_posix() for p in (study_out / "P11_dicom").rglob("*"))
    assert exported == ["SEG", "SEG/seg.dcm", "SR", "SR/sr.dcm"]
    sr_values = [item.MeasuredValueSequence[0].NumericValue for group in
                 pydicom.dcmread(study_out / "P11_dicom" / "SR" / "sr.dcm").ContentSequence[-1].ContentSequence
                 for item in group.ContentSequence if "MeasuredValueSequence" in item]
    native_volumes = json.loads((study_out / "P11.json").read_text())["native"]["volumes"]
    assert [float(v) for v in sr_values] == pytest.approx(
        [e["mL"] for e in native_volumes["labels"].values()] + [e["mL"] for e in native_volumes["regions"].values()],
        abs=1e-3)
    again = subprocess.run(BRATS + arguments + study, capture_output=True, text=True, timeout=900)
    assert again.returncode == 2 and "exists (a study preprocessed before)" in again.stderr  # never another's
    unused = subprocess.run(BRATS + arguments + ["-i", str(study_out / "preprocessed" / "P11"), "--atlas", str(atlas)],
                            capture_output=True, text=True, timeout=900)
    assert unused.returncode == 2 and "--atlas: preprocessing options, for a scanner study" in unused.stderr
    import csv
    with open(study_out / "volumes.csv", newline="") as table:
        (row,) = list(csv.DictReader(table))
    assert row["case_id"] == "P11" and float(row["WT native clinical (mL)"]) > 0 and float(row["WT (mL)"]) > 0
    assert (study_out / "preprocessed" / "P11" / "preprocessing" / "preprocess.json").is_file()
    assert nib.load(study_out / "P11_native.nii.gz").shape == t1c.shape
    from brats_plugin.evaluation.pairing import find_masks
    assert list(find_masks(study_out)[0]) == ["P11"]  # evaluate passes over the native mask and the cases

    from brats_plugin.inference import Segmenter
    with pytest.warns(BratsWarning, match="approximate"):
        result = Segmenter(trained_models["regions_stock"], mirroring=False, tiling="whole", device="cpu"
                           ).predict_study(tmp_path / "P11.zip", tmp_path / "api" / "P12", atlas=atlas)
    assert result.case_id == "P12" and result.labels.shape == PHANTOM_SHAPE
    assert result.native.image.shape == t1c.shape and set(result.native.volumes.regions) == {"WT", "TC", "ET"}
    stored = json.loads((study_out / "P11.json").read_text())["native"]["volumes"]["regions"]
    assert result.native.volumes.regions["WT"] == pytest.approx(stored["WT"]["mL"], rel=0.02, abs=0.05)


def test_the_true_labels_go_back_onto_the_native_t1gd_where_the_scanner_saw_them(phantom, tmp_path):
    """The phantom's true labels, carried from the atlas grid onto the native T1Gd (5 degrees oblique,
    head posed and moved) by the kept transforms, match the labels sampled there by the truth."""
    from brats_plugin.preprocess.native import labels_to_native
    from brats_plugin.preprocess.scanner_study import native_labels
    case, atlas, _ = phantom
    truth = _study(phantom, tmp_path / "study")
    preprocess(tmp_path / "study", tmp_path / "cases" / "P10", atlas=atlas, skull_stripped=True)
    found = labels_to_native(case.labels.astype(np.uint8), case.affine, tmp_path / "cases" / "P10",
                             get_release("2021"))
    expected = native_labels(case.labels, case.affine, truth)
    assert found.shape == expected.shape and np.allclose(found.affine, expected.affine, atol=1e-3)
    found_labels, expected_labels = np.asarray(found.dataobj), np.asarray(expected.dataobj)
    for region, values in {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}.items():
        a, b = np.isin(found_labels, values), np.isin(expected_labels, values)
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.9, region
        # the right side of the head: the tumour's centre where the scanner saw it, within 1.5 mm
        centres = [nib.affines.apply_affine(found.affine, np.argwhere(m).mean(axis=0)) for m in (a, b)]
        assert np.linalg.norm(centres[0] - centres[1]) < 1.5, region


def test_an_implausible_registration_is_refused_unless_forced(phantom, tmp_path):
    """A FLAIR from another patient's position (60 mm off): refused in one line, kept with --force."""
    case, atlas, centre = phantom
    specs = default_specs()
    truth_dir = tmp_path / "study"
    write_scanner_study(truth_dir, case.images, case.affine, head_pose=rigid(*HEAD_POSE, centre), specs=specs)
    flair = next(p for p in scan_study(truth_dir) if p.description.startswith("t2_tirm"))
    for source in flair.files:  # the FLAIR's slices moved 60 mm along the slice normal: not motion
        dataset = source.read(pixels=True)
        normal = np.cross(np.array(dataset.ImageOrientationPatient[:3], float),
                          np.array(dataset.ImageOrientationPatient[3:], float))
        dataset.ImagePositionPatient = [float(v) for v in np.array(dataset.ImagePositionPatient, float) + 60 * normal]
        dataset.save_as(source.path)
    completed = _preprocess_cli(truth_dir, "-o", tmp_path / "cases" / "P6", "--atlas", atlas)
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert "registration failed its check: FLAIR" in completed.stderr and "--force" in completed.stderr
    assert not (tmp_path / "cases" / "P6").exists()
    forced = _preprocess_cli(truth_dir, "-o", tmp_path / "cases" / "P6", "--atlas", atlas, "--force", "-j", "1")
    assert forced.returncode == 0 and "kept because of --force" in forced.stderr


@pytest.mark.parametrize("failure", ["atlas", "FLAIR"])
def test_a_registration_that_stopped_in_the_wrong_place_is_caught_by_its_overlap(phantom, tmp_path, monkeypatch,
                                                                                   failure):
    """An optimiser that ends 15 mm off (inside the motion limits: only the overlap can tell) is refused."""
    from brats_plugin.preprocess import pipeline
    from brats_plugin.preprocess.registration import Registration

    _study(phantom, tmp_path / "study")
    flair = next(s for s in scan_study(tmp_path / "study") if s.description.startswith("t2_tirm"))
    flair_size = tuple(int(n) for n in read_series(flair).shape)
    target = "register_to_atlas" if failure == "atlas" else "register_rigid_same_session"
    register = getattr(pipeline, target)

    def ends_15_mm_off(*arguments, **options):
        found = register(*arguments, **options)
        if failure == "atlas" or arguments[-1].GetSize() == flair_size:  # the moving image
            off = sitk.AffineTransform(3)  # the same transform, landing 15 mm to the side
            off.SetCenter(found.transform.GetCenter())
            off.SetMatrix(found.transform.GetMatrix())
            off.SetTranslation(tuple(np.add(found.transform.GetTranslation(), (15.0, 0.0, 0.0))))
            return Registration(off, found.metric)
        return found

    monkeypatch.setattr(pipeline, target, ends_15_mm_off)
    _, atlas, _ = phantom
    with pytest.raises(BratsInputError, match="registration failed its check") as refused:
        preprocess(tmp_path / "study", tmp_path / "cases" / "P7", atlas=atlas)
    expected = "atlas brain on the T1Gd's head" if failure == "atlas" else "FLAIR head on the T1Gd's head"
    assert expected in str(refused.value) and "moves the field of view" not in str(refused.value)
    assert not (tmp_path / "cases" / "P7").exists()


#: The brain-extraction dataset the tests train: skull-on phantoms at 2 mm (nnU-Net resamples to it).
BET_DATASET, BET_CASES, BET_SPACING = 703, 6, (2.0, 2.0, 2.0)


@pytest.fixture(scope="module")
def brain_model(tmp_path_factory):
    """A small nnU-Net brain-extraction model trained by the real ``nnUNetv2_train`` on skull-on phantoms.

    One input channel named T1Gd, labels background/brain, like HD-BET 2.x's; the slim demo network,
    60 iterations: enough to learn brain against skull and scalp on phantoms.
    """
    base = tmp_path_factory.mktemp("brain_model")
    environment = with_extension_trainers(small_machine_environment())
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (base / name).mkdir()
        environment[name] = str(base / name)
    raw = base / "nnUNet_raw" / f"Dataset{BET_DATASET}_BrainExtraction"
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    shape = tuple(round(n / s) for n, s in zip(PHANTOM_SHAPE, BET_SPACING))
    for index in range(BET_CASES):
        case = synthesize_case(get_release("2021"), f"B{index}", shape=shape, spacing=BET_SPACING, seed=100 + index)
        head = add_skull({"T1Gd": case.images["T1Gd"]}, BET_SPACING)["T1Gd"]
        nib.save(nib.Nifti1Image(head, case.affine), raw / "imagesTr" / f"BET_{index:03d}_0000.nii.gz")
        nib.save(nib.Nifti1Image((case.images["T1Gd"] > 0).astype(np.uint8), case.affine),
                 raw / "labelsTr" / f"BET_{index:03d}.nii.gz")
    (raw / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T1Gd"}, "labels": {
        "background": 0, "brain": 1}, "numTraining": BET_CASES, "file_ending": ".nii.gz"}))
    run_nnunet("nnUNetv2_plan_and_preprocess", ["-d", str(BET_DATASET), "-c", "3d_fullres", "-np", "1"],
               env=environment, timeout=900, capture=True)
    trainer = "nnUNetTrainerDCCE_demo_6epochs"
    run_nnunet("nnUNetv2_train", [str(BET_DATASET), "3d_fullres", "all", "-tr", trainer, "-device", "cpu"],
               env=environment, timeout=1800, capture=True)
    return base / "nnUNet_results" / raw.name / f"{trainer}__nnUNetPlans__3d_fullres"


@pytest.mark.integration
def test_a_brain_extraction_model_finds_the_brain(phantom, tmp_path, brain_model):
    case, atlas, _ = phantom
    _study(phantom, tmp_path / "study")
    completed = _preprocess_cli(tmp_path / "study", "-o", tmp_path / "cases" / "P8", "--atlas", atlas,
                                "--brain-model", brain_model, "--device", "cpu", timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "approximate" not in completed.stderr
    folder = tmp_path / "cases" / "P8"
    brain = np.asanyarray(nib.load(folder / "preprocessing" / "brain_mask.nii.gz").dataobj) > 0
    truth_brain = case.images["T1Gd"] > 0
    dice = 2 * (brain & truth_brain).sum() / (brain.sum() + truth_brain.sum())
    assert dice > 0.9, dice
    record = json.loads((folder / "preprocessing" / "preprocess.json").read_text())
    assert record["brain_mask"].startswith(f"model: nnU-Net model {brain_model}")
    t1c = np.asanyarray(nib.load(folder / "P8_t1ce.nii.gz").dataobj)
    assert not t1c[~brain].any() and t1c[brain].mean() > 0  # the mask is applied

    from brats_plugin.errors import IncompatibleModelError
    from brats_plugin.inference.brain_extraction import input_sequences
    assert input_sequences({"channel_names": {"0": "T1"}}, "d") == ["T1"]
    assert input_sequences({"channel_names": {"0": "MRI"}}, "d") == ["T1Gd"]  # one unnamed channel: the T1Gd
    assert input_sequences({"channel_names": {"0": "FLAIR", "1": "T1ce"}}, "d") == ["FLAIR", "T1Gd"]
    with pytest.raises(IncompatibleModelError, match="not distinct BraTS sequences"):
        input_sequences({"channel_names": {"0": "MRI", "1": "CT"}}, "d")
    wrong = _preprocess_cli(tmp_path / "study", "-o", tmp_path / "cases" / "P9", "--brain-model", tmp_path)
    assert wrong.returncode == 2 and "not an nnU-Net model" in wrong.stderr
    assert not (tmp_path / "cases" / "P9").exists()


def test_brats_synth_scanner_writes_studies_with_their_truth(tmp_path):
    completed = subprocess.run(BRATS + ["synth", str(tmp_path / "studies"), "--scanner", "--cases", "1"],
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    folder = tmp_path / "studies" / "Scanner_00001"
    truth = json.loads((folder / "truth" / "truth.json").read_text())["series"]
    picked, decisions = choose_series(scan_study(folder / "dicom"))
    assert {s: series.number for s, series in picked.items()} == {s: t["SeriesNumber"] for s, t in truth.items()}
    assert sum(d.sequence is None for d in decisions) == 3  # localizer, diffusion, derived
    labels = nib.load(folder / "truth" / "t1ce_native_labels.nii.gz")
    native = read_series(picked["T1Gd"])
    assert labels.shape == tuple(truth["T1Gd"]["shape"]) and np.allclose(labels.affine, truth["T1Gd"]["grid"])
    # the labels lie on the native T1Gd's tumour: brighter there than in the rest of the brain
    tumour_world = nib.affines.apply_affine(labels.affine, np.argwhere(np.asarray(labels.dataobj) == 4))
    in_native = np.rint(nib.affines.apply_affine(np.linalg.inv(native.affine), tumour_world)).astype(int)
    enhancing = np.asarray(native.dataobj)[tuple(in_native.T)]
    assert enhancing.mean() > 1.3 * np.median(np.asarray(native.dataobj)[np.asarray(native.dataobj) > 0])
    voxels = np.asarray(native.dataobj, np.float32)  # the whole posed head lies inside the field of view
    faces = [voxels[0], voxels[-1], voxels[:, 0], voxels[:, -1], voxels[:, :, 0], voxels[:, :, -1]]
    assert max(float(face.max()) for face in faces) < 0.05 * float(np.percentile(voxels, 99.9))
    assert sorted(p.name for p in (folder / "atlas_space").iterdir()) == [
        "FLAIR.nii.gz", "T1.nii.gz", "T1Gd.nii.gz", "T2.nii.gz", "labels.nii.gz"]


def test_mixed_sizes_and_unreadable_transfer_syntaxes_are_refused_in_one_line(phantom, tmp_path):
    from pydicom import dcmread
    from pydicom.encaps import encapsulate
    _study(phantom, tmp_path / "mixed")
    flair = next(s for s in scan_study(tmp_path / "mixed") if s.description.startswith("t2_tirm"))
    odd = flair.files[3].read(pixels=True)
    odd.Rows, odd.PixelData = odd.Rows - 2, odd.pixel_array[:-2].tobytes()
    odd.save_as(flair.files[3].path)
    completed = _preprocess_cli(tmp_path / "mixed", "-o", tmp_path / "out")
    assert completed.returncode == 2 and "slices of different sizes" in completed.stderr
    assert flair.label in completed.stderr.strip().splitlines()[-1]

    specs = [s for s in default_specs() if s.sequence == "FLAIR"]
    _study(phantom, tmp_path / "video", specs=specs)
    for path in (tmp_path / "video").rglob("*.dcm"):  # MPEG-4 video: no decoder from pip reads it
        dataset = dcmread(path)
        dataset.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.102"
        dataset.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])
        dataset["PixelData"].VR = "OB"
        dataset.save_as(path)
    with pytest.raises(BratsInputError, match=r"cannot read .*IM0001\.dcm"):
        read_series(scan_study(tmp_path / "video")[0])
    assert not (tmp_path / "out").exists()


#: Scanner grids for the real sample case (its brain is adult-sized): spacing (mm) and shape per sequence.
SAMPLE_GRIDS = {"T1": ((1.0, 1.0, 1.0), (180, 220, 170)), "T1Gd": ((1.0, 1.0, 1.0), (180, 220, 170)),
                "T2": ((0.9, 0.9, 5.0), (220, 250, 30)), "FLAIR": ((0.9, 0.9, 5.0), (220, 250, 30))}


@pytest.mark.integration
def test_the_real_sample_case_from_scanner_grids_lands_where_the_truth_says(tmp_path):
    """The shared glioma case, given a skull, posed in the scanner and written on oblique 1 mm and 5 mm
    grids, preprocessed onto its own T1Gd as the atlas: every sequence within 1 mm of where it came from."""
    from types import SimpleNamespace

    from conftest import SAMPLE_CASE
    sample = find_case(SAMPLE_CASE)
    reference = nib.load(sample.sequences["T1Gd"])
    images = {s: np.asarray(nib.load(p).dataobj, np.float32) for s, p in sample.sequences.items()}
    centre = nib.affines.apply_affine(reference.affine, (np.array(reference.shape) - 1) / 2)
    specs = [replace(s, spacing=SAMPLE_GRIDS[s.sequence][0], shape=SAMPLE_GRIDS[s.sequence][1]) if s.sequence
             else s for s in default_specs()]
    truth = write_scanner_study(tmp_path / "study", images, reference.affine, specs=specs,
                                head_pose=rigid((-4.0, 6.0, -8.0), (-5.0, 7.0, 4.0), centre))
    with pytest.warns(BratsWarning, match="approximate"):
        preprocess(tmp_path / "study", tmp_path / "cases" / "sample", atlas=sample.sequences["T1Gd"])
    known = SimpleNamespace(images=images, affine=reference.affine)
    transforms = tmp_path / "cases" / "sample" / "preprocessing" / "transforms"
    for sequence in TOKENS:
        assert _displacement(truth, known, transforms, sequence) < 1.0, sequence
