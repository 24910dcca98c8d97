"""Shared by the app tests: uploads of a case folder, waiting for a job, a real server on a free port."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import uvicorn

from brats_plugin import find_case
from brats_plugin.releases import SEQUENCES

JOB_TIMEOUT = 300
#: The address the in-process test client calls (a server without a token answers loopback names only).
LOCAL = "http://127.0.0.1"


def upload_files(case_folder: Path, names: dict[str, str] | None = None) -> list[tuple]:
    """Multipart ``files`` entries for the four sequences of a case folder (optionally renamed)."""
    case = find_case(case_folder)
    return [("files", ((names or {}).get(s, case.sequences[s].name), case.sequences[s].read_bytes(),
                       "application/gzip")) for s in SEQUENCES]


def wait_done(client, job_id: str, headers: dict | None = None) -> dict:
    """Poll a job (Starlette test client or httpx client) until it is done or failed; its last status."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job_id}", headers=headers).json()
        if status["state"] in ("done", "failed"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end within {JOB_TIMEOUT} s: {status}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(app, timeout: float = 30.0) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 in a thread; yield its base URL; stop it afterwards."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the app server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
