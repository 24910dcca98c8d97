"""``brats preprocess``: a patient's study (DICOM or raw NIfTI, skull on) -> a BraTS-ready case folder.

Steps: find the four series (DICOM: :mod:`~brats_plugin.preprocess.identify`), read them with their
scanner geometry, register each sequence rigidly to the T1Gd and the T1Gd affinely to the atlas,
resample all four once onto the atlas's grid, extract the brain, and write the case:

    CASE_DIR/<id>_t1.nii.gz, <id>_t1ce.nii.gz, <id>_t2.nii.gz, <id>_flair.nii.gz   (BraTS 2021 naming)
    CASE_DIR/<id>_qc.png                                every sequence with the T1Gd's edges and the mask
    CASE_DIR/preprocessing/brain_mask.nii.gz            the mask applied to all four (atlas grid)
    CASE_DIR/preprocessing/native_t1ce.nii.gz           the T1Gd as acquired: the grid results go back to
    CASE_DIR/preprocessing/transforms/*.tfm             ITK transforms: each sequence <- T1Gd, T1Gd <- atlas
    CASE_DIR/preprocessing/t1ce_dicom/                  DICOM input: the T1Gd images' headers (no pixels), for
                                                        a SEG and SR in the original study (:mod:`.source_headers`)
    CASE_DIR/preprocessing/preprocess.json              series, choices and reasons, parameters, timings, QC

``brats predict`` takes CASE_DIR as it is (case folders pass over their ``preprocessing/`` folder). The
folder is assembled beside its final place and renamed into it: a failed run leaves nothing half-done.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset
from scipy import ndimage

from brats_plugin import files, nifti
from brats_plugin.cases import AUXILIARY_FOLDER, identify_file
from brats_plugin.errors import BratsInputError, BratsWarning
from brats_plugin.preprocess.atlas import MNI152, Atlas, load_atlas
from brats_plugin.preprocess.identify import choose_series, format_table
from brats_plugin.preprocess.native import ATLAS_TO_T1GD, NATIVE_T1GD, TRANSFORMS_FOLDER
from brats_plugin.preprocess.qc import failed_figures, qc_picture, registration_figures
from brats_plugin.preprocess.registration import (
    Pyramid,
    brain_interior,
    chain,
    field_of_view,
    implausibility,
    register_rigid_same_session,
    register_to_atlas,
    resample_onto,
    to_sitk,
)
from brats_plugin.preprocess.series import scan_study
from brats_plugin.preprocess.source_headers import (
    SOURCE_HEADERS_FOLDER,
    keep_headers,
    read_series_headers,
    source_slices,
)
from brats_plugin.preprocess.volume import read_series
from brats_plugin.releases import SEQUENCES
from brats_plugin.version import __version__

#: The record of a preprocessing, inside ``CASE_DIR/preprocessing/``.
PREPROCESS_RECORD = "preprocess.json"
#: BraTS 2021 file tokens, so that every command reads the output as it is.
OUTPUT_TOKENS = dict(zip(SEQUENCES, ("t1", "t1ce", "t2", "flair")))
#: The atlas's brain mask grown by this much when it stands in for a real brain extraction.
ATLAS_MASK_MARGIN_MM = 3.0
#: A model's brain mask smaller than this fraction of the atlas's brain is a failure, not a brain.
MIN_BRAIN_FRACTION = 0.2
#: Inputs whose signal just outside the brain is below this fraction of the brain's are brain-only.
SKULL_STRIPPED_RATIO = 0.08


#: A brain-extraction model: (sequence -> image on the atlas grid, that grid's affine) -> brain mask.
#: An optional ``name`` attribute says which model in preprocess.json.
BrainExtractorLike = Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]


@dataclass
class PreprocessResult:
    """What ``brats preprocess`` wrote, and how it went."""

    case_folder: Path
    case_id: str
    chosen: dict[str, str]  # sequence -> where it came from (series label or file)
    brain_mask_source: str
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # the warnings given (also as BratsWarning), for pages

    def summary(self) -> str:
        return (f"{self.case_id}: four sequences on the atlas grid in {self.case_folder} "
                f"(brain mask: {self.brain_mask_source}; {sum(self.seconds.values()):.0f} s)")


def preprocess(study: str | os.PathLike | None, output: str | os.PathLike, *, case_id: str | None = None,
               series: dict[str, str] | None = None, atlas: str | os.PathLike = MNI152,
               skull_stripped: bool = False, brain_mask: str | os.PathLike | None = None,
               brain_extractor: BrainExtractorLike | None = None, force: bool = False, threads: int | None = None,
               say: Callable[[str], None] = lambda line: None) -> PreprocessResult:
    """Preprocess one study into the case folder ``output``; see the module docstring.

    ``study``: a DICOM folder (any depth) or zip; None when ``series`` gives four NIfTI files.
    ``series``: sequence -> a SeriesNumber or SeriesInstanceUID (DICOM) or a NIfTI file path.
    ``brain_mask``: a mask on the native T1Gd grid; ``skull_stripped``: the inputs are brain-only;
    ``brain_extractor``: a model that finds the brain (e.g. :class:`brats_plugin.inference.BrainExtractor`).
    ``force``: keep a registration that fails its plausibility check (a warning instead of an error).
    ``threads``: threads for registration and resampling (None: all cores).
    """
    if threads:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    started, seconds = time.perf_counter(), {}
    output = Path(output)
    case_id = case_id or output.name
    _check_case_id(case_id, output)
    series = {k: v for k, v in (series or {}).items() if v}
    chosen_atlas = load_atlas(atlas)

    say("[1/5] reading the study")
    notes: list[str] = []
    images, sources, record, t1c_headers = _read_inputs(study, series, say, notes)
    seconds["read"] = _lap(started, seconds)

    say(f"[2/5] registering T1, T2, FLAIR to the T1Gd and the T1Gd to {chosen_atlas.name}")
    native = {s: to_sitk(images[s]) for s in SEQUENCES}
    t1c = Pyramid(native["T1Gd"])  # its coarser copies made once for all four registrations
    to_t1c = {s: register_rigid_same_session(t1c, native[s]) for s in SEQUENCES if s != "T1Gd"}
    reference = to_sitk(chosen_atlas.image)
    to_atlas = register_to_atlas(reference, chosen_atlas.brain_mask, t1c)
    seconds["registration"] = _lap(started, seconds)

    say("[3/5] resampling the four sequences once onto the atlas grid")
    resampled = {s: resample_onto(reference, native[s], to_atlas.transform if s == "T1Gd" else
                                  chain(to_atlas.transform, to_t1c[s].transform)) for s in SEQUENCES}
    views = {s: field_of_view(resampled[s]) for s in SEQUENCES}
    figures = registration_figures(resampled, views, brain_interior(chosen_atlas.brain_mask, reference.GetSpacing()))
    say("      overlap: " + ", ".join(f"{name} {value:.0%}" for name, value in figures.items()))
    _check_registrations(to_t1c, to_atlas, figures, native["T1Gd"], reference, sources, force, notes)
    seconds["resampling"] = _lap(started, seconds)

    say("[4/5] brain extraction")
    mask, mask_source = _brain_mask(resampled, chosen_atlas, reference, to_atlas.transform, images["T1Gd"],
                                    skull_stripped, brain_mask, brain_extractor, notes)
    seconds["brain extraction"] = _lap(started, seconds)

    say(f"[5/5] writing {output}")
    result = PreprocessResult(output, case_id, sources, mask_source, seconds, notes)
    record.update({
        "brats_plugin": __version__, "case_id": case_id, "atlas": {"name": chosen_atlas.name,
                                                                   "file": str(chosen_atlas.path)},
        "brain_mask": mask_source,
        "registration": {"method": "SimpleITK, Mattes mutual information; sequences rigid to the T1Gd from the "
                                   "scanner's coordinates, T1Gd rigid then affine to the atlas",
                         "final_metric": {**{f"{s} -> T1Gd": r.metric for s, r in to_t1c.items()},
                                          "T1Gd -> atlas": to_atlas.metric},
                         "overlap": {name: round(value, 4) for name, value in figures.items()}},
    })
    _write_case(output, case_id, chosen_atlas, resampled, mask, images["T1Gd"], t1c_headers, to_t1c, to_atlas, record,
                seconds, started)
    return result


def _check_case_id(case_id: str, output: Path) -> None:
    """Refuse a case id that would make the output's file names unreadable: case folders are read with
    their folder name as the case id, so an id of another name must not itself read as a sequence."""
    if case_id == output.name:
        return
    try:
        kind = identify_file(f"{case_id}.nii.gz")
    except BratsInputError:
        kind = "several sequences"
    if kind is not None:
        raise BratsInputError(f"--case-id {case_id}: reads as {kind} in a file name; name the case folder after it "
                              f"(-o {output.parent / case_id}) or choose another id")


def _check_registrations(to_t1c: dict, to_atlas, figures: dict[str, float], t1c: sitk.Image, atlas: sitk.Image,
                         sources: dict[str, str], force: bool, notes: list[str]) -> None:
    """Refuse (or, with ``force``, warn about) registrations whose result is not believable: transforms
    beyond patient motion or head sizes, or anatomy that does not overlap (:mod:`.qc`)."""
    problems = [f"{sequence} ({sources[sequence]}) -> T1Gd {why}" for sequence, registration in to_t1c.items()
                if (why := implausibility(registration.transform, t1c, same_session=True))]
    if why := implausibility(to_atlas.transform, atlas, same_session=False):
        problems.append(f"T1Gd ({sources['T1Gd']}) -> atlas {why}")
    problems += failed_figures(figures)
    if not problems:
        return
    message = "registration failed its check: " + "; ".join(problems)
    if not force:
        raise BratsInputError(message + " (check the series chosen; --force keeps the result)")
    _note(notes, message + "; kept because of --force")


def _read_inputs(study, series: dict[str, str], say, notes: list[str]
                 ) -> tuple[dict[str, nib.Nifti1Image], dict[str, str], dict, list[Dataset] | None]:
    """The four native images (scanner geometry), where each came from, the record for preprocess.json, and
    the T1Gd images' DICOM headers (None for NIfTI input). A T1Gd series that a SEG cannot be put on is
    a note, not an error: the case is still good for everything else."""
    if study is None:
        missing = [s for s in SEQUENCES if s not in series]
        if missing:
            raise BratsInputError(f"no study given and no file for {', '.join(missing)}: pass a DICOM study, or "
                                  "all of --t1 --t1c --t2 --flair as NIfTI files")
        images = {}
        for sequence in SEQUENCES:
            image = nifti.load(series[sequence])
            if len(image.shape) != 3:
                raise BratsInputError(f"{series[sequence]}: a {len(image.shape)}-D image; one 3-D volume is needed")
            images[sequence] = nib.Nifti1Image(np.asarray(nifti.read_array(series[sequence]), np.float32),
                                               image.affine)
        return images, {s: str(series[s]) for s in SEQUENCES}, {"input": "NIfTI files", "series": {
            s: str(series[s]) for s in SEQUENCES}}, None
    study_series = scan_study(study, say)
    picked, decisions = choose_series(study_series, series)
    say(format_table(decisions))
    images = {sequence: read_series(s) for sequence, s in picked.items()}
    record = {"input": str(study), "series": {sequence: {
        "SeriesInstanceUID": s.uid, "SeriesNumber": s.number, "SeriesDescription": s.description,
        "images": s.frames, "shape": list(images[sequence].shape),
        "spacing_mm": [round(float(v), 4) for v in np.linalg.norm(images[sequence].affine[:3, :3], axis=0)],
    } for sequence, s in picked.items()}, "decisions": [
        {"SeriesNumber": d.series.number, "SeriesDescription": d.series.description, "taken_as": d.sequence,
         "why": d.reason} for d in decisions]}
    headers = read_series_headers(picked["T1Gd"])
    try:
        source_slices(headers, images["T1Gd"].affine, images["T1Gd"].shape)
    except BratsInputError as error:
        _note(notes, f"no DICOM SEG can be made on the T1Gd series {picked['T1Gd'].label}: {error}")
    return images, {sequence: s.label for sequence, s in picked.items()}, record, headers


def _brain_mask(resampled: dict[str, np.ndarray], atlas: Atlas, reference: sitk.Image, to_atlas: sitk.Transform,
                native_t1c: nib.Nifti1Image, skull_stripped: bool, given: str | os.PathLike | None,
                extractor: BrainExtractorLike | None, notes: list[str]) -> tuple[np.ndarray, str]:
    """The brain on the atlas grid, and where it came from."""
    spacing = np.linalg.norm(atlas.image.affine[:3, :3], axis=0)
    t1c = resampled["T1Gd"]
    if extractor is not None:
        mask = np.asarray(extractor(resampled, atlas.image.affine), bool)
        name = getattr(extractor, "name", type(extractor).__name__)
        if mask.sum() < MIN_BRAIN_FRACTION * atlas.brain_mask.sum():
            raise BratsInputError(f"{name}: found {int(mask.sum())} brain voxels, under {MIN_BRAIN_FRACTION:.0%} of "
                                  "the atlas's brain: is it a brain-extraction model for these images?")
        return mask, f"model: {name}"
    if given is not None:
        image = nifti.load(given)
        if image.shape != native_t1c.shape or not np.allclose(image.affine, native_t1c.affine, atol=1e-3):
            raise BratsInputError(f"{given}: a brain mask must lie on the native T1Gd's grid (shape "
                                  f"{native_t1c.shape})")
        voxels = (np.asarray(nifti.read_array(given)) > 0).astype(np.float32)
        mask = np.nan_to_num(resample_onto(reference, to_sitk(image, voxels), to_atlas, linear=True)) >= 0.5
        return mask, f"given ({given})"
    inside = t1c[atlas.brain_mask]
    shell = _shell(atlas.brain_mask, spacing, 4.0, 14.0)
    ratio = float(np.mean(t1c[shell])) / max(float(np.mean(inside)), 1e-6)
    if skull_stripped or ratio < SKULL_STRIPPED_RATIO:
        threshold = 0.02 * float(np.percentile(inside, 99))
        mask = ndimage.binary_fill_holes(ndimage.binary_opening(t1c > threshold, iterations=1))
        how = "the inputs' own (skull-stripped)" if skull_stripped else \
            f"the inputs' own: they look skull-stripped (signal outside the brain {ratio:.1%} of inside)"
        return mask, how
    margin = max(1, round(ATLAS_MASK_MARGIN_MM / float(spacing.min())))
    _note(notes, "no brain extraction given (--skull-stripped, --brain-mask or --brain-model): the atlas's brain, "
          f"registered and grown by {ATLAS_MASK_MARGIN_MM:g} mm, stands in for it; it is approximate")
    return ndimage.binary_dilation(atlas.brain_mask, iterations=margin), \
        f"approximate: the atlas's brain grown by {ATLAS_MASK_MARGIN_MM:g} mm"


def _note(notes: list[str], message: str) -> None:
    """A warning for the user, kept in the result too (pages and threads cannot catch warnings reliably)."""
    warnings.warn(message, BratsWarning, stacklevel=4)
    notes.append(message)


def _shell(mask: np.ndarray, spacing: np.ndarray, inner_mm: float, outer_mm: float) -> np.ndarray:
    distance = ndimage.distance_transform_edt(~mask, sampling=spacing)
    return (distance > inner_mm) & (distance <= outer_mm)


def _write_case(output: Path, case_id: str, atlas: Atlas, resampled: dict[str, np.ndarray], mask: np.ndarray,
                native_t1c: nib.Nifti1Image, t1c_headers: list[Dataset] | None, to_t1c: dict, to_atlas, record: dict,
                seconds: dict[str, float], started: float) -> None:
    files.prepare_output_folder(output.parent, "cannot write the case here")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise BratsInputError(f"{output}: exists and is not empty; choose a new case folder")
    with files.staging_folder(output) as staging:
        header = atlas.image.header.copy()
        header.set_data_dtype(np.float32)
        for sequence in SEQUENCES:
            voxels = np.where(mask, resampled[sequence], 0).astype(np.float32)
            image = nib.Nifti1Image(voxels, atlas.image.affine, header)
            nifti.save(image, staging / f"{case_id}_{OUTPUT_TOKENS[sequence]}.nii.gz")
        extra = staging / AUXILIARY_FOLDER
        (extra / TRANSFORMS_FOLDER).mkdir(parents=True)
        nifti.save(nib.Nifti1Image(mask.astype(np.uint8), atlas.image.affine), extra / "brain_mask.nii.gz")
        nifti.save(native_t1c, extra / NATIVE_T1GD)
        if t1c_headers is not None:
            keep_headers(t1c_headers, extra / SOURCE_HEADERS_FOLDER)
        picture = qc_picture({s: np.where(mask, resampled[s], 0) for s in SEQUENCES}, mask, atlas.image.affine)
        with files.atomic_path(staging / f"{case_id}_qc.png") as temporary:
            picture.save(temporary, format="PNG")
        for sequence, registration in to_t1c.items():
            sitk.WriteTransform(registration.transform,
                                str(extra / TRANSFORMS_FOLDER / f"{OUTPUT_TOKENS[sequence]}_from_t1ce.tfm"))
        sitk.WriteTransform(to_atlas.transform, str(extra / TRANSFORMS_FOLDER / ATLAS_TO_T1GD))
        seconds["writing"] = _lap(started, seconds)
        record["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
        record["transforms"] = {"convention": "ITK: each maps points of the first-named space's grid into the "
                                              "other's (x_t1 = T(x_t1ce), x_t1ce = T(x_atlas)), LPS millimetres"}
        files.write_bytes_atomic((json.dumps(record, indent=2) + "\n").encode(), extra / PREPROCESS_RECORD)
        files.replace_folder(staging, output)


def study_series_numbers(case_folder: str | os.PathLike) -> set[int]:
    """The SeriesNumber of every series of the DICOM study a case was preprocessed from (from its record;
    empty for NIfTI input or a record that cannot be read): numbers that new series must not take."""
    try:
        record = json.loads((Path(case_folder) / AUXILIARY_FOLDER / PREPROCESS_RECORD).read_text())
        return {int(d["SeriesNumber"]) for d in record.get("decisions", []) if d.get("SeriesNumber") is not None}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return set()


def _lap(started: float, seconds: dict[str, float]) -> float:
    return time.perf_counter() - started - sum(seconds.values())
