"""The ASGI app: a JSON API over the job store, the static page, and progress events.

It never touches the device: submissions go to the :class:`~.store.Store` and wake the
:class:`~.scheduler.Scheduler`; progress and previews come from its :class:`Live` view.
Every error is one line of JSON, ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from importlib import resources

from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jaxstyle.errors import UserError
from jaxstyle.io import image as imageio
from jaxstyle.serve import options as serve_options
from jaxstyle.serve.guard import Guard
from jaxstyle.serve.scheduler import Scheduler
from jaxstyle.serve.store import TERMINAL, Store
from jaxstyle.serve import slots

STATIC = resources.files("jaxstyle.serve") / "static"


class Rejected(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, " ".join(message.split())


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Rejected(413, f"the upload is over this server's limit of {limit} bytes")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise Rejected(413, f"the upload is over this server's limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_image(data: bytes, what: str, limits: serve_options.Limits) -> None:
    """Decode ``data`` as ``jaxstyle stylize`` would (type checked by content, not by name)."""
    if not data:
        raise Rejected(400, f"the {what} file is empty")
    fd, tmp = tempfile.mkstemp(prefix="jaxstyle-upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            with Image.open(tmp) as im:  # the header alone, to answer 413 rather than 400
                w, h = im.size
        except Exception:  # noqa: BLE001 - load_image below names the problem
            w = h = 0
        if w * h > limits.max_pixels:
            raise Rejected(413, f"the {what} image is {w}x{h}, over this server's limit of {limits.max_pixels} pixels")
        try:
            imageio.load_image(tmp, max_pixels=limits.max_pixels)
        except UserError as e:
            # The message names the temporary file; say which upload it was instead.
            reason = str(e).split(": ", 1)[-1]
            raise Rejected(400, f"the {what} upload: {reason}") from None
    finally:
        os.unlink(tmp)


def create_app(store: Store, scheduler: Scheduler, *, limits: serve_options.Limits | None = None,
               max_queue: int = 64, allowed_hosts=("127.0.0.1", "localhost", "[::1]")) -> Starlette:
    limits = limits or serve_options.Limits()

    async def submit(request: Request):
        body = await _read_body(request, limits.max_bytes)

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        form_request = Request(request.scope, replay)
        try:
            form = await form_request.form(max_files=limits.max_styles + 1, max_fields=64)
        except HTTPException as e:
            raise Rejected(400, f"bad form: {e.detail}") from None
        except Exception as e:  # noqa: BLE001 - a malformed multipart body
            raise Rejected(400, f"bad multipart form: {e}") from None
        try:
            content = form.getlist("content")
            styles = form.getlist("style")
            if len(content) != 1 or not hasattr(content[0], "read"):
                raise Rejected(400, "send exactly one file field 'content'")
            if not styles or not all(hasattr(s, "read") for s in styles):
                raise Rejected(400, "send one or more file fields 'style'")
            if len(styles) > limits.max_styles:
                raise Rejected(400, f"at most {limits.max_styles} style images")
            fields = {}
            for k, v in form.multi_items():
                if k in ("content", "style"):
                    continue
                if not isinstance(v, str):
                    raise Rejected(400, f"field {k!r} must be text, not a file")
                if k in fields:
                    raise Rejected(400, f"field {k!r} is given twice")
                fields[k] = v
            try:
                cfg, stored = serve_options.parse(fields, limits)
                slots.check_supported(cfg)
            except UserError as e:
                raise Rejected(400, str(e)) from None
            datas = [await content[0].read()] + [await s.read() for s in styles]
        finally:
            await form.close()
        names = ["content"] + [f"style #{i + 1}" for i in range(len(styles))]

        def store_inputs():
            for data, name in zip(datas, names):
                _check_image(data, name, limits)
            return [store.put_blob(d) for d in datas]

        hashes = await run_in_threadpool(store_inputs)
        job_id = store.add(stored, hashes[0], hashes[1:], cfg.run.steps, max_queue)
        if job_id is None:
            raise Rejected(429, f"the queue is full ({max_queue} jobs waiting or running); try again later")
        scheduler.wake()
        return JSONResponse({"id": job_id, "status": "queued"}, status_code=201)

    def _job(job_id: str) -> dict:
        job = store.get(job_id)
        if job is None:
            raise Rejected(404, "no such job")
        if job["status"] == "running":
            live = scheduler.live.get(job_id)
            if live:
                for k in ("step", "losses", "batch_size"):
                    if k in live:
                        job[k] = live[k]
        return job

    async def get_job(request: Request):
        return JSONResponse(_job(request.path_params["id"]))

    async def list_jobs(request: Request):
        return JSONResponse({"jobs": store.list()})

    async def result(request: Request):
        job = _job(request.path_params["id"])
        if job["status"] != "done":
            raise Rejected(409, f"the job is {job['status']}; the result exists once it is done")
        path = store.result_path(job["id"])
        if not path.is_file():
            raise Rejected(410, "the result file is missing from the server's folder")
        return FileResponse(path, media_type="image/png",
                            headers={"Content-Disposition": f'attachment; filename="jaxstyle-{job["id"][:8]}.png"'})

    async def preview(request: Request):
        job = _job(request.path_params["id"])
        if job["status"] == "done":
            return await result(request)
        png = scheduler.live.preview(job["id"])
        if png is None:
            raise Rejected(409, f"no preview yet (the job is {job['status']})")
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def cancel(request: Request):
        job_id = request.path_params["id"]
        status = store.cancel(job_id)
        if status is None:
            raise Rejected(404, "no such job")
        scheduler.cancel(job_id)
        return JSONResponse({"id": job_id, "status": status})

    async def events(request: Request):
        job_id = request.path_params["id"]
        _job(job_id)

        async def stream():
            seen = None
            while True:
                job = _job(job_id)
                live = scheduler.live.get(job_id) or {}
                mark = (job["status"], job["step"], live.get("version"))
                if mark != seen:
                    seen = mark
                    yield f"event: progress\ndata: {json.dumps(job)}\n\n"
                if job["status"] in TERMINAL:
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.25)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def health(request: Request):
        return JSONResponse({"ok": True, "devices": slots.devices(), "weights": scheduler.weights_label(),
                             "queue": store.pending_count(), "max_queue": max_queue,
                             "max_batch": scheduler.max_batch, "limits": limits.__dict__})

    async def index(request: Request):
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    async def rejected(request: Request, exc: Rejected):
        return _error(exc.status, exc.message)

    async def http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, exc.detail)

    async def crashed(request: Request, exc: Exception):
        return _error(500, f"internal error: {type(exc).__name__}")

    routes = [
        Route("/", index),
        Route("/api/health", health),
        Route("/api/jobs", submit, methods=["POST"]),
        Route("/api/jobs", list_jobs, methods=["GET"]),
        Route("/api/jobs/{id}", get_job, methods=["GET"]),
        Route("/api/jobs/{id}", cancel, methods=["DELETE"]),
        Route("/api/jobs/{id}/result", result),
        Route("/api/jobs/{id}/preview", preview),
        Route("/api/jobs/{id}/events", events),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={Rejected: rejected, HTTPException: http_error,
                                                      Exception: crashed})
    return Guard(app, allowed_hosts)


__all__ = ["create_app"]
