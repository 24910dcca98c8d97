"""Convert a BraTS release on disk into an nnU-Net raw dataset (``$nnUNet_raw/DatasetNNN_Name``).

Every case is validated (and its label file built in memory) before anything is written, so bad
input leaves the output untouched. Then images are hard-linked (copied across file systems) and the
segmentations, remapped to nnU-Net's consecutive labels and put as uint8 on the T1's exact grid, are
written. Every file appears under its final name only when complete, and ``dataset.json`` is written
last, so an interrupted run leaves no half-written file and a re-run finishes the job without redoing
finished cases.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import numpy as np
from isal import igzip
from tqdm import tqdm

from brats_plugin import cases as case_io
from brats_plugin import files, nifti
from brats_plugin.errors import BratsInputError
from brats_plugin.release_choice import resolve_release
from brats_plugin.releases import SEQUENCES, Release
from brats_plugin.version import __version__

R = TypeVar("R")

#: dataset.json key under which we record what nnU-Net itself does not need: the BraTS release and
#: its label maps, so that prediction maps back to the release's labels without being told.
BRATS_KEY = "brats"


@dataclass
class ConversionResult:
    """What :func:`convert_release` made."""

    dataset_folder: Path
    release: Release
    regions: bool
    training_cases: int
    test_cases: int
    converted: int
    skipped: int
    seconds: float
    placements: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for people."""
        how = ", ".join(f"{n} {kind}" for kind, n in sorted(self.placements.items())) or "none placed"
        mode = "region-based (" + ", ".join(r.abbreviation for r in self.release.training_regions) + ")" \
            if self.regions else "label-based"
        return (f"{self.dataset_folder.name}: {self.training_cases} training + {self.test_cases} test cases "
                f"of {self.release.title}, {mode}; {self.converted} converted, {self.skipped} already done; "
                f"images: {how}; {self.seconds:.1f} s")


def nnunet_raw_folder() -> Path:
    """The folder ``$nnUNet_raw`` names; a clear error if it is unset or missing."""
    value = os.environ.get("nnUNet_raw")
    if not value:
        raise BratsInputError("nnUNet_raw is not set: export nnUNet_raw=/path/to/nnUNet_raw (the folder for "
                              "nnU-Net raw datasets; see nnU-Net's documentation on setting up paths)")
    folder = Path(value)
    if not folder.is_dir():
        try:
            folder.mkdir(parents=True)
        except OSError as error:
            raise BratsInputError(f"nnUNet_raw={value}: cannot create it ({error.strerror})") from None
    return folder


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """nnU-Net's ``DatasetNNN_Name``."""
    return f"Dataset{dataset_id:03d}_{name}"


def default_dataset_name(release: Release) -> str:
    """``BraTS2021``, ``BraTS2023GLI`` ...: the name used when ``--name`` is not given."""
    return "BraTS" + release.key.replace("-", "")


