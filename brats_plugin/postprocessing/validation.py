"""A model's cross-validation: the predictions nnU-Net left in ``fold_*/validation`` and their references.

``nnUNetv2_train`` predicts each fold's held-out cases when it finishes (or with ``--val``) into
``fold_N/validation/<case><file ending>``, in nnU-Net's labels, and with ``--npz`` the probabilities
beside them (``<case>.npz``: channel first, the image axes reversed as nnU-Net's NIfTI readers give
them). The references are the raw dataset's
``labelsTr`` (``$nnUNet_raw/<dataset>/labelsTr``), or nnU-Net's copy of them in
``$nnUNet_preprocessed/<dataset>/gt_segmentations``, or a folder given; also in nnU-Net's labels.

Both are read here, checked (same grid, known labels), turned into the model's release labels and
cropped to the box around both masks and every voxel likely enough to enter a region (everything a
rule or a metric looks at lies inside it); the region probabilities are kept at half precision.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brats_plugin.cases import labels_present
from brats_plugin.errors import BratsInputError
from brats_plugin.evaluation.case import read_masks
from brats_plugin.geometry import box_around
from brats_plugin.inference.labels import label_map
from brats_plugin.inference.model import fold_names
from brats_plugin.postprocessing.rules import region_probabilities
from brats_plugin.releases import Release

#: A margin around the masks' box, in voxels, wide enough for the lesion-wise dilations of every release.
CROP_MARGIN = 4


@dataclass(frozen=True)
class ValidationCase:
    """Where one cross-validation case's prediction and reference are."""

    case_id: str
    fold: str
    prediction: Path
    reference: Path
    probabilities: Path | None  # nnU-Net's <case>.npz, when it wrote one (--npz)


@dataclass
class CaseMasks:
    """One case's prediction and reference in release labels, cropped to both masks' box.

    ``scores``: (Dice, HD95) already measured for some region mask of this case's predictions, keyed by
    the region and a digest of the mask (a tuning run meets the same mask under many candidate rules).
    """

    case_id: str
    prediction: np.ndarray  # uint8 release labels
    reference: np.ndarray
    affine: np.ndarray  # the full image's: spacing and voxel volume
    probabilities: np.ndarray | None  # float16 (3, *prediction.shape): WT, TC, ET (rules.region_probabilities)
    scores: dict[bytes, tuple[float, float]] = field(default_factory=dict)


def model_names(model_folder: Path, plans: dict) -> tuple[str, str, str]:
    """(dataset name, trainer, configuration) of a results folder ``Trainer__Plans__configuration``."""
    trainer, _, configuration = (model_folder.name.split("__") + ["", ""])[:3]
    return str(plans.get("dataset_name") or model_folder.parent.name), trainer, configuration


def find_validation_cases(model_folder: Path, plans: dict, dataset_json: dict, folds: list[str] | None,
                          references: str | os.PathLike | None = None) -> list[ValidationCase]:
    """Every validation prediction of the chosen folds (default: every numbered fold) with its reference.

    Fold ``all`` validates on its own training cases, so it is refused: nothing honest can be tuned there.
    """
    dataset, trainer, configuration = model_names(model_folder, plans)
    plans_name = model_folder.name.split("__")[1] if model_folder.name.count("__") == 2 else "nnUNetPlans"
    plans_option = "" if plans_name == "nnUNetPlans" else f" -p {plans_name}"
    ending = dataset_json.get("file_ending", ".nii.gz")
    chosen = list(folds) if folds else [f for f in fold_names(model_folder) if f != "all"]
    if not chosen or "all" in chosen:
        raise BratsInputError(f"{model_folder}: fold 'all' is validated on its own training cases; tuning needs "
                              "cross-validation folds (train folds 0-4)")
    reference_folder = find_reference_folder(dataset, references)
    cases: list[ValidationCase] = []
    for fold in chosen:
        folder = model_folder / f"fold_{fold}" / "validation"
        predictions = sorted(folder.glob(f"*{ending}")) if folder.is_dir() else []
        if not predictions:
            command = f"nnUNetv2_train {dataset} {configuration} {fold} -tr {trainer}{plans_option} --val --npz"
            raise BratsInputError(f"{folder}: no validation predictions of fold {fold}; make them with {command}")
        for prediction in predictions:
            case_id = prediction.name[:-len(ending)]
            reference = reference_folder / prediction.name
            if not reference.is_file():
                raise BratsInputError(f"{reference}: missing reference of validation case {case_id} "
                                      f"(fold {fold}, {prediction})")
            npz = prediction.with_name(f"{case_id}.npz")
            cases.append(ValidationCase(case_id, fold, prediction, reference, npz if npz.is_file() else None))
    seen: dict[str, str] = {}
    for case in cases:
        if case.case_id in seen:
            raise BratsInputError(f"{model_folder}: case {case.case_id} is validated by folds {seen[case.case_id]} "
                                  f"and {case.fold}; choose folds of one cross-validation (--folds)")
        seen[case.case_id] = case.fold
    return sorted(cases, key=lambda case: case.case_id)


