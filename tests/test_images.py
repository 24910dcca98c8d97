"""Display geometry (orientation, crop, proportions, intensities) and the PNG montage and GIF animation."""
from __future__ import annotations

import dataclasses

import nibabel as nib
import numpy as np
import pytest
from conftest import SMALL_SHAPE
from PIL import Image

from brats_plugin import BratsInputError, find_case, write_synthetic_release
from brats_plugin.export import ExportCase, load_export_case
from brats_plugin.export.images import (
    AXIAL,
    VIEWS,
    display_volume,
    screen_slice,
    slice_picture,
    write_gif,
    write_montage,
)
from brats_plugin.export.legend import legend
from brats_plugin.releases import SEQUENCES
from brats_plugin.volumes import measure_volumes

CORONAL, SAGITTAL = VIEWS[1], VIEWS[2]


def synthetic_case(root, release="2021", shape=SMALL_SHAPE, spacing=(1.0, 1.0, 1.0), rotation=(0.0, 0.0, 0.0),
                   seed=3) -> ExportCase:
    folder = write_synthetic_release(root, release, 1, shape=shape, spacing=spacing, rotation_degrees=rotation,
                                     seed=seed)[0]
    case = find_case(folder)
    return load_export_case(case, case.segmentation, release)


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> ExportCase:
    return synthetic_case(tmp_path_factory.mktemp("case"))


def reoriented(case: ExportCase, ornt) -> ExportCase:
    """The same case stored with another axis order and other flips (nibabel moves the affine along)."""
    def turn(array):
        return np.asarray(nib.Nifti1Image(array, case.affine).as_reoriented(ornt).dataobj)
    reference = nib.Nifti1Image(turn(case.images["T1"]), nib.Nifti1Image(case.images["T1"], case.affine)
                                .as_reoriented(ornt).affine)
    return dataclasses.replace(case, reference=reference, images={s: turn(a) for s, a in case.images.items()},
                               labels=turn(case.labels))


def without_tumour(case: ExportCase) -> ExportCase:
    labels = np.zeros_like(case.labels)
    return dataclasses.replace(case, labels=labels, volumes=measure_volumes(labels, case.release, case.affine))


def exact(picture: Image.Image, colour) -> np.ndarray:
    """Where a picture has exactly this colour."""
    return np.all(np.asarray(picture.convert("RGB")) == np.array(colour, dtype=np.uint8), axis=-1)


def saturated(pixels: np.ndarray) -> np.ndarray:
    """Where an RGB array is clearly coloured (greys have equal channels)."""
    pixels = pixels.astype(int)
    return pixels.max(axis=-1) - pixels.min(axis=-1) > 30


# ---- geometry ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("ornt", [
    [[2, 1], [0, 1], [1, 1]],      # axes stored in another order
    [[0, -1], [1, 1], [2, -1]],    # flipped
    [[1, -1], [2, 1], [0, -1]],    # both
])
def test_display_does_not_depend_on_the_files_axis_order(case, ornt):
    reference, other = display_volume(case), display_volume(reoriented(case, ornt))
    assert other.shape == reference.shape and other.spacing == reference.spacing
    np.testing.assert_array_equal(other.labels, reference.labels)
    for sequence in SEQUENCES:
        np.testing.assert_array_equal(other.images[sequence], reference.images[sequence])


@pytest.mark.parametrize("ornt", [[[0, 1], [1, 1], [2, 1]], [[1, -1], [2, 1], [0, -1]]])
def test_display_voxels_map_back_to_the_files_voxels(case, ornt):
    stored = reoriented(case, ornt)
    display = display_volume(stored)
    voxels = np.argwhere(np.ones(display.shape, bool))
    files = np.rint(nib.affines.apply_affine(display.to_source, voxels)).astype(int)
    np.testing.assert_array_equal(stored.labels[tuple(files.T)], display.labels[tuple(voxels.T)])
    assert display.source_axes == "".join(nib.aff2axcodes(stored.affine))


