"""Pictures of a segmented case: the display geometry shared with the HTML viewer, PNG montages and GIFs.

Display geometry (one definition, used by the pictures here and, through its payload, by the HTML viewer):

- *Anatomical orientation whatever the file's axis order*: the arrays are reordered and flipped to the
  closest canonical RAS grid (nibabel's ``io_orientation``). An oblique grid is shown on its closest
  axis-aligned grid, without resampling, so its views are tilted by the obliquity angle.
- *Cropped to the head*: the box of voxels that are non-zero in any sequence or in the mask.
- *Radiological convention*: the patient's right on the screen's left (axial and coronal views),
  anterior on the left of sagittal views, anterior at the top of axial views, superior at the top of
  coronal and sagittal views. In RAS terms every view shows the positive end of both its screen axes
  at the left and at the top.
- *Real proportions*: pixels are drawn as wide and tall as the voxel spacing says.
- *Intensities as bytes*: each sequence is mapped linearly to 0-255 between robust percentiles of its
  head voxels; :attr:`DisplayVolume.intensity_ranges` keeps the mapping.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nibabel import orientations
from PIL import Image, ImageDraw, ImageFont

from brats_plugin import files
from brats_plugin.cases import nonzero_box
from brats_plugin.errors import BratsInputError
from brats_plugin.export.case import ExportCase
from brats_plugin.export.legend import colour_table, legend
from brats_plugin.releases import SEQUENCES, Release
from brats_plugin.volumes import Volumes

#: Percentiles of a sequence's non-zero head voxels that become bytes 0 and 255.
INTENSITY_PERCENTILES = (0.5, 99.5)
_RANGE_SAMPLE = 1_000_000
#: The sequence pictures show unless told otherwise: the whole tumour (edema included) shows best on it.
PICTURE_SEQUENCE = "FLAIR"
#: Overlay opacity of pictures unless told otherwise.
PICTURE_OPACITY = 0.5
#: The letters of the RAS axes' positive and negative ends.
POSITIVE_ENDS, NEGATIVE_ENDS = "RAS", "LPI"
#: A grid is oblique when a voxel axis is further than this (cosine) from a world axis.
OBLIQUE_TOLERANCE = 1e-4

_BACKGROUND = (0, 0, 0)
_TEXT = (235, 235, 235)
_GAP = 4  # pixels between montage tiles and around text


# ---- what the screen shows --------------------------------------------------------------------------

@dataclass(frozen=True)
class View:
    """A family of slices: which RAS axis they cut across and which RAS axes run along the screen."""

    name: str
    slice_axis: int
    row_axis: int  # runs down the screen (its positive end at the top)
    column_axis: int  # runs across the screen (its positive end at the left)


VIEWS: tuple[View, ...] = (View("axial", 2, 1, 0), View("coronal", 1, 2, 0), View("sagittal", 0, 2, 1))
AXIAL = VIEWS[0]


@dataclass(frozen=True)
class ScreenLayout:
    """Where the pixels of a view's slices lie in a C-ordered (x, y, z) display array.

    The pixel at ``row``, ``column`` of slice ``s`` is element
    ``first + s * slice_step + row * row_step + column * column_step`` of the flattened array. The HTML
    viewer reads these numbers from its payload, so Python and JavaScript cut slices the same way.
    """

    slices: int
    rows: int
    columns: int
    first: int
    slice_step: int
    row_step: int
    column_step: int
    row_mm: float  # height of a pixel
    column_mm: float  # width of a pixel

    def sides(self, view: View) -> dict[str, str]:
        """The anatomical direction at each side of the screen, e.g. ``{"left": "R", ...}`` for axial."""
        return {"left": POSITIVE_ENDS[view.column_axis], "right": NEGATIVE_ENDS[view.column_axis],
                "top": POSITIVE_ENDS[view.row_axis], "bottom": NEGATIVE_ENDS[view.row_axis]}


def screen_layout(view: View, shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> ScreenLayout:
    """The :class:`ScreenLayout` of a view of a display array of ``shape`` with voxel ``spacing`` (mm)."""
    strides = (shape[1] * shape[2], shape[2], 1)
    rows, columns = shape[view.row_axis], shape[view.column_axis]
    # positive ends at the top and at the left: rows and columns run towards lower indices
    return ScreenLayout(
        slices=shape[view.slice_axis], rows=rows, columns=columns,
        first=(rows - 1) * strides[view.row_axis] + (columns - 1) * strides[view.column_axis],
        slice_step=strides[view.slice_axis], row_step=-strides[view.row_axis],
        column_step=-strides[view.column_axis],
        row_mm=float(spacing[view.row_axis]), column_mm=float(spacing[view.column_axis]))


def screen_slice(volume: np.ndarray, view: View, index: int) -> np.ndarray:
    """Slice ``index`` of a C-ordered display array as the screen shows it: (rows, columns)."""
    layout = screen_layout(view, volume.shape, (1.0, 1.0, 1.0))
    if not 0 <= index < layout.slices:
        raise IndexError(f"{view.name} slice {index} is outside 0..{layout.slices - 1}")
    rows = np.arange(layout.rows)[:, None] * layout.row_step
    columns = np.arange(layout.columns)[None, :] * layout.column_step
    return np.ascontiguousarray(volume).ravel()[layout.first + index * layout.slice_step + rows + columns]


@dataclass(frozen=True)
class DisplayVolume:
    """A case as every picture shows it: RAS axis order, cropped to the head, sequences as bytes."""

    case_id: str
    release: Release
    volumes: Volumes
    images: dict[str, np.ndarray]  # sequence -> uint8 (x, y, z), C order
    intensity_ranges: dict[str, tuple[float, float]]  # sequence -> the intensities bytes 0 and 255 stand for
    labels: np.ndarray  # uint8 (x, y, z), C order, in the release's label values
    spacing: tuple[float, float, float]  # mm along x, y, z
    to_source: np.ndarray  # 4x4: display voxel index -> voxel index in the case's files
    source_axes: str  # the files' closest axis directions, e.g. "LPS"
    oblique: bool  # the files' grid is not aligned with the world axes (shown on the closest one)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.labels.shape

    def layout(self, view: View) -> ScreenLayout:
        """Where the view's pixels lie in this volume's arrays."""
        return screen_layout(view, self.shape, self.spacing)

    def tumour_slice(self, view: View) -> int:
        """The view's slice with the most tumour voxels; the middle slice when the mask is empty."""
        counts = self._tumour_counts(view)
        return int(np.argmax(counts)) if counts.any() else self.shape[view.slice_axis] // 2

    def slices_through_tumour(self, view: View, count: int) -> list[int]:
        """Up to ``count`` slices evenly spread over the tumour's extent (the head's if none), ascending."""
        present = np.flatnonzero(self._tumour_counts(view))
        first, last = (present[0], present[-1]) if present.size else (0, self.shape[view.slice_axis] - 1)
        count = min(count, last - first + 1)
        return [int(first + (last - first + 1) * (i + 0.5) // count) for i in range(count)]

    def source_slice(self, view: View, index: int) -> int:
        """The index in the case's files of the view's slice ``index`` (along the file axis it runs on)."""
        column = self.to_source[:3, view.slice_axis]
        axis = int(np.flatnonzero(column)[0])
        return int(round(column[axis] * index + self.to_source[axis, 3]))

    def _tumour_counts(self, view: View) -> np.ndarray:
        others = tuple(a for a in range(3) if a != view.slice_axis)
        return np.count_nonzero(self.labels, axis=others)


def display_volume(case: ExportCase) -> DisplayVolume:
    """Reorient, crop and quantise a case for display (see the module's notes)."""
    reorder = orientations.io_orientation(case.affine)  # for each file axis: (RAS axis, flip)
    box = _head_box(case, reorder)

    def shown(array: np.ndarray) -> np.ndarray:  # a view in RAS axis order, cropped to the head
        return orientations.apply_orientation(array, reorder)[box]

    spacing = [0.0, 0.0, 0.0]
    for file_axis, (ras_axis, _) in enumerate(reorder):
        spacing[int(ras_axis)] = case.spacing[file_axis]
    crop = np.eye(4)
    crop[:3, 3] = [s.start for s in box]
    quantised = {sequence: _to_display_bytes(shown(case.images[sequence])) for sequence in SEQUENCES}
    directions = case.affine[:3, :3] / np.asarray(case.spacing)
    return DisplayVolume(
        case_id=case.case_id, release=case.release, volumes=case.volumes,
        images={sequence: voxels for sequence, (voxels, _) in quantised.items()},
        intensity_ranges={sequence: mapping for sequence, (_, mapping) in quantised.items()},
        labels=np.ascontiguousarray(shown(case.labels)), spacing=tuple(spacing),
        to_source=orientations.inv_ornt_aff(reorder, case.shape) @ crop,
        source_axes="".join(orientations.aff2axcodes(case.affine)),
        oblique=bool(np.abs(directions).max(axis=0).min() < 1 - OBLIQUE_TOLERANCE))


def _head_box(case: ExportCase, reorder: np.ndarray) -> tuple[slice, slice, slice]:
    """The RAS-ordered box of the voxels non-zero in a sequence or the mask (everything if there are none)."""
    head = case.labels != 0
    for image in case.images.values():
        head |= image != 0
    head = orientations.apply_orientation(head, reorder)
    return nonzero_box(head) or tuple(slice(0, n) for n in head.shape)


def intensity_range(voxels: np.ndarray) -> tuple[float, float]:
    """The :data:`INTENSITY_PERCENTILES` of the non-zero voxels (of an even sample of at most a million
    voxels), as (low, high) with high > low: what black and white stand for in every picture, the
    viewer and the DICOM window."""
    flat = voxels.reshape(-1)
    sample = flat[::max(1, flat.size // _RANGE_SAMPLE)]
    inside = sample[sample != 0]
    low, high = (float(v) for v in np.percentile(inside, INTENSITY_PERCENTILES)) if inside.size else (0.0, 1.0)
    return low, high if high > low else low + 1.0


def _to_display_bytes(voxels: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Bytes between the robust percentiles of the non-zero voxels; (bytes, (intensity 0, intensity 255))."""
    low, high = intensity_range(voxels)
    scaled = (voxels - np.float32(low)) * np.float32(255.0 / (high - low)) + np.float32(0.5)
    return np.clip(scaled, 0, 255).astype(np.uint8, order="C"), (low, high)


def as_display(case: ExportCase | DisplayVolume) -> DisplayVolume:
    """The display volume of a case (computed once by the caller when several exports share it)."""
    return case if isinstance(case, DisplayVolume) else display_volume(case)


# ---- one slice as a picture -------------------------------------------------------------------------

def slice_picture(display: DisplayVolume, index: int, *, view: View = AXIAL, sequence: str = PICTURE_SEQUENCE,
                  opacity: float = PICTURE_OPACITY, pixel_mm: float | None = None) -> Image.Image:
    """Slice ``index`` of a view as an RGB picture: the sequence in grey, labels blended in their colours.

    ``pixel_mm``: the size of an output pixel in millimetres (default: the finer voxel spacing of the
    plane), so that the picture keeps the head's real proportions on any voxel spacing.
    """
    check_picture_options(sequence, opacity)
    layout = display.layout(view)
    pixel_mm = pixel_mm or min(layout.row_mm, layout.column_mm)
    size = (max(1, round(layout.columns * layout.column_mm / pixel_mm)),
            max(1, round(layout.rows * layout.row_mm / pixel_mm)))
    grey = Image.fromarray(screen_slice(display.images[sequence], view, index))
    grey = grey.resize(size, Image.Resampling.BILINEAR)
    labels = Image.fromarray(screen_slice(display.labels, view, index))
    labels = np.asarray(labels.resize(size, Image.Resampling.NEAREST))  # crisp edges, exact colours
    return Image.fromarray(blend_labels(np.asarray(grey), labels, display.release, opacity), "RGB")


def blend_labels(grey: np.ndarray, labels: np.ndarray, release: Release, opacity: float) -> np.ndarray:
    """uint8 RGB (``grey.shape + (3,)``) of grey levels (0-255) with each label's colour blended in.

    The one overlay rule of every picture (montage, GIF, DICOM overlay series): ``(1 - opacity) * grey
    + opacity * colour`` where there is a label, the grey level elsewhere.
    """
    rgb = np.repeat(np.rint(grey).astype(np.uint8)[..., None], 3, axis=-1)
    tumour = labels > 0
    colours = np.asarray(colour_table(release), dtype=np.float32)[labels[tumour]]
    rgb[tumour] = np.rint((1 - opacity) * np.asarray(grey, dtype=np.float32)[tumour][:, None] + opacity * colours)
    return rgb


def check_picture_options(sequence: str, opacity: float) -> None:
    """Refuse an unknown sequence name or an opacity outside 0-1, in one line."""
    if sequence not in SEQUENCES:
        raise BratsInputError(f"sequence {sequence!r} is unknown; choose one of {', '.join(SEQUENCES)}")
    if not 0 <= opacity <= 1:
        raise BratsInputError(f"overlay opacity {opacity}: must lie between 0 and 1")


def _pixel_mm(display: DisplayVolume, size: int) -> float:
    """The output pixel size that makes the longer side of an axial picture ``size`` pixels."""
    layout = display.layout(AXIAL)
    return max(layout.columns * layout.column_mm, layout.rows * layout.row_mm) / size


# ---- montage ----------------------------------------------------------------------------------------

def write_montage(case: ExportCase | DisplayVolume, path: str | os.PathLike, *, slices: int = 12,
                  columns: int | None = None, sequence: str = PICTURE_SEQUENCE, opacity: float = PICTURE_OPACITY,
                  tile_size: int = 192) -> Path:
    """Write a PNG grid of axial slices through the tumour, with the overlay, a title and a legend.

    ``slices`` tiles are spread evenly over the tumour's extent (the head's when the mask is empty);
    each is captioned with its slice index in the case's files. ``tile_size``: the longer side of a tile
    in pixels. Returns ``path``.
    """
    check_picture_options(sequence, opacity)
    if slices < 1 or tile_size < 16 or (columns is not None and columns < 1):
        raise BratsInputError(f"montage of {slices} slices, {columns} columns, tiles of {tile_size} px: "
                              "need at least 1 slice, 1 column and 16 px")
    display = as_display(case)
    font = _font(max(11, tile_size // 14))
    pixel_mm = _pixel_mm(display, tile_size)
    indices = display.slices_through_tumour(AXIAL, slices)
    tiles = [slice_picture(display, i, sequence=sequence, opacity=opacity, pixel_mm=pixel_mm) for i in indices]
    columns = min(columns or math.ceil(math.sqrt(len(tiles))), len(tiles))
    rows = math.ceil(len(tiles) / columns)
    tile_w, tile_h = tiles[0].size
    width = max(columns * (tile_w + _GAP) + _GAP, 360)
    title = (f"{display.case_id}: axial {sequence}, radiological (patient's right on the left, "
             f"anterior at the top)")
    title_h = _line_height(font) + 2 * _GAP
    legend_picture = _legend_picture(display, width, font)
    sheet = Image.new("RGB", (width, title_h + rows * (tile_h + _GAP) + legend_picture.height), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.text((_GAP, _GAP), _fit(draw, title, font, width - 2 * _GAP), fill=_TEXT, font=font)
    for n, (index, tile) in enumerate(zip(indices, tiles)):
        x, y = _GAP + (n % columns) * (tile_w + _GAP), title_h + (n // columns) * (tile_h + _GAP)
        sheet.paste(tile, (x, y))
        draw.text((x + 2, y + 1), f"slice {display.source_slice(AXIAL, index)}", fill=_TEXT, font=font)
    sheet.paste(legend_picture, (0, sheet.height - legend_picture.height))
    with files.atomic_path(path) as temporary:
        sheet.save(temporary, format="PNG", optimize=False)
    return Path(path)


def _legend_picture(display: DisplayVolume, width: int, font: ImageFont.ImageFont) -> Image.Image:
    """One line per label (swatch, abbreviation, name, volume) and a line of region volumes."""
    entries = legend(display.release, display.volumes)
    line = _line_height(font) + _GAP
    picture = Image.new("RGB", (width, (len(entries) + 1) * line + 2 * _GAP), _BACKGROUND)
    draw = ImageDraw.Draw(picture)
    swatch = _line_height(font)
    for n, entry in enumerate(entries):
        y = _GAP + n * line
        draw.rectangle((_GAP, y, _GAP + swatch - 1, y + swatch - 1), fill=entry.colour)
        text = f"{entry.abbreviation}  {entry.name}  {entry.volume_ml:.1f} mL"
        draw.text((2 * _GAP + swatch, y), _fit(draw, text, font, width - 3 * _GAP - swatch), fill=_TEXT, font=font)
    draw.text((_GAP, _GAP + len(entries) * line), _fit(draw, display.volumes.summary(), font, width - 2 * _GAP),
              fill=_TEXT, font=font)
    return picture


# ---- animation --------------------------------------------------------------------------------------

def write_gif(case: ExportCase | DisplayVolume, path: str | os.PathLike, *, sequence: str = PICTURE_SEQUENCE,
              opacity: float = PICTURE_OPACITY, size: int = 192, frame_ms: int = 80) -> Path:
    """Write an animated GIF through every axial slice of the head, inferior to superior, with the overlay.

    Each frame is the axial picture (longer side ``size`` pixels) above a caption: the slice index in
    the case's files and the label colours. Returns ``path``.
    """
    check_picture_options(sequence, opacity)
    if size < 16 or frame_ms < 10:
        raise BratsInputError(f"GIF of {size} px at {frame_ms} ms a frame: need at least 16 px and 10 ms")
    display = as_display(case)
    font = _font(max(10, size // 16))
    pixel_mm = _pixel_mm(display, size)
    palette = _gif_palette(display.release, opacity)
    entries = legend(display.release)
    # the slice number also keeps frames distinct: Pillow merges identical consecutive frames
    captions = [f"slice {display.source_slice(AXIAL, i)}" for i in range(display.shape[AXIAL.slice_axis])]
    swatch = _line_height(font)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    caption_width = (max(measure.textlength(c, font=font) for c in captions) + 3 * _GAP
                     + sum(swatch + 2 * _GAP + measure.textlength(e.abbreviation, font=font) for e in entries))
    frames = []
    for index, caption in enumerate(captions):
        picture = slice_picture(display, index, sequence=sequence, opacity=opacity, pixel_mm=pixel_mm)
        width = max(picture.width, math.ceil(caption_width))
        frame = Image.new("RGB", (width, picture.height + swatch + 2 * _GAP), _BACKGROUND)
        frame.paste(picture, ((width - picture.width) // 2, 0))
        draw = ImageDraw.Draw(frame)
        x, y = _GAP, picture.height + _GAP
        draw.text((x, y), caption, fill=_TEXT, font=font)
        x += 2 * _GAP + draw.textlength(caption, font=font)
        for entry in entries:
            draw.rectangle((x, y, x + swatch - 1, y + swatch - 1), fill=entry.colour)
            draw.text((x + swatch + 2, y), entry.abbreviation, fill=_TEXT, font=font)
            x += swatch + 2 * _GAP + draw.textlength(entry.abbreviation, font=font)
        frames.append(frame.quantize(palette=palette, dither=Image.Dither.NONE))
    with files.atomic_path(path) as temporary:
        frames[0].save(temporary, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    return Path(path)


def _gif_palette(release: Release, opacity: float, blends: int = 24) -> Image.Image:
    """A fixed 256-colour palette: greys, each label's colour blended over greys, and the pure colours.

    One palette for every frame keeps the label colours exact and the file small; nearest-colour
    mapping onto it (no dithering) leaves grey pixels grey.
    """
    colours = [entry.colour for entry in legend(release)]
    greys = np.linspace(0, 255, 256 - len(colours) * (blends + 1))
    table = [(g, g, g) for g in greys]
    for colour in colours:
        table += [tuple(g * (1 - opacity) + c * opacity for c in colour) for g in np.linspace(0, 255, blends)]
        table.append(colour)
    palette = Image.new("P", (1, 1))
    palette.putpalette([int(round(v)) for rgb in table for v in rgb])
    return palette


# ---- text -------------------------------------------------------------------------------------------

def _font(size: int) -> ImageFont.ImageFont:
    """Pillow's built-in font at ``size`` pixels (no font files needed)."""
    return ImageFont.load_default(size=size)


def _line_height(font: ImageFont.ImageFont) -> int:
    left, top, right, bottom = font.getbbox("Ag")
    return int(bottom) + 2


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: float) -> str:
    """``text``, shortened with an ellipsis to fit ``width`` pixels."""
    while len(text) > 1 and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…"
    return text
