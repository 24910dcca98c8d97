"""Synthetic BraTS-like cases ("phantoms") for the demo, the tests and the benchmarks.

Each case is a skull-stripped brain (white matter, grey matter, CSF, ventricles) with a tumour whose
compartments have MRI-like contrast on the four sequences: enhancing tumour bright on T1Gd, edema
bright on T2 and FLAIR, necrosis dark on T1Gd, fluid (cysts, resection cavities, CSF) dark on FLAIR.
Shapes and positions are random but seeded; images carry a smooth bias field and noise, are int16,
and have a BraTS-like LPS affine (optionally oblique). Cases are written in a release's own folder
layout and file naming (from :mod:`brats_plugin.releases`), so that conversion is tested on the real
layouts.

The anatomy is laid out in millimetres around the volume centre, so any shape and spacing give a
plausible head; nothing assumes 240x240x155 or 1 mm.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from brats_plugin import files, nifti
from brats_plugin.errors import BratsInputError
from brats_plugin.geometry import rotation_matrix
from brats_plugin.releases import SEGMENTATION, SEQUENCES, Release, get_release

BRATS_SHAPE = (240, 240, 155)

#: Relative intensity of each tissue on each sequence (white matter on T1 = 1), after MRI contrast:
#: enhancing tumour bright on T1Gd, edema bright on T2/FLAIR, fluid bright on T2 and dark on FLAIR.
CONTRAST: dict[str, dict[str, float]] = {
    #             T1    T1Gd  T2    FLAIR
    "white":     dict(zip(SEQUENCES, (1.00, 1.00, 0.55, 0.65))),
    "grey":      dict(zip(SEQUENCES, (0.72, 0.74, 0.80, 0.85))),
    "csf":       dict(zip(SEQUENCES, (0.25, 0.25, 1.60, 0.20))),
    "edema":     dict(zip(SEQUENCES, (0.62, 0.64, 1.25, 1.40))),
    "enhancing": dict(zip(SEQUENCES, (0.72, 1.65, 0.95, 1.05))),
    "necrosis":  dict(zip(SEQUENCES, (0.38, 0.36, 1.40, 0.80))),
    "cyst":      dict(zip(SEQUENCES, (0.20, 0.22, 1.70, 0.35))),
    "cavity":    dict(zip(SEQUENCES, (0.22, 0.22, 1.65, 0.25))),
}
INTENSITY_SCALE = 1000.0
NOISE = 0.03


@dataclass
class SyntheticCase:
    """A phantom in memory: four int16 images and a label map in the release's label values."""

    case_id: str
    images: dict[str, np.ndarray]
    labels: np.ndarray
    affine: np.ndarray


