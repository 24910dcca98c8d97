"""Benchmark: our SimpleITK co-registration against ANTsPy's on the same synthetic scanner study.

A phantom (110x128x100, 1 mm, brain only) is given a skull and scalp, posed in the scanner (6, -4, 9
degrees; 5, -7, 12 mm, plus a little motion per series) and written as a DICOM study; its own T1Gd (brain
only) is the atlas, so the truth of every registration is known. The four chosen series are read once,
then registered by both libraries with 2 threads each and fixed random seeds:

- SimpleITK (brats_plugin.preprocess.registration): each sequence rigidly onto the T1Gd from the identity;
  the T1Gd onto the atlas by centres of mass, rigid, then affine, sampling the atlas brain's interior.
- ANTsPy (``ants.registration``): each sequence ``Rigid`` onto the T1Gd, also from the identity (series
  of one study share the scanner's coordinates; ANTsPy would otherwise start from the centres of mass,
  which differ between a 3-D head and a 2-D slab of it); the T1Gd onto the atlas ``Affine`` (ANTsPy's
  default start, centres of mass), with the same brain-interior metric mask as ours, and once more
  without a mask to show what the mask is for. ``Rigid`` is ANTsPy's standard rigid (2100x1200x1200x10
  iterations, 20 % of the voxels); ``QuickRigid`` stops before the two finest levels and ``DenseRigid``
  only samples every voxel, five times the work for the same optimiser.

Both libraries' transforms map fixed points to moving points (ANTs writes ITK .mat files, read here
with SimpleITK), so one accuracy measure serves both: the mean distance (mm) over the phantom's brain
voxels between where the transforms and the truth put each voxel (T1Gd through the atlas transform,
T1, T2 and FLAIR through the chain), as tests/test_preprocess.py measures it. The script prints the
seconds of each library's sequence and atlas registrations (wall and CPU, in this process), the
displacements, and the ratios ANTsPy / SimpleITK. ANTsPy's times include what ``ants.registration``
always does besides registering: copying the images, writing the transform files and warping both
images onto each other. With more than one thread ANTs is not reproducible even with its seed (with one
thread it is, which is why ANTsPy's own deterministic mode forces one): its displacements
vary by about 0.1 mm from run to run, ours do not.

``--sample-case`` repeats it on the real sample case tests/data/TCGA-DU-7294 (240x240x155) written on
the scanner grids of benchmarks/preprocess.py, its own T1Gd as the atlas.

Needs the benchmarks extra (``pip install -e '.[benchmarks]'``: antspyx). Nothing is downloaded.
Usage: python benchmarks/registration_libraries.py [--sample-case]
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from sample_study import load_sample_case, machine_and_date, scanner_specs

from brats_plugin.dataset_conversion.synthetic import synthesize_case
from brats_plugin.preprocess import choose_series, read_series, scan_study
from brats_plugin.preprocess.registration import (
    SEED,
    brain_interior,
    register_rigid_same_session,
    register_to_atlas,
    to_sitk,
    transform_points,
)
from brats_plugin.preprocess.scanner_study import rigid, write_scanner_study
from brats_plugin.releases import get_release

THREADS = 2
OTHERS = ("T1", "T2", "FLAIR")
SEQUENCES = ("T1Gd", *OTHERS)


class Clock:
    """Wall and CPU seconds (this process, all threads) of a ``with`` block, added up over blocks."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    @staticmethod
    def _cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def __enter__(self) -> Clock:
        self._started = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *_) -> None:
        self.wall += time.perf_counter() - self._started[0]
        self.cpu += self._cpu() - self._started[1]


def to_ants(image: sitk.Image):
    """The SimpleITK image as an ANTs image with the same voxels and LPS geometry (checked)."""
    import ants
    result = ants.from_sitk(image)
    assert np.allclose(result.origin, image.GetOrigin()) and np.allclose(result.spacing, image.GetSpacing())
    assert np.allclose(np.ravel(result.direction), image.GetDirection())
    return result


