"""``brats app``: one model, a job store on disk, worker threads, the preview case, and the server.

The preview is a job like any other, kept past the retention time and made once per data folder
and preview source: a synthetic case by default, or the case folder given with ``--preview``.
"""
from __future__ import annotations

import ipaddress
import os
import tempfile
from pathlib import Path

from brats_plugin.app.jobs import DONE, JobRunner, JobStore
from brats_plugin.app.results import CaseProcessor
from brats_plugin.app.server import AppSettings, create_app
from brats_plugin.app.uploads import UploadedFile, store_upload
from brats_plugin.cases import Case, find_case
from brats_plugin.devices import resolve_device
from brats_plugin.errors import BratsInputError
from brats_plugin.files import prepare_output_folder
from brats_plugin.inference.settings import FAST_SETTINGS, prediction_settings
from brats_plugin.preprocess.atlas import MNI152, load_atlas
from brats_plugin.releases import DEFAULT_RELEASE

#: The synthetic preview case: small enough to segment in seconds on a CPU.
PREVIEW_SHAPE = (96, 96, 72)


def default_data_folder() -> Path:
    """Where jobs live by default: ``$XDG_CACHE_HOME/brats_plugin/app`` (``~/.cache/...``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "brats_plugin" / "app"


def check_host(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token."""
    loopback = host == "localhost"
    try:
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if not loopback and not token:
        raise BratsInputError(f"--host {host}: listening beyond this machine needs --token (anyone on the "
                              "network could upload and read cases otherwise)")


def check_options(*, workers: int, max_upload_mb: float, retention_hours: float,
                  data_folder: str | os.PathLike, preview: str | os.PathLike | None) -> Path:
    """Refuse unusable app options in one line each; return the data folder, created and absolute."""
    for option, value in (("--workers", workers), ("--max-upload-mb", max_upload_mb),
                          ("--retention-hours", retention_hours)):
        if value <= 0:
            raise BratsInputError(f"{option} {value:g}: must be positive")
    if preview:
        find_case(preview)
    return prepare_output_folder(Path(data_folder).resolve(), "cannot keep the app's jobs here")


def build_app(segmenter, data_folder: str | os.PathLike, *, workers: int = 1, max_upload_mb: float = 200,
              token: str | None = None, preview: str | os.PathLike | None = None,
              retention_hours: float = 24.0, max_queued: int = 100, atlas: str | os.PathLike = MNI152):
    """The ASGI app: jobs below ``data_folder``, segmented by ``segmenter`` (loaded once); uploaded
    scanner studies are registered to ``atlas`` (as ``brats preprocess --atlas``)."""
    folder = check_options(workers=workers, max_upload_mb=max_upload_mb, retention_hours=retention_hours,
                           data_folder=data_folder, preview=preview)
    store = JobStore(folder, retention_hours * 3600)
    max_upload_bytes = int(max_upload_mb * 2**20)
    preview_job = _preview_job(store, preview, max_upload_bytes)
    runner = JobRunner(store, CaseProcessor(segmenter, atlas), workers=workers, max_queued=max_queued)
    return create_app(store, runner, AppSettings(max_upload_bytes, token, preview_job))


def _preview_job(store: JobStore, preview: str | os.PathLike | None, max_upload_bytes: int) -> str:
    """The kept job of the preview case: the one made earlier for this source, else a new queued one."""
    source = str(Path(preview).resolve()) if preview else "synthetic"
    for job_id in store.kept():
        if store.status(job_id).get("preview_source") == source and store.status(job_id)["state"] == DONE:
            return job_id
        store.discard(job_id)
    if preview:
        return _queue_kept_case(store, find_case(preview), source, max_upload_bytes)
    from brats_plugin.dataset_conversion import write_synthetic_release
    with tempfile.TemporaryDirectory(dir=store.root, prefix=".preview-") as folder:
        written = write_synthetic_release(folder, DEFAULT_RELEASE, 1, shape=PREVIEW_SHAPE, seed=3,
                                          with_segmentation=False)
        return _queue_kept_case(store, find_case(written[0]), source, max_upload_bytes)


def _queue_kept_case(store: JobStore, case: Case, source: str, max_upload_bytes: int) -> str:
    """A queued job of a case on disk, exempt from expiry (the runner takes it up when it starts)."""
    uploads = [UploadedFile(path.name, path.read_bytes(), sequence) for sequence, path in case.sequences.items()]
    job_id = store.create(keep=True, preview_source=source)
    stored = store_upload(uploads, store.folder(job_id) / "inputs", case_id=case.case_id,
                          max_unpacked_bytes=4 * max_upload_bytes)
    store.update(job_id, case_id=stored.case_id, inputs={s: p.name for s, p in stored.sequences.items()})
    return job_id


def run_app(model: str, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
            max_upload_mb: float = 200, token: str | None = None, preview: str | None = None,
            data_folder: str | None = None, retention_hours: float = 24.0, device: str = "auto",
            atlas: str = MNI152, settings: str = "auto", say=print) -> None:
    """Load the model once and serve the app until interrupted; ``settings``: see
    :func:`~brats_plugin.inference.settings.prediction_settings`."""
    import uvicorn

    from brats_plugin.inference.segmenter import Segmenter

    check_host(host, token)
    load_atlas(atlas)  # a wrong --atlas is refused before the model loads
    folder = check_options(workers=workers, max_upload_mb=max_upload_mb, retention_hours=retention_hours,
                           data_folder=data_folder or default_data_folder(), preview=preview)
    resolved = resolve_device(device)
    options = prediction_settings(settings, resolved.type)
    segmenter = Segmenter(model, device=resolved, **options)  # after every cheap check: loading takes a while
    app = build_app(segmenter, folder, workers=workers, max_upload_mb=max_upload_mb, token=token,
                    preview=preview, retention_hours=retention_hours, atlas=atlas)
    mode = "fast (no mirroring, whole-brain tiles)" if options == FAST_SETTINGS else "nnU-Net's (mirroring, tiles)"
    say(f"brats app: model {segmenter.model.folder.name} on {segmenter.device}, {mode} prediction; jobs in {folder}; "
        f"open http://{host}:{port}/" + (f"?token={token}" if token else ""))
    uvicorn.run(app, host=host, port=port, log_level="warning")
