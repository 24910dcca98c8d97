"""Jobs of the web app: their state on disk, a bounded queue, and worker threads.

Every job is a folder ``ROOT/<job id>/`` holding ``inputs/`` (the uploaded case), ``results/`` and
``status.json`` (written atomically). State lives on disk, not only in memory, so a restarted server
still serves every finished result until its retention time ends, and takes up again the jobs that
were queued or running when it stopped (an upload still being received then is discarded). Job ids
are random and checked against a strict pattern before they come near a path. Status changes and
deletions go through one lock, so a job is never rewritten while it is being deleted.
"""
from __future__ import annotations

import json
import queue
import re
import secrets
import shutil
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from brats_plugin import files
from brats_plugin.errors import BratsInputError

RECEIVING, QUEUED, RUNNING, DONE, FAILED = "receiving", "queued", "running", "done", "failed"
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{22}")

#: ``report(stage, fraction)``: what a job's processing tells about its progress.
Report = Callable[[str, float], None]
#: ``process(job folder, job status, report) -> facts for status.json`` (e.g. volumes); may raise.
Process = Callable[[Path, dict, Report], dict]


class QueueFull(Exception):
    """The queue holds as many jobs as allowed: the client should try again later."""


@dataclass(frozen=True)
class JobStore:
    """Job folders below ``root``; finished (or abandoned) jobs are deleted after ``retention_seconds``."""

    root: Path
    retention_seconds: float
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def create(self, state: str = QUEUED, **facts) -> str:
        """A new job with an empty ``inputs/`` folder (``RECEIVING`` while an upload arrives); its id."""
        job_id = secrets.token_urlsafe(16)  # 22 characters of [A-Za-z0-9_-]
        (self.root / job_id / "inputs").mkdir(parents=True)
        self._write(job_id, {"id": job_id, "state": state, "stage": state, "progress": 0.0,
                             "created": time.time(), **facts})
        return job_id

    def folder(self, job_id: str) -> Path:
        """The folder of an existing job; KeyError for an unknown or malformed id."""
        if not _JOB_ID.fullmatch(job_id or "") or not (self.root / job_id / "status.json").is_file():
            raise KeyError(job_id)
        return self.root / job_id

    def status(self, job_id: str) -> dict:
        """The job's status (KeyError if unknown)."""
        return json.loads((self.folder(job_id) / "status.json").read_text())

    def update(self, job_id: str, **changes) -> dict:
        """Change some status fields atomically; return the new status (KeyError if the job is gone)."""
        with self._lock:
            status = {**self.status(job_id), **changes}
            self._write(job_id, status)
        return status

    def discard(self, job_id: str) -> None:
        """Delete a job and everything it holds."""
        with self._lock:
            shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def kept(self) -> list[str]:
        """Jobs exempt from expiry (the preview)."""
        return [s["id"] for s in self._statuses() if s.get("keep")]

    def unfinished(self) -> list[str]:
        """Jobs queued or running (e.g. when the server stopped), oldest first."""
        statuses = sorted(self._statuses(), key=lambda s: s["created"])
        return [s["id"] for s in statuses if s["state"] in (QUEUED, RUNNING)]

    def abandoned_uploads(self) -> list[str]:
        """Jobs whose upload never finished arriving (the server stopped while receiving it)."""
        return [s["id"] for s in self._statuses() if s["state"] == RECEIVING]

    def expire(self, now: float | None = None) -> list[str]:
        """Delete finished jobs past the retention time (counted from when they finished); their ids.

        Queued and running jobs stay (their results are not made yet), and kept ones (the preview).
        """
        now = time.time() if now is None else now
        expired = []
        with self._lock:
            for status in self._statuses():
                finished = status.get("finished")
                if finished and not status.get("keep") and now - finished > self.retention_seconds:
                    self.discard(status["id"])
                    expired.append(status["id"])
        return expired

    def _statuses(self) -> list[dict]:
        """The status of every job, passing over any deleted or damaged meanwhile."""
        statuses = []
        for job_id in self._ids():
            try:
                statuses.append(self.status(job_id))
            except (KeyError, OSError, ValueError):
                continue
        return statuses

    def _ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [p.name for p in self.root.iterdir() if _JOB_ID.fullmatch(p.name) and (p / "status.json").is_file()]

    def _write(self, job_id: str, status: dict) -> None:
        files.write_bytes_atomic(json.dumps(status, indent=1).encode(), self.root / job_id / "status.json")


class JobRunner:
    """Worker threads taking jobs from a bounded queue; a failing job never stops a worker."""

    def __init__(self, store: JobStore, process: Process, *, workers: int = 1, max_queued: int = 100,
                 expire_every: float = 600.0):
        self.store = store
        self._process = process
        self._queue: queue.Queue[str] = queue.Queue(maxsize=max_queued)
        self._threads = [threading.Thread(target=self._work, name=f"brats-job-{i}", daemon=True)
                         for i in range(workers)]
        self._expire_every = expire_every
        self._stopping = threading.Event()
        self._janitor = threading.Thread(target=self._expire, name="brats-job-expiry", daemon=True)

    def start(self) -> None:
        """Start the workers and queue again the jobs a previous server left unfinished."""
        for job_id in self.store.abandoned_uploads():
            self.store.discard(job_id)
        self.store.expire()
        for job_id in self.store.unfinished():
            self.store.update(job_id, state=QUEUED, stage="queued", progress=0.0)
            self.submit(job_id)
        for thread in (*self._threads, self._janitor):
            thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Let the workers finish their current job, then end them."""
        self._stopping.set()
        for thread in (*self._threads, self._janitor):
            thread.join(timeout)

    def submit(self, job_id: str) -> None:
        """Queue a job; :class:`QueueFull` when the queue is at its limit."""
        try:
            self._queue.put_nowait(job_id)
        except queue.Full:
            raise QueueFull(f"{self._queue.maxsize} jobs are waiting already; try again later") from None

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def _expire(self) -> None:
        while not self._stopping.wait(self._expire_every):
            try:
                self.store.expire()
            except Exception:  # noqa: BLE001 - a failed pass (e.g. a disk error) must not end expiry for good
                traceback.print_exc()

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                job_id = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._run(job_id)
            except KeyError:  # the job was deleted while it waited
                pass

    def _run(self, job_id: str) -> None:
        self.store.update(job_id, state=RUNNING, stage="starting", progress=0.0, started=time.time())

        def report(stage: str, fraction: float) -> None:
            self.store.update(job_id, stage=stage, progress=round(fraction, 3))

        try:
            facts = self._process(self.store.folder(job_id), self.store.status(job_id), report)
        except BratsInputError as error:
            self.store.update(job_id, state=FAILED, stage="failed", error=str(error), finished=time.time())
        except Exception as error:  # noqa: BLE001 - a failing job is reported, the server goes on
            traceback.print_exc()
            self.store.update(job_id, state=FAILED, stage="failed", finished=time.time(),
                              error=f"segmentation failed: {type(error).__name__}: {error}")
        else:
            self.store.update(job_id, state=DONE, stage="done", progress=1.0, finished=time.time(), **facts)
