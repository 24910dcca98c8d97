"""Shared fixtures: small synthetic BraTS sources in each release's layout, and nnU-Net folders."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from brats_plugin import convert_release, write_synthetic_release
from brats_plugin.nnunet_commands import run_nnunet, small_machine_environment, with_extension_trainers

#: Small enough to be quick, large enough for a brain with a tumour.
SMALL_SHAPE = (40, 48, 36)
REPO = Path(__file__).resolve().parents[1]
#: The real sample case shipped with the tests (tests/data/README.md: origin and licence).
SAMPLE_CASE = REPO / "tests" / "data" / "TCGA-DU-7294"
#: The ``brats`` command, run with this interpreter (works whether or not the venv is activated).
BRATS = [sys.executable, "-m", "brats_plugin.cli"]
#: The planned datasets shared by the trainer and inference tests: region-based 2021, label-based 2023 MET.
REGIONS, LABELS = 701, 702
NAMES = {REGIONS: "Dataset701_BraTS2021", LABELS: "Dataset702_BraTS2023MET"}


@pytest.fixture(scope="session")
def _synthetic_cache(tmp_path_factory):
    cache: dict[tuple, Path] = {}

    def make(release: str, cases: int, images_only: bool, first_index: int) -> Path:
        key = (release, cases, images_only, first_index)
        if key not in cache:
            root = tmp_path_factory.mktemp(f"synthetic-{release}")
            write_synthetic_release(root, release, cases, shape=SMALL_SHAPE, seed=7, first_index=first_index,
                                    with_segmentation=not images_only)
            cache[key] = root
        return cache[key]
    return make


@pytest.fixture
def synthetic_source(_synthetic_cache, tmp_path):
    """``synthetic_source(release, cases=3, images_only=False)``: a private copy of a small source."""
    def copy(release: str = "2021", cases: int = 3, images_only: bool = False, first_index: int = 1) -> Path:
        target = tmp_path / f"source-{release}-{cases}-{images_only}-{first_index}"
        if not target.exists():
            shutil.copytree(_synthetic_cache(release, cases, images_only, first_index), target)
        return target
    return copy


@pytest.fixture
def nnunet_folders(tmp_path, monkeypatch):
    """Fresh nnUNet_raw / nnUNet_preprocessed / nnUNet_results for one test."""
    folders = {name: tmp_path / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for name, folder in folders.items():
        folder.mkdir()
        monkeypatch.setenv(name, str(folder))
    return folders


@pytest.fixture(scope="session")
def planned_datasets(tmp_path_factory):
    """Two converted, planned and preprocessed datasets; the environment that points at them."""
    base = tmp_path_factory.mktemp("planned")
    folders = {name: base / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    with pytest.MonkeyPatch.context() as patch:
        for name, folder in folders.items():
            folder.mkdir()
            patch.setenv(name, str(folder))
        for key, dataset, regions in (("2021", REGIONS, True), ("2023-MET", LABELS, False)):
            source = base / f"source-{key}"
            write_synthetic_release(source, key, 6, shape=SMALL_SHAPE, seed=21)
            test_source = base / f"test-{key}"
            write_synthetic_release(test_source, key, 1, shape=SMALL_SHAPE, seed=21, first_index=50,
                                    with_segmentation=False)
            convert_release(source, dataset, regions=regions, test_source=test_source, progress=False)
        environment = with_extension_trainers(small_machine_environment())
        patch.setenv("nnUNet_extTrainer", environment["nnUNet_extTrainer"])
        run_nnunet("nnUNetv2_plan_and_preprocess", ["-d", str(REGIONS), str(LABELS), "-c", "3d_fullres", "-np", "1"],
                   env=environment, timeout=900, capture=True)
        yield folders, environment


@pytest.fixture(scope="session")
def trained_models(planned_datasets):
    """Models for the inference tests, made once: ``{"regions": ..., "regions_stock": ..., "labels": ...}``.

    ``regions``: our ``nnUNetTrainerGDL_demo_2epochs`` trained by the real ``nnUNetv2_train`` on folds 1
    and 2 of the region-based 2021 dataset (4 iterations: it has learned little).
    ``regions_stock`` (2021 regions) and ``labels`` (2023 MET labels): stock ``nnUNetTrainer`` checkpoints
    of fold 0 with their initial random weights (and mirroring axes), saved by nnU-Net's own trainer:
    the loading path of models trained with a stock trainer, and label maps full of every label for
    the comparisons.
    """
    folders, environment = planned_datasets
    trainer = "nnUNetTrainerGDL_demo_2epochs"
    for fold in ("1", "2"):
        run_nnunet("nnUNetv2_train", [str(REGIONS), "3d_fullres", fold, "-tr", trainer, "-device", "cpu"],
                   env=environment, timeout=900, capture=True)
    results = folders["nnUNet_results"]
    return {"regions": results / NAMES[REGIONS] / f"{trainer}__nnUNetPlans__3d_fullres",
            "regions_stock": _stock_checkpoint(folders, REGIONS), "labels": _stock_checkpoint(folders, LABELS)}


def _stock_checkpoint(folders: dict[str, Path], dataset: int) -> Path:
    """A results folder with fold 0 of a stock nnUNetTrainer, saved before any training step."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    torch.manual_seed(dataset)
    stock = get_trainer_from_args(str(dataset), "3d_fullres", 0, "nnUNetTrainer", device=torch.device("cpu"))
    stock.initialize()
    stock.configure_rotation_dummyDA_mirroring_and_inital_patch_size()  # mirroring axes, as training sets them
    folder = Path(stock.output_folder_base)
    (folder / "fold_0").mkdir(parents=True, exist_ok=True)
    stock.save_checkpoint(str(folder / "fold_0" / "checkpoint_final.pth"))
    preprocessed = folders["nnUNet_preprocessed"] / NAMES[dataset]
    shutil.copy(preprocessed / "nnUNetPlans.json", folder / "plans.json")
    shutil.copy(preprocessed / "dataset.json", folder / "dataset.json")
    return folder


@pytest.fixture(scope="module")
def browser():
    """A real headless Chromium for a test module (the viewer and the app); closed afterwards."""
    from browser_support import start_chromium
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """A real PACS (Orthanc in a private network) for a test module: a :class:`pacs_support.Pacs`."""
    from pacs_support import start_pacs
    yield from start_pacs(tmp_path_factory.mktemp("orthanc"))
