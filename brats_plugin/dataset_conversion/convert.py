"""Convert a BraTS release on disk into an nnU-Net raw dataset (``$nnUNet_raw/DatasetNNN_Name``).

Images are hard-linked (copied across file systems), segmentations remapped to nnU-Net's consecutive
labels and written as uint8 on the T1's exact grid. Every file appears under its final name only when
complete, and ``dataset.json`` is written last, so an interrupted run leaves no half-written file and a
re-run finishes the job without redoing finished cases.
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
from tqdm import tqdm

from brats_plugin import cases as case_io, nifti
from brats_plugin.version import __version__
from brats_plugin.errors import BratsInputError
from brats_plugin.releases import SEQUENCES, Release, get_release

T = TypeVar("T")
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
        raise BratsInputError("nnUNet_raw is not set: export nnUNet_raw=/path/to/nnUNet_raw (a folder for "
                              "nnU-Net raw datasets), or run: eval \"$(brats env)\"")
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
    file_ending = _file_ending([p for case in training + testing for p in case.files])
    folders = {"imagesTr": target / "imagesTr", "labelsTr": target / "labelsTr", "imagesTs": target / "imagesTs"}
    if overwrite and target.exists():
        shutil.rmtree(target)
    _prepare_folders(target, folders, training, testing, file_ending, bool(testing))

    tasks = [(case, chosen, folders["imagesTr"], folders["labelsTr"], file_ending, read_all_voxels)
             for case in training]
    tasks += [(case, chosen, folders["imagesTs"], None, file_ending, read_all_voxels) for case in testing]
    outcomes = _run_parallel(_convert_case_task, tasks, jobs, progress, f"converting {target.name}")

    placements: dict[str, int] = {}
    for outcome in outcomes:
        for how in outcome:
            placements[how] = placements.get(how, 0) + 1
    _write_dataset_json(target, chosen, regions, len(training), file_ending, name)
    converted = sum(1 for o in outcomes if o)
    return ConversionResult(target, chosen, regions, len(training), len(testing), converted,
                            len(outcomes) - converted, time.perf_counter() - started, placements)


# ---- choosing the release ---------------------------------------------------------------------------

def _choose_release(requested: str, training: list[case_io.Case], jobs: int, source: str) -> Release:
    if requested != "auto":
        return get_release(requested)
    candidates = case_io.releases_for_case_ids([c.case_id for c in training])
    if len({(tuple(r.labels), r.training_regions) for r in candidates}) == 1:
        return case_io.narrow_by_labels(candidates, set(), source)
    seen: set[int] = set()
    for present in _run_parallel(_labels_in_segmentation, [(c.segmentation,) for c in training], jobs,
                                 False, "reading labels"):
        seen.update(present)
    return case_io.narrow_by_labels(candidates, seen, source)


def _labels_in_segmentation(path: Path) -> list[int]:
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


def _prepare_folders(target: Path, folders: dict[str, Path], training: list[case_io.Case],
                     testing: list[case_io.Case], file_ending: str, with_test: bool) -> None:
    """Create the folders (checking they are writable) or make an existing dataset ready to resume."""
    wanted = {"imagesTr": {c.case_id for c in training}, "labelsTr": {c.case_id for c in training},
              "imagesTs": {c.case_id for c in testing}}
    for key, folder in folders.items():
        if key == "imagesTs" and not with_test:
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
            nifti.remove_partial_files(folder)
            probe = folder / f".write-test-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as error:
            raise BratsInputError(f"{folder}: cannot write there ({error.strerror})") from None
        stale = sorted({_case_id_of_output(p.name, key, file_ending) for p in folder.iterdir()
                        if not p.name.startswith(".")} - wanted[key])
        if stale:
            raise BratsInputError(f"{folder}: holds cases not in the source ({', '.join(stale[:3])}"
                                  f"{' ...' if len(stale) > 3 else ''}); pass --overwrite to start afresh")


def _case_id_of_output(file_name: str, folder_key: str, file_ending: str) -> str:
    stem = file_name[: -len(file_ending)] if file_name.endswith(file_ending) else file_name
    return stem if folder_key == "labelsTr" else re.sub(r"_\d{4}$", "", stem)


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
    nifti.write_bytes_atomic((json.dumps(dataset, indent=2) + "\n").encode(), target / "dataset.json")


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

def _convert_case_task(case: case_io.Case, release: Release, images: Path, labels: Path | None,
                       file_ending: str, read_all_voxels: bool) -> list[str]:
    """Convert one case; return how each image was placed (empty list if it was already done)."""
    image_targets = [images / f"{case.case_id}_{i:04d}{file_ending}" for i in range(len(SEQUENCES))]
    label_target = labels / f"{case.case_id}{file_ending}" if labels else None
    if all(p.exists() for p in image_targets + ([label_target] if label_target else [])):
        return []
    reference = case_io.check_case(case, read_all_voxels=read_all_voxels)
    target = label_target
    try:
        if label_target is not None:
            labels = case_io.read_label_values(case.segmentation)
            mapped = case_io.to_nnunet_labels(labels, release, case.segmentation)
            nifti.save(nifti.like(mapped, reference, np.uint8), label_target)
        placed = []
        for sequence, target in zip(SEQUENCES, image_targets):
            placed.append(nifti.place_file(case.sequences[sequence], target))
    except OSError as error:
        raise BratsInputError(f"{target}: cannot write ({error.strerror or error})") from None
    return placed


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