def brats_affine(shape: tuple[int, int, int], spacing: tuple[float, float, float],
                 rotation_degrees: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """An LPS-stored affine like real BraTS files (x and y flipped), optionally rotated (oblique).

    With 1 mm spacing and shape 240x240x155 this is BraTS's own ``diag(-1, -1, 1)``, origin (0, 239, 0).
    The rotation (degrees about the x, y, z world axes) turns the grid about its centre.
    """
    linear = np.diag([-spacing[0], -spacing[1], spacing[2]])
    origin = np.array([0.0, (shape[1] - 1) * spacing[1], 0.0])
    rotation = rotation_matrix(rotation_degrees)
    centre = origin + linear @ ((np.array(shape) - 1) / 2)
    affine = np.eye(4)
    affine[:3, :3] = rotation @ linear
    affine[:3, 3] = centre - rotation @ (centre - origin)
    return affine


def synthesize_case(release: Release, case_id: str, *, shape: tuple[int, int, int] = BRATS_SHAPE,
                    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
                    rotation_degrees: tuple[float, float, float] = (0.0, 0.0, 0.0),
                    seed: int = 0) -> SyntheticCase:
    """One phantom with a tumour labelled in ``release``'s label values."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in spacing)
    coords = _centred_mm(shape, spacing)
    extent = np.array(shape) * np.array(spacing)

    # brain: a slightly irregular ellipsoid filling most of the field of view
    brain_radii = extent * np.array([0.36, 0.40, 0.40])
    brain_r = _ellipsoid_radius(coords, np.zeros(3), brain_radii) / (1 + 0.05 * _smooth_noise(rng, shape))
    tissue_index = np.zeros(shape, dtype=np.uint8)
    names = ["background", "white", "grey", "csf", "edema", "enhancing", "necrosis", "cyst", "cavity"]
    code = {n: i for i, n in enumerate(names)}
    tissue_index[brain_r < 1.0] = code["white"]
    tissue_index[(brain_r >= 0.84) & (brain_r < 0.96)] = code["grey"]
    tissue_index[(brain_r >= 0.96) & (brain_r < 1.0)] = code["csf"]
    for side in (-1, 1):  # lateral ventricles
        centre = np.array([side * 0.12, -0.05, 0.05]) * brain_radii
        ventricle = _ellipsoid_radius(coords, centre, brain_radii * np.array([0.08, 0.30, 0.16]))
        tissue_index[ventricle < 1.0] = code["csf"]

    # tumour: nested, deformed ellipsoids in one hemisphere, clipped to the brain
    side = rng.choice([-1, 1])
    centre = brain_radii * np.array([side * rng.uniform(0.25, 0.45), rng.uniform(-0.35, 0.35),
                                     rng.uniform(-0.25, 0.35)])
    edema_radii = brain_radii.min() * rng.uniform(0.35, 0.55) * rng.uniform(0.8, 1.2, size=3)
    tumour_r = _ellipsoid_radius(coords, centre, edema_radii) / (1 + 0.3 * _smooth_noise(rng, shape, cells=7))
    core, necrotic = rng.uniform(0.50, 0.70), rng.uniform(0.45, 0.70)
    inside_brain = brain_r < 0.95
    layers = [("edema", 1.0), ("enhancing", core), ("necrosis", core * necrotic)]
    for name, radius in layers:
        if release.label_of_tissue(name):
            tissue_index[(tumour_r < radius) & inside_brain] = code[name]
    if release.label_of_tissue("cyst") and rng.random() < 0.7:
        cyst_centre = centre + rng.uniform(-0.2, 0.2, size=3) * edema_radii * core
        cyst = _ellipsoid_radius(coords, cyst_centre, edema_radii * core * necrotic * 0.8)
        tissue_index[(cyst < 1.0) & (tumour_r < core) & inside_brain] = code["cyst"]
    if release.label_of_tissue("cavity") and rng.random() < 0.6:
        direction = rng.normal(size=3)
        cavity_centre = centre + edema_radii * 0.9 * direction / np.linalg.norm(direction)
        cavity = _ellipsoid_radius(coords, cavity_centre, edema_radii * rng.uniform(0.35, 0.5))
        tissue_index[(cavity < 1.0) & inside_brain] = code["cavity"]

    labels = np.zeros(shape, dtype=np.uint8)
    for name in ("edema", "enhancing", "necrosis", "cyst", "cavity"):
        label = release.label_of_tissue(name)
        if label:
            labels[tissue_index == code[name]] = label.value

    bias = 1 + 0.08 * _smooth_noise(rng, shape)
    images = {}
    for sequence in SEQUENCES:
        table = np.array([0.0] + [CONTRAST[n][sequence] for n in names[1:]], dtype=np.float32)
        image = table[tissue_index] * bias
        image += rng.normal(0, NOISE, size=shape).astype(np.float32) * (tissue_index > 0)
        images[sequence] = np.clip(image * INTENSITY_SCALE, 0, 32767).astype(np.int16)
    return SyntheticCase(case_id, images, labels, brats_affine(shape, spacing, rotation_degrees))


def write_case(case: SyntheticCase, release: Release, root: str | os.PathLike,
               subfolder: str = "", with_segmentation: bool = True) -> Path:
    """Write a phantom in ``release``'s layout and naming below ``root``; return the case folder."""
    folder = files.make_folder(Path(root) / subfolder / case.case_id)
    header = nib.Nifti1Header()
    header.set_xyzt_units("mm", "sec")
    arrays = dict(case.images)
    if with_segmentation:
        arrays[SEGMENTATION] = case.labels
    for kind, array in arrays.items():
        image = nib.Nifti1Image(array, case.affine, header.copy(), dtype=array.dtype)
        image.set_qform(case.affine, code=1)
        image.set_sform(case.affine, code=1)
        name = f"{case.case_id}{release.file_separator}{release.file_tokens[kind]}{release.file_ending}"
        nifti.save(image, folder / name)
    return folder


def write_synthetic_release(root: str | os.PathLike, release: str | Release = "2021", cases: int = 4, *,
                            shape: tuple[int, int, int] = BRATS_SHAPE,
                            spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
                            rotation_degrees: tuple[float, float, float] = (0.0, 0.0, 0.0),
                            seed: int = 0, first_index: int = 1,
                            with_segmentation: bool = True) -> list[Path]:
    """Write ``cases`` phantoms in a release's layout (``HGG``/``LGG`` for 2018-2019) below ``root``.

    Case ``k`` is seeded with ``seed + k``, so the same arguments always write the same files.
    Returns the case folders.
    """
    release = get_release(release) if isinstance(release, str) else release
    if cases < 1:
        raise BratsInputError(f"--cases {cases}: need at least one case")
    if min(shape) < 16:
        raise BratsInputError(f"--shape {','.join(map(str, shape))}: each side needs at least 16 voxels")
    folders = []
    for k in range(cases):
        index = first_index + k
        case = synthesize_case(release, release.case_id(index), shape=shape, spacing=spacing,
                               rotation_degrees=rotation_degrees, seed=seed + index)
        subfolder = ""
        if release.layout_subfolders:  # e.g. HGG/LGG: two thirds high grade, as in BraTS 2018-2019
            subfolder = release.layout_subfolders[0 if k % 3 != 2 else 1]
        folders.append(write_case(case, release, root, subfolder, with_segmentation))
    return folders


def _centred_mm(shape: tuple[int, ...], spacing: tuple[float, ...]) -> list[np.ndarray]:
    """Open-grid voxel coordinates in mm relative to the volume centre."""
    return [
        ((np.arange(n, dtype=np.float32) - (n - 1) / 2) * s).reshape([-1 if a == i else 1 for a in range(3)])
        for i, (n, s) in enumerate(zip(shape, spacing))
    ]


def _ellipsoid_radius(coords: list[np.ndarray], centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Normalised radius (1 on the surface) of an axis-aligned ellipsoid at every voxel."""
    return np.sqrt(sum(((c - m) / r) ** 2 for c, m, r in zip(coords, centre, radii))).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cells: int = 5) -> np.ndarray:
    """Smooth random field in about [-1, 1], varying over about 1/``cells`` of the volume."""
    coarse = rng.uniform(-1, 1, size=(cells,) * 3).astype(np.float32)
    return ndimage.zoom(coarse, [n / cells for n in shape], order=1, mode="nearest", grid_mode=True)[
        tuple(slice(0, n) for n in shape)]
