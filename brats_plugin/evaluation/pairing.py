"""Pair predicted masks with reference masks by case id, whatever the naming on each side.

A mask's case id is its file name without the NIfTI ending and without a segmentation token and
what follows it (the tokens of ``SEQUENCE_TOKENS["seg"]``), so ``BraTS-GLI-00000-000-seg.nii.gz``,
``BraTS2021_00000_seg.nii.gz`` and ``TCGA-DU-7294_seg-isen20.nii.gz`` pair with
``BraTS-GLI-00000-000.nii.gz``, ``BraTS2021_00000.nii.gz`` and ``TCGA-DU-7294.nii.gz``. A name that
holds a BraTS case id among other words (``BraTS2021_00000_pred.nii.gz``) gives that id.

A side is a mask file, a folder of masks (searched below, e.g. ``brats predict``'s output, whose
probability maps and reports are not masks), or a BraTS release folder whose case folders hold the
four sequences and a segmentation: then each case's segmentation is its mask. Cases found on one side
only are listed, never dropped silently.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from brats_plugin import nifti
from brats_plugin.cases import (
    AUXILIARY_FOLDER,
    NATIVE_MASK_SUFFIX,
    PREPROCESSED_FOLDER,
    case_id_from_file_name,
    find_cases,
    identify_file,
)
from brats_plugin.errors import BratsInputError
from brats_plugin.releases import RELEASES, SEGMENTATION, SEQUENCES


@dataclass(frozen=True)
class Pairing:
    """Prediction and reference masks matched by case id."""

    pairs: dict[str, tuple[Path, Path]]  # case id -> (prediction, reference), sorted by case id
    prediction_only: list[str] = field(default_factory=list)  # case ids without a reference
    reference_only: list[str] = field(default_factory=list)  # case ids without a prediction
    skipped: list[Path] = field(default_factory=list)  # NIfTI files that are not 3-D label masks


def case_id_of_mask(name: str) -> str:
    """The case id a mask file name stands for (see the module docstring)."""
    stem = case_id_from_file_name(Path(name).name, kinds=(SEGMENTATION,))
    if any(re.fullmatch(r.case_id_pattern, stem) for r in RELEASES.values()):
        return stem
    inside = (re.search(r.case_id_pattern, stem) for r in RELEASES.values())
    return next((match.group(0) for match in inside if match), stem)


def find_masks(source: str | os.PathLike) -> tuple[dict[str, Path], list[Path]]:
    """The masks of one side: (case id -> mask file, NIfTI files passed over as not label masks).

    Raises :class:`BratsInputError` for a missing source, a folder without NIfTI files, or two masks
    with one case id.
    """
    source = Path(source)
    if source.is_file():
        if not nifti.nifti_ending(source.name):
            raise BratsInputError(f"{source}: not a NIfTI file (.nii or .nii.gz)")
        return {case_id_of_mask(source.name): source}, []
    if not source.is_dir():
        raise BratsInputError(f"{source}: no such file or folder")
    files = sorted(p for p in source.rglob("*") if p.is_file() and nifti.nifti_ending(p.name)
                   and not p.name.endswith(NATIVE_MASK_SUFFIX) and not any(
                       part.startswith(".") or part in (PREPROCESSED_FOLDER, AUXILIARY_FOLDER)
                       for part in p.relative_to(source).parts))
    if not files:
        raise BratsInputError(f"{source}: no NIfTI files (.nii or .nii.gz) below this folder")
    if any(identify_file(p.name) in SEQUENCES for p in files):  # case folders with images: a BraTS release
        return {case.case_id: case.segmentation for case in find_cases(source, with_segmentation=True)}, []
    masks: dict[str, Path] = {}
    skipped: list[Path] = []
    for path in files:
        if len(nifti.load(path).shape) != 3:  # e.g. brats predict's <case>_probabilities.nii.gz (x, y, z, c)
            skipped.append(path)
            continue
        case_id = case_id_of_mask(path.name)
        if case_id in masks:
            raise BratsInputError(f"two masks for case {case_id}: {masks[case_id]} and {path}")
        masks[case_id] = path
    return masks, skipped


def pair_masks(prediction: str | os.PathLike, reference: str | os.PathLike) -> Pairing:
    """Pair the masks of ``prediction`` and ``reference`` (files or folders) by case id.

    Two files are paired whatever their names (under the reference's case id). Raises
    :class:`BratsInputError` when no case pairs, naming both sources.
    """
    predicted, skipped_predictions = find_masks(prediction)
    referenced, skipped_references = find_masks(reference)
    if Path(prediction).is_file() and Path(reference).is_file():
        predicted = dict.fromkeys(referenced, *predicted.values())
    common = sorted(set(predicted) & set(referenced))
    if not common:
        raise BratsInputError(f"no case pairs between {prediction} (e.g. {_examples(predicted)}) and "
                              f"{reference} (e.g. {_examples(referenced)}): check the case ids in the file names")
    return Pairing({case_id: (predicted[case_id], referenced[case_id]) for case_id in common},
                   sorted(set(predicted) - set(referenced)), sorted(set(referenced) - set(predicted)),
                   skipped_predictions + skipped_references)


def _examples(masks: dict[str, Path]) -> str:
    names = sorted(masks)
    return ", ".join(names[:2]) + (f" and {len(names) - 2} more" if len(names) > 2 else "")
