"""The explorer's HTTP app (Starlette): the JSON API under ``/api/`` and the page.

    GET  /api/runs[?task=NAME]            the finished runs, robust MNIST runs first
    GET  /api/runs/{id}                   one run: config, summary, curves, figures, inspector
    GET  /api/runs/{id}/figures/{name}    one of the run's figure PNGs
    POST /api/runs/{id}/inspect           one input, read step by step (docs/serve.md)

Every error is ``{"error": message}`` with a 4xx status: 404 for an id or a figure
the index does not hold (ids are opaque keys, never paths), 413 for a body or an
image over the limits, 422 for an input the task cannot read. Model work runs in
worker threads, at most ``compute_slots`` at once, each on one torch thread.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from rnnlab.core.errors import UserError
from rnnlab.serve.index import IndexedRun, RunIndex
from rnnlab.serve.inspect import (
    InspectorCache,
    NoInspectorError,
    TooLargeError,
    input_kind,
)

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 10 * 2**20  # an image upload; larger bodies are refused unread (413)
MAX_JSON_BYTES = 64 * 2**10  # a typed input
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
SECURITY_HEADERS = {
    # everything the page uses ships with the package: no other origin is needed
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                               "style-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
SUMMARY_LISTS = ("batch_losses",)  # long per-batch lists the page does not show

log = logging.getLogger("rnnlab.serve")


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class ApiResponse(JSONResponse):
    """JSON by orjson: numpy arrays written whole (an inspection holds tens of thousands
    of numbers; the standard encoder took longer than the model), NaN written as null."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def error(status: int, message: str) -> Response:
    return ApiResponse({"error": message}, status_code=status)


# -- request bodies ----------------------------------------------------------------------
async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared and (not declared.isdigit() or int(declared) > limit):
        raise ApiError(413, f"the request body is over {limit:,} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request body is over {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def uploaded_image(request: Request) -> bytes:
    """The image of a multipart upload (field ``file``) or of a raw ``image/*`` body."""
    body = await read_body(request, MAX_UPLOAD_BYTES)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("image/"):
        return body

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    if not content_type.startswith("multipart/form-data"):
        raise ApiError(422, "send the image as multipart/form-data in the field 'file'")
    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=8,
                                                          max_part_size=MAX_UPLOAD_BYTES)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(422, "the multipart body has no file in the field 'file'")
        data = await upload.read()
        await form.close()
        return data
    except ApiError:
        raise
    except Exception as err:  # python-multipart's errors on malformed bodies: many kinds
        detail = getattr(err, "detail", None) or str(err) or type(err).__name__
        raise ApiError(422, f"malformed multipart body ({str(detail)[:120]})") from None


async def json_input(request: Request) -> Any:
    body = await read_body(request, MAX_JSON_BYTES)
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise ApiError(422, f"the body is not valid JSON ({str(err)[:120]})") from None


# -- the app ----------------------------------------------------------------------------
class Explorer:
    """The app's state: the run index, the model cache and the compute limiter."""

    def __init__(self, roots: list[Path], cache_size: int, compute_slots: int):
        self.index = RunIndex(roots)
        self.cache = InspectorCache(cache_size)
        self.limiter = anyio.CapacityLimiter(compute_slots)

    def run(self, request: Request) -> IndexedRun:
        run = self.index.get(request.path_params["run_id"])
        if run is None:
            raise ApiError(404, "no such run")
        return run

    async def compute(self, fn, *args) -> Any:
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    async def list_runs(self, request: Request) -> Response:
        task = request.query_params.get("task") or None
        runs = await anyio.to_thread.run_sync(self.index.list, task)
        return ApiResponse({"runs": [{**r.describe(), "input_kind": input_kind(r.task)}
                                     for r in runs]})

    async def run_details(self, request: Request) -> Response:
        run = self.run(request)
        inspector, problem = None, None
        try:
            inspector = (await self.compute(self.cache.get, run)).describe()
        except UserError as err:
            problem = str(err)
        summary = {k: v for k, v in run.summary.items() if k not in SUMMARY_LISTS}
        summary["test"] = {k: v for k, v in (summary.get("test") or {}).items()
                           if k not in SUMMARY_LISTS}
        figures = [{"name": p.name, "url": f"/api/runs/{run.id}/figures/{p.name}"}
                   for p in run.figures()]
        return ApiResponse({"run": {**run.describe(), "input_kind": input_kind(run.task)},
                            "config": run.config, "summary": summary,
                            "metrics": run.record.metrics(), "figures": figures,
                            "inspector": inspector, "inspector_problem": problem})

    async def figure(self, request: Request) -> Response:
        run = self.run(request)
        name = request.path_params["name"]
        found = next((p for p in run.figures() if p.name == name), None)
        if found is None:
            raise ApiError(404, "no such figure")
        return FileResponse(found, media_type="image/png")

    async def inspect(self, request: Request) -> Response:
        run = self.run(request)
        inspector = self.cache.cached(run) or await self.compute(self.cache.get, run)
        payload = (await uploaded_image(request) if inspector.body == "multipart"
                   else await json_input(request))
        return ApiResponse(await self.compute(inspector.inspect, payload))


async def handle_api_error(request: Request, err: ApiError) -> Response:
    return error(err.status, err.message)


async def handle_user_error(request: Request, err: UserError) -> Response:
    status = 413 if isinstance(err, TooLargeError) else 422
    return error(status, str(err))


async def handle_http(request: Request, err: HTTPException) -> Response:
    messages = {404: "not found", 405: "method not allowed"}
    return error(err.status_code, str(err.detail or messages.get(err.status_code, "error")))


async def handle_unexpected(request: Request, err: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path)
    return error(500, "internal error; the server log has the details")


async def index_page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html")


def security_headers(app):
    """ASGI middleware adding ``SECURITY_HEADERS`` to every HTTP response."""

    async def wrapped(scope, receive, send):
        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_headers if scope["type"] == "http" else send)

    return wrapped


def create_app(roots: list[Path], *, cache_size: int = 8, compute_slots: int | None = None,
               allowed_hosts: tuple[str, ...] | None = LOCAL_HOSTS) -> Starlette:
    """The explorer over the runs under ``roots``. ``allowed_hosts``: the Host headers
    answered (None: any), so a page on another site cannot reach a local server through
    a DNS name it controls."""
    explorer = Explorer(roots, cache_size, compute_slots or os.cpu_count() or 1)
    routes = [
        Route("/", index_page),
        Route("/api/runs", explorer.list_runs),
        Route("/api/runs/{run_id}", explorer.run_details),
        Route("/api/runs/{run_id}/figures/{name}", explorer.figure),
        Route("/api/runs/{run_id}/inspect", explorer.inspect, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {ApiError: handle_api_error, UserError: handle_user_error,
                HTTPException: handle_http, NoInspectorError: handle_user_error,
                Exception: handle_unexpected}
    middleware = [Middleware(security_headers)]
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    app = Starlette(routes=routes, exception_handlers=handlers, middleware=middleware)
    app.state.explorer = explorer
    return app
