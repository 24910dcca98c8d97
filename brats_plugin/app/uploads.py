"""Turn what a browser or a script uploaded into a validated case folder, without trusting any name.

An upload is a list of files, each with the name the user gave it and, optionally, the sequence the
user picked for it in the form. A single zip file may hold the whole case instead, or a scanner study
(DICOM files: :func:`store_study`, whose series are identified as ``brats preprocess`` does, the
user's choices winning). The sequence of a
file comes from the user's choice, else from its name (:func:`brats_plugin.cases.identify_file`, the
same recognition as everywhere else); the bytes are then stored under names we choose
(``T1.nii.gz`` ...), so that no user-controlled path ever reaches the file system, and the case is
validated with the checks of prediction (:func:`brats_plugin.cases.read_case_voxels`). Messages name
the user's file names, never our folders.
"""
from __future__ import annotations

import io
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from brats_plugin import nifti
from brats_plugin.cases import Case, case_from_files, case_id_from_file_name, identify_file, read_case_voxels
from brats_plugin.errors import BratsInputError
from brats_plugin.files import write_bytes_atomic
from brats_plugin.preprocess.identify import Decision, SeriesChoiceError, choose_series
from brats_plugin.preprocess.series import scan_study
from brats_plugin.releases import SEGMENTATION, SEQUENCES

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
#: NIfTI-1 single files carry ``n+1\0`` at byte 344; NIfTI-2 ``n+2\0`` at byte 4.
NIFTI_MAGICS = ((344, b"n+1\x00"), (4, b"n+2\x00"))
_HEAD = 352  # bytes of a NIfTI file that hold both magics
_CHUNK = 1 << 22  # unpacking step of gzipped uploads
_ENCRYPTED = 0x1  # zip general-purpose flag bit 0
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
#: Case ids kept from user names: letters, digits, ``._-``; anything else becomes ``_``.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class UploadedFile:
    """One uploaded file: the user's name for it (never used as a path), its bytes, the chosen sequence."""

    name: str
    data: bytes
    sequence: str | None = None  # one of SEQUENCES, or None to recognise it from the name


def store_upload(files: list[UploadedFile], folder: str | Path, *, max_unpacked_bytes: int,
                 case_id: str | None = None) -> Case:
    """Store an upload as ``folder/<SEQUENCE>.nii[.gz]``, validate it, return the case.

    Raises :class:`BratsInputError` (naming the user's files) for a missing, doubled or unrecognised
    sequence, content that is not NIfTI, files (zipped or gzipped) that unpack beyond
    ``max_unpacked_bytes`` in all, or any check of prediction (shapes, affines, NaN, truncated data).
    """
    if len(files) == 1 and files[0].data[:4] == ZIP_MAGIC:
        files = _unzip(files[0], max_unpacked_bytes)
    by_sequence = _assign_sequences(files)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    budget = max_unpacked_bytes
    for sequence, upload in by_sequence.items():
        ending, unpacked = _nifti_ending(upload, budget)
        budget -= unpacked
        paths[sequence] = folder / f"{sequence}{ending}"
        write_bytes_atomic(upload.data, paths[sequence])
    case = case_from_files(paths, safe_case_id(case_id or case_id_from_file_name(base_name(by_sequence["T1"].name))))
    try:
        read_case_voxels(case)
    except BratsInputError as error:
        raise BratsInputError(_user_names(str(error), paths, by_sequence)) from None
    return case


#: Where a study upload is kept in its job's inputs folder.
STUDY_FILE = "study.zip"


@dataclass(frozen=True)
class StoredStudy:
    """A scanner study uploaded as a zip: where it is kept, its case id and the series chosen."""

    path: Path
    case_id: str
    series: dict[str, str]  # sequence -> SeriesInstanceUID


def is_study_upload(files: list[UploadedFile]) -> bool:
    """One zip holding no NIfTI file: a scanner study (its DICOM files are checked when it is stored)."""
    if len(files) != 1 or files[0].data[:4] != ZIP_MAGIC:
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(files[0].data)) as packed:
            return not any(nifti.nifti_ending(base_name(m.filename)) for m in packed.infolist() if not m.is_dir())
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError):
        return False  # a damaged zip: the case path reports it


