"""Voxel geometry read from an image's affine, and boxes around a mask's voxels.

Everything is measured from the affine (millimetres), never assumed: anisotropic, oblique and
non-1-mm grids give their true spacing and voxel volume.
"""
from __future__ import annotations

import numpy as np

#: One slice per array axis.
Box = tuple[slice, slice, slice]
#: NIfTI's RAS and DICOM's (and ITK's) LPS patient coordinates differ by this flip; it is its own inverse.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def rotation_matrix(degrees: tuple[float, float, float]) -> np.ndarray:
    """The 3x3 rotation about the x, then y, then z axis by these angles (degrees)."""
    rx, ry, rz = np.deg2rad(degrees)
    return (np.array([[np.cos(rz), -np.sin(rz), 0], [np.sin(rz), np.cos(rz), 0], [0, 0, 1]])
            @ np.array([[np.cos(ry), 0, np.sin(ry)], [0, 1, 0], [-np.sin(ry), 0, np.cos(ry)]])
            @ np.array([[1, 0, 0], [0, np.cos(rx), -np.sin(rx)], [0, np.sin(rx), np.cos(rx)]]))


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in millimetres along the three array axes: the column norms of the affine's 3x3 part."""
    return tuple(float(s) for s in np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0))


def voxel_volume_ml(affine: np.ndarray) -> float:
    """The volume of one voxel in millilitres (affine in millimetres)."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0


def nonzero_box(labels: np.ndarray) -> Box | None:
    """The smallest box (one slice per axis) holding every non-zero voxel of a 3-D array, or None.

    One pass over the whole array (a projection along the last axis), then only over the box.
    """
    projection = labels.any(axis=2)
    xs, ys = np.flatnonzero(projection.any(axis=1)), np.flatnonzero(projection.any(axis=0))
    if xs.size == 0:
        return None
    column = labels[xs[0]:xs[-1] + 1, ys[0]:ys[-1] + 1]
    zs = np.flatnonzero(column.any(axis=(0, 1)))
    return slice(xs[0], xs[-1] + 1), slice(ys[0], ys[-1] + 1), slice(zs[0], zs[-1] + 1)


def box_around(mask: np.ndarray, margin: int) -> Box | None:
    """The bounding box of a mask's non-zero voxels grown by ``margin`` voxels (within the array), or None."""
    box = nonzero_box(mask)
    if box is None:
        return None
    return tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, mask.shape))
