"""Find BraTS cases on disk, recognise their four sequences by name, and validate them.

A *case folder* is a folder that directly holds NIfTI files: the four sequences (T1, T1Gd, T2, FLAIR)
and, for training data, a segmentation. Files are recognised by the tokens of
:data:`brats_plugin.releases.SEQUENCE_TOKENS` in whatever follows the case id in their names, so
``BraTS2021_00000_t1ce.nii.gz``, ``BraTS-GLI-00000-000-t1c.nii.gz`` and ``TCGA-DU-7294_t1c_bet.nii.gz``
are all T1Gd. Anything ambiguous is an error naming the files.

Validation reads headers (and voxels only where a problem can hide in them), so it is cheap enough to
run on every case before any work: dimensions, equal shapes, agreeing affines, readable and complete
files, finite values. Every problem raises :class:`BratsInputError` naming the file.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterable

import nibabel as nib
import numpy as np

from brats_plugin import nifti
from brats_plugin.errors import BratsInputError, BratsWarning
from brats_plugin.geometry import nonzero_box
from brats_plugin.releases import (
    SEGMENTATION,
    SEQUENCE_TOKENS,
    SEQUENCES,
    Release,
    releases_matching_case_id,
)

#: A case folder's sub-folder of files that belong to the case but are not case images (``brats
#: preprocess`` keeps its brain mask and transforms there); never read as a case of its own.
AUXILIARY_FOLDER = "preprocessing"
#: ``brats predict``'s mask of a preprocessed case carried back onto the patient's own T1Gd grid
#: (``<case>_native.nii.gz``), and the folder of its output where it keeps the cases it preprocessed
#: from scanner studies: outputs beside the masks, not cases or masks of their own.
NATIVE_MASK_SUFFIX = "_native.nii.gz"
PREPROCESSED_FOLDER = "preprocessed"
#: Two affines agree when their linear parts (direction x spacing) match to this relative tolerance,
#: nnU-Net's own spacing tolerance, and their origins to this many millimetres.
AFFINE_RTOL = 1e-5
ORIGIN_TOLERANCE_MM = 1e-3

_SPLIT = re.compile(r"[_\-.\s]+")


@dataclass(frozen=True)
class Case:
    """One case on disk: its id, its four sequence files and (for training data) its segmentation."""

    case_id: str
    folder: Path
    sequences: dict[str, Path]
    segmentation: Path | None = None

    @property
    def files(self) -> list[Path]:
        """The sequence files in channel order, then the segmentation if any."""
        return [self.sequences[s] for s in SEQUENCES] + ([self.segmentation] if self.segmentation else [])


# ---- recognising files ------------------------------------------------------------------------------

def identify_file(name: str, case_id: str | None = None) -> str | None:
    """The sequence (``"T1"`` ...) or ``"seg"`` a file name stands for, or None if unrecognised.

    The case id, when the name starts with it, is removed first so that ids containing tokens (e.g.
    ``T2-study``) do not confuse. Raises :class:`BratsInputError` if the name holds tokens of two kinds.
    """
    stem = nifti.strip_nifti_ending(name)
    if case_id and stem.lower().startswith(case_id.lower()):
        stem = stem[len(case_id):]
    pieces = [p.lower() for p in _SPLIT.split(stem) if p]
    found: set[str] = set()
    i = 0
    while i < len(pieces):
        pair = pieces[i] + pieces[i + 1] if i + 1 < len(pieces) else None
        kind = _kind_of_token(pair) if pair else None
        if kind:
            i += 2
        else:
            kind = _kind_of_token(pieces[i])
            i += 1
        if kind:
            found.add(kind)
    if len(found) > 1:
        raise BratsInputError(f"{name}: ambiguous name, it reads as {' and '.join(sorted(found))}")
    return found.pop() if found else None


def _kind_of_token(token: str) -> str | None:
    return next((kind for kind, tokens in SEQUENCE_TOKENS.items() if token in tokens), None)


def find_case(folder: str | os.PathLike, *, with_segmentation: bool | None = None) -> Case:
    """Recognise the case in ``folder`` (its id is the folder name).

    ``with_segmentation``: True requires a segmentation, False forbids one (an extra NIfTI is then an
    error), None takes one if present. One unrecognised NIfTI beside four recognised sequences and no
    segmentation is taken as the segmentation, with a :class:`BratsWarning` (BraTS 2020 case 355 ships
    ``W39_1998.09.19_Segm.nii``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BratsInputError(f"{folder}: not a folder")
    case_id = folder.name
    releases_matching_case_id(case_id)  # an unsupported release's naming is an error here
    niftis = sorted(p for p in folder.iterdir() if p.is_file() and nifti.nifti_ending(p.name)
                    and not p.name.startswith("."))
    if not niftis:
        raise BratsInputError(f"{folder}: no NIfTI files (.nii or .nii.gz) in this case folder")
    by_kind: dict[str, Path] = {}
    unknown: list[Path] = []
    for path in niftis:
        kind = identify_file(path.name, case_id)
        if kind is None:
            unknown.append(path)
        elif kind in by_kind:
            raise BratsInputError(f"{folder}: both {by_kind[kind].name} and {path.name} read as {kind}")
        else:
            by_kind[kind] = path
    missing = [s for s in SEQUENCES if s not in by_kind]
    if missing:
        hint = f" (unrecognised: {', '.join(p.name for p in unknown)})" if unknown else ""
        raise BratsInputError(f"{folder}: missing {', '.join(missing)} sequence{hint}")
    if unknown and SEGMENTATION not in by_kind and len(unknown) == 1 and with_segmentation is not False:
        by_kind[SEGMENTATION] = unknown.pop()
        warnings.warn(f"{by_kind[SEGMENTATION]}: taken as the segmentation of {case_id} "
                      "(the only unrecognised NIfTI beside the four sequences)", BratsWarning, stacklevel=2)
    if unknown:
        raise BratsInputError(f"{unknown[0]}: unknown NIfTI file in case {case_id} (not a sequence or "
                              "segmentation name); move it out of the case folder")
    segmentation = by_kind.get(SEGMENTATION)
    if with_segmentation and segmentation is None:
        raise BratsInputError(f"{folder}: no segmentation file (e.g. {case_id}_seg.nii.gz) in this case")
    if with_segmentation is False and segmentation is not None:
        raise BratsInputError(f"{segmentation}: a segmentation where only images are expected")
    return Case(case_id, folder, {s: by_kind[s] for s in SEQUENCES}, segmentation)


def find_cases(root: str | os.PathLike, *, with_segmentation: bool | None = None,
               exclude: str | os.PathLike | None = None) -> list[Case]:
    """Every case folder below ``root`` (e.g. ``HGG/`` and ``LGG/`` sub-folders), sorted by case id.

    ``root`` itself may be a case folder. ``exclude``: a folder below ``root`` to pass over (an output
    folder inside the input). Raises :class:`BratsInputError` for a missing or empty source, and for
    two folders with the same case id.
    """
    root = Path(root)
    if not root.is_dir():
        raise BratsInputError(f"{root}: no such folder")
    skipped = Path(exclude).resolve() if exclude else None
    folders = sorted({p.parent for p in root.rglob("*") if p.is_file() and nifti.nifti_ending(p.name)
                      and not p.name.startswith(".") and p.parent.name != AUXILIARY_FOLDER
                      and not (skipped and p.parent.resolve().is_relative_to(skipped))})
    if not folders:
        raise BratsInputError(f"{root}: no BraTS cases found (no .nii or .nii.gz files below it)")
    cases: dict[str, Case] = {}
    for folder in folders:
        case = find_case(folder, with_segmentation=with_segmentation)
        if case.case_id in cases:
            raise BratsInputError(f"duplicate case id {case.case_id}: {cases[case.case_id].folder} "
                                  f"and {case.folder}")
        cases[case.case_id] = case
    return [cases[k] for k in sorted(cases)]


# ---- validating images ------------------------------------------------------------------------------

def check_case(case: Case, *, read_all_voxels: bool = False) -> nib.Nifti1Image:
    """Validate a case's files against each other; return the opened T1 image (the geometry reference).

    Always: readable NIfTI, 3-D, numeric, finite scaling, complete data (see
    :func:`brats_plugin.nifti.check_stored_size`), the same shape and (within tolerance) affine as the
    T1. Floating-point images are also read for NaN/Inf; integer images cannot hold them, so their
    voxels are read only if ``read_all_voxels``, which also checks the gzip checksum of every file.
    """
    images = [nifti.load(path) for path in case.files]
    reference = images[0]
    for path, image in zip(case.files, images):
        # a segmentation's voxels are checked where they are read (read_label_values)
        is_segmentation = path == case.segmentation
        check_image(image, read_all_voxels=read_all_voxels and not is_segmentation,
                    read_float_voxels=not is_segmentation)
        check_same_grid(image, reference)
    return reference


def check_case_headers(case: Case) -> nib.Nifti1Image:
    """:func:`check_case` for the four sequences without reading voxels; return the opened T1 image.

    Cheap (headers and file sizes only): run it on every case of a batch before any model work.
    """
    images = [nifti.load(case.sequences[s]) for s in SEQUENCES]
    for image in images:
        check_image(image, read_float_voxels=False)
        check_same_grid(image, images[0])
    return images[0]


def read_case_voxels(case: Case) -> tuple[nib.Nifti1Image, np.ndarray]:
    """Validate a case and read its four sequences: (the T1 image, float32 voxels of shape (4, x, y, z)).

    The checks are :func:`check_case`'s, with every sequence's voxels read once (gzip checksums
    included) and checked for NaN/Inf on the way; channels follow :data:`SEQUENCES`. A segmentation
    in the case is ignored. For prediction, where the voxels are needed anyway.
    """
    reference = check_case_headers(case)
    voxels = np.empty((len(SEQUENCES), *reference.shape), dtype=np.float32)
    for channel, sequence in enumerate(SEQUENCES):
        array = nifti.read_array(case.sequences[sequence])
        check_finite(array, case.sequences[sequence])
        voxels[channel] = array
    return reference, voxels


def case_from_files(sequences: dict[str, str | os.PathLike], case_id: str | None = None) -> Case:
    """A case from four explicitly named files (``{"T1": ..., "T1Gd": ..., "T2": ..., "FLAIR": ...}``).

    The case id defaults to the T1 file's name up to its sequence token (``BraTS2021_00000_t1.nii.gz``
    -> ``BraTS2021_00000``), or its whole name without ending if it holds no token.
    """
    missing = [s for s in SEQUENCES if not sequences.get(s)]
    if missing:
        raise BratsInputError(f"explicit sequence files: missing {', '.join(missing)}")
    paths = {s: Path(sequences[s]) for s in SEQUENCES}
    for path in paths.values():
        if not path.is_file():
            raise BratsInputError(f"{path}: no such file")
    return Case(case_id or case_id_from_file_name(paths["T1"].name), paths["T1"].parent, paths)


def case_id_from_file_name(name: str, kinds: Collection[str] = SEQUENCES) -> str:
    """The case id in a file's name: the name up to its first token of ``kinds`` (default: a
    sequence; ``(SEGMENTATION,)`` for masks), else the whole name without its NIfTI ending."""
    stem = nifti.strip_nifti_ending(name)
    for separator in _SPLIT.finditer(stem):
        token = _SPLIT.split(stem[separator.end():], maxsplit=1)[0].lower()
        if _kind_of_token(token) in kinds:
            return stem[:separator.start()]
    return stem


def check_image(image: nib.Nifti1Image, *, read_all_voxels: bool = False, read_float_voxels: bool = True) -> None:
    """Validate one image on its own: 3-D, numeric, finite scaling, complete, finite voxels.

    Voxels are read (for NaN/Inf, and gzip's checksum) if ``read_all_voxels``, or if the image is
    floating-point and ``read_float_voxels``.
    """
    path = image.get_filename()
    if len(image.shape) != 3:
        raise BratsInputError(f"{path}: {len(image.shape)}-D image of shape {image.shape}; expected 3-D")
    dtype = image.header.get_data_dtype()
    if dtype.kind not in "iuf" or dtype.names:
        raise BratsInputError(f"{path}: voxel type {dtype} is not a real number type")
    slope, inter = image.header.get_slope_inter()
    if not all(v is None or np.isfinite(v) for v in (slope, inter)):
        raise BratsInputError(f"{path}: non-finite intensity scaling (scl_slope {slope}, scl_inter {inter})")
    nifti.check_stored_size(image)
    if read_all_voxels or (dtype.kind == "f" and read_float_voxels):
        check_finite(nifti.read_array(path), path)


def check_finite(voxels: np.ndarray, path: str | os.PathLike) -> None:
    """Raise unless every voxel read from ``path`` is a finite number."""
    if voxels.dtype.kind == "f" and not np.isfinite(voxels).all():
        count = int(np.size(voxels) - np.isfinite(voxels).sum())
        raise BratsInputError(f"{path}: {count} NaN or infinite voxel{'s' if count > 1 else ''}")


def check_same_grid(image: nib.Nifti1Image, reference: nib.Nifti1Image) -> None:
    """Raise unless ``image`` has the reference's shape and (within tolerance) affine."""
    if image.shape != reference.shape:
        raise BratsInputError(f"{image.get_filename()}: shape {image.shape} differs from "
                              f"{Path(reference.get_filename()).name} {reference.shape}")
    linear_ok = np.allclose(image.affine[:3, :3], reference.affine[:3, :3], rtol=AFFINE_RTOL, atol=1e-8)
    origin_ok = np.allclose(image.affine[:3, 3], reference.affine[:3, 3], rtol=0, atol=ORIGIN_TOLERANCE_MM)
    if not (linear_ok and origin_ok):
        worst = np.abs(image.affine - reference.affine).max()
        raise BratsInputError(f"{image.get_filename()}: affine differs from "
                              f"{Path(reference.get_filename()).name} by up to {worst:.4g} mm")


# ---- segmentations ----------------------------------------------------------------------------------

def read_label_values(path: str | os.PathLike) -> np.ndarray:
    """The voxels of a segmentation file as non-negative integers (uint8 when they fit, else int64).

    Raises :class:`BratsInputError` for NaN, non-integral or negative values. Integral floats are fine.
    """
    voxels = nifti.read_array(path)
    if voxels.dtype.kind not in "iuf" or voxels.dtype.names:
        raise BratsInputError(f"{path}: segmentation voxel type {voxels.dtype} is not a number type")
    if voxels.ndim != 3:
        raise BratsInputError(f"{path}: {voxels.ndim}-D segmentation of shape {voxels.shape}; expected 3-D")
    if voxels.dtype.kind == "f":
        if not np.isfinite(voxels).all():
            raise BratsInputError(f"{path}: segmentation holds NaN or infinite values")
        if not np.array_equal(voxels, np.round(voxels)):
            example = voxels[voxels != np.round(voxels)].flat[0]
            raise BratsInputError(f"{path}: segmentation holds non-integer values (e.g. {example:g})")
    if voxels.dtype == np.uint8:
        return voxels
    low, high = (voxels.min(), voxels.max()) if voxels.size else (0, 0)
    if low < 0:
        raise BratsInputError(f"{path}: segmentation holds negative labels (e.g. {low:g})")
    return voxels.astype(np.uint8 if high <= 255 else np.int64, copy=False)


def read_mask(path: str | os.PathLike, reference: nib.Nifti1Image) -> np.ndarray:
    """The voxels of a label mask (:func:`read_label_values`) checked to lie on ``reference``'s grid."""
    image = nifti.load(path)
    check_image(image, read_float_voxels=False)  # label voxels are checked by read_label_values
    check_same_grid(image, reference)
    return read_label_values(path)


def check_release_labels(found: Iterable[int], release: Release, path: str | os.PathLike) -> None:
    """Raise unless every label value ``found`` in the file at ``path`` is one of the release's."""
    unknown = sorted(set(found) - set(release.label_values))
    if unknown:
        raise BratsInputError(f"{path}: labels {unknown} are not BraTS {release.key} labels "
                              f"{list(release.label_values)}")


def labels_present(labels: np.ndarray) -> list[int]:
    """The distinct values in an array of non-negative integer labels, ascending."""
    if labels.dtype == np.uint8:  # counting is several times faster than sorting
        return [int(v) for v in np.flatnonzero(np.bincount(labels.ravel(), minlength=1))]
    return [int(v) for v in np.unique(labels)]


def to_nnunet_labels(labels: np.ndarray, release: Release, path: str | os.PathLike) -> np.ndarray:
    """Map release label values to nnU-Net's (uint8); an unknown value is an error naming ``path``.

    Works inside the bounding box of the non-zero voxels (a tumour fills a few percent of a head),
    with one vectorised comparison per label; every non-zero voxel must be claimed by some label.
    """
    mapped = np.zeros_like(labels, dtype=np.uint8)  # same memory order as the input: no transposes
    box = nonzero_box(labels)
    if box is None:
        return mapped
    inside, out = labels[box], mapped[box]
    claimed = 0
    for label in release.labels:
        mask = inside == label.value
        count = np.count_nonzero(mask)
        if count:
            np.copyto(out, label.nnunet, where=mask)
            claimed += count
    if claimed != np.count_nonzero(inside):
        bad = sorted(set(labels_present(inside)) - set(release.label_values))
        raise BratsInputError(f"{path}: labels {bad} are not BraTS {release.key} labels "
                              f"{list(release.label_values)}")
    return mapped
