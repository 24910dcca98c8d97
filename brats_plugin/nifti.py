"""NIfTI reading and writing that keeps geometry.

Files are written atomically (:mod:`brats_plugin.files`): complete under their final name, or absent.
"""
from __future__ import annotations

import gzip
import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip, isal_zlib

from brats_plugin.errors import BratsInputError
from brats_plugin.files import atomic_path, write_bytes_atomic

NIFTI_ENDINGS = (".nii.gz", ".nii")
#: ISA-L deflate level for files we compress: level 1 is about ten times faster than zlib's and
#: compresses label maps better than zlib level 1.
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
    except Exception as error:  # nibabel, gzip and zlib raise many types for a damaged file
        raise BratsInputError(f"{path}: not a readable NIfTI file ({_reason(error)})") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise BratsInputError(f"{path}: not a NIfTI file (read as {type(image).__name__})")
    return image


def read_array(path: str | os.PathLike) -> np.ndarray:
    """All voxels of a NIfTI file, scaled as its header says, read whole into memory.

    A ``.nii.gz`` is decompressed in one call (ISA-L, several times faster than Python's gzip) to its
    very end, so gzip's CRC-32 proves every byte intact. The array is read-only. Raises
    :class:`BratsInputError` naming the file when it is not NIfTI, truncated or corrupt.
    """
    path = Path(path)
    try:
        buffer = path.read_bytes()
    except OSError as error:
        raise BratsInputError(f"{path}: cannot read ({error.strerror or error})") from None
    if nifti_ending(path) == ".nii.gz":
        try:
            buffer = igzip.decompress(buffer)
        except (gzip.BadGzipFile, EOFError, zlib.error, OSError, ValueError) as error:
            raise BratsInputError(f"{path}: truncated or corrupt image data ({_reason(error)})") from None
    try:
        header_class = nib.Nifti2Header if _header_size(buffer) == 540 else nib.Nifti1Header
        header = header_class.from_fileobj(io.BytesIO(buffer))
    except Exception as error:  # nibabel raises several types for a bad header
        raise BratsInputError(f"{path}: not a readable NIfTI file ({_reason(error)})") from None
    shape, dtype = header.get_data_shape(), header.get_data_dtype()
    offset = int(header.get_data_offset()) or 352
    count = int(np.prod(shape, dtype=np.int64))
    if len(buffer) < offset + count * dtype.itemsize:
        raise BratsInputError(f"{path}: truncated or corrupt image data ({len(buffer)} bytes, header needs "
                              f"{offset + count * dtype.itemsize})")
    array = np.frombuffer(buffer, dtype=dtype, count=count, offset=offset).reshape(shape, order="F")
    slope, inter = header.get_slope_inter()
    if slope is not None and (slope != 1 or (inter or 0) != 0):
        array = array * slope + (inter or 0)
    return array


def _header_size(buffer: bytes) -> int:
    little, big = struct.unpack("<i", buffer[:4])[0], struct.unpack(">i", buffer[:4])[0]
    return 540 if 540 in (little, big) else 348


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
        read_array(path)


def _data_bytes(image: nib.Nifti1Image) -> int:
    return int(np.prod(image.shape, dtype=np.int64)) * image.header.get_data_dtype().itemsize


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:200]


def save(image: nib.Nifti1Image, final: str | os.PathLike) -> None:
    """Save an in-memory image to ``final`` atomically, compressed if the name ends in ``.nii.gz``."""
    write_bytes_atomic(to_file_bytes(image, compressed=nifti_ending(final) == ".nii.gz"), final)


def to_file_bytes(image: nib.Nifti1Image, *, compressed: bool) -> bytes:
    """The bytes of the image's single NIfTI file: nibabel's ``to_bytes``, gzipped if ``compressed``.

    Compression streams header and voxels through ISA-L deflate without first assembling the whole
    uncompressed file in memory.
    """
    header, voxels = encode(image)
    if not compressed:
        return header + voxels.tobytes()
    packer = isal_zlib.compressobj(COMPRESS_LEVEL, isal_zlib.DEFLATED, 31)  # 31: gzip wrapper, mtime 0
    return packer.compress(header) + packer.compress(voxels) + packer.flush()


def encode(image: nib.Nifti1Image) -> tuple[bytes, memoryview]:
    """A single-file NIfTI as (header with extensions and padding, voxel bytes in Fortran order).

    The voxel bytes are a view of the image's array when it is Fortran-ordered (no copy).
    """
    image.update_header()
    header = image.header
    array = np.asanyarray(image.dataobj)
    if array.dtype != header.get_data_dtype() or header.get_slope_inter() not in ((None, None), (1.0, 0.0)):
        whole = image.to_bytes()  # conversion or scaling: let nibabel work it out
        offset = int(image.header.get_data_offset())
        return whole[:offset], memoryview(whole)[offset:]
    stream = io.BytesIO()
    header.set_slope_inter(1.0, 0.0)  # what nibabel writes for unscaled data
    header.set_data_offset(0)  # write_to then sets the smallest offset that fits the extensions
    header.write_to(stream)
    stream.write(bytes(int(header.get_data_offset()) - stream.tell()))
    return stream.getvalue(), memoryview(np.ravel(array, order="F")).cast("B")


def like(array: np.ndarray, reference: nib.Nifti1Image, dtype: np.dtype | type) -> nib.Nifti1Image:
    """A new image of ``array`` (cast to ``dtype``) with exactly the reference's geometry.

    The header is a copy of the reference's (affine, qform/sform and their codes, pixdim, units), so
    that the result lies voxel for voxel on the reference; only data type, scaling and (for an array
    with extra trailing axes, such as per-channel probabilities) the number of dimensions change.
    """
    if array.shape[:len(reference.shape)] != reference.shape:
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
                igzip.IGzipFile(temporary, "wb", compresslevel=COMPRESS_LEVEL, mtime=0) as packed:
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
