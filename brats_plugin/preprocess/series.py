"""The series of a DICOM study on disk: every file's header read once, grouped by SeriesInstanceUID.

A study is a folder (searched at any depth) or a zip of DICOM files. Only headers are read here
(``stop_before_pixels``); pixels are read for the four chosen series only
(:mod:`brats_plugin.preprocess.volume`). Files that are not DICOM are counted and ignored, as
scanners and PACS exports put DICOMDIR, README and viewer files beside the images.
"""
from __future__ import annotations

import io
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from brats_plugin.errors import BratsInputError

#: Zip members larger than this are not read (a DICOM slice of a brain MRI is well below it).
MAX_MEMBER_BYTES = 512 * 2**20
#: A zip with more files than this is refused: a brain MRI study, perfusion included, holds far fewer.
MAX_MEMBERS = 20000


@dataclass(frozen=True)
class SourceFile:
    """Where one DICOM file lives: a path, or a member of a zip (read again when its pixels are needed)."""

    path: Path
    member: str | None = None

    def read(self, *, pixels: bool) -> Dataset:
        """The dataset, with or without its pixel data."""
        if self.member is None:
            return pydicom.dcmread(self.path, stop_before_pixels=not pixels)
        with zipfile.ZipFile(self.path) as bundle:
            return pydicom.dcmread(io.BytesIO(bundle.read(self.member)), stop_before_pixels=not pixels)

    def __str__(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)


@dataclass
class Series:
    """One series of the study: its identifying and acquisition tags, and its files."""

    uid: str
    number: int | None
    description: str
    protocol: str
    modality: str
    image_type: tuple[str, ...]
    repetition_time: float | None  # ms
    echo_time: float | None  # ms
    inversion_time: float | None  # ms
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    acquisition_type: str  # "2D", "3D" or ""
    contrast_agent: str  # ContrastBolusAgent, or "" when none is recorded
    time: str  # AcquisitionTime, else SeriesTime (HHMMSS...)
    rows: int
    columns: int
    sop_class: str
    diffusion_b_value: float | None
    files: list[SourceFile] = field(default_factory=list)
    frames: int = 0

    @property
    def label(self) -> str:
        """How a person names this series: ``7 "t1_mprage_post"``."""
        number = "-" if self.number is None else str(self.number)
        return f'{number} "{self.description or self.protocol}"'


def scan_study(study: str | os.PathLike, say: Callable[[str], None] | None = None) -> list[Series]:
    """Every series in a study folder (any depth) or zip, sorted by series number then UID.

    Raises :class:`BratsInputError` when the study does not exist, a zip is unreadable or unsafe, or no
    DICOM file is found.
    """
    study = Path(study)
    if not study.exists():
        raise BratsInputError(f"{study}: no such folder or zip")
    by_uid: dict[str, Series] = {}
    studies: dict[tuple[str, str], str] = {}  # (StudyInstanceUID, PatientID) -> a file of it
    skipped = 0
    for source, dataset in _headers(study):
        if dataset is None:
            skipped += 1
            continue
        uid = str(dataset.get("SeriesInstanceUID", ""))
        if not uid or "SOPClassUID" not in dataset:
            skipped += 1  # DICOMDIR, presentation states without a series of images, ...
            continue
        series = by_uid.get(uid)
        if series is None:
            series = by_uid[uid] = _series_of(dataset, uid)
            studies.setdefault((str(dataset.get("StudyInstanceUID", "")), str(dataset.get("PatientID", ""))),
                               str(source))
        series.files.append(source)
        series.frames += int(dataset.get("NumberOfFrames", 1) or 1)
    if not by_uid:
        raise BratsInputError(f"{study}: no DICOM files found" + (f" ({skipped} other files)" if skipped else ""))
    if len(studies) > 1:
        examples = ", ".join(sorted(studies.values())[:3])
        raise BratsInputError(f"{study}: holds {len(studies)} studies or patients (e.g. {examples}): pass the folder "
                              "or zip of one study")
    if say and skipped:
        say(f"{study}: {skipped} files that are not DICOM images ignored")
    return sorted(by_uid.values(), key=lambda s: (s.number is None, s.number or 0, s.uid))


#: Files looked at (at most) to tell a DICOM study folder from a folder of NIfTI cases.
STUDY_SNIFF_FILES = 200


