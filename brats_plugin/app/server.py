"""The web app's HTTP side (Starlette): pages, the JSON API, uploads, downloads, access control.

Routes (the JSON API is what the page itself uses; scripts can too):

- ``GET /``: the home page: the preview case in the viewer, and the upload form.
- ``POST /api/jobs``: multipart upload (``files``: the four sequences or one zip of a case, or one
  zip of a scanner study's DICOM files; optional ``sequence`` fields, one per file, to override
  recognition by name; for a study optional ``series_T1``, ``series_T1Gd``, ``series_T2``,
  ``series_FLAIR``: a SeriesInstanceUID or SeriesNumber each; optional ``case_id``).
  202 ``{"id", "status_url", "page_url"}``; 400 ``{"error"}`` for a bad case (the checks of
  ``brats predict``), and for a study whose series cannot be chosen also ``"series"`` (every series:
  ``uid``, ``number``, ``description``, ``images``, ``taken_as``, ``why``) and ``"choices"``; 413 too
  large; 503 queue full.
- ``GET /api/jobs/{id}``: ``{"state": queued|running|done|failed, "stage", "progress", "error"?,
  "volumes"?, "space"? (where the volumes were measured: "native T1Gd" for a study), "notes"?
  (warnings of the preprocessing), "downloads"?}``.
- ``GET /api/jobs/{id}/files/{name}``: a result (``mask.nii.gz``, ``dicom.zip``, ``viewer.html``,
  ``montage.png``, ``viewer-data``; for a study also ``native.nii.gz``).
- ``POST /api/recognise``: ``{"names": [...]}`` -> ``{"sequences": [...], "choices": [...]}``
  (recognition by name, and the sequences to choose from).
- ``GET /jobs/{id}``: the page of one job (progress, then the viewer and downloads).

With a token set, every route asks for it: ``Authorization: Bearer TOKEN``, or the ``brats_token``
cookie that ``GET /?token=TOKEN`` sets for browsers. Without one the server listens on loopback only
and answers only requests addressed to a loopback name (no DNS rebinding from a web page).
"""
from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brats_plugin.app.jobs import QUEUED, RECEIVING, JobRunner, JobStore, QueueFull
from brats_plugin.app.results import RESULT_FILES, download_name
from brats_plugin.app.uploads import (
    UploadedFile,
    base_name,
    is_study_upload,
    series_table,
    store_study,
    store_upload,
)
from brats_plugin.cases import identify_file
from brats_plugin.errors import BratsInputError
from brats_plugin.export.viewer import SERVED_ASSETS, VIEWER_ASSETS
from brats_plugin.preprocess.identify import SeriesChoiceError
from brats_plugin.releases import SEQUENCES

TOKEN_COOKIE = "brats_token"
#: Host names a server without a token answers to (it listens on loopback only).
LOOPBACK_NAMES = ["127.0.0.1", "localhost"]
#: Uploads checked at once; more wait (each holds up to the upload limit in memory).
UPLOADS_AT_ONCE = 4
STATIC = resources.files("brats_plugin.app") / "static"


@dataclass(frozen=True)
class AppSettings:
    """What the server needs besides its jobs."""

    max_upload_bytes: int
    token: str | None = None
    preview_job: str | None = None  # the job whose result the home page shows


def create_app(store: JobStore, runner: JobRunner, settings: AppSettings) -> Starlette:
    """The ASGI application over a job store and runner (started and stopped with the app).

    The handlers below read what they share from ``app.state``: ``store``, ``runner``, ``settings`` and
    ``uploads_at_once`` (a semaphore bounding the memory that uploads being checked hold).
    """
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        runner.start()
        try:
            yield
        finally:
            runner.stop()

    app = Starlette(routes=ROUTES, lifespan=lifespan, exception_handlers={NoSuchJob: _no_such_job})
    app.state.store, app.state.runner, app.state.settings = store, runner, settings
    app.state.uploads_at_once = asyncio.Semaphore(UPLOADS_AT_ONCE)
    app.add_middleware(UploadLimit, max_bytes=settings.max_upload_bytes)
    if settings.token:
        app.add_middleware(TokenRequired, token=settings.token)
    else:  # only this machine may call: refuse other Host names (DNS rebinding from a web page)
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_NAMES)
    return app


# ---- handlers ---------------------------------------------------------------------------------------

class NoSuchJob(Exception):
    """The job a request names does not exist (never did, or expired): answered 404."""


def _job(request: Request) -> tuple[Path, dict]:
    """The folder and status of the job the request's path names; :class:`NoSuchJob` if there is none."""
    store: JobStore = request.app.state.store
    try:
        job_id = request.path_params["job_id"]
        return store.folder(job_id), store.status(job_id)
    except (KeyError, FileNotFoundError):  # unknown, or deleted as we looked
        raise NoSuchJob from None


async def _no_such_job(request: Request, error: Exception) -> Response:
    message = "no such job (it may have expired)"
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=404)
    return PlainTextResponse(message, status_code=404)


async def home(request: Request) -> Response:
    token = request.app.state.settings.token
    given = request.query_params.get("token")
    if token and given and secrets.compare_digest(given.encode(), token.encode()):
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="strict")
        return response
    return _page("index.html")


async def job_page(request: Request) -> Response:
    _job(request)
    return _page("job.html")