def convert_release(source: str | os.PathLike, dataset_id: int, *, name: str | None = None,
                    release: str = "auto", regions: bool = True, test_source: str | os.PathLike | None = None,
                    jobs: int | None = None, overwrite: bool = False, read_all_voxels: bool = False,
                    progress: bool = True) -> ConversionResult:
    """Convert the BraTS cases below ``source`` into ``$nnUNet_raw/DatasetNNN_<name>``.

    Args:
        source: a folder of case folders (any depth, e.g. ``HGG/`` and ``LGG/``), each with four
            sequences and a segmentation.
        dataset_id: nnU-Net dataset id (1-999).
        name: dataset name; default from the release (``BraTS2021``).
        release: a key of :data:`brats_plugin.releases.RELEASES` or ``"auto"`` (from case ids, then labels).
        regions: region-based (WT/TC/ET as nnU-Net regions) if True, else label-based.
        test_source: optional folder of cases without segmentation, written to ``imagesTs``.
        jobs: worker processes (default: all cores).
        overwrite: replace an existing dataset folder of the same name instead of resuming it.
        read_all_voxels: decompress every image to prove it intact (slower; by default integer images
            are checked by header and stored size only, see :func:`brats_plugin.cases.check_case`).
        progress: show a progress bar (on a terminal).

    Raises:
        BratsInputError: for any problem with the source, the options or the output folder.
    """
    started = time.perf_counter()
    if not 1 <= dataset_id <= 999:
        raise BratsInputError(f"--dataset-id {dataset_id}: nnU-Net dataset ids run from 1 to 999")
    raw = nnunet_raw_folder()
    training = case_io.find_cases(source, with_segmentation=True)
    testing = case_io.find_cases(test_source, with_segmentation=False) if test_source else []
    jobs = max(1, jobs or os.cpu_count() or 1)
    chosen = _choose_release(release, training, jobs, str(source))
    name = name or default_dataset_name(chosen)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]*", name):
        raise BratsInputError(f"--name {name!r}: use letters, digits, '_' and '-' only")
    target = raw / dataset_folder_name(dataset_id, name)
    _check_dataset_id_free(dataset_id, target)
    files.prepare_output_folder(raw)
    file_ending = _file_ending([p for case in training + testing for p in case.files])
    plans = [_CasePlan(case, target / "imagesTr", target / "labelsTr", file_ending) for case in training]
    plans += [_CasePlan(case, target / "imagesTs", None, file_ending) for case in testing]
    if not overwrite:
        _check_no_stale_cases(target, plans)
    to_do = plans if overwrite else [plan for plan in plans if not plan.done()]

    # 1. validate every case and build its label file in memory: nothing is written until all pass
    label_files = _run_parallel(_prepare_case, [(plan.case, chosen, plan.labels is not None, read_all_voxels)
                                                for plan in to_do], jobs, progress, "checking cases")
    # 2. write: label files, then hard-linked images, case by case; dataset.json last
    if overwrite and (target.exists() or target.is_symlink()):
        _remove(target)
    placements: dict[str, int] = {}
    bar = tqdm(total=len(to_do), desc=f"writing {target.name}", unit="case", disable=None if progress else True,
               leave=False)
    for plan, label_file in zip(to_do, label_files):
        for how in plan.write(label_file):
            placements[how] = placements.get(how, 0) + 1
        bar.update()
    bar.close()
    _write_dataset_json(target, chosen, regions, len(training), file_ending, name)
    return ConversionResult(target, chosen, regions, len(training), len(testing), len(to_do),
                            len(plans) - len(to_do), time.perf_counter() - started, placements)


# ---- choosing the release ---------------------------------------------------------------------------

def _choose_release(requested: str, training: list[case_io.Case], jobs: int, source: str) -> Release:
    """The release of the training cases (:func:`resolve_release`); labels are read in parallel if needed."""
    def labels_found():
        present = _run_parallel(_labels_in_segmentation, [(c.segmentation,) for c in training], jobs, False,
                                "reading labels")
        return zip((c.segmentation for c in training), present)

    return resolve_release(requested, [c.case_id for c in training], source, labels_found, assume_default=False)


def _labels_in_segmentation(path: Path) -> list[int]:
    case_io.check_image(nifti.load(path), read_all_voxels=False)
    return case_io.labels_present(case_io.read_label_values(path))


# ---- the output folder ------------------------------------------------------------------------------

def _check_dataset_id_free(dataset_id: int, target: Path) -> None:
    """Refuse an id that an nnU-Net folder (raw, preprocessed or results) uses under another name."""
    prefix = f"Dataset{dataset_id:03d}_"
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        base = os.environ.get(variable)
        if not base or not Path(base).is_dir():
            continue
        for existing in Path(base).iterdir():
            if existing.name.startswith(prefix) and existing.name != target.name:
                raise BratsInputError(f"{existing}: dataset id {dataset_id} is already used by "
                                      f"{existing.name}; choose another --dataset-id")


def _file_ending(files: Iterable[Path]) -> str:
    """``.nii`` if every source file is uncompressed, else ``.nii.gz`` (nnU-Net needs one ending)."""
    return ".nii" if all(nifti.nifti_ending(p.name) == ".nii" for p in files) else ".nii.gz"


def _check_no_stale_cases(target: Path, plans: list[_CasePlan]) -> None:
    """Refuse to resume into a dataset folder that holds cases the source does not have."""
    if not target.is_dir():
        if target.exists():
            raise BratsInputError(f"{target}: exists and is not a folder; pass --overwrite to replace it")
        return
    wanted: dict[Path, set[str]] = {}
    for plan in plans:
        for folder in (plan.images, plan.labels):
            if folder is not None:
                wanted.setdefault(folder, set()).update(p.name for p in plan.outputs() if p.parent == folder)
    for folder, names in wanted.items():
        if not folder.is_dir():
            continue
        stale = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and p.name not in names)
        if stale:
            raise BratsInputError(f"{folder}: holds files of cases not in the source ({', '.join(stale[:3])}"
                                  f"{' ...' if len(stale) > 3 else ''}); pass --overwrite to start afresh")


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError as error:
        raise BratsInputError(f"{path}: cannot remove it for --overwrite ({error.strerror or error})") from None


