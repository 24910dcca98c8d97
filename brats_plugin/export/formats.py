"""``--format dicom,html,png,gif``: which exports to write for a case, and where they go.

One place names the exports and their files, for ``brats export``, ``brats predict --export`` and
the demo: beside a case's mask ``<case>.nii.gz`` go ``<case>_dicom/`` (MR series + SEG; for a case
preprocessed from a DICOM study, a SEG and an SR in that study instead: :mod:`.study`),
``<case>_viewer.html``, ``<case>_montage.png`` and ``<case>.gif``.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from brats_plugin.errors import BratsInputError, BratsWarning
from brats_plugin.export.case import ExportCase, on_native_grid

if TYPE_CHECKING:
    from brats_plugin.export.dicom import DicomPatient
    from brats_plugin.export.images import DisplayVolume

#: Export name -> file (or folder) name pattern beside the mask.
FORMATS: dict[str, str] = {
    "dicom": "{case_id}_dicom",
    "html": "{case_id}_viewer.html",
    "png": "{case_id}_montage.png",
    "gif": "{case_id}.gif",
}


@dataclass(frozen=True)
class ExportRequest:
    """Which exports to write for every case, with the DICOM options."""

    formats: tuple[str, ...]
    patient: DicomPatient | None = None  # None: de-identified placeholders
    secondary_capture: bool = False

    def check_for_study(self) -> None:
        """Refuse DICOM options that a scanner study's SEG and SR cannot take (:func:`check_study_patient`)."""
        if "dicom" in self.formats:
            check_study_patient(self.patient)

    def paths(self, folder: str | os.PathLike, case_id: str) -> list[Path]:
        return [export_path(folder, case_id, name) for name in self.formats]

    def write(self, case: ExportCase, folder: str | os.PathLike) -> dict[str, Path]:
        return write_exports(case, folder, self.formats, patient=self.patient,
                             secondary_capture=self.secondary_capture)


def check_study_patient(patient: DicomPatient | None) -> None:
    """Refuse patient options for a scanner study: its SEG and SR keep the study's own patient and study."""
    given = [flag for flag, value in (
        ("--patient-id", patient and patient.patient_id is not None),
        ("--patient-name", patient and patient.patient_name is not None),
        ("--study-description", patient and patient.study_description is not None),
        ("--accession", patient and patient.accession_number)) if value]
    if given:
        raise BratsInputError(f"{' '.join(given)}: not for a scanner study, whose SEG and SR go into the study as "
                              "it is, with its own patient and study attributes")


def parse_formats(text: str) -> tuple[str, ...]:
    """``"dicom,html"`` -> ``("dicom", "html")``; an unknown name is a one-line error."""
    chosen = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [name for name in chosen if name not in FORMATS]
    if unknown or not chosen:
        raise BratsInputError(f"--format {text!r}: choose from {', '.join(FORMATS)} (comma-separated)")
    return chosen


def export_path(folder: str | os.PathLike, case_id: str, name: str) -> Path:
    """Where export ``name`` of a case goes in ``folder``."""
    return Path(folder) / FORMATS[name].format(case_id=case_id)


def write_exports(case: ExportCase, folder: str | os.PathLike, formats: tuple[str, ...], *,
                  patient: DicomPatient | None = None, secondary_capture: bool = False,
                  display: DisplayVolume | None = None, stem: str | None = None) -> dict[str, Path]:
    """Write the chosen exports of ``case`` into ``folder``; return export name -> path.

    Existing exports of the case are replaced (each appears complete or not at all). ``patient`` and
    ``secondary_capture`` go to :func:`~brats_plugin.export.dicom.write_dicom`. The pictures
    share one display volume (``display``, prepared here when not given: for a case preprocessed from a
    DICOM study, on its native T1Gd with the native volumes, like its SR). ``stem`` replaces the case
    id in the file names (the app's fixed names).
    """
    from brats_plugin.export import images
    from brats_plugin.export.viewer import write_viewer

    if display is None and set(formats) & {"html", "png", "gif"}:
        display = display_of(case)
    writers = {
        "html": lambda path: write_viewer(display, path),
        "png": lambda path: images.write_montage(display, path),
        "gif": lambda path: images.write_gif(display, path),
        "dicom": lambda path: _write_dicom(case, path, patient, secondary_capture),
    }
    written: dict[str, Path] = {}
    for name in formats:
        written[name] = export_path(folder, stem or case.case_id, name)
        writers[name](written[name])
    return written


def display_of(case: ExportCase) -> DisplayVolume:
    """What the viewer and pictures show of a case: a scanner study's on its own T1Gd, with the native
    labels and volumes (like its SR); any other case as it is."""
    from brats_plugin.export.images import display_volume
    return display_volume(on_native_grid(case) if case.study else case)


def _write_dicom(case: ExportCase, folder: Path, patient: DicomPatient | None, secondary_capture: bool) -> None:
    if case.study is not None:
        from brats_plugin.export.study import write_study_dicom  # highdicom: imported when asked for
        check_study_patient(patient)
        write_study_dicom(case.study, case.release, folder, secondary_capture=secondary_capture, overwrite=True)
        return
    from brats_plugin.export.dicom import write_dicom
    if case.preprocessed:
        warnings.warn(f"{case.case_id}: preprocessed from NIfTI files, so no original DICOM series to put a SEG on: "
                      "the DICOM export holds the case on the atlas grid (MR series + SEG)", BratsWarning, stacklevel=2)
    write_dicom(case, folder, patient=patient, secondary_capture=secondary_capture, overwrite=True)