def displacement(truth, brain_voxels: np.ndarray, affine: np.ndarray, sequence: str, to_atlas: sitk.Transform,
                 to_t1c: dict[str, sitk.Transform]) -> float:
    """Mean distance (mm) over brain voxels between where the transforms and the truth put each voxel
    (tests/test_preprocess.py's measure; transforms fixed -> moving, LPS)."""
    world = brain_voxels @ affine[:3, :3].T + affine[:3, 3]
    expected = world @ truth.poses[sequence][:3, :3].T + truth.poses[sequence][:3, 3]
    chain = to_atlas if sequence == "T1Gd" else sitk.CompositeTransform([to_t1c[sequence], to_atlas])
    return float(np.linalg.norm(transform_points(chain, world) - expected, axis=1).mean())


def scales(transform: sitk.Transform) -> str:
    """The scale factors of a linear transform (atlas -> head: below 1, the head was shrunk to fit)."""
    values = np.linalg.svd(np.array(transform.GetMatrix()).reshape(3, 3), compute_uv=False)
    return f"scales {values.min():.3f}-{values.max():.3f}"


def with_simpleitk(native: dict[str, sitk.Image], atlas: sitk.Image, atlas_mask: np.ndarray) -> dict:
    sequences, to_atlas = Clock(), Clock()
    with sequences:
        to_t1c = {s: register_rigid_same_session(native["T1Gd"], native[s]).transform for s in OTHERS}
    with to_atlas:
        atlas_transform = register_to_atlas(atlas, atlas_mask, native["T1Gd"]).transform
    return {"clocks": (sequences, to_atlas), "to_t1c": to_t1c, "to_atlas": atlas_transform}


def with_ants(native: dict[str, sitk.Image], atlas: sitk.Image, atlas_mask: np.ndarray, work: Path) -> dict:
    import ants
    images = {s: to_ants(image) for s, image in native.items()}
    fixed = to_ants(atlas)
    interior = fixed.new_image_like(brain_interior(atlas_mask, atlas.GetSpacing()).astype(np.float32))
    sequences, to_atlas, unmasked = Clock(), Clock(), Clock()
    with sequences:
        to_t1c = {s: ants.registration(images["T1Gd"], images[s], "Rigid", initial_transform="Identity",
                                       outprefix=str(work / f"{s}_to_t1c_"))["fwdtransforms"][0] for s in OTHERS}
    with to_atlas:
        masked = ants.registration(fixed, images["T1Gd"], "Affine", mask=interior,
                                   outprefix=str(work / "t1c_to_atlas_"))["fwdtransforms"][0]
    with unmasked:
        bare = ants.registration(fixed, images["T1Gd"], "Affine",
                                 outprefix=str(work / "t1c_to_atlas_unmasked_"))["fwdtransforms"][0]
    return {"clocks": (sequences, to_atlas), "to_t1c": {s: sitk.ReadTransform(p) for s, p in to_t1c.items()},
            "to_atlas": sitk.ReadTransform(masked), "unmasked": sitk.ReadTransform(bare), "unmasked_clock": unmasked}