def is_dicom_study(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a study for :func:`scan_study` rather than NIfTI cases: a zip, or a folder in
    which no NIfTI file lies and a DICOM file (the ``DICM`` mark at byte 128) comes among its first files."""
    path = Path(path)
    if path.is_file():
        return zipfile.is_zipfile(path)
    if not path.is_dir():
        return False
    looked = 0
    for candidate in sorted(path.rglob("*")):
        if not candidate.is_file() or candidate.name.startswith("."):
            continue
        if candidate.name.lower().endswith((".nii", ".nii.gz")):
            return False
        try:
            with open(candidate, "rb") as stream:
                if stream.read(132)[128:] == b"DICM":
                    return True
        except OSError:
            pass
        looked += 1
        if looked >= STUDY_SNIFF_FILES:
            return False
    return False


def _headers(study: Path) -> Iterator[tuple[SourceFile, Dataset | None]]:
    """Every file of a study folder or zip with its header (None for files that are not DICOM); a zip is
    opened once for all its members."""
    if study.is_dir():
        for source in _files_below(study):
            yield source, _header_or_none(lambda source=source: source.read(pixels=False))
        return
    sources = _zip_members(study)
    with zipfile.ZipFile(study) as bundle:
        for source in sources:
            def read(source=source) -> Dataset:
                with bundle.open(source.member) as stream:
                    return pydicom.dcmread(stream, stop_before_pixels=True)
            yield source, _header_or_none(read)


def _header_or_none(read: Callable[[], Dataset]) -> Dataset | None:
    try:
        return read()
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error):
        return None  # not DICOM, or damaged: counted as another file


def _files_below(folder: Path) -> list[SourceFile]:
    return [SourceFile(path) for path in sorted(folder.rglob("*")) if path.is_file() and not path.name.startswith(".")]


def _zip_members(archive: Path) -> list[SourceFile]:
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise BratsInputError(f"{archive}: not a study folder or a readable zip ({error})") from None
    if len(members) > MAX_MEMBERS:
        raise BratsInputError(f"{archive}: holds {len(members)} files, more than the {MAX_MEMBERS} of a study")
    sources = []
    for member in members:
        name = PurePosixPath(member.filename)
        if name.is_absolute() or ".." in name.parts:
            raise BratsInputError(f"{archive}: member {member.filename} points outside the archive")
        if member.is_dir() or member.file_size > MAX_MEMBER_BYTES:
            continue
        sources.append(SourceFile(archive, member.filename))
    return sources


def _series_of(dataset: Dataset, uid: str) -> Series:
    """The series-level facts of a series, from one of its files (classic or enhanced MR)."""
    mr = _first_item(dataset, "SharedFunctionalGroupsSequence")
    timing = _first_item(mr, "MRTimingAndRelatedParametersSequence") if mr is not None else None
    echo = _first_item(mr, "MREchoSequence") if mr is not None else None
    modifier = _first_item(mr, "MRModifierSequence") if mr is not None else None
    return Series(
        uid=uid,
        number=_int(dataset.get("SeriesNumber")),
        description=str(dataset.get("SeriesDescription", "") or "").strip(),
        protocol=str(dataset.get("ProtocolName", "") or "").strip(),
        modality=str(dataset.get("Modality", "") or ""),
        image_type=tuple(str(v).upper() for v in _values(dataset.get("ImageType"))),
        repetition_time=_float(dataset.get("RepetitionTime", timing.get("RepetitionTime") if timing else None)),
        echo_time=_float(dataset.get("EchoTime", echo.get("EffectiveEchoTime") if echo else None)),
        inversion_time=_float(dataset.get("InversionTime", modifier.get("InversionTimes", [None])[0]
                                           if modifier and "InversionTimes" in modifier else None)),
        scanning_sequence=tuple(str(v).upper() for v in _values(dataset.get("ScanningSequence"))),
        sequence_variant=tuple(str(v).upper() for v in _values(dataset.get("SequenceVariant"))),
        acquisition_type=str(dataset.get("MRAcquisitionType", "") or "").upper(),
        contrast_agent=str(dataset.get("ContrastBolusAgent", "") or "").strip(),
        time=str(dataset.get("AcquisitionTime", "") or dataset.get("SeriesTime", "") or ""),
        rows=int(dataset.get("Rows", 0) or 0),
        columns=int(dataset.get("Columns", 0) or 0),
        sop_class=str(dataset.get("SOPClassUID", "")),
        diffusion_b_value=_float(dataset.get("DiffusionBValue")),
    )


def _first_item(dataset: Dataset | None, keyword: str) -> Dataset | None:
    sequence = dataset.get(keyword) if dataset is not None else None
    return sequence[0] if sequence else None


def _values(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]


def _float(value) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _int(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
