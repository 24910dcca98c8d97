"""Co-registration with SimpleITK: each sequence rigidly to the T1Gd, the T1Gd affinely to the atlas.

Transforms follow ITK's convention: a registration with a *fixed* and a *moving* image returns the
transform that maps a point of the fixed image's space to the moving image's space, which is what
resampling the moving image onto the fixed grid needs. So ``sequence_to_t1c`` maps T1Gd points into
a sequence's scanner space and ``t1c_to_atlas`` maps atlas points into the T1Gd's; a sequence goes onto
the atlas grid through the composite of both, resampled once (no double interpolation).

Series of one study share the scanner's patient coordinates, so a sequence starts from the identity
(what the scanner says) and the registration only corrects patient motion between series. The T1Gd
starts from the alignment of its centre of mass with the atlas's, then a rigid and an affine stage
(Mattes mutual information), sampling only the interior of the atlas's brain, so that the skull and
scalp of an un-stripped head cannot be pulled onto the template's brain outline.

Every registration runs on a resolution pyramid made by our code (:func:`downsampled`), finest level 2 mm.
The atlas's alignment only has to put the head where the model expects it (the way back uses the same
transform, so its error does not reach the native mask); a 1 mm level moved it by 0.5-0.7 mm on average
and cost more than all the other levels together. Series of one study came out closer to the truth
without it (benchmarks/preprocess.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from brats_plugin.geometry import LPS_TO_RAS

LPS = LPS_TO_RAS[:3, :3]  # RAS <-> LPS, 3x3
#: Mutual information: histogram bins, and the fixed-image points sampled per iteration at every
#: resolution (enough for a stable histogram; more only costs time: measured in benchmarks/preprocess.py).
HISTOGRAM_BINS = 48
SAMPLES_PER_ITERATION = 60_000
#: The metric samples the atlas's brain shrunk by this many millimetres: the brain's interior only, so
#: that an un-stripped head's skull and scalp cannot be pulled onto the template's brain outline (with
#: the whole brain plus a margin, a skull-on head was shrunk by 10-15 % to fit it: benchmarks/preprocess.py).
MASK_INSET_MM = 4.0
SEED = 20261202  # fixed sampling points (ITK's threads may still vary the last digits)
#: Pyramid levels (grid spacing, mm) of each registration, coarse to fine.
SAME_SESSION_LEVELS_MM = (4.0, 2.0)
ATLAS_RIGID_LEVELS_MM = (8.0, 4.0, 2.0)
ATLAS_FINAL_LEVELS_MM = (4.0, 2.0)


@dataclass(frozen=True)
class Registration:
    """A transform (fixed space -> moving space) and the final metric value (lower is better for MI)."""

    transform: sitk.Transform
    metric: float


def to_sitk(image: nib.Nifti1Image, voxels: np.ndarray | None = None) -> sitk.Image:
    """A NIfTI image as a float32 SimpleITK image with the same physical geometry (ITK works in LPS)."""
    voxels = np.asarray(image.dataobj if voxels is None else voxels, dtype=np.float32)
    result = sitk.GetImageFromArray(np.ascontiguousarray(voxels.transpose(2, 1, 0)))
    linear = LPS @ image.affine[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    result.SetSpacing(tuple(float(s) for s in spacing))
    result.SetDirection(tuple(float(v) for v in (linear / spacing).ravel()))
    result.SetOrigin(tuple(float(v) for v in LPS @ image.affine[:3, 3]))
    return result


def downsampled(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """``image`` smoothed and resampled onto a grid of the same orientation and extent whose spacing is
    ``spacing_mm`` along every axis finer than that (coarser axes, e.g. 5 mm slices, are kept).

    One level of a registration's resolution pyramid, built here instead of by ITK: ITK smooths the
    moving image and computes both images' gradients at full resolution for each level, which cost two
    thirds of a registration (benchmarks/preprocess.py); here they run on the level's smaller grid.
    Smoothing is Gaussian with sigma = half the new spacing, as ITK's pyramids, along refined axes only.
    """
    own = np.array(image.GetSpacing())
    spacing = np.maximum(own, spacing_mm)
    if np.allclose(spacing, own):
        return image
    smoothed = image
    for axis in np.flatnonzero(spacing > own * (1 + 1e-6)):
        smoothed = sitk.RecursiveGaussian(smoothed, sigma=float(spacing[axis] / 2), direction=int(axis))
    size = np.maximum(1, np.round(own * np.array(image.GetSize()) / spacing)).astype(int)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    origin = np.array(image.GetOrigin()) + direction @ ((spacing - own) / 2)  # from the same first edge
    grid = sitk.Image([int(n) for n in size], sitk.sitkFloat32)
    grid.SetSpacing(tuple(float(v) for v in spacing))
    grid.SetDirection(image.GetDirection())
    grid.SetOrigin(tuple(float(v) for v in origin))
    return sitk.Resample(smoothed, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


class Pyramid:
    """An image and its coarser copies (:func:`downsampled`), each made once, with an optional sampling
    mask carried onto every level. One pyramid passed to several registrations of the same image (the
    T1Gd is the fixed image of three and the moving image of the atlas's) shares its levels."""

    def __init__(self, image: sitk.Image, mask: sitk.Image | None = None):
        self.image, self.mask = image, mask
        self._levels: dict[float, tuple[sitk.Image, sitk.Image | None]] = {}

    def level(self, spacing_mm: float) -> tuple[sitk.Image, sitk.Image | None]:
        """The image at ``spacing_mm`` and the mask on its grid (None without a mask)."""
        if spacing_mm not in self._levels:
            grid = downsampled(self.image, spacing_mm)
            mask = None if self.mask is None else sitk.Resample(self.mask, grid, sitk.Transform(),
                                                                 sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
            self._levels[spacing_mm] = grid, mask
        return self._levels[spacing_mm]


def as_pyramid(image: sitk.Image | Pyramid) -> Pyramid:
    """``image`` as a :class:`Pyramid` (a pyramid as it is)."""
    return image if isinstance(image, Pyramid) else Pyramid(image)


def _register(fixed: Pyramid, moving: Pyramid, transform: sitk.Transform, levels_mm: tuple[float, ...], *,
              iterations: int = 200) -> float:
    """Mattes mutual information, one optimisation per pyramid level (coarse to fine), sampling the
    fixed image within its mask if it has one, updating ``transform`` in place; returns the final
    metric value. A level of 0 mm is the images as they are."""
    metric = float("nan")
    for level in levels_mm:
        (fixed_level, mask), (moving_level, _) = fixed.level(level), moving.level(level)
        method = sitk.ImageRegistrationMethod()
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=HISTOGRAM_BINS)
        method.SetMetricSamplingStrategy(method.RANDOM)
        points = float(np.prod(fixed_level.GetSize()))
        if mask is not None:
            method.SetMetricFixedMask(mask)
            points = float(sitk.GetArrayViewFromImage(mask).sum())
        method.SetMetricSamplingPercentage(min(1.0, SAMPLES_PER_ITERATION / max(points, 1.0)), SEED)
        method.SetInterpolator(sitk.sitkLinear)
        method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-3, numberOfIterations=iterations,
                                                        relaxationFactor=0.6, gradientMagnitudeTolerance=1e-6)
        method.SetOptimizerScalesFromPhysicalShift()
        method.SetInitialTransform(transform, inPlace=True)
        method.Execute(fixed_level, moving_level)
        metric = method.GetMetricValue()
    return metric