def _write_dataset_json(target: Path, release: Release, regions: bool, num_training: int,
                        file_ending: str, name: str) -> None:
    labels, order = release.nnunet_labels(regions)
    dataset = {
        "name": name,
        "description": f"{release.title}, converted by brats_plugin {__version__}",
        "channel_names": {str(i): sequence for i, sequence in enumerate(SEQUENCES)},
        "labels": labels,
        **({"regions_class_order": order} if regions else {}),
        "numTraining": num_training,
        "file_ending": file_ending,
        "reference": "https://www.synapse.org/brats",
        "licence": "see the BraTS release's data use agreement",
        BRATS_KEY: brats_block(release, regions),
    }
    files.write_bytes_atomic((json.dumps(dataset, indent=2) + "\n").encode(), target / "dataset.json")


def brats_block(release: Release, regions: bool) -> dict:
    """The ``"brats"`` block of ``dataset.json``: the release and its label maps, for the way back."""
    return {
        "release": release.key,
        "title": release.title,
        "label_mode": "regions" if regions else "labels",
        "labels": {str(label.value): label.name for label in release.labels},
        "to_nnunet": {str(k): v for k, v in release.to_nnunet.items()},
        "from_nnunet": {str(k): v for k, v in release.from_nnunet.items()},
        "regions": {r.abbreviation: list(r.labels) for r in release.regions},
        "plugin_version": __version__,
    }


# ---- one case ---------------------------------------------------------------------------------------

@dataclass
class _CasePlan:
    """Where one case's files go."""

    case: case_io.Case
    images: Path
    labels: Path | None
    file_ending: str

    def image_targets(self) -> list[Path]:
        return [self.images / f"{self.case.case_id}_{i:04d}{self.file_ending}" for i in range(len(SEQUENCES))]

    def label_target(self) -> Path | None:
        return self.labels / f"{self.case.case_id}{self.file_ending}" if self.labels else None

    def outputs(self) -> list[Path]:
        return self.image_targets() + ([self.label_target()] if self.labels else [])

    def done(self) -> bool:
        """All outputs exist: each appeared only when complete, so the case is finished."""
        return all(p.exists() for p in self.outputs())

    def write(self, label_file: bytes | None) -> list[str]:
        """Write the label file, then place the images; return how each image was placed."""
        target = self.label_target()
        try:
            for folder in (self.images, self.labels):
                if folder is not None:
                    folder.mkdir(parents=True, exist_ok=True)
                    files.remove_partial_files(folder)
            if target is not None:
                data = label_file if self.file_ending == ".nii.gz" else igzip.decompress(label_file)
                files.write_bytes_atomic(data, target)
            placed = []
            for sequence, target in zip(SEQUENCES, self.image_targets()):
                placed.append(nifti.place_file(self.case.sequences[sequence], target))
        except OSError as error:
            raise BratsInputError(f"{target or self.images}: cannot write ({error.strerror or error})") from None
        return placed


def _prepare_case(case: case_io.Case, release: Release, with_labels: bool, read_all_voxels: bool) -> bytes | None:
    """Validate one case; return its nnU-Net label file as ``.nii.gz`` bytes (None without labels).

    The labels are remapped to nnU-Net's and put on the T1's exact grid (header copied from the T1).
    """
    reference = case_io.check_case(case, read_all_voxels=read_all_voxels)
    if not with_labels:
        return None
    labels = case_io.read_label_values(case.segmentation)
    mapped = case_io.to_nnunet_labels(labels, release, case.segmentation)
    return nifti.to_file_bytes(nifti.like(mapped, reference, np.uint8), compressed=True)


def _run_parallel(function: Callable[..., R], tasks: list[tuple], jobs: int, progress: bool,
                  description: str) -> list[R]:
    """``[function(*task) for task in tasks]`` over ``jobs`` processes, with a progress bar."""
    bar = tqdm(total=len(tasks), desc=description, unit="case", disable=None if progress else True,
               leave=False)
    try:
        if jobs == 1 or len(tasks) <= 1:
            results = []
            for task in tasks:
                results.append(function(*task))
                bar.update()
            return results
        pool = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)))
        try:
            futures = [pool.submit(function, *task) for task in tasks]
            results = []
            for future in futures:
                results.append(future.result())
                bar.update()
            return results
        finally:  # on the first error, drop the cases not yet started (running ones finish whole)
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
