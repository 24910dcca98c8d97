"""What a job makes of an uploaded case: the mask, the viewer, the montage and a DICOM zip.

:class:`CaseProcessor` is the job runner's ``process``: one model, loaded once and shared by the
workers (one network pass at a time), then the exports of ``brats export``, written into the job's
``results/`` folder under fixed names (:data:`RESULT_FILES`).
"""
from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from brats_plugin import nifti
from brats_plugin.app.jobs import Report
from brats_plugin.cases import case_from_files
from brats_plugin.inference.export.viewer import PAYLOAD_MEDIA_TYPE

if TYPE_CHECKING:
    from brats_plugin.inference.segmenter import Segmenter

#: Result file name -> media type. Names are fixed: nothing a user sends becomes a path.
RESULT_FILES: dict[str, str] = {
    "mask.nii.gz": "application/gzip",
    "viewer.html": "text/html",
    "viewer-data": PAYLOAD_MEDIA_TYPE,  # gzip inside, unpacked by the page: no Content-Encoding
    "montage.png": "image/png",
    "dicom.zip": "application/zip",
}


def download_name(case_id: str, name: str) -> str:
    """The file name a download gets: the case id, then what it is."""
    return {"mask.nii.gz": f"{case_id}.nii.gz", "viewer-data": f"{case_id}_viewer.data"}.get(
        name, f"{case_id}_{name}")


class CaseProcessor:
    """Segment a job's case with one shared model and write its results."""

    def __init__(self, segmenter: Segmenter):
        self.segmenter = segmenter
        self._lock = threading.Lock()

    def __call__(self, job: Path, status: dict, report: Report) -> dict:
        from brats_plugin.inference.export.case import load_export_case
        from brats_plugin.inference.export.dicom import write_dicom
        from brats_plugin.inference.export.images import display_volume, write_montage
        from brats_plugin.inference.export.viewer import viewer_payload, write_viewer

        inputs = job / "inputs"
        case = case_from_files({sequence: inputs / name for sequence, name in status["inputs"].items()},
                               status["case_id"])
        report("segmenting", 0.1)
        with self._lock:  # one network pass at a time: the model's buffers are not shared safely
            segmentation = self.segmenter.predict_case(case)
        results = job / "results"
        results.mkdir(exist_ok=True)
        nifti.save(segmentation.to_image(), results / "mask.nii.gz")
        report("exporting", 0.7)
        export = load_export_case(case, results / "mask.nii.gz", segmentation.release)
        display = display_volume(export)  # prepared once for the viewer data, the page and the montage
        nifti.write_bytes_atomic(viewer_payload(display), results / "viewer-data")
        write_viewer(display, results / "viewer.html")
        write_montage(display, results / "montage.png")
        report("exporting DICOM", 0.85)
        dicom = job / "dicom"
        write_dicom(export, dicom, overwrite=True)
        with nifti.atomic_path(results / "dicom.zip") as temporary:
            shutil.make_archive(str(temporary), "zip", dicom)
            Path(f"{temporary}.zip").rename(temporary)
        shutil.rmtree(dicom)
        return {"volumes": segmentation.volumes.to_json(), "release": segmentation.release.key}
