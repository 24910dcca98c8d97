"""The T1Gd series' DICOM headers, kept with a preprocessed case so that results can go back into the study.

A DICOM SEG that PACS viewers overlay on the patient's T1Gd must reference that series' SOP instances,
share its Frame of Reference and carry its patient and study attributes. ``brats preprocess`` keeps,
for a DICOM study, the header of every image of the chosen T1Gd series (pixel data left out, a few kB
each) in ``CASE_DIR/preprocessing/t1ce_dicom/``, so that the export works later without the study at
hand. These headers identify the patient exactly as the study does: the case folder is as private as
the study it came from.
"""
from __future__ import annotations

import os
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from brats_plugin.cases import AUXILIARY_FOLDER
from brats_plugin.errors import BratsInputError
from brats_plugin.preprocess.series import Series

#: Where a preprocessed case keeps the T1Gd series' headers, inside ``CASE_DIR/preprocessing/``.
SOURCE_HEADERS_FOLDER = "t1ce_dicom"


def keep_headers(series: Series, folder: Path) -> None:
    """Write the header of every file of ``series`` into ``folder`` (created), without pixel data."""
    folder.mkdir(parents=True)
    digits = max(4, len(str(len(series.files))))
    for index, source in enumerate(series.files, start=1):
        dataset = source.read(pixels=False)
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # no pixels left to be compressed
        dataset.save_as(folder / f"IM{index:0{digits}d}.dcm", enforce_file_format=True)


def read_headers(case_folder: str | os.PathLike) -> list[Dataset] | None:
    """The kept T1Gd headers of a preprocessed case, or None when the case did not come from DICOM."""
    folder = Path(case_folder) / AUXILIARY_FOLDER / SOURCE_HEADERS_FOLDER
    if not folder.is_dir():
        return None
    headers = []
    for path in sorted(folder.glob("*.dcm")):
        try:
            headers.append(pydicom.dcmread(path))
        except Exception as error:  # pydicom raises many types for damaged files
            raise BratsInputError(f"{path}: cannot read this kept T1Gd header ({type(error).__name__}: "
                                  f"{str(error)[:120]})") from None
    if not headers:
        raise BratsInputError(f"{folder}: no T1Gd headers in it (damaged case folder: preprocess the study again)")
    return headers
