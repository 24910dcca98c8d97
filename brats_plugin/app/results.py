"""What a job makes of an uploaded case: the mask, the viewer, the montage and a DICOM zip.

:class:`CaseProcessor` is the job runner's ``process``: one model, loaded once and shared by the
workers (one network pass at a time), then the exports of ``brats export``, written into the job's
``results/`` folder under fixed names (:data:`RESULT_FILES`). A scanner study (a DICOM zip) is first
preprocessed (``brats preprocess``, into the job's ``case/<case id>/``); its viewer and montage then show the
native T1Gd with the labels carried back, its DICOM zip is the SEG and SR in the study, and the native
mask is one more download.

``--workers`` jobs run at once, but their network passes take turns (one model in memory); reading,
exports and zipping overlap.
"""
from __future__ import annotations

import os
import shutil
import threading
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from brats_plugin import files, nifti
from brats_plugin.app.jobs import Report
from brats_plugin.cases import NATIVE_MASK_SUFFIX, Case, case_from_files, find_case
from brats_plugin.errors import BratsInputError
from brats_plugin.export.case import load_export_case
from brats_plugin.export.formats import display_of, export_path, write_exports
from brats_plugin.export.viewer import PAYLOAD_MEDIA_TYPE, viewer_payload
from brats_plugin.inference.pace import with_time_left
from brats_plugin.preprocess import preprocess
from brats_plugin.preprocess.atlas import MNI152

if TYPE_CHECKING:
    from brats_plugin.inference.progress import PassProgress
    from brats_plugin.inference.segmenter import Segmenter

#: The stem of every result file in a job's ``results/`` folder: nothing a user sends becomes a path.
RESULT_STEM = "case"
#: Download name -> (media type, file name in ``results/``).
RESULT_FILES: dict[str, tuple[str, str]] = {
    "mask.nii.gz": ("application/gzip", f"{RESULT_STEM}.nii.gz"),
    "viewer.html": ("text/html", export_path("", RESULT_STEM, "html").name),
    "viewer-data": (PAYLOAD_MEDIA_TYPE, f"{RESULT_STEM}_viewer.data"),  # gzip inside: no Content-Encoding
    "montage.png": ("image/png", export_path("", RESULT_STEM, "png").name),
    "dicom.zip": ("application/zip", f"{export_path('', RESULT_STEM, 'dicom').name}.zip"),
    "native.nii.gz": ("application/gzip", f"{RESULT_STEM}{NATIVE_MASK_SUFFIX}"),
}
#: The exports a job makes (besides the viewer data), with :func:`write_exports`.
JOB_EXPORTS = ("html", "png", "dicom")


def download_name(case_id: str, name: str) -> str:
    """The file name a download gets: the result's file name with the case id for its stem."""
    return case_id + RESULT_FILES[name][1][len(RESULT_STEM):]


class CaseProcessor:
    """Segment a job's case (or preprocessed study) with one shared model and write its results."""

    def __init__(self, segmenter: Segmenter, atlas: str | os.PathLike = MNI152):
        self.segmenter = segmenter
        self.atlas = atlas  # for studies: the template ``brats preprocess`` registers to
        self._lock = threading.Lock()

    def __call__(self, job: Path, status: dict, report: Report) -> dict:
        inputs, results = job / "inputs", job / "results"
        notes: list[str] = []
        if status.get("study"):
            report("preprocessing the study", 0.05)
            case = self._preprocess(inputs / status["study"], job / "case" / status["case_id"], status, notes)
        else:
            case = case_from_files({sequence: inputs / name for sequence, name in status["inputs"].items()},
                                   status["case_id"])
        start = 0.4 if status.get("study") else 0.1
        report("segmenting", start)
        with self._lock:  # one network pass at a time: the model's buffers are not shared safely
            segmentation = self.segmenter.predict_case(case, progress=network_progress(report, start, 0.8))
        notes += [f"post-processing: {change}" for change in segmentation.postprocessing]
        results.mkdir(exist_ok=True)
        mask = results / RESULT_FILES["mask.nii.gz"][1]
        nifti.save(segmentation.to_image(), mask)
        native = segmentation.native.image if segmentation.native else None
        if native is not None:
            nifti.save(native, results / RESULT_FILES["native.nii.gz"][1])
        report("exporting", 0.8)
        export = load_export_case(case, mask, segmentation.release, native=native)
        display = display_of(export)  # once, for the viewer data and the exports' pictures
        files.write_bytes_atomic(viewer_payload(display), results / RESULT_FILES["viewer-data"][1])
        written = write_exports(export, results, JOB_EXPORTS, display=display, stem=RESULT_STEM)
        try:
            zip_folder(written["dicom"], results / RESULT_FILES["dicom.zip"][1])
        finally:
            shutil.rmtree(written["dicom"], ignore_errors=True)
        volumes = export.study.volumes if export.study else segmentation.volumes
        facts = {"volumes": volumes.to_json(), "release": segmentation.release.key,
                 "space": "native T1Gd" if export.study else "case"}
        return {**facts, "notes": notes} if notes else facts

    def _preprocess(self, study: Path, folder: Path, status: dict, notes: list[str]) -> Case:
        """``brats preprocess`` of the job's study into ``folder`` (done once), its warnings kept as notes.
        Messages name the uploaded file, never the job's folders."""
        if not folder.is_dir():
            try:
                result = preprocess(study, folder, case_id=status["case_id"], series=status["series"],
                                    atlas=self.atlas)
            except BratsInputError as error:
                raise BratsInputError(str(error).replace(str(study), status.get("study_name", "the study"))) \
                    from None
            notes += result.notes
        return find_case(folder)


def network_progress(report: Report, start: float, end: float) -> PassProgress:
    """A ``progress(done, total)`` for :meth:`Segmenter.predict_case` that moves the job from ``start``
    to ``end`` with every network evaluation and tells the time left, from the pace so far."""
    return with_time_left(lambda done, total, left: report(
        f"segmenting: network pass {done} of {total}, about {left:.0f} s left", start + (end - start) * done / total))


def zip_folder(folder: Path, archive: Path) -> None:
    """Write every file below ``folder`` into a zip (paths relative to it), atomically."""
    with files.atomic_path(archive) as temporary, zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as packed:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                packed.write(path, path.relative_to(folder).as_posix())
