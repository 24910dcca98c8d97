"""One rule decides the release for convert, predict, export and evaluate (brats_plugin.release_choice)."""

import nibabel as nib
import numpy as np
import pytest
from conftest import BRATS

from brats_plugin.errors import BratsInputError, BratsWarning
from brats_plugin.release_choice import narrow_by_labels, releases_for_case_ids, resolve_release
from brats_plugin.releases import get_release


def _never_read():
    raise AssertionError("labels were read although the names decide")


def test_release_from_names_then_labels():
    gli = releases_for_case_ids(["BraTS-GLI-00001-000", "BraTS-GLI-00002-000"])
    assert [r.key for r in gli] == ["2023-GLI", "2024-GLI"]
    assert narrow_by_labels(gli, {0, 1, 2, 3}, "src").key == "2023-GLI"
    assert narrow_by_labels(gli, {0, 1, 2, 3, 4}, "src").key == "2024-GLI"
    ped = releases_for_case_ids(["BraTS-PED-00001-000"])
    assert narrow_by_labels(ped, {0, 4}, "src").key == "2024-PED"
    with pytest.raises(BratsInputError, match="cannot tell the BraTS release.*pass --release"):
        narrow_by_labels(ped, {0, 1, 2}, "src")
    legacy = [get_release(k) for k in ("2018", "2019", "2020", "2021")]
    assert narrow_by_labels(legacy, {0, 1, 2, 4}, "src").key == "2021"  # one convention
    anything = releases_for_case_ids(["TCGA-DU-7294"])  # no BraTS naming: labels alone decide
    with pytest.raises(BratsInputError, match=r"labels found: \[0, 1, 2, 4\]; fitting releases: 2018, 2019, "
                                              r"2020, 2021, 2024-GLI, 2024-PED"):
        narrow_by_labels(anything, {0, 1, 2, 4}, "src")
    with pytest.raises(BratsInputError, match="different releases.*BraTS2021_00001 \\(2021\\)"):
        releases_for_case_ids(["BraTS2021_00001", "BraTS-MET-00001-000"])


@pytest.mark.parametrize("assume_default", [False, True])
def test_names_decide_without_reading_labels(assume_default):
    for case_id, key in (("BraTS2021_00001", "2021"), ("Brats18_2013_2_1", "2018"), ("BraTS-MET-00001-000",
                                                                                      "2023-MET")):
        assert resolve_release(None, [case_id], "src", _never_read, assume_default=assume_default).key == key
        assert resolve_release("auto", [case_id], "src", _never_read, assume_default=assume_default).key == key


@pytest.mark.parametrize("assume_default", [False, True])
def test_a_named_release_must_fit_brats_style_names(assume_default):
    """Export used to take a named release without this check; every caller makes it now."""
    with pytest.raises(BratsInputError, match="BraTS-MET-00001-000: named like BraTS 2023-MET.*check --release"):
        resolve_release("2021", ["BraTS-MET-00001-000"], "src", _never_read, assume_default=assume_default)
    assert resolve_release("2023-GLI", ["BraTS-MET-00001-000"], "src", _never_read,
                           assume_default=assume_default).key == "2023-GLI"  # same conventions as MET
    assert resolve_release("2024-GLI", ["case7"], "src", _never_read, assume_default=assume_default).key == "2024-GLI"


def test_labels_that_fit_several_conventions_refused_for_training_assumed_for_masks():
    ids, found = ["case7"], lambda: [("case7_seg.nii.gz", [0, 1, 2, 4])]
    with pytest.raises(BratsInputError, match="src: cannot tell the BraTS release.*pass --release"):
        resolve_release(None, ids, "src", found, assume_default=False)
    with pytest.warns(BratsWarning, match=r"src: labels \[0, 1, 2, 4\] fit several BraTS releases; assuming "
                                          r"BraTS 2021's \(pass --release to choose\)"):
        assert resolve_release(None, ids, "src", found, assume_default=True).key == "2021"