def register_rigid_same_session(fixed: sitk.Image | Pyramid, moving: sitk.Image | Pyramid) -> Registration:
    """Rigid (6 parameters) from the identity: a series of the same study onto the T1Gd, at 4 then 2 mm (a
    full-resolution level moved thick-slice series further from the truth: benchmarks/preprocess.py)."""
    fixed, moving = as_pyramid(fixed), as_pyramid(moving)
    transform = sitk.Euler3DTransform()
    size = fixed.image.GetSize()
    transform.SetCenter(fixed.image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in size]))
    metric = _register(fixed, moving, transform, SAME_SESSION_LEVELS_MM)
    return Registration(transform, metric)


#: The last stage of the T1Gd -> atlas registration: 6 (rigid), 7 (rigid + one scale) or 12 parameters.
ATLAS_STAGES = ("rigid", "similarity", "affine")


def register_to_atlas(atlas: sitk.Image, atlas_mask: np.ndarray, moving: sitk.Image | Pyramid, *,
                      last_stage: str = "affine") -> Registration:
    """The T1Gd onto the atlas: centres of mass, then rigid, then (unless ``last_stage`` is "rigid") a
    similarity (rigid + isotropic scale) or a full affine stage started from the rigid result.
    benchmarks/atlas_stage.py measures the three; the pipeline uses the affine."""
    if last_stage not in ATLAS_STAGES:
        raise ValueError(f"last_stage {last_stage!r}: one of {ATLAS_STAGES}")
    interior = sitk.GetImageFromArray(
        np.ascontiguousarray(brain_interior(atlas_mask, atlas.GetSpacing()).transpose(2, 1, 0)).astype(np.uint8))
    interior.CopyInformation(atlas)
    fixed, moving = Pyramid(atlas, interior), as_pyramid(moving)  # levels shared by both stages
    rigid = sitk.CenteredTransformInitializer(atlas, moving.image, sitk.Euler3DTransform(),
                                              sitk.CenteredTransformInitializerFilter.MOMENTS)
    metric = _register(fixed, moving, rigid, ATLAS_RIGID_LEVELS_MM)
    if last_stage == "rigid":
        return Registration(rigid, metric)
    final = sitk.AffineTransform(3) if last_stage == "affine" else sitk.Similarity3DTransform()
    final.SetCenter(rigid.GetCenter())
    final.SetMatrix(rigid.GetMatrix())
    final.SetTranslation(rigid.GetTranslation())
    metric = _register(fixed, moving, final, ATLAS_FINAL_LEVELS_MM)
    return Registration(final, metric)


