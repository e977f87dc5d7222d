"""``omgclip serve``: a web page and a JSON API around ``predict`` and the live model.

FastAPI + uvicorn, with one plain HTML/JS page (``apps/static/index.html``: no build step,
no external scripts, fonts or analytics). Routes:

* ``GET /`` the page; ``GET /healthz`` ``{"status": "ok", ...}``.
* ``POST /api/predict`` (multipart field ``file``) -> ``{"rows": [...]}``, the columns of
  ``predict --out x.json``. Waits for its turn in the queue.
* ``POST /api/jobs`` (multipart ``file``, or form field ``url``) -> ``{"id", ...}`` at once;
  ``GET /api/jobs/{id}`` its state, progress, rows and result files; ``GET
  /api/jobs/{id}/{rows.csv|rows.json|annotated.mp4|timeline.png}``. What the page uses.
* ``POST /api/live/frame?session=S`` (a JPEG body: one webcam frame) -> faces and labels
  from the rolling-window model of ``omgclip live``.

Limits: uploads over ``max_upload_mb`` get 413 (checked while the body arrives, before it is
stored); a file that is not a readable video or image gets 400; a full queue gets 503.
The server binds ``127.0.0.1`` unless told otherwise.
"""

# no `from __future__ import annotations`: FastAPI reads the route annotations at run time

import logging
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from omgclip.errors import OmgclipError

log = logging.getLogger(__name__)

LIMITED_PATHS = ("/api/predict", "/api/jobs", "/api/live/frame")
MAX_FRAME_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ServeConfig:
    """What ``omgclip serve`` does (the CLI's options, one to one)."""

    host: str = "127.0.0.1"
    port: int = 7860
    checkpoint: str | None = None
    max_upload_mb: float = 500.0
    queue_size: int = 4
    keep_jobs: int = 8
    detect_every: int = 5
    threads: int = 1            #: torch threads (1: steady on a shared CPU, see live.run_live)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise OmgclipError(f"--port must be 0..65535, got {self.port}")
        if not self.max_upload_mb > 0:
            raise OmgclipError(f"--max-upload-mb must be more than 0, got {self.max_upload_mb}")
        if self.queue_size < 1 or self.keep_jobs < 1 or self.threads < 1:
            raise OmgclipError("--queue-size, --keep-jobs and --threads must be at least 1")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class _TooLarge(Exception):
    pass


class Refused(OmgclipError):
    """A request the server turns down: ``status`` is the HTTP code."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class BodyLimit:
    """ASGI middleware: refuse a request body over ``limit`` bytes with 413, from its
    Content-Length or while it streams in (chunked uploads), before it is stored."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in LIMITED_PATHS:
            return await self.app(scope, receive, send)
        limit = MAX_FRAME_BYTES if scope["path"] == "/api/live/frame" else self.limit
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _drain(receive)
            return await _send_413(send, limit)
        seen, started = 0, False

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        async def watch(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watch)
        except _TooLarge:
            if not started:
                await _drain(receive)
                await _send_413(send, limit)


async def _drain(receive, most: int = 64 * 1024 * 1024) -> None:
    """Read (and drop) what the client still sends before answering, so that it sees the
    answer instead of a reset connection (past ``most`` bytes it may see the reset)."""
    seen = 0
    while seen <= most:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return
        seen += len(message.get("body", b""))