def test_the_default_is_never_assumed_against_the_names_or_labels():
    """BraTS-PED names exclude 2021: ambiguous PED labels are refused even for masks."""
    with pytest.raises(BratsInputError, match="cannot tell the BraTS release"):
        resolve_release(None, ["BraTS-PED-00001-000"], "src", lambda: [("a.nii.gz", [0, 1, 2])],
                        assume_default=True)
    with pytest.raises(BratsInputError, match="cannot tell the BraTS release"):  # label 3 is not 2021's
        resolve_release(None, ["case7"], "src", lambda: [("a.nii.gz", [0, 3]), ("b.nii.gz", [4])],
                        assume_default=True)


def test_one_files_labels_fitting_no_candidate_are_named():
    with pytest.raises(BratsInputError, match=r"b.nii.gz: labels \[0, 9\] fit no BraTS release named like"):
        resolve_release(None, ["BraTS-GLI-00001-000"], "src",
                        lambda: [("a.nii.gz", [0, 1]), ("b.nii.gz", [0, 9])], assume_default=True)


def test_labels_decide_when_names_leave_a_choice(recwarn):
    """BraTS-GLI names fit 2023 and 2024; a resection cavity (label 4) in one of the files decides 2024."""
    ids = ["BraTS-GLI-00001-000", "BraTS-GLI-00002-000"]
    for found, key in (([("a.nii.gz", [0, 1, 2, 3]), ("b.nii.gz", [0, 4])], "2024-GLI"),
                       ([("a.nii.gz", [0, 1, 2, 3]), ("b.nii.gz", [0, 2])], "2023-GLI")):
        for assume_default in (False, True):
            chosen = resolve_release(None, ids, "src", lambda: found, assume_default=assume_default)  # noqa: B023
            assert chosen.key == key
    assert not [w for w in recwarn if issubclass(w.category, BratsWarning)]


def test_export_and_evaluate_apply_the_same_rule(synthetic_source, tmp_path):
    """A mask of a BraTS 2023 MET case named as 2021: export and evaluate refuse it alike, by one message."""
    import subprocess
    source = synthetic_source("2023-MET", cases=1)
    case = next(p for p in source.rglob("*") if p.is_dir() and any(p.glob("*-seg.nii.gz")))
    mask = next(case.glob("*-seg.nii.gz"))
    messages = []
    for command in (["export", str(case), str(mask), "-o", str(tmp_path / "x"), "--format", "png"],
                    ["evaluate", str(mask), str(mask), "-o", str(tmp_path / "e")]):
        completed = subprocess.run(BRATS + command + ["--release", "2021"], capture_output=True, text=True,
                                   timeout=120)
        assert completed.returncode == 2, completed.stderr
        messages.append(completed.stderr.strip())
    assert messages[0] == messages[1] and "named like BraTS 2023-MET" in messages[0]


def test_deprecated_labels_flag_still_works_with_a_warning(synthetic_source, tmp_path):
    import subprocess
    source = synthetic_source("2021", cases=1)
    mask = next(source.rglob("*_seg.nii.gz"))
    completed = subprocess.run(BRATS + ["evaluate", str(mask), str(mask), "-o", str(tmp_path / "e"), "--labels",
                                        "2021"], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "brats: warning: --labels is deprecated and will be removed; use --release" in completed.stderr


def test_a_release_the_mask_was_written_in_is_taken_as_it_is(synthetic_source, tmp_path):
    """`brats predict --release 2021 --export ...` on BraTS-MET cases: our own mask, in labels we chose."""
    from brats_plugin.cases import find_case
    from brats_plugin.export.case import load_export_case
    source = synthetic_source("2023-MET", cases=1)
    case = find_case(next(p.parent for p in source.rglob("*-seg.nii.gz")))
    image = nib.load(case.segmentation)
    labels = np.asarray(image.dataobj).astype(np.uint8)
    labels[labels == 3] = 4  # 2023 ET -> 2021 ET
    mask = tmp_path / "in_2021_labels.nii.gz"
    nib.save(nib.Nifti1Image(labels, image.affine, image.header), mask)
    assert load_export_case(case, mask, get_release("2021")).release.key == "2021"
    with pytest.raises(BratsInputError, match="named like BraTS 2023-MET"):
        load_export_case(case, mask, "2021")