def compare(title: str, images: dict[str, np.ndarray], affine: np.ndarray, head_pose: np.ndarray,
            specs=None) -> None:
    print(f"\n== {title}")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        started = time.perf_counter()
        truth = write_scanner_study(work / "study", images, affine, specs=specs, head_pose=head_pose)
        picked, _ = choose_series(scan_study(work / "study"))
        native = {s: to_sitk(read_series(picked[s])) for s in SEQUENCES}
        print(f"study written and read in {time.perf_counter() - started:.1f} s (not part of the figures): "
              + ", ".join(f"{s} {'x'.join(map(str, native[s].GetSize()))}" for s in SEQUENCES))
        atlas_mask = images["T1Gd"] > 0
        atlas = to_sitk(nib.Nifti1Image(images["T1Gd"].astype(np.float32), affine))
        results = {"SimpleITK": with_simpleitk(native, atlas, atlas_mask)}
        (work / "ants").mkdir()
        results["ANTsPy"] = with_ants(native, atlas, atlas_mask, work / "ants")
    brain = np.argwhere(atlas_mask)[::40]
    errors = {name: {s: displacement(truth, brain, affine, s, r["to_atlas"], r["to_t1c"]) for s in SEQUENCES}
              for name, r in results.items()}
    ours, theirs = results["SimpleITK"], results["ANTsPy"]
    print(f"{'':<38}{'SimpleITK':>11}{'ANTsPy':>11}{'ANTsPy/SimpleITK':>18}")
    for index, label in enumerate(("T1, T2, FLAIR -> T1Gd (rigid)", "T1Gd -> atlas (affine)")):
        ours_clock, theirs_clock = ours["clocks"][index], theirs["clocks"][index]
        print(f"{label + ', s wall':<38}{ours_clock.wall:>11.1f}{theirs_clock.wall:>11.1f}"
              f"{theirs_clock.wall / ours_clock.wall:>17.2f}x")
        print(f"{'  (CPU s)':<38}{ours_clock.cpu:>11.1f}{theirs_clock.cpu:>11.1f}"
              f"{theirs_clock.cpu / ours_clock.cpu:>17.2f}x")
    total = [sum(c.wall for c in r["clocks"]) for r in (ours, theirs)]
    print(f"{'all four, s wall':<38}{total[0]:>11.1f}{total[1]:>11.1f}{total[1] / total[0]:>17.2f}x")
    print("mean displacement from the truth over brain voxels (mm):")
    for s in SEQUENCES:
        via = "atlas transform" if s == "T1Gd" else "chain"
        print(f"{'  ' + s + ' (' + via + ')':<38}{errors['SimpleITK'][s]:>11.2f}{errors['ANTsPy'][s]:>11.2f}"
              f"{errors['ANTsPy'][s] / errors['SimpleITK'][s]:>17.2f}x")
    print(f"{'  mean of the four':<38}{np.mean(list(errors['SimpleITK'].values())):>11.2f}"
          f"{np.mean(list(errors['ANTsPy'].values())):>11.2f}")
    print(f"atlas transforms: SimpleITK {scales(ours['to_atlas'])}, ANTsPy (masked) {scales(theirs['to_atlas'])}")
    bare = displacement(truth, brain, affine, "T1Gd", theirs["unmasked"], {})
    print(f"ANTsPy Affine without the mask: T1Gd {bare:.2f} mm, {scales(theirs['unmasked'])}, "
          f"{theirs['unmasked_clock'].wall:.1f} s wall")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample-case", action="store_true", help="also the real sample case (slower)")
    options = parser.parse_args()
    print(machine_and_date())
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(THREADS)  # before ANTs' ITK starts
    import ants
    ants.config.set_ants_deterministic(False, SEED)  # only sets the seed: antsRegistration --random-seed
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(THREADS)
    print(f"SimpleITK {sitk.Version.VersionString()}, antspyx {version('antspyx')}, {THREADS} threads each, "
          f"random seed {SEED} for both")

    case = synthesize_case(get_release("2021"), "P1", shape=(110, 128, 100), seed=3)
    centre = (case.affine @ np.append((np.array(case.images["T1Gd"].shape) - 1) / 2, 1))[:3]
    compare("phantom 110x128x100, skull on, its T1Gd (brain only) as the atlas", case.images, case.affine,
            rigid((6.0, -4.0, 9.0), (5.0, -7.0, 12.0), centre))

    if options.sample_case:
        sample = load_sample_case()
        compare("sample case TCGA-DU-7294 240x240x155, skull on, its T1Gd (brain only) as the atlas",
                sample.images, sample.affine, sample.head_pose, scanner_specs())


if __name__ == "__main__":
    main()