async def _send_413(send, limit: int) -> None:
    import json

    body = json.dumps({"detail": f"upload too large: the limit is {limit / 1024 / 1024:g} MB "
                                 f"(omgclip serve --max-upload-mb)"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def create_app(cfg: ServeConfig, service=None):
    """The FastAPI app (``service``: a :class:`PredictService`, made from ``cfg`` if None)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    from omgclip.apps.serve_jobs import PredictService

    service = service or PredictService(cfg.checkpoint, cfg.queue_size, cfg.keep_jobs,
                                        cfg.detect_every)

    @asynccontextmanager
    async def lifespan(app):
        yield
        service.close()

    app = FastAPI(title="omgclip", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json",
                  lifespan=lifespan)
    app.state.service = service
    _routes(app, service, cfg)
    app.add_middleware(BodyLimit, limit=cfg.max_upload_bytes)
    return app


def _error(status: int, message: str, **headers):
    from fastapi.responses import JSONResponse

    return JSONResponse({"detail": message}, status_code=status, headers=headers or None)


def _routes(app, service, cfg: ServeConfig) -> None:
    from fastapi.responses import HTMLResponse

    page = resources.files("omgclip.apps").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    def index():
        return HTMLResponse(page)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "model": service.model.model_name,
                "labels": list(service.model.labels), "max_upload_mb": cfg.max_upload_mb,
                "queue": service.waiting(), "queue_size": service.queue_size}

    @app.exception_handler(Refused)
    async def refused(request, exc: Refused):
        return _error(exc.status, str(exc), **({"Retry-After": "5"} if exc.status == 503 else {}))

    _job_routes(app, service)
    _live_routes(app, service)


def _job_routes(app, service) -> None:
    from fastapi import Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import FileResponse

    from omgclip.apps.serve_jobs import RESULT_FILES

    @app.post("/api/predict")
    async def api_predict(request: Request):
        job = await _accept(request, service, pictures=False)
        await run_in_threadpool(job.done.wait)
        if job.state != "done":
            return _error(400, job.message or "prediction failed")
        return {"rows": job.rows}

    @app.post("/api/jobs")
    async def api_jobs(request: Request):
        return (await _accept(request, service, pictures=True)).status()

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str):
        job = service.jobs.get(job_id)
        if job is None:
            return _error(404, f"no job {job_id} (finished jobs are kept for a while only)")
        status = job.status()
        if job.state == "done":
            status["rows"] = job.rows
        return status

    @app.get("/api/jobs/{job_id}/{filename}")
    def job_file(job_id: str, filename: str):
        job = service.jobs.get(job_id)
        if job is None or filename not in RESULT_FILES.values() or filename not in job.files.values():
            return _error(404, "no such result")
        return FileResponse(job.folder / filename, filename=f"{Path(job.name).stem}_{filename}")


def _live_routes(app, service) -> None:
    from fastapi import Request
    from fastapi.concurrency import run_in_threadpool

    from omgclip.apps.serve_jobs import Busy

    @app.post("/api/live/frame")
    async def live_frame(request: Request, session: str = "default"):
        from omgclip.faces.video_io import decode_image_bytes

        image = decode_image_bytes(await request.body())
        if image is None:
            return _error(400, "the body is not a JPEG or PNG picture")
        try:
            return await run_in_threadpool(service.sessions.frame, session[:64], image)
        except Busy as exc:
            raise Refused(503, str(exc)) from None


async def _accept(request, service, pictures: bool):
    """Store the upload (or take the URL: page jobs only), check it, queue the job.
    Raises :class:`Refused` (400 no file / not a video, 503 queue full)."""
    from fastapi.concurrency import run_in_threadpool

    form = await request.form(max_files=1, max_fields=4)
    try:
        upload, url = form.get("file"), str(form.get("url") or "").strip()
        if upload is not None and getattr(upload, "filename", None):
            path = service.new_upload_path(upload.filename)
            await run_in_threadpool(_store, upload.file, path)
            name = Path(upload.filename).name
        elif url and pictures:
            from omgclip.dataset.sources import is_url

            if not is_url(url):
                raise Refused(400, f"{url}: not an http(s) URL")
            return _submit(service, url=url, name=url, pictures=True)
        else:
            raise Refused(400, "no file: send the video as the multipart field 'file'")
    finally:
        await form.close()
    problem = await run_in_threadpool(_check_video, path, name)
    if problem:
        path.unlink(missing_ok=True)
        raise Refused(400, problem)
    return _submit(service, upload=path, name=name, pictures=pictures)


def _submit(service, **kwargs):
    from omgclip.apps.serve_jobs import Busy

    try:
        return service.submit(**kwargs)
    except Busy as exc:
        raise Refused(503, str(exc)) from None


def _store(src, path: Path) -> None:
    with open(path, "wb") as fh:
        shutil.copyfileobj(src, fh, 1024 * 1024)


def _check_video(path: Path, name: str) -> str:
    """'' for a readable video or picture, else the one-line reason."""
    from omgclip.faces.video_io import probe

    try:
        probe(path)
    except OmgclipError as exc:
        return f"{name}: not a video or picture omgclip can read ({str(exc).split(': ', 1)[-1]})"
    return ""


def serve(cfg: ServeConfig) -> None:
    """Run the server until Ctrl-C."""
    import torch
    import uvicorn

    torch.set_num_threads(cfg.threads)
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: reachable from other machines (no authentication)", cfg.host)
    app = create_app(cfg)
    print(f"omgclip serve: http://{cfg.host}:{cfg.port}/  (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", server_header=False)
