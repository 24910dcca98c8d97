"""A real PACS for the tests: Debian's Orthanc, started in a private network namespace.

Orthanc listens on every address, so it is started under ``unshare --net`` (only a loopback
interface, reachable from nowhere else) and the tests run ``brats send``, C-FIND and the REST queries
inside the same namespace with ``nsenter``. Being alone in that namespace, the ports are free by
construction. Needs root (as here and in CI) and the Debian packages of ``make system-packages``.
The ``pacs`` fixture (conftest.py) yields a :class:`Pacs`.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from conftest import BRATS

AET, DICOM_PORT, HTTP_PORT = "ORTHANC", 4242, 8042
ORTHANC = shutil.which("Orthanc", path=os.environ.get("PATH", "") + ":/usr/sbin")
TIMEOUT = 60


@dataclass
class Pacs:
    pid: int

    def run(self, command: list[str]) -> subprocess.CompletedProcess:
        """Run ``command`` inside Orthanc's network namespace."""
        return subprocess.run(["nsenter", f"--net=/proc/{self.pid}/ns/net", "--", *command],
                              capture_output=True, text=True, timeout=TIMEOUT)

    def send(self, folder: Path, *options: str) -> subprocess.CompletedProcess:
        arguments = ["--host", "127.0.0.1", "--port", str(DICOM_PORT), "--called-aet", AET, *options]
        return self.run([*BRATS, "send", str(folder), *arguments])

    def rest(self, path: str):
        """GET Orthanc's REST API; the decoded JSON answer."""
        completed = self.run([sys.executable, "-c", "import sys, urllib.request; "
                              "print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())",
                              f"http://127.0.0.1:{HTTP_PORT}{path}"])
        if completed.returncode != 0:
            raise RuntimeError(completed.stderr)
        return json.loads(completed.stdout)

    def stored_sop_instance_uids(self) -> set[str]:
        return {item["MainDicomTags"]["SOPInstanceUID"] for item in self.rest("/instances?expand")}

    def find_series(self, study_uid: str, folder: Path) -> list[dict[str, str]]:
        """C-FIND (dcmtk's findscu, SERIES level) of the series in a study: Modality, number, description."""
        keys = {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": study_uid, "SeriesInstanceUID": "",
                "Modality": "", "SeriesNumber": "", "SeriesDescription": ""}
        folder.mkdir(parents=True, exist_ok=True)
        arguments = [argument for key, value in keys.items() for argument in ("-k", f"{key}={value}")]
        completed = self.run(["findscu", "-S", "-aec", AET, "-X", "-od", str(folder), *arguments, "127.0.0.1",
                              str(DICOM_PORT)])
        if completed.returncode != 0:
            raise RuntimeError(completed.stderr)
        import pydicom
        answers = [pydicom.dcmread(path) for path in sorted(folder.glob("rsp*.dcm"))]
        return [{key: str(answer.get(key, "")) for key in keys if key != "QueryRetrieveLevel"} for answer in answers]


def start_pacs(folder: Path):
    """Run Orthanc with its storage in ``folder`` while the generator is alive; yields a :class:`Pacs`."""
    config = {
        "Name": "brats-test", "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"),
        "DicomAet": AET, "DicomPort": DICOM_PORT, "HttpPort": HTTP_PORT, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "DicomCheckCalledAet": True, "UnknownSopClassAccepted": False,
        "DicomAlwaysAllowFind": True, "Plugins": [], "LuaScripts": [],
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "wb")  # noqa: SIM115 (the server's output for its whole life)
    process = subprocess.Popen(["unshare", "--net", "--", "sh", "-c",
                                f"ip link set lo up && exec {ORTHANC} {folder / 'orthanc.json'}"],
                               stdout=log, stderr=subprocess.STDOUT)
    server = Pacs(process.pid)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {(folder / 'orthanc.log').read_text(errors='replace')[-2000:]}")
            try:
                server.rest("/system")
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield server
    finally:
        process.kill()  # its storage is thrown away: no need for the seconds of a graceful stop
        process.wait(timeout=TIMEOUT)
        log.close()