def store_study(upload: UploadedFile, folder: str | Path, *, max_unpacked_bytes: int,
                choices: dict[str, str] | None = None, case_id: str | None = None) -> StoredStudy:
    """Keep a study zip as ``folder/study.zip`` and choose its four series (``choices``: sequence ->
    SeriesNumber or SeriesInstanceUID, the user's corrections).

    Raises :class:`SeriesChoiceError` (with every series and its decision) when the four cannot be
    chosen, :class:`BratsInputError` naming the user's file for anything else: no DICOM images, several
    studies, unsafe members, more than ``max_unpacked_bytes`` unpacked.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(upload.data)) as packed:
            total = sum(m.file_size for m in packed.infolist())
            for member in packed.infolist():
                _check_member(member, upload.name)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise BratsInputError(f"{upload.name}: damaged zip file ({error})") from None
    if total > max_unpacked_bytes:
        raise BratsInputError(f"{upload.name}: unpacks to {total / 2**20:.0f} MB, more than the "
                              f"{max_unpacked_bytes / 2**20:.0f} MB allowed")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / STUDY_FILE
    write_bytes_atomic(upload.data, path)
    try:
        picked, _ = choose_series(scan_study(path), choices)
    except SeriesChoiceError:
        raise
    except BratsInputError as error:
        raise BratsInputError(str(error).replace(str(path), upload.name)) from None
    stem = base_name(upload.name).removesuffix(".zip").removesuffix(".ZIP")
    return StoredStudy(path, safe_case_id(case_id or stem), {sequence: s.uid for sequence, s in picked.items()})


def series_table(decisions: list[Decision]) -> list[dict]:
    """The rows of a study's series table for a page: what each series is and what it was taken for."""
    return [{"uid": d.series.uid, "number": d.series.number, "description": d.series.description or
             d.series.protocol, "images": d.series.frames, "taken_as": d.sequence, "why": d.reason}
            for d in decisions]


def safe_case_id(text: str) -> str:
    """A case id made only of letters, digits and ``._-`` (at most 64 characters), never empty."""
    cleaned = _UNSAFE.sub("_", text).strip("._")[:64]
    return cleaned or "upload"


def _assign_sequences(files: list[UploadedFile]) -> dict[str, UploadedFile]:
    """Sequence -> file, from the user's choices or the names; segmentations are passed over."""
    if not files:
        raise BratsInputError(f"no files uploaded: send the four sequences ({', '.join(SEQUENCES)}) or one zip")
    assigned: dict[str, UploadedFile] = {}
    for upload in files:
        sequence = upload.sequence or identify_file(base_name(upload.name))
        if sequence == SEGMENTATION:
            continue
        if sequence is None:
            raise BratsInputError(f"{upload.name}: cannot tell which sequence this is from its name; "
                                  f"choose one of {', '.join(SEQUENCES)} for it")
        if sequence not in SEQUENCES:
            raise BratsInputError(f"{upload.name}: unknown sequence {sequence!r}; choose one of {', '.join(SEQUENCES)}")
        if sequence in assigned:
            raise BratsInputError(f"{assigned[sequence].name} and {upload.name} are both {sequence}")
        assigned[sequence] = upload
    missing = [s for s in SEQUENCES if s not in assigned]
    if missing:
        raise BratsInputError(f"missing {', '.join(missing)}: upload all four sequences ({', '.join(SEQUENCES)})")
    return assigned


def base_name(name: str) -> str:
    """The last component of a name with either slash: only for recognising tokens."""
    return re.split(r"[\\/]", name)[-1]


