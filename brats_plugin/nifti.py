"""NIfTI reading and writing that keeps geometry, and atomic file creation.

Every file this package creates appears under its final name only when complete: it is written to a
hidden temporary name in the same folder (``.NAME.part-XXXX``) and renamed. A killed process leaves at
most such temporary files behind, which :func:`remove_partial_files` clears.
"""
from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import struct
import uuid
import zlib
from pathlib import Path
from typing import Iterator

import nibabel as nib
import numpy as np

from brats_plugin.errors import BratsInputError

NIFTI_ENDINGS = (".nii.gz", ".nii")
_PARTIAL_MARK = ".part-"
#: zlib level for files we compress: level 1 is several times faster than 6 and, on label maps and
#: MRI, only a few percent larger.
COMPRESS_LEVEL = 1


def nifti_ending(path: str | os.PathLike) -> str | None:
    """``".nii.gz"`` or ``".nii"`` (case-insensitive) if ``path`` names a NIfTI file, else None."""
    name = os.fspath(path).lower()
    return next((ending for ending in NIFTI_ENDINGS if name.endswith(ending)), None)


def strip_nifti_ending(name: str) -> str:
    """The file name without its NIfTI ending."""
    ending = nifti_ending(name)
    return name[: -len(ending)] if ending else name


def load(path: str | os.PathLike) -> nib.Nifti1Image:
    """Open a NIfTI file lazily (header now, voxels on demand).

    Raises :class:`BratsInputError` naming the file when it is missing, not NIfTI, or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise BratsInputError(f"{path}: no such file")
    try:
        image = nib.load(path)
    except (nib.filebasedimages.ImageFileError, gzip.BadGzipFile, EOFError, zlib.error, OSError,
            ValueError) as error:
        raise BratsInputError(f"{path}: not a readable NIfTI file ({_reason(error)})") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise BratsInputError(f"{path}: not a NIfTI file (read as {type(image).__name__})")
    return image


def read_voxels(image: nib.Nifti1Image) -> np.ndarray:
    """All voxels of an image opened by :func:`load`, scaled as the header says.

    Raises :class:`BratsInputError` when the data are truncated or corrupt.
    """
    try:
        return np.asanyarray(image.dataobj)
    except (EOFError, zlib.error, OSError, ValueError) as error:
        raise BratsInputError(
            f"{image.get_filename()}: truncated or corrupt image data ({_reason(error)})") from None


def check_stored_size(image: nib.Nifti1Image) -> None:
    """Check cheaply that a ``.nii.gz`` holds all the voxels its header promises.

    A gzip stream ends with the uncompressed size (mod 2**32). It must equal the header's data offset
    plus the voxel bytes; a truncated file ends in arbitrary bytes instead. On a mismatch the whole
    stream is decompressed to decide (multi-member gzip files, e.g. from ``bgzip``, legitimately differ).
    """
    path = image.get_filename()
    if nifti_ending(path) != ".nii.gz":
        expected = image.dataobj.offset + _data_bytes(image)
        if os.path.getsize(path) < expected:
            raise BratsInputError(f"{path}: truncated: {os.path.getsize(path)} bytes, header needs {expected}")
        return
    with open(path, "rb") as handle:
        handle.seek(-4, os.SEEK_END)
        (stored,) = struct.unpack("<I", handle.read(4))
    expected = (image.dataobj.offset + _data_bytes(image)) % 2**32
    if stored != expected:
        read_voxels(image)


def verify_gzip_stream(path: str | os.PathLike) -> None:
    """Decompress a whole ``.nii.gz`` to its end, which checks gzip's CRC-32 of every byte.

    Reading voxels alone stops before the checksum, so damage inside the stream can go unnoticed.
    """
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 24):
                pass
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as error:
        raise BratsInputError(f"{path}: truncated or corrupt image data ({_reason(error)})") from None


def _data_bytes(image: nib.Nifti1Image) -> int:
    return int(np.prod(image.shape, dtype=np.int64)) * image.header.get_data_dtype().itemsize


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:200]


# ---- atomic file creation ---------------------------------------------------------------------------

@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` if the block succeeds.

    On any exception the temporary file is removed and ``final`` is left as it was.
    """
    final = Path(final)
    temporary = final.with_name(f".{final.name}{_PARTIAL_MARK}{uuid.uuid4().hex[:8]}")
    try:
        yield temporary
        os.replace(temporary, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def write_bytes_atomic(data: bytes, final: str | os.PathLike) -> None:
    """Write ``data`` to ``final`` atomically."""
    with atomic_path(final) as temporary:
        temporary.write_bytes(data)


def remove_partial_files(folder: str | os.PathLike) -> int:
    """Delete temporary files left in ``folder`` by an interrupted atomic write; return how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    partial = [p for p in folder.iterdir() if p.name.startswith(".") and _PARTIAL_MARK in p.name]
    for path in partial:
        path.unlink()
    return len(partial)


def save(image: nib.Nifti1Image, final: str | os.PathLike) -> None:
    """Save ``image`` to ``final`` atomically, compressed if the name ends in ``.nii.gz``."""
    data = image.to_bytes()
    if nifti_ending(final) == ".nii.gz":
        data = gzip.compress(data, compresslevel=COMPRESS_LEVEL, mtime=0)
    write_bytes_atomic(data, final)


def like(array: np.ndarray, reference: nib.Nifti1Image, dtype: np.dtype | type) -> nib.Nifti1Image:
    """A new image of ``array`` (cast to ``dtype``) with exactly the reference's geometry.

    The header is a copy of the reference's (affine, qform/sform and their codes, pixdim, units), so
    that the result lies voxel for voxel on the reference; only data type and scaling change.
    """
    if array.shape != reference.shape:
        raise ValueError(f"array shape {array.shape} differs from reference shape {reference.shape}")
    header = reference.header.copy()
    header.set_data_dtype(dtype)
    image = type(reference)(np.asarray(array, dtype=dtype), reference.affine, header)
    image.header.set_slope_inter(1.0, 0.0)
    # keep the reference's own qform and sform (and codes) rather than nibabel's re-derived ones
    image.set_qform(reference.get_qform(), int(reference.header["qform_code"]))
    image.set_sform(reference.get_sform(), int(reference.header["sform_code"]))
    return image


def place_file(source: str | os.PathLike, final: str | os.PathLike) -> str:
    """Put a copy of ``source`` at ``final`` atomically; return how: ``"link"``, ``"copy"`` or ``"gzip"``.

    A hard link when both lie on one file system and keep the same ending (no bytes copied), a copy
    otherwise; a ``.nii`` source placed under a ``.nii.gz`` name is gzip-compressed on the way.
    """
    source, final = Path(source), Path(final)
    if nifti_ending(source) == ".nii" and nifti_ending(final) == ".nii.gz":
        with atomic_path(final) as temporary, open(source, "rb") as raw, \
                gzip.GzipFile(temporary, "wb", compresslevel=COMPRESS_LEVEL, mtime=0) as packed:
            shutil.copyfileobj(raw, packed, length=1 << 22)
        return "gzip"
    with atomic_path(final) as temporary:
        try:
            os.link(source, temporary)
            how = "link"
        except OSError:
            shutil.copyfile(source, temporary)
            how = "copy"
    return how
