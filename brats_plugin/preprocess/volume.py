"""One DICOM MR series -> a 3-D NIfTI image with the scanner's geometry (RAS affine).

Slices are sorted by their position along the slice normal (the cross product of the two
ImageOrientationPatient directions), never by file name or InstanceNumber. The affine is built from
ImageOrientationPatient, ImagePositionPatient and PixelSpacing, in DICOM's LPS patient coordinates,
then turned into NIfTI's RAS; the array's first axis runs along the rows' direction (columns of the
image), the second down the columns, the third along the slices. Classic single-frame MR and enhanced
multi-frame MR are read; compressed transfer syntaxes are decoded by pydicom's pip-installed plugins
(pylibjpeg for JPEG and JPEG 2000, pyjpegls for JPEG-LS).

A series is refused, with one line, when its slices disagree on orientation or size, when their
spacing is irregular (a missing slice), or when several images share a position (a 4-D series).
"""
from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset

from brats_plugin.errors import BratsInputError
from brats_plugin.geometry import LPS_TO_RAS
from brats_plugin.preprocess.series import Series

#: Slice orientations agree when their direction cosines differ by less than this.
ORIENTATION_TOLERANCE = 1e-4
#: Slice spacing is regular when every gap is within this fraction of the mean gap.
SPACING_TOLERANCE = 0.01
#: Slices lie on one line when every coordinate of every position is within this of it (mm).
POSITION_TOLERANCE_MM = 0.1


@dataclass(frozen=True)
class _Slice:
    position: np.ndarray  # ImagePositionPatient (LPS, mm)
    orientation: np.ndarray  # ImageOrientationPatient (6 direction cosines)
    spacing: tuple[float, float]  # PixelSpacing: (between rows, between columns)
    pixels: np.ndarray  # (rows, columns), rescaled to float32


def read_series(series: Series) -> nib.Nifti1Image:
    """The series as a float32 NIfTI image (RAS affine). Raises :class:`BratsInputError` naming the series."""
    slices: list[_Slice] = []
    for source in series.files:
        try:
            dataset = source.read(pixels=True)
            slices += _slices_of(dataset)
        except BratsInputError:
            raise
        except Exception as error:  # pydicom raises many types for undecodable or damaged pixel data
            reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
            raise BratsInputError(f"series {series.label}: cannot read {source} ({reason})") from None
    return _stack(slices, series)


def _slices_of(dataset: Dataset) -> list[_Slice]:
    pixels = dataset.pixel_array.astype(np.float32)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        pixels = pixels[np.newaxis]
    if "PerFrameFunctionalGroupsSequence" in dataset:  # enhanced MR: geometry per frame or shared
        shared = dataset.SharedFunctionalGroupsSequence[0]
        out = []
        for index, frame in enumerate(dataset.PerFrameFunctionalGroupsSequence):
            def group(keyword: str, required: bool = True, frame=frame, index=index) -> Dataset | None:
                item = frame.get(keyword) or shared.get(keyword)
                if not item and required:
                    raise BratsInputError(f"{dataset.filename or 'enhanced MR'}: frame {index + 1} has no {keyword}")
                return item[0] if item else None
            value = group("PixelValueTransformationSequence", required=False)
            slope = float(value.get("RescaleSlope", 1)) if value else 1.0
            intercept = float(value.get("RescaleIntercept", 0)) if value else 0.0
            out.append(_Slice(np.array(group("PlanePositionSequence").ImagePositionPatient, float),
                              np.array(group("PlaneOrientationSequence").ImageOrientationPatient, float),
                              tuple(float(v) for v in group("PixelMeasuresSequence").PixelSpacing),
                              pixels[index] * slope + intercept))
        return out
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        if keyword not in dataset:
            raise BratsInputError(f"{dataset.filename or 'a DICOM image'}: no {keyword}: cannot place it in space")
    slope, intercept = float(dataset.get("RescaleSlope", 1) or 1), float(dataset.get("RescaleIntercept", 0) or 0)
    return [_Slice(np.array(dataset.ImagePositionPatient, float), np.array(dataset.ImageOrientationPatient, float),
                   tuple(float(v) for v in dataset.PixelSpacing), frame * slope + intercept) for frame in pixels]


def _stack(slices: list[_Slice], series: Series) -> nib.Nifti1Image:
    first = slices[0]
    for s in slices[1:]:
        if np.abs(s.orientation - first.orientation).max() > ORIENTATION_TOLERANCE:
            raise BratsInputError(f"series {series.label}: slices of different orientations in one series")
        if s.pixels.shape != first.pixels.shape or not np.allclose(s.spacing, first.spacing, rtol=1e-4):
            raise BratsInputError(f"series {series.label}: slices of different sizes or pixel spacings in one series")
    row_direction, column_direction = first.orientation[:3], first.orientation[3:]
    normal = np.cross(row_direction, column_direction)
    slices = sorted(slices, key=lambda s: float(s.position @ normal))
    along = np.array([float(s.position @ normal) for s in slices])
    if len(slices) > 1:
        gaps = np.diff(along)
        if gaps.min() < 1e-3:
            raise BratsInputError(f"series {series.label}: several images at one position (a 4-D series: "
                                  "choose one volume before preprocessing)")
        if np.abs(gaps - gaps.mean()).max() > SPACING_TOLERANCE * gaps.mean():
            raise BratsInputError(f"series {series.label}: irregular slice spacing ({gaps.min():.2f} to "
                                  f"{gaps.max():.2f} mm): a slice is missing")
        step = (slices[-1].position - slices[0].position) / (len(slices) - 1)
        in_plane = slices[0].position + np.outer(np.arange(len(slices)), step)
        if np.abs(np.array([s.position for s in slices]) - in_plane).max() > POSITION_TOLERANCE_MM:
            raise BratsInputError(f"series {series.label}: slice positions do not lie on one line")
    else:
        step = normal * 1.0
    between_rows, between_columns = first.spacing
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_direction * between_columns  # array axis 0: along a row (column index)
    affine_lps[:3, 1] = column_direction * between_rows  # array axis 1: down a column (row index)
    affine_lps[:3, 2] = step
    affine_lps[:3, 3] = slices[0].position
    voxels = np.stack([s.pixels.T for s in slices], axis=-1)  # (columns, rows, slices)
    image = nib.Nifti1Image(np.asfortranarray(voxels, dtype=np.float32), LPS_TO_RAS @ affine_lps)
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(image.affine, code=1)  # scanner coordinates
    image.set_sform(image.affine, code=1)
    return image
