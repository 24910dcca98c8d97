"""``brats send`` against a real PACS: Debian's Orthanc in a private network namespace (``pacs_support``)."""
from __future__ import annotations

import hashlib
import shlex
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from conftest import BRATS
from pacs_support import AET, DICOM_PORT, TIMEOUT

from brats_plugin.cases import find_case
from brats_plugin.dataset_conversion import write_synthetic_release
from brats_plugin.export.case import load_export_case
from brats_plugin.export.dicom import MR_FOLDERS, write_dicom
from brats_plugin.export.pacs import find_dicom_files

#: Few slices: each C-STORE costs Orthanc about 45 ms here (its delayed acknowledgements), whatever the size.
SHAPE = (24, 24, 16)


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """A synthetic case's DICOM export (MR series, SEG, overlay series)."""
    root = tmp_path_factory.mktemp("export")
    [folder] = write_synthetic_release(root / "source", "2021", 1, shape=SHAPE, seed=11)
    case = find_case(folder)
    write_dicom(load_export_case(case, case.segmentation, "2021"), root / "dicom", secondary_capture=True)
    return root / "dicom"


def _fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _uids(folder: Path) -> set[str]:
    return {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in folder.rglob("*.dcm")}


def test_every_series_and_the_seg_arrive(pacs, export):
    before = _fingerprint(export)
    completed = pacs.send(export)
    count = len(before)
    assert completed.returncode == 0, completed.stderr
    assert f"sent {count} DICOM file(s) to {AET} at 127.0.0.1:{DICOM_PORT}: {count} accepted, 0 refused" \
        in completed.stdout
    assert _uids(export) <= pacs.stored_sop_instance_uids()
    modalities = {series["MainDicomTags"]["Modality"] for series in pacs.rest("/series?expand")}
    assert {"MR", "SEG", "OT"} <= modalities
    assert _fingerprint(export) == before  # nothing local changed


def test_a_terminal_shows_a_progress_bar(pacs, export):
    """With stderr on a terminal (``script`` provides one) tqdm draws the bar; piped, it stays silent."""
    command = [*BRATS, "send", str(export / MR_FOLDERS["T1"]), "--host", "127.0.0.1", "--port", str(DICOM_PORT),
               "--called-aet", AET]
    on_terminal = pacs.run(["script", "--quiet", "--return", "--command",
                            f"stty cols 120 rows 40; {shlex.join(command)}", "/dev/null"])  # a sized terminal
    assert on_terminal.returncode == 0, on_terminal.stdout
    assert "C-STORE: 100%" in on_terminal.stdout  # script merges the terminal's output into its stdout
    piped = pacs.run(command)
    assert piped.returncode == 0 and "C-STORE" not in piped.stderr


def test_wrong_called_ae_title_is_a_rejected_association(pacs, export):
    before = _fingerprint(export)
    completed = pacs.run([*BRATS, "send", str(export), "--host", "127.0.0.1", "--port", str(DICOM_PORT),
                          "--called-aet", "NOT_ORTHANC"])
    assert completed.returncode == 1
    assert completed.stdout == ""
    [line] = completed.stderr.strip().splitlines()
    assert "rejected the association" in line and "Called AE title not recognised" in line
    assert _fingerprint(export) == before


def test_unreachable_pacs_is_a_one_line_error(pacs, export):
    completed = pacs.run([*BRATS, "send", str(export), "--host", "127.0.0.1", "--port", str(DICOM_PORT + 1),
                          "--called-aet", AET, "--timeout", "5"])
    assert completed.returncode == 1
    [line] = completed.stderr.strip().splitlines()
    assert line == f"brats: error: cannot connect to 127.0.0.1:{DICOM_PORT + 1}: Connection refused"


def test_refused_instances_are_reported_and_the_rest_stored(pacs, export, tmp_path):
    """Orthanc refuses an instance without Study Instance UID (status 0xA700) and an unknown SOP class
    (presentation context rejected); everything else in the folder is stored."""
    folder = tmp_path / "mixed"
    shutil.copytree(export / MR_FOLDERS["T2"], folder / "good")
    ds = pydicom.dcmread(export / MR_FOLDERS["T1"] / "IM0003.dcm")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    del ds.StudyInstanceUID
    ds.save_as(folder / "no-study.dcm")
    ds = pydicom.dcmread(export / MR_FOLDERS["T1"] / "IM0004.dcm")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.826.0.1.3680043.8.498.1"  # private, unknown
    ds.save_as(folder / "unknown-class.dcm")
    (folder / "notes.txt").write_text("not DICOM: passed over")
    before = _fingerprint(folder)

    completed = pacs.send(folder)
    good = len(list((folder / "good").glob("*.dcm")))
    assert completed.returncode == 1
    assert f"{good} accepted, 2 refused" in completed.stdout
    assert "0xA700" in completed.stdout and "no-study.dcm" in completed.stdout
    assert "does not accept SOP class 1.2.826.0.1.3680043.8.498.1" in completed.stdout
    [line] = completed.stderr.strip().splitlines()
    assert line.startswith(f"brats: error: {AET} at 127.0.0.1:{DICOM_PORT} refused 2 of {good + 2} file(s)")
    stored = pacs.stored_sop_instance_uids()
    assert _uids(folder / "good") <= stored
    assert not ({pydicom.dcmread(folder / name).SOPInstanceUID for name in ("no-study.dcm", "unknown-class.dcm")}
                & stored)
    assert _fingerprint(folder) == before


# ---- mistakes in the input: status 2, no network needed ---------------------------------------------------

def _send_locally(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([*BRATS, "send", *arguments], capture_output=True, text=True, timeout=TIMEOUT)


def test_a_folder_without_dicom_files_is_an_input_error(synthetic_source):
    source = synthetic_source("2021", cases=1)
    completed = _send_locally(str(source), "--host", "127.0.0.1", "--port", "104", "--called-aet", AET)
    assert completed.returncode == 2
    assert completed.stderr.strip() == f"brats: error: {source}: no DICOM files below it (Part 10 files with the " \
                                       "'DICM' preamble)"


@pytest.mark.parametrize("arguments, message", [
    (["--port", "104", "--called-aet", "A" * 17], "called AE title"),
    (["--port", "70000", "--called-aet", AET], "port 70000"),
])
def test_bad_ae_titles_and_ports_are_input_errors(export, arguments, message):
    completed = _send_locally(str(export), "--host", "127.0.0.1", *arguments)
    assert completed.returncode == 2
    [line] = completed.stderr.strip().splitlines()
    assert message in line


def test_missing_folder_is_an_input_error(tmp_path):
    completed = _send_locally(str(tmp_path / "nowhere"), "--host", "h", "--port", "104", "--called-aet", AET)
    assert completed.returncode == 2 and "no such folder" in completed.stderr


def test_find_dicom_files_passes_over_hidden_and_other_files(export, tmp_path):
    folder = shutil.copytree(export, tmp_path / "copy")
    (folder / ".hidden").mkdir()
    shutil.copy(folder / MR_FOLDERS["T1"] / "IM0001.dcm", folder / ".hidden" / "IM0001.dcm")
    (folder / "readme.txt").write_text("hello")
    found = find_dicom_files(folder)
    assert sorted(f.path for f in found) == sorted(folder.glob("[!.]*/*.dcm"))
    assert {f.sop_class.name for f in found} == {"MR Image Storage", "Segmentation Storage",
                                                 "Secondary Capture Image Storage"}
