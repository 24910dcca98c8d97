"""A trained nnU-Net model on disk: where it is, which folds and checkpoints it has, what it predicts.

A model is an nnU-Net results folder (``Trainer__Plans__configuration`` holding ``plans.json``,
``dataset.json`` and ``fold_*/checkpoint_*.pth``), a folder holding exactly one such folder (e.g. a
``DatasetNNN_Name`` results folder), or a zip made by ``nnUNetv2_export_model_to_zip``. Zips are
unpacked once into a cache folder keyed by their content, so a model is not unpacked on every run.
Models trained with our trainers and with stock nnU-Net trainers look the same here.

Everything a user can get wrong (no such folder, no plans, fold not trained, missing checkpoint,
unreadable zip) raises :class:`BratsInputError` naming the path, before any network is built.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from brats_plugin import files
from brats_plugin.errors import BratsInputError

#: ``--checkpoint`` choices and the file nnU-Net writes for each.
CHECKPOINT_FILES: dict[str, str] = {"final": "checkpoint_final.pth", "best": "checkpoint_best.pth"}
#: nnU-Net image readers whose arrays are the NIfTI voxel array with its axes reversed.
AXIS_REVERSING_READERS = ("SimpleITKIO", "NibabelIO")
#: The configuration taken when a zip or dataset folder holds several.
PREFERRED_CONFIGURATION = "3d_fullres"


@dataclass(frozen=True)
class ModelFolder:
    """A located results folder and the two JSON files that describe its model."""

    folder: Path
    dataset_json: dict
    plans: dict


@dataclass(frozen=True)
class TrainedModel(ModelFolder):
    """A located model folder with the folds and checkpoint chosen for prediction."""

    folds: tuple[str, ...]
    checkpoint_files: tuple[Path, ...]

    @property
    def configuration(self) -> str:
        return self.folder.name.split("__")[-1]


def open_model(path: str | os.PathLike, folds: list[str] | None = None, checkpoint: str = "final",
               cache: str | os.PathLike | None = None) -> TrainedModel:
    """Locate a model (folder or zip), check that the requested folds and checkpoint exist.

    ``folds``: fold names such as ``["0", "1"]`` or ``["all"]``; None takes every trained fold
    (``fold_0`` ... ``fold_4``, or ``fold_all`` when only that one exists). ``cache``: where zips are
    unpacked (default ``$XDG_CACHE_HOME/brats_plugin/models``).
    """
    if checkpoint not in CHECKPOINT_FILES:
        raise BratsInputError(f"--checkpoint {checkpoint}: choose one of {', '.join(CHECKPOINT_FILES)}")
    located = locate_model(path, cache)
    folder = located.folder
    checkpoint_name = CHECKPOINT_FILES[checkpoint]
    hint = f"is the training finished? try --checkpoint {'best' if checkpoint == 'final' else 'final'}"
    chosen = list(folds) if folds else _trained_folds(folder, checkpoint_name, hint)
    files = []
    for fold in chosen:
        fold_folder = folder / f"fold_{fold}"
        if not fold_folder.is_dir():
            trained = ", ".join(fold_names(folder)) or "none"
            raise BratsInputError(f"{fold_folder}: fold {fold} is not trained in this model (trained: {trained})")
        if not (fold_folder / checkpoint_name).is_file():
            raise BratsInputError(f"{fold_folder / checkpoint_name}: missing checkpoint of fold {fold} ({hint})")
        files.append(fold_folder / checkpoint_name)
    return TrainedModel(folder, located.dataset_json, located.plans, tuple(chosen), tuple(files))


def locate_model(path: str | os.PathLike, cache: str | os.PathLike | None = None) -> ModelFolder:
    """The results folder a model path stands for (a zip is unpacked into ``cache``), with its JSON files."""
    path = Path(path)
    if path.is_file():
        root = unpack_zip(path, Path(cache) if cache else default_cache())
    elif path.is_dir():
        root = path
    else:
        raise BratsInputError(f"{path}: no such model folder or zip")
    folder = _find_results_folder(root, path)
    dataset_json, plans = (_read_json(folder / name) for name in ("dataset.json", "plans.json"))
    return ModelFolder(folder, dataset_json, plans)


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/brats_plugin/models`` (``~/.cache/...`` when the variable is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "brats_plugin" / "models"


def unpack_zip(archive: Path, cache: Path) -> Path:
    """Unpack an exported model zip into ``cache/<sha256 prefix>/`` (once) and return that folder.

    Unpacking goes to a temporary folder renamed into place, so an interrupted run leaves nothing
    that looks complete. Members that would land outside the folder are refused.
    """
    digest = hashlib.sha256()
    try:
        with open(archive, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 22), b""):
                digest.update(block)
    except OSError as error:
        raise BratsInputError(f"{archive}: cannot read ({error.strerror or error})") from None
    target = cache / digest.hexdigest()[:16]
    if target.is_dir():
        return target
    with files.staging_folder(target) as staging:
        try:
            with zipfile.ZipFile(archive) as bundle:
                for member in bundle.namelist():
                    if not (staging / member).resolve().is_relative_to(staging.resolve()):
                        raise BratsInputError(f"{archive}: member {member} would unpack outside its folder")
                bundle.extractall(staging)
            os.replace(staging, target)
        except zipfile.BadZipFile as error:
            raise BratsInputError(f"{archive}: not a model folder or a readable zip ({error})") from None
        except OSError as error:
            if not target.is_dir():  # another process may have unpacked the same zip meanwhile
                raise BratsInputError(f"{archive}: cannot unpack ({error.strerror or error})") from None
    return target


def _find_results_folder(root: Path, given: Path) -> Path:
    """The results folder at or below ``root`` (at most three levels down, as zips nest them)."""
    candidates = [root] if _is_results_folder(root) else sorted(
        p.parent for depth in ("*/plans.json", "*/*/plans.json", "*/*/*/plans.json")
        for p in root.glob(depth) if _is_results_folder(p.parent))
    if not candidates:
        raise BratsInputError(f"{given}: not an nnU-Net model (no plans.json and dataset.json beside fold_* "
                              "folders); pass a results folder such as "
                              "Dataset501_X/nnUNetTrainerGDL__nnUNetPlans__3d_fullres")
    if len(candidates) > 1:
        preferred = [c for c in candidates if c.name.endswith(f"__{PREFERRED_CONFIGURATION}")]
        if len(preferred) != 1:
            names = ", ".join(str(c.relative_to(root)) for c in candidates)
            raise BratsInputError(f"{given}: holds several models ({names}); pass one of their folders")
        candidates = preferred
    return candidates[0]


def _is_results_folder(folder: Path) -> bool:
    return (folder / "plans.json").is_file() and (folder / "dataset.json").is_file() and bool(fold_names(folder))


def fold_names(folder: Path) -> list[str]:
    """The names of a results folder's ``fold_*`` folders (``"0"``, ``"all"``...), sorted."""
    return sorted(p.name[len("fold_"):] for p in folder.glob("fold_*") if p.is_dir())


def _trained_folds(folder: Path, checkpoint_name: str, hint: str) -> list[str]:
    """Folds with the checkpoint: the numbered ones, else ``all`` (nnU-Net's own choice)."""
    done = [f for f in fold_names(folder) if (folder / f"fold_{f}" / checkpoint_name).is_file()]
    numbered = [f for f in done if f != "all"]
    if numbered or done:
        return numbered or done
    raise BratsInputError(f"{folder}: no fold has {checkpoint_name} ({hint})")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise BratsInputError(f"{path}: unreadable JSON ({error})") from None