@pytest.mark.parametrize("ornt", [[[0, 1], [1, 1], [2, 1]], [[1, -1], [2, 1], [0, -1]]])
def test_screen_follows_the_radiological_convention(case, ornt):
    """Patient's right on the screen's left; anterior, then superior, at the top; anterior left on sagittal."""
    stored = reoriented(case, ornt)
    display = display_volume(stored)
    to_display = np.linalg.inv(display.to_source)

    def on_screen(view, file_voxel):
        voxel = np.rint(nib.affines.apply_affine(to_display, file_voxel)).astype(int)
        marker = np.zeros(display.shape, np.uint8)
        marker[tuple(voxel)] = 1
        return np.argwhere(screen_slice(marker, view, voxel[view.slice_axis]))[0]  # (row, column)

    head = np.argwhere(stored.images["T1"] != 0)
    world = nib.affines.apply_affine(stored.affine, head)
    right, anterior, superior = (head[np.argmax(world[:, axis])] for axis in range(3))
    left, posterior, inferior = (head[np.argmin(world[:, axis])] for axis in range(3))
    assert on_screen(AXIAL, right)[1] < on_screen(AXIAL, left)[1]
    assert on_screen(AXIAL, anterior)[0] < on_screen(AXIAL, posterior)[0]
    assert on_screen(CORONAL, right)[1] < on_screen(CORONAL, left)[1]
    assert on_screen(CORONAL, superior)[0] < on_screen(CORONAL, inferior)[0]
    assert on_screen(SAGITTAL, anterior)[1] < on_screen(SAGITTAL, posterior)[1]
    assert on_screen(SAGITTAL, superior)[0] < on_screen(SAGITTAL, inferior)[0]
    assert display.layout(AXIAL).sides(AXIAL) == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert display.layout(CORONAL).sides(CORONAL) == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    assert display.layout(SAGITTAL).sides(SAGITTAL) == {"left": "A", "right": "P", "top": "S", "bottom": "I"}


def test_pictures_keep_the_voxel_proportions(tmp_path):
    anisotropic = synthetic_case(tmp_path, shape=(40, 48, 24), spacing=(0.8, 1.0, 3.0))
    display = display_volume(anisotropic)
    assert display.spacing == pytest.approx((0.8, 1.0, 3.0))
    for view in VIEWS:
        layout = display.layout(view)
        picture = slice_picture(display, display.tumour_slice(view), view=view)
        width_mm, height_mm = layout.columns * layout.column_mm, layout.rows * layout.row_mm
        assert picture.width / picture.height == pytest.approx(width_mm / height_mm, rel=0.05)


def test_an_oblique_grid_is_shown_on_its_closest_axis_aligned_grid(tmp_path):
    oblique = synthetic_case(tmp_path, rotation=(0.0, 0.0, 20.0))
    display = display_volume(oblique)
    assert display.oblique and display.source_axes == "".join(nib.aff2axcodes(oblique.affine))
    assert not display_volume(synthetic_case(tmp_path / "straight")).oblique
    assert np.count_nonzero(display.labels) == np.count_nonzero(oblique.labels)


def test_the_display_is_cropped_to_the_head_and_keeps_every_head_voxel(case):
    display = display_volume(case)
    head = np.zeros(display.shape, bool)
    for sequence in SEQUENCES:
        head |= display.images[sequence] > 0
    assert np.count_nonzero(display.labels) == np.count_nonzero(case.labels)
    assert np.prod(display.shape) < np.prod(case.shape)  # the phantom's head does not fill its grid
    for axis in range(3):  # every face of the box touches the head: the crop is tight
        assert np.take(head, 0, axis=axis).any() and np.take(head, -1, axis=axis).any()


def test_sequences_become_bytes_between_robust_percentiles(case):
    display = display_volume(case)
    for sequence in SEQUENCES:
        low, high = display.intensity_ranges[sequence]
        source = case.images[sequence]
        inside = source[source != 0]
        assert inside.min() <= low < high <= inside.max()
        assert 0.001 < np.mean(inside >= high) < 0.01  # about 0.5% saturate at the top...
        assert 0.001 < np.mean(inside <= low) < 0.01  # ...and at the bottom
        voxels = np.argwhere(np.ones(display.shape, bool))[::97]
        files = np.rint(nib.affines.apply_affine(display.to_source, voxels)).astype(int)
        expected = np.clip((source[tuple(files.T)] - low) / (high - low) * 255, 0, 255)
        assert np.abs(display.images[sequence][tuple(voxels.T)] - expected).max() <= 0.51