def _nifti_ending(upload: UploadedFile, budget: int) -> tuple[str, int]:
    """(``.nii.gz`` or ``.nii`` by content, unpacked size); anything else is refused, whatever its name.

    Gzipped data is unpacked as a stream and refused as soon as it exceeds ``budget`` bytes, so a
    small file that would unpack to gigabytes (a gzip bomb) costs nothing.
    """
    data = upload.data
    if data[:2] == GZIP_MAGIC:
        head, size = _gunzip_head(upload, budget)
        if _is_nifti(head):
            return ".nii.gz", size
    elif _is_nifti(data[:_HEAD]):
        if len(data) > budget:
            raise BratsInputError(f"{upload.name}: larger than the {budget / 2**20:.0f} MB left of the upload limit")
        return ".nii", len(data)
    raise BratsInputError(f"{upload.name}: not a NIfTI image (.nii or .nii.gz content)")


def _gunzip_head(upload: UploadedFile, budget: int) -> tuple[bytes, int]:
    """The first bytes and the whole size of gzipped data (several members allowed), within ``budget``."""
    head, size, pending = b"", 0, upload.data
    try:
        while pending:
            unpacker = zlib.decompressobj(31)
            while pending:
                chunk = unpacker.decompress(pending, _CHUNK)
                size += len(chunk)
                head += chunk[:max(0, _HEAD - len(head))]
                if size > budget:
                    raise BratsInputError(f"{upload.name}: unpacks beyond the {budget / 2**20:.0f} MB left of "
                                          "the upload limit")
                pending = unpacker.unconsumed_tail
                if not chunk and not pending:
                    break
            if not unpacker.eof:
                raise BratsInputError(f"{upload.name}: truncated gzip data")
            pending = unpacker.unused_data
    except zlib.error as error:
        raise BratsInputError(f"{upload.name}: damaged gzip data ({error})") from None
    return head, size


def _is_nifti(head: bytes) -> bool:
    """Whether the first bytes of a file carry a NIfTI-1 or NIfTI-2 magic."""
    return any(head[offset:offset + len(magic)] == magic for offset, magic in NIFTI_MAGICS)


def _unzip(archive: UploadedFile, max_unpacked_bytes: int) -> list[UploadedFile]:
    """The NIfTI files of a zip (any folder depth), as uploads named by their base names."""
    try:
        with zipfile.ZipFile(io.BytesIO(archive.data)) as packed:
            members = [m for m in packed.infolist() if not m.is_dir() and nifti.nifti_ending(base_name(m.filename))
                       and not base_name(m.filename).startswith(".") and "__MACOSX" not in m.filename]
            total = sum(m.file_size for m in members)
            if total > max_unpacked_bytes:
                raise BratsInputError(f"{archive.name}: unpacks to {total / 2**20:.0f} MB, more than the "
                                      f"{max_unpacked_bytes / 2**20:.0f} MB allowed")
            files, budget = [], max_unpacked_bytes
            for member in members:
                _check_member(member, archive.name)
                data = _read_member(packed, member, budget, archive.name)
                budget -= len(data)
                files.append(UploadedFile(base_name(member.filename), data))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise BratsInputError(f"{archive.name}: damaged zip file ({error})") from None
    if not files:
        raise BratsInputError(f"{archive.name}: no .nii or .nii.gz files in this zip")
    return files


def _check_member(member: zipfile.ZipInfo, archive: str) -> None:
    """Refuse members this reader cannot unpack: encrypted ones, or compressed by an unknown method."""
    if member.flag_bits & _ENCRYPTED:
        raise BratsInputError(f"{archive}: {member.filename} is encrypted; upload an unencrypted zip")
    if member.compress_type not in _ZIP_METHODS:
        raise BratsInputError(f"{archive}: {member.filename} uses an unsupported compression method "
                              f"({member.compress_type}); use deflate")


def _read_member(packed: zipfile.ZipFile, member: zipfile.ZipInfo, limit: int, archive: str) -> bytes:
    """A member's bytes, refusing more than ``limit`` whatever its header claims (zip bombs)."""
    with packed.open(member) as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise BratsInputError(f"{archive}: {member.filename} unpacks beyond the size allowed")
    return data


def _user_names(message: str, paths: dict[str, Path], uploads: dict[str, UploadedFile]) -> str:
    """A validation message with our stored paths replaced by the user's file names."""
    for sequence, path in paths.items():
        message = message.replace(str(path), uploads[sequence].name).replace(path.name, uploads[sequence].name)
    return message
