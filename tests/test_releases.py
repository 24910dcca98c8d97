"""The release table: label maps, regions and their lossless way back through nnU-Net."""
import numpy as np
import pytest
from nnunetv2.utilities.label_handling.label_handling import LabelManager

from brats_plugin.errors import BratsInputError
from brats_plugin.releases import (
    RELEASES,
    SEQUENCES,
    get_release,
    release_keys,
    releases_matching_case_id,
)

ALL = list(RELEASES.values())


def test_legacy_labels_match_nnunet_dataset137_convention():
    release = get_release("2021")
    # nnU-Net's Dataset137_BraTS21: 2 (edema) -> 1, 1 (necrosis) -> 2, 4 (enhancing) -> 3
    assert release.to_nnunet == {0: 0, 2: 1, 1: 2, 4: 3}
    labels, order = release.nnunet_labels(regions=True)
    assert labels == {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}
    assert list(labels) == ["background", "whole tumor", "tumor core", "enhancing tumor"]
    assert order == [1, 2, 3]


@pytest.mark.parametrize("key, wt, tc, et", [
    ("2018", (1, 2, 4), (1, 4), (4,)), ("2019", (1, 2, 4), (1, 4), (4,)), ("2020", (1, 2, 4), (1, 4), (4,)),
    ("2021", (1, 2, 4), (1, 4), (4,)), ("2023-GLI", (1, 2, 3), (1, 3), (3,)), ("2023-MET", (1, 2, 3), (1, 3), (3,)),
    ("2024-GLI", (1, 2, 3), (1, 3), (3,)), ("2024-PED", (1, 2, 3, 4), (1, 2, 3), (1,)),
])
def test_evaluation_regions(key, wt, tc, et):
    regions = {r.abbreviation: r.labels for r in get_release(key).regions}
    assert regions == {"WT": wt, "TC": tc, "ET": et}


def test_2024_gli_resection_cavity_is_outside_wt_and_tc():
    release = get_release("2024-GLI")
    assert release.label(4).tissue == "cavity"
    assert all(4 not in r.labels for r in release.regions)


@pytest.mark.parametrize("release", ALL, ids=lambda r: r.key)
def test_maps_are_consecutive_and_invertible(release):
    assert sorted(release.to_nnunet.values()) == list(range(len(release.labels) + 1))
    assert {v: release.from_nnunet[n] for v, n in release.to_nnunet.items()} == {v: v for v in release.label_values}


@pytest.mark.parametrize("release", ALL, ids=lambda r: r.key)
def test_region_training_is_lossless_through_nnunet_label_manager(release):
    """Regions built from every label, turned back into labels by nnU-Net's own code, give the labels."""
    labels, order = release.nnunet_labels(regions=True)
    manager = LabelManager(labels, order)
    assert manager.has_regions
    nnunet_labels = np.array(sorted(release.from_nnunet), dtype=np.uint8).reshape(-1, 1, 1)
    regions = np.stack([np.isin(nnunet_labels, r) for r in manager.foreground_regions]).astype(np.float32)
    back = manager.convert_probabilities_to_segmentation(regions)
    assert np.array_equal(back, nnunet_labels)


@pytest.mark.parametrize("release", ALL, ids=lambda r: r.key)
def test_label_based_entries_are_nnunet_consecutive(release):
    labels, order = release.nnunet_labels(regions=False)
    assert order is None
    assert list(labels.values()) == list(range(len(release.labels) + 1))
    assert not LabelManager(labels, None).has_regions


def test_release_keys_and_aliases():
    assert get_release("2022") is get_release("2021")
    assert get_release("2023") is get_release("2023-gli")
    assert set(release_keys()) >= {"2018", "2019", "2020", "2021", "2023-GLI", "2023-SSA", "2023-MEN",
                                   "2023-MET", "2023-PED", "2024-GLI", "2024-PED"}


def test_unknown_and_unsupported_releases_are_clear_errors():
    with pytest.raises(BratsInputError, match="unknown"):
        get_release("2030")
    with pytest.raises(BratsInputError, match="MEN-RT.*T1Gd image only"):
        get_release("2024-MEN-RT")
    with pytest.raises(BratsInputError, match="not supported"):
        releases_matching_case_id("BraTS-MEN-RT-0001-1")


@pytest.mark.parametrize("case_id, keys", [
    ("Brats18_CBICA_AAB_1", ["2018"]), ("Brats18_2013_10_1", ["2018"]), ("BraTS19_TCIA01_131_1", ["2019"]),
    ("BraTS20_Training_355", ["2020"]), ("BraTS2021_01666", ["2021"]),
    ("BraTS-GLI-00000-000", ["2023-GLI", "2024-GLI"]), ("BraTS-PED-00012-000", ["2023-PED", "2024-PED"]),
    ("BraTS-SSA-00002-000", ["2023-SSA"]), ("TCGA-DU-7294", []),
])
def test_case_id_patterns(case_id, keys):
    assert [r.key for r in releases_matching_case_id(case_id)] == keys


@pytest.mark.parametrize("release", ALL, ids=lambda r: r.key)
def test_every_release_names_all_sequences_and_its_own_case_ids(release):
    assert set(SEQUENCES) <= set(release.file_tokens)
    assert release in releases_matching_case_id(release.case_id(7))
