"""Files and folders that appear under their final names only when complete.

A file is written to a hidden temporary name in its final folder (``.NAME.part-XXXX``) and renamed;
a folder is assembled as a hidden sibling (``.NAME.part-XXXX``) and renamed into place. A killed
process leaves at most such hidden entries behind, which :func:`remove_partial_files` clears; what a
user sees under a final name is never half-written.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

from brats_plugin.errors import BratsInputError

PARTIAL_MARK = ".part-"


def _hidden_sibling(final: Path) -> Path:
    return final.with_name(f".{final.name}{PARTIAL_MARK}{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` if the block succeeds.

    On any exception the temporary file is removed and ``final`` is left as it was.
    """
    final = Path(final)
    temporary = _hidden_sibling(final)
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


@contextlib.contextmanager
def staging_folder(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty hidden folder beside ``final`` to assemble it in; remove it at the end.

    The caller moves it into place (:func:`replace_folder`, or :func:`os.replace` when ``final`` cannot
    exist yet) before the block ends; whatever is still there afterwards (a failure) is deleted.
    """
    temporary = _hidden_sibling(Path(final))
    try:
        temporary.mkdir(parents=True)
    except OSError as error:
        raise BratsInputError(f"{temporary.parent}: cannot write there ({error.strerror or error})") from None
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def replace_folder(finished: Path, final: Path) -> None:
    """Put the finished folder in place of ``final`` (which may exist, empty or not), restoring it on failure."""
    old = _hidden_sibling(final)
    if final.exists():
        os.replace(final, old)
    try:
        os.replace(finished, final)
    except OSError:
        with contextlib.suppress(OSError):
            os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def remove_partial_files(folder: str | os.PathLike) -> int:
    """Delete temporary files left in ``folder`` by an interrupted atomic write; return how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    partial = [p for p in folder.iterdir() if p.name.startswith(".") and PARTIAL_MARK in p.name and p.is_file()]
    for path in partial:
        path.unlink()
    return len(partial)


def make_folder(folder: str | os.PathLike, wording: str = "cannot create it") -> Path:
    """Create ``folder`` (and its parents) if needed; a failure is a one-line error naming it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BratsInputError(f"{folder}: {wording} ({error.strerror or error})") from None
    return folder


def check_writable(folder: str | os.PathLike, wording: str = "cannot write there") -> None:
    """Prove that files can be created in ``folder`` (a one-line error now, not after an hour's work)."""
    probe = Path(folder) / f".write-test-{uuid.uuid4().hex[:8]}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise BratsInputError(f"{folder}: {wording} ({error.strerror or error})") from None


def prepare_output_folder(folder: str | os.PathLike, wording: str = "cannot write the output here") -> Path:
    """Create ``folder`` if needed and prove it writable, before any long work; return it.

    Hidden partial files already there are left alone: another process may be writing them.
    """
    folder = make_folder(folder, wording)
    check_writable(folder, wording)
    return folder