def brain_interior(brain: np.ndarray, spacing) -> np.ndarray:
    """The brain shrunk by :data:`MASK_INSET_MM`: where the atlas metric samples, and what QC checks."""
    return ndimage.binary_erosion(brain, iterations=max(1, round(MASK_INSET_MM / min(spacing))))


def resample_onto(reference: sitk.Image, moving: sitk.Image, transform: sitk.Transform, *,
                  linear: bool = False) -> np.ndarray:
    """``moving`` on ``reference``'s grid through ``transform`` (reference space -> moving space), as a
    float32 (x, y, z) array; B-spline interpolation (clipped to the input's range) unless ``linear``.
    Voxels outside ``moving``'s field of view are NaN (see :func:`field_of_view`)."""
    interpolator = sitk.sitkLinear if linear else sitk.sitkBSpline
    result = sitk.Resample(moving, reference, transform, interpolator, float("nan"), sitk.sitkFloat32)
    voxels = sitk.GetArrayFromImage(result).transpose(2, 1, 0)
    if not linear:
        source = sitk.GetArrayViewFromImage(moving)
        np.clip(voxels, float(source.min()), float(source.max()), out=voxels)
    return np.asfortranarray(voxels)


def field_of_view(resampled: np.ndarray) -> np.ndarray:
    """Where a :func:`resample_onto` result has data (True), and, in place, zeros where it has none."""
    outside = np.isnan(resampled)
    resampled[outside] = 0.0
    return ~outside


def transform_points(transform: sitk.Transform, points: np.ndarray) -> np.ndarray:
    """RAS millimetre points (n, 3) through an ITK transform (which works in LPS): the mapped RAS points."""
    return np.array([LPS @ transform.TransformPoint(tuple(float(v) for v in LPS @ point)) for point in points])


def chain(*transforms: sitk.Transform) -> sitk.Transform:
    """One transform applying the given ones in order (first given, first applied)."""
    return sitk.CompositeTransform(list(reversed(transforms)))


#: Plausibility limits of a registration result. Series of one study differ by patient motion: a few
#: millimetres and degrees. A head differs from an adult template by its size and pose: scale factors
#: well inside these bounds. Beyond them the optimiser has most likely locked onto the wrong thing.
MAX_MOTION_MM, MAX_MOTION_DEGREES = 20.0, 15.0
ATLAS_SCALE_RANGE = (0.6, 1.6)


def implausibility(transform: sitk.Transform, fixed: sitk.Image, *, same_session: bool) -> str | None:
    """Why a registration result is not believable, or None. Checked over the fixed image's field of view."""
    if same_session:
        size = np.array(fixed.GetSize()) - 1
        corners = [fixed.TransformContinuousIndexToPhysicalPoint([float(c) for c in size * np.array(bits)])
                   for bits in np.ndindex(2, 2, 2)]
        moved = max(float(np.linalg.norm(np.subtract(transform.TransformPoint(c), c))) for c in corners)
        matrix = np.array(transform.GetMatrix()).reshape(3, 3)
        degrees = float(np.degrees(np.arccos(np.clip((np.trace(matrix) - 1) / 2, -1, 1))))
        if moved > MAX_MOTION_MM or degrees > MAX_MOTION_DEGREES:
            return (f"moves the field of view by up to {moved:.0f} mm and {degrees:.0f} degrees (motion between "
                    f"series of one study stays below {MAX_MOTION_MM:g} mm and {MAX_MOTION_DEGREES:g} degrees)")
        return None
    scales = np.linalg.svd(np.array(transform.GetMatrix()).reshape(3, 3), compute_uv=False)
    if scales.min() < ATLAS_SCALE_RANGE[0] or scales.max() > ATLAS_SCALE_RANGE[1]:
        return (f"scales the head by {scales.min():.2f} to {scales.max():.2f} (a head fits the atlas within "
                f"{ATLAS_SCALE_RANGE[0]:g} to {ATLAS_SCALE_RANGE[1]:g})")
    return None