async def submit(request: Request) -> Response:
    store: JobStore = request.app.state.store
    settings: AppSettings = request.app.state.settings
    async with request.app.state.uploads_at_once:
        async with request.form(max_files=8, max_fields=16) as form:
            files = [f for f in form.getlist("files") if hasattr(f, "read")]
            uploads = [UploadedFile(str(f.filename or "unnamed"), await f.read()) for f in files]
            chosen = [str(s) or None for s in form.getlist("sequence")]
            case_id = str(form.get("case_id") or "") or None
            series_choices = {sequence: str(form.get(f"series_{sequence}") or "") for sequence in SEQUENCES}
        if chosen and len(chosen) != len(uploads):
            return _error(f"{len(chosen)} sequence choices for {len(uploads)} files")
        uploads = [UploadedFile(u.name, u.data, s) for u, s in zip(uploads, chosen or [None] * len(uploads))]
        job_id = store.create(state=RECEIVING)
        try:
            if is_study_upload(uploads):
                study = await run_in_threadpool(store_study, uploads[0], store.folder(job_id) / "inputs",
                                                choices=series_choices, case_id=case_id,
                                                max_unpacked_bytes=4 * settings.max_upload_bytes)
                store.update(job_id, state=QUEUED, stage=QUEUED, case_id=study.case_id, study=study.path.name,
                             study_name=uploads[0].name, series=study.series)
            else:
                case = await run_in_threadpool(store_upload, uploads, store.folder(job_id) / "inputs",
                                               case_id=case_id, max_unpacked_bytes=4 * settings.max_upload_bytes)
                store.update(job_id, state=QUEUED, stage=QUEUED, case_id=case.case_id,
                             inputs={s: p.name for s, p in case.sequences.items()})
            request.app.state.runner.submit(job_id)
        except SeriesChoiceError as error:
            store.discard(job_id)
            return JSONResponse({"error": f"cannot choose the four series ({error.problems}): choose them in the "
                                          "table", "series": series_table(error.decisions),
                                 "choices": list(SEQUENCES)}, status_code=400)
        except BratsInputError as error:
            store.discard(job_id)
            return _error(str(error))
        except QueueFull as error:
            store.discard(job_id)
            return JSONResponse({"error": str(error)}, status_code=503)
        except BaseException:
            store.discard(job_id)
            raise
    return JSONResponse({"id": job_id, "status_url": f"/api/jobs/{job_id}", "page_url": f"/jobs/{job_id}"},
                        status_code=202)


async def status(request: Request) -> Response:
    _, current = _job(request)
    public = {k: current[k] for k in ("id", "state", "stage", "progress", "case_id", "error", "volumes",
                                      "release", "space", "notes") if k in current}
    if current["state"] == "done":
        folder = request.app.state.store.folder(current["id"]) / "results"
        public["downloads"] = {name: f"/api/jobs/{current['id']}/files/{name}" for name, (_, file_name)
                               in RESULT_FILES.items() if (folder / file_name).exists()}
    public["waiting"] = request.app.state.runner.waiting
    return JSONResponse(public)


async def result(request: Request) -> Response:
    folder, current = _job(request)
    name = request.path_params["name"]
    kept = folder / "results" / RESULT_FILES[name][1] if name in RESULT_FILES else None
    if kept is None or current["state"] != "done" or not kept.is_file():
        return JSONResponse({"error": f"no result {name!r} for this job"}, status_code=404)
    media_type, file_name = RESULT_FILES[name]
    return FileResponse(folder / "results" / file_name, media_type=media_type,
                        filename=download_name(current.get("case_id", "case"), name))


async def viewer_asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in SERVED_ASSETS:
        return PlainTextResponse("not found", status_code=404)
    return FileResponse(VIEWER_ASSETS / name)


async def preview(request: Request) -> Response:
    return JSONResponse({"id": request.app.state.settings.preview_job})


async def recognise(request: Request) -> Response:
    try:
        names = (await request.json())["names"]
        names = [str(n) for n in names] if isinstance(names, list) else None
    except (ValueError, KeyError, TypeError):
        names = None
    if names is None:
        return _error('expected JSON {"names": [file names]}')
    return JSONResponse({"sequences": [_recognised(n) for n in names], "choices": list(SEQUENCES)})


ROUTES = [
    Route("/", home),
    Route("/jobs/{job_id}", job_page),
    Route("/api/jobs", submit, methods=["POST"]),
    Route("/api/jobs/{job_id}", status),
    Route("/api/jobs/{job_id}/files/{name}", result),
    Route("/api/preview", preview),
    Route("/api/recognise", recognise, methods=["POST"]),
    Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    Route("/viewer/{name}", viewer_asset),
]


def _page(name: str) -> Response:
    return Response((STATIC / name).read_text(), media_type="text/html")


def _error(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)


def _recognised(name: str) -> str | None:
    try:
        return identify_file(base_name(name))
    except BratsInputError:
        return None


class UploadLimit:
    """Answer 413 to a request body larger than ``max_bytes`` (declared or actually sent)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _TooLarge
            return message

        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse({"error": f"upload larger than {self.max_bytes / 2**20:.0f} MB"}, status_code=413)
        await response({"type": "http"}, _nothing, send)


class _TooLarge(Exception):
    pass


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


class TokenRequired:
    """Refuse (401) every request without the token (bearer header, cookie, or ``?token=`` on ``/``)."""

    def __init__(self, app: ASGIApp, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._allowed(Request(scope)):
            response = JSONResponse({"error": "a valid token is required"}, status_code=401)
            return await response(scope, receive, send)
        await self.app(scope, receive, send)

    def _allowed(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        candidates = [header[7:] if header.lower().startswith("bearer ") else "",
                      request.cookies.get(TOKEN_COOKIE, "")]
        if request.url.path == "/":
            candidates.append(request.query_params.get("token", ""))
        return any(c and secrets.compare_digest(c.encode(), self.token.encode()) for c in candidates)