def test_views_start_on_the_slice_with_most_tumour_or_in_the_middle(case):
    display = display_volume(case)
    for view in VIEWS:
        slices = range(display.shape[view.slice_axis])
        counts = [np.count_nonzero(screen_slice(display.labels, view, i)) for i in slices]
        assert counts[display.tumour_slice(view)] == max(counts) > 0
    empty = display_volume(without_tumour(case))
    assert [empty.tumour_slice(view) for view in VIEWS] == [empty.shape[v.slice_axis] // 2 for v in VIEWS]


# ---- one slice --------------------------------------------------------------------------------------

def test_slice_picture_shows_label_colours_where_the_tumour_is(case):
    display = display_volume(case)
    index = display.tumour_slice(AXIAL)
    picture = slice_picture(display, index, opacity=1.0)
    labels = screen_slice(display.labels, AXIAL, index)
    assert picture.size == (labels.shape[1], labels.shape[0])  # 1 mm voxels: one pixel each
    for entry in legend(case.release):
        np.testing.assert_array_equal(exact(picture, entry.colour), labels == entry.value)
    blended = np.asarray(slice_picture(display, index, opacity=0.5))
    np.testing.assert_array_equal(saturated(blended), labels > 0)


def test_slice_picture_without_tumour_is_grey(case):
    display = display_volume(without_tumour(case))
    pixels = np.asarray(slice_picture(display, display.tumour_slice(AXIAL), opacity=1.0))
    assert not saturated(pixels).any() and pixels.max() > 100


def test_picture_options_are_checked(case):
    display = display_volume(case)
    with pytest.raises(BratsInputError, match="sequence 'DWI' is unknown"):
        slice_picture(display, 0, sequence="DWI")
    with pytest.raises(BratsInputError, match="opacity 1.5"):
        slice_picture(display, 0, opacity=1.5)


# ---- montage ----------------------------------------------------------------------------------------

def swatch_boxes(picture: Image.Image, release) -> dict[int, tuple[int, int, int, int]]:
    """For each label, the bounding box (top, left, bottom, right) of its exact colour."""
    boxes = {}
    for entry in legend(release):
        rows, columns = np.nonzero(exact(picture, entry.colour))
        boxes[entry.value] = (rows.min(), columns.min(), rows.max(), columns.max()) if rows.size else None
    return boxes


def last_band_top(where: np.ndarray) -> int:
    """The first row of the lowest run of consecutive rows where ``where`` holds (the legend's swatch)."""
    rows = np.flatnonzero(where.any(axis=1))
    breaks = np.flatnonzero(np.diff(rows) > 1)
    return int(rows[breaks[-1] + 1] if breaks.size else rows[0])


def test_montage_shows_tumour_slices_and_a_legend(case, tmp_path):
    path = write_montage(case, tmp_path / "montage.png", slices=6, opacity=1.0)
    assert path == tmp_path / "montage.png" and [p.name for p in tmp_path.iterdir()] == ["montage.png"]
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        montage = picture.convert("RGB")
    legend_top = min(last_band_top(exact(montage, entry.colour)) for entry in legend(case.release))
    display = display_volume(case)
    for entry in legend(case.release, case.volumes):
        tiles = exact(montage, entry.colour)[:legend_top]
        shown = sum(np.count_nonzero(screen_slice(display.labels, AXIAL, i) == entry.value)
                    for i in display.slices_through_tumour(AXIAL, 6))
        assert (np.count_nonzero(tiles) > 0) == (shown > 0)  # every label on the chosen slices is drawn


def test_montage_without_tumour_has_colour_only_in_its_legend(case, tmp_path):
    empty = without_tumour(case)
    with Image.open(write_montage(empty, tmp_path / "empty.png", opacity=1.0)) as picture:
        montage = picture.convert("RGB")
    boxes = swatch_boxes(montage, case.release)
    for entry in legend(case.release):
        top, left, bottom, right = boxes[entry.value]
        assert bottom - top == right - left >= 8  # a square swatch...
        assert np.count_nonzero(exact(montage, entry.colour)) == (bottom - top + 1) ** 2  # ...and nothing else
        beside = np.asarray(montage)[top:bottom + 1, right + 1:]
        assert (beside.min(axis=-1) > 150).sum() > 20  # the label's text is written beside its swatch
    assert np.count_nonzero(saturated(np.asarray(montage))) == sum((b[2] - b[0] + 1) ** 2 for b in boxes.values())


def test_montage_grid_grows_by_rows_of_tiles(case, tmp_path):
    heights = {}
    for slices in (4, 8):
        with Image.open(write_montage(case, tmp_path / f"{slices}.png", slices=slices, columns=4,
                                      tile_size=100)) as picture:
            heights[slices] = picture.height
            assert picture.width >= 4 * 70
    assert 100 <= heights[8] - heights[4] <= 110  # one more row of tiles 100 px tall (48 mm > 40 mm)


# ---- animation --------------------------------------------------------------------------------------

def test_gif_runs_through_every_head_slice_with_the_overlay(case, tmp_path):
    path = write_gif(case, tmp_path / "case.gif")
    superior = "".join(nib.aff2axcodes(case.affine)).index("S")
    head = np.zeros(case.shape, bool)
    for image in case.images.values():
        head |= image != 0
    head_slices = np.flatnonzero(head.any(axis=tuple(a for a in range(3) if a != superior)))
    head_slices = np.arange(head_slices[0], head_slices[-1] + 1)  # inferior to superior (LPS: S is +k)
    tumour = case.labels.any(axis=tuple(a for a in range(3) if a != superior))[head_slices]
    with Image.open(path) as animation:
        assert animation.format == "GIF" and animation.n_frames == len(head_slices)
        assert animation.info["loop"] == 0
        sizes, coloured = set(), []
        for n in range(animation.n_frames):
            animation.seek(n)
            frame = animation.convert("RGB")
            sizes.add(frame.size)
            caption_top = min(box[0] for box in swatch_boxes(frame, case.release).values())
            coloured.append(saturated(np.asarray(frame)[:caption_top]).any())
    assert len(sizes) == 1
    assert coloured == list(tumour)
    assert any(tumour) and not all(tumour)
