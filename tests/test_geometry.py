"""Voxel geometry from the affine, and boxes around a mask (brats_plugin.geometry)."""
import numpy as np
import pytest

from brats_plugin.geometry import box_around, nonzero_box, voxel_spacing, voxel_volume_ml


def test_nonzero_box():
    array = np.zeros((7, 8, 9), np.uint8)
    assert nonzero_box(array) is None
    array[2, 3, 4] = 1
    array[5, 3, 1] = 2
    assert nonzero_box(array) == (slice(2, 6), slice(3, 4), slice(1, 5))
    assert nonzero_box(np.asfortranarray(array)) == (slice(2, 6), slice(3, 4), slice(1, 5))


def test_box_around_stays_inside_the_array():
    mask = np.zeros((10, 10, 10), bool)
    assert box_around(mask, 3) is None
    mask[1, 5, 8] = True
    assert box_around(mask, 3) == (slice(0, 5), slice(2, 9), slice(5, 10))


def test_spacing_and_volume_of_an_oblique_left_handed_grid():
    rotation = np.array([[np.cos(0.4), -np.sin(0.4), 0], [np.sin(0.4), np.cos(0.4), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.9, 1.1, -5.0])  # 5 mm slices, z flipped: a left-handed grid
    assert voxel_spacing(affine) == pytest.approx((0.9, 1.1, 5.0))
    assert voxel_volume_ml(affine) == pytest.approx(0.9 * 1.1 * 5.0 / 1000)
