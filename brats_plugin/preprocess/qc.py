"""The quality-control picture of a preprocessed case: does every sequence sit on the T1Gd and the mask?

Three planes through the brain's centre (axial, coronal, sagittal; radiological convention: the
patient's right on the left, marked R) by four columns (T1, T1Gd, T2, FLAIR). Each panel shows the
sequence in grey with the T1Gd's strongest edges in cyan and the brain mask's outline in yellow: a
sequence whose anatomy does not follow the cyan lines is misregistered; brain outside the yellow line
is cut off.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from brats_plugin.releases import SEQUENCES

EDGE_COLOUR, MASK_COLOUR = (0, 220, 255), (255, 220, 0)
#: The T1Gd's edges drawn: gradient magnitudes above this percentile of the brain's.
EDGE_PERCENTILE = 92


def qc_picture(images: dict[str, np.ndarray], mask: np.ndarray, affine: np.ndarray) -> Image.Image:
    """The picture (RGB), for arrays on one grid with ``affine``."""
    orientation = nib.orientations.io_orientation(affine)  # to RAS axis order and directions
    def ras(array: np.ndarray) -> np.ndarray:
        return nib.orientations.apply_orientation(array, orientation)
    volumes = {s: ras(images[s].astype(np.float32)) for s in SEQUENCES}
    brain = ras(mask.astype(bool))
    edges = _edges(volumes["T1Gd"], brain)
    outline = brain & ~ndimage.binary_erosion(brain)
    centre = [int(round(c)) for c in ndimage.center_of_mass(brain)] if brain.any() else \
        [n // 2 for n in brain.shape]
    rows = []
    for plane in (2, 1, 0):  # axial, coronal, sagittal
        panels = [_panel(volumes[s], edges, outline, brain, plane, centre[plane]) for s in SEQUENCES]
        rows.append(np.concatenate(panels, axis=1))
    width = max(r.shape[1] for r in rows)
    picture = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
    result = Image.fromarray(picture)
    draw = ImageDraw.Draw(result)
    x = 0
    for sequence in SEQUENCES:
        draw.text((x + 3, 2), f"{sequence}  R", fill=(255, 255, 255))
        x += rows[0].shape[1] // len(SEQUENCES)
    return result


def _edges(t1c: np.ndarray, brain: np.ndarray) -> np.ndarray:
    magnitude = np.sqrt(sum(ndimage.sobel(ndimage.gaussian_filter(t1c, 1.0), axis=a) ** 2 for a in range(3)))
    inside = magnitude[ndimage.binary_dilation(brain, iterations=2)]
    threshold = np.percentile(inside, EDGE_PERCENTILE) if inside.size else np.inf
    return magnitude > threshold


def _panel(volume: np.ndarray, edges: np.ndarray, outline: np.ndarray, brain: np.ndarray, axis: int,
           index: int) -> np.ndarray:
    def cut(array: np.ndarray) -> np.ndarray:
        # rows: superior or anterior at the top; columns: the patient's right on the left (radiological)
        plane = np.take(array, index, axis=axis)
        plane = plane.T[::-1]
        return plane[:, ::-1] if axis != 0 else plane
    grey = cut(volume)
    inside = volume[brain] if brain.any() else volume.ravel()
    low, high = np.percentile(inside, (1, 99)) if inside.size else (0.0, 1.0)
    scaled = np.clip((grey - low) / max(high - low, 1e-6) * 255, 0, 255).astype(np.uint8)
    rgb = np.repeat(scaled[..., None], 3, axis=2)
    rgb[cut(edges)] = EDGE_COLOUR
    rgb[cut(outline)] = MASK_COLOUR
    return rgb
