"""Shared fixtures: small synthetic BraTS sources in each release's layout, and nnU-Net folders."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from brats_plugin import write_synthetic_release

#: Small enough to be quick, large enough for a brain with a tumour.
SMALL_SHAPE = (40, 48, 36)
REPO = Path(__file__).resolve().parents[1]
SHARED_CASE = REPO.parent / "shared" / "data" / "TCGA-DU-7294"
#: The ``brats`` command, run with this interpreter (works whether or not the venv is activated).
BRATS = [sys.executable, "-m", "brats_plugin.cli"]


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
