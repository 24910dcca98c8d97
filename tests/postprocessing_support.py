"""Synthetic cross-validation sets for the post-processing tests: a results folder whose
``fold_*/validation`` holds predictions (nnU-Net labels) and a raw dataset whose ``labelsTr`` holds the
references, with planted false-positive specks, tiny true lesions and small false enhancing tumours."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from brats_plugin.releases import get_release

SHAPE = (56, 56, 44)
TRAINER = "nnUNetTrainer__nnUNetPlans__3d_fullres"
#: The planted objects' sizes in voxels (1 mm grid): specks are 2x2x2, tiny true lesions 3x3x4.
SPECK_VOXELS, TINY_LESION_VOXELS = 8, 36


@dataclass(frozen=True)
class CrossValidation:
    model: Path  # the results folder
    references: Path  # labelsTr
    raw: Path  # nnUNet_raw
    release: str


def ball(shape, centre, radius) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    return sum((grid[i] - centre[i]) ** 2 for i in range(3)) <= radius ** 2


def tumour(shape, centre, scale: float = 1.0) -> np.ndarray:
    """A glioma in nnU-Net labels: edema 1 around a core of necrosis 2 with an enhancing rim 3."""
    labels = np.zeros(shape, np.uint8)
    labels[ball(shape, centre, 11 * scale)] = 1
    labels[ball(shape, centre, 7 * scale)] = 3
    labels[ball(shape, centre, 4.5 * scale)] = 2
    return labels


def write_cross_validation(root: Path, release: str = "2021", *, regions: bool = True, cases: int = 8,
                           folds: int = 2, specks: bool = True, tiny_lesions: bool = False,
                           small_false_enhancing: bool = False, seed: int = 0) -> CrossValidation:
    """A cross-validation set (see the module). Predictions are the references shifted by one voxel (so
    neither perfect nor bad); ``specks``: three 8-voxel edema blobs far from the tumour in each prediction;
    ``tiny_lesions``: a 36-voxel enhancing lesion in both reference and prediction; ``small_false_enhancing``:
    in half the cases the reference has no enhancing tumour and the prediction a small one."""
    key = get_release(release)
    rng = np.random.default_rng(seed)
    dataset = f"Dataset880_PP{key.key.replace('-', '')}"
    raw = root / "nnUNet_raw"
    references = raw / dataset / "labelsTr"
    references.mkdir(parents=True)
    model = root / "nnUNet_results" / dataset / TRAINER
    labels, order = key.nnunet_labels(regions)
    dataset_json = {"channel_names": {"0": "T1", "1": "T1Gd", "2": "T2", "3": "FLAIR"}, "labels": labels,
                    "numTraining": cases, "file_ending": ".nii.gz", "brats": {"release": key.key}}
    if order:
        dataset_json["regions_class_order"] = order
    model.mkdir(parents=True)
    (model / "dataset.json").write_text(json.dumps(dataset_json))
    (model / "plans.json").write_text(json.dumps({"dataset_name": dataset, "plans_name": "nnUNetPlans"}))
    nnunet = {label.tissue: label.nnunet for label in key.labels}
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    for index in range(cases):
        case_id = f"case_{index:03d}"
        centre = (28 + rng.integers(-3, 4), 28 + rng.integers(-3, 4), 22 + rng.integers(-2, 3))
        reference = _in_release(tumour(SHAPE, centre, scale=rng.uniform(0.8, 1.1)), nnunet)
        prediction = np.roll(reference, 1, axis=int(rng.integers(0, 3)))
        if small_false_enhancing and index % 4 in (1, 2):  # in both halves of the split-half check
            for target in (reference, prediction):
                target[target == nnunet["enhancing"]] = nnunet["necrosis"]
            prediction[(prediction == nnunet["necrosis"]) & ball(SHAPE, centre, 2.0)] = nnunet["enhancing"]
        if specks:
            for corner in ((3, 3, 3), (50, 4, 38), (4, 50, 20)):
                prediction[tuple(slice(c, c + 2) for c in corner)] = nnunet["edema"]
        if tiny_lesions:
            for target in (reference, prediction):
                target[48:51, 46:49, 5:9] = nnunet["enhancing"]
        fold = model / f"fold_{index % folds}" / "validation"
        fold.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(prediction, affine), fold / f"{case_id}.nii.gz")
        nib.save(nib.Nifti1Image(reference, affine), references / f"{case_id}.nii.gz")
    return CrossValidation(model, references, raw, key.key)


def _in_release(labels: np.ndarray, nnunet: dict[str, int]) -> np.ndarray:
    """The phantom's edema 1 / necrosis 2 / enhancing 3 as this release's nnU-Net labels."""
    table = np.zeros(4, np.uint8)
    table[1], table[2], table[3] = nnunet["edema"], nnunet["necrosis"], nnunet["enhancing"]
    return table[labels]


def write_probabilities(cv: CrossValidation, *, regions: bool, missing: int = 0) -> None:
    """nnU-Net's ``<case>.npz`` beside each validation prediction (channels first, axes reversed): the
    predicted voxels sure (0.9), the reference's whole-tumour voxels the prediction missed at 0.4, the
    rest unlikely (0.05). Region models get sigmoids per region, label models a softmax per nnU-Net label.
    ``missing``: that many cases get no file."""
    release = get_release(cv.release)
    predictions = sorted(cv.model.glob("fold_*/validation/*.nii.gz"))
    for index, path in enumerate(predictions):
        if index < missing:
            continue
        predicted = np.asarray(nib.load(path).dataobj)
        referenced = np.asarray(nib.load(cv.references / path.name).dataobj)
        missed = (referenced != 0) & (predicted == 0)
        if regions:
            channels = []
            for region in release.training_regions:
                nnunet = [release.to_nnunet[value] for value in region.labels]
                inside = np.isin(predicted, nnunet)
                channels.append(np.where(inside, 0.9, np.where(missed & (region.abbreviation == "WT"), 0.4, 0.05)))
        else:
            edema = release.label_of_tissue("edema").nnunet
            count = len(release.labels) + 1
            channels = [np.full(predicted.shape, 0.1 / (count - 1)) for _ in range(count)]
            for label in range(count):  # softmax: 0.9 for the predicted label, the rest shared
                channels[label][predicted == label] = 0.9
            channels[0][missed], channels[edema][missed] = 0.6, 0.4 - 0.1 / (count - 1) * (count - 2)
        stacked = np.stack(channels).astype(np.float32).transpose(0, 3, 2, 1)  # nnU-Net: (c, z, y, x)
        np.savez_compressed(path.with_name(path.name.replace(".nii.gz", ".npz")), probabilities=stacked)