def find_reference_folder(dataset: str, given: str | os.PathLike | None) -> Path:
    """The folder of reference masks: the one given, else labelsTr, else nnU-Net's gt_segmentations."""
    if given is not None:
        if not Path(given).is_dir():
            raise BratsInputError(f"{given}: no such folder of reference masks (--references)")
        return Path(given)
    candidates = [Path(os.environ[variable]) / dataset / sub
                  for variable, sub in (("nnUNet_raw", "labelsTr"), ("nnUNet_preprocessed", "gt_segmentations"))
                  if os.environ.get(variable)]
    for folder in candidates:
        if folder.is_dir():
            return folder
    looked = ", ".join(str(c) for c in candidates) or "nnUNet_raw and nnUNet_preprocessed are not set"
    raise BratsInputError(f"the references of {dataset} are not found ({looked}); set nnUNet_raw or give "
                          "--references LABELS_FOLDER")


def load_case_masks(case: ValidationCase, release: Release, region_based: bool, probability_floor: float | None
                    ) -> CaseMasks:
    """A case's prediction and reference, checked, in release labels, cropped (see the module).

    ``probability_floor``: read the case's probabilities too, and keep every voxel whose probability of
    some region is above it inside the crop (None: no probabilities).
    """
    predicted, referenced, affine = read_masks(case.prediction, case.reference)
    likely = (predicted != 0) | (referenced != 0)
    probabilities = None
    if probability_floor is not None:
        probabilities = read_region_probabilities(case, predicted.shape, release, region_based)
        likely |= (probabilities > probability_floor).any(axis=0)
    box = box_around(likely, CROP_MARGIN) or (slice(0, 1),) * 3
    return CaseMasks(case.case_id, from_nnunet_labels(predicted[box], release, case.prediction),
                     from_nnunet_labels(referenced[box], release, case.reference), affine,
                     None if probabilities is None else probabilities[(slice(None), *box)].astype(np.float16))


def read_region_probabilities(case: ValidationCase, shape: tuple[int, ...], release: Release, region_based: bool
                              ) -> np.ndarray:
    """WT, TC and ET probabilities (3, *shape) from nnU-Net's ``<case>.npz``; a bad file names itself."""
    path = case.probabilities
    try:
        with np.load(path) as stored:
            channels = stored["probabilities"]
    except Exception as error:  # a damaged .npz raises BadZipFile, zlib.error, EOFError, ValueError, KeyError...
        raise BratsInputError(f"{path}: unreadable nnU-Net probabilities ({error})") from None
    if channels.ndim != 4 or tuple(channels.shape[:0:-1]) != tuple(shape):
        raise BratsInputError(f"{path}: probabilities of shape {channels.shape} do not fit the prediction's "
                              f"{tuple(shape)} (expected channels first, then the axes reversed)")
    return region_probabilities(channels.transpose(0, 3, 2, 1), release, region_based).astype(np.float32)


def from_nnunet_labels(labels: np.ndarray, release: Release, path: Path) -> np.ndarray:
    """nnU-Net labels -> release labels (uint8); a value the release's nnU-Net labels lack names ``path``."""
    unknown = sorted(set(labels_present(labels)) - set(release.from_nnunet))
    if unknown:
        raise BratsInputError(f"{path}: labels {unknown} are not the nnU-Net labels {sorted(release.from_nnunet)} "
                              f"of a BraTS {release.key} model")
    return label_map(release, release).apply(labels)
