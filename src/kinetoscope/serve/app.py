"""The HTTP side: OpenAI's ``/v1/videos`` routes, kinetoscope's extras, OpenAI-style errors and the web page.

``create_app(pipeline, settings)`` builds the app; its lifespan starts the worker (after
recovering jobs a previous run left behind) and stops it, putting a running job back in the
queue. Routes only parse and format: :class:`~kinetoscope.serve.service.VideoService` decides.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from kinetoscope import __version__
from kinetoscope.errors import InvalidInputError, KinetoscopeError
from kinetoscope.serve.errors import (
    AuthenticationError,
    RequestTooLargeError,
    UnsupportedMediaTypeError,
    error_body,
    error_type,
)
from kinetoscope.serve.schemas import (
    ConnectRequest,
    CreateRequest,
    EditRequest,
    ErrorBody,
    ExtendRequest,
    RemixRequest,
    Video,
    VideoDeleted,
    VideoList,
)
from kinetoscope.serve.service import Settings, Variant, VideoService
from kinetoscope.serve.store import Job

log = logging.getLogger("kinetoscope.serve")
STATIC = Path(__file__).parent / "static"
R = TypeVar("R", bound=BaseModel)

#: What the extra fields and endpoints do (served at GET /v1/videos/capabilities and in docs/service.md).
EXTRAS = {
    "fields": {
        "seed": "integer; same seed and inputs, same video (every video reports the seed it used)",
        "steps": "integer 1-500; sampling steps (fewer is faster and rougher)",
        "guidance": "number 0-50; classifier-free guidance scale",
        "negative_prompt": "string; what to steer away from",
        "loop": "boolean, POST /v1/videos; make the clip loop seamlessly",
        "image_frame": "integer, POST /v1/videos with input_reference; where the image goes (0 first, -1 last)",
        "strength": "number in (0, 1], remix and edits; how far to depart from the source",
        "direction": "forward or backward, extensions; add the new seconds after the end or before the start",
    },
    "endpoints": {
        "POST /v1/videos/connections": "prompt, video, video_b (each {id} or an upload), seconds: "
        "a video that leads from the end of video to the start of video_b",
        "GET /v1/videos/capabilities": "sizes and durations the loaded model can make",
    },
}


def create_app(pipeline: Any, settings: Settings) -> FastAPI:
    """The service for ``pipeline`` (a :class:`kinetoscope.pipeline.Pipeline` or anything with its interface)."""
    service = VideoService(pipeline, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.worker.start()
        yield
        await run_in_threadpool(service.worker.stop)
        service.store.close()

    app = FastAPI(
        title="kinetoscope",
        version=__version__,
        summary="OpenAI-compatible video generation: /v1/videos and a web page at /.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    _add_error_handlers(app)
    app.include_router(_api(service, settings), prefix="/v1")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app


def _api(service: VideoService, settings: Settings) -> APIRouter:
    api = APIRouter(dependencies=[Depends(_bearer(settings.api_key))], responses={"4XX": {"model": ErrorBody}})
    max_part = settings.max_upload_bytes

    def video(job: Job) -> Video:
        return Video(
            id=job.id, status=job.status, progress=job.progress, created_at=job.created_at,
            completed_at=job.completed_at, model=job.model, seconds=job.seconds, size=job.size, prompt=job.prompt,
            remixed_from_video_id=job.remixed_from_video_id, error=job.error, seed=job.params.get("seed"),
        )  # fmt: skip

    @api.get("/videos/capabilities")
    def capabilities() -> dict[str, Any]:
        """Sizes and durations the loaded model can make, and the extra fields and endpoints."""
        return {**service.capabilities.to_dict(), "extras": EXTRAS}

    @api.post("/videos")
    async def create_video(request: Request) -> Video:
        """Text to video; image to video with ``input_reference`` (multipart upload or a data: URL)."""
        body = await read_request(request, CreateRequest, max_part)
        return video(await run_in_threadpool(service.create, body))

    @api.get("/videos")
    def list_videos(
        after: str | None = None,
        limit: int = Query(20, ge=1, le=100),
        order: Literal["asc", "desc"] = "desc",
    ) -> VideoList:
        jobs, has_more = service.list(after=after, limit=limit, order=order)
        data = [video(j) for j in jobs]
        return VideoList(
            data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None, has_more=has_more
        )

    @api.post("/videos/extensions")
    async def extend_video(request: Request) -> Video:
        """``seconds`` more of a finished video (``video={"id": ...}``) or of an uploaded one."""
        body = await read_request(request, ExtendRequest, max_part)
        return video(await run_in_threadpool(service.extend, body))

    @api.post("/videos/edits")
    async def edit_video(request: Request) -> Video:
        """A finished or uploaded video edited with a prompt."""
        body = await read_request(request, EditRequest, max_part)
        return video(await run_in_threadpool(service.edit, body))

    @api.post("/videos/connections")
    async def connect_videos(request: Request) -> Video:
        """Extra: ``seconds`` of video leading from ``video`` to ``video_b``."""
        body = await read_request(request, ConnectRequest, max_part)
        return video(await run_in_threadpool(service.connect, body))

    @api.get("/videos/{video_id}")
    def retrieve_video(video_id: str, response: Response) -> Video:
        job = service.get(video_id)
        if job.status in ("queued", "in_progress"):
            response.headers["openai-poll-after-ms"] = str(settings.poll_after_ms)
        return video(job)

    @api.delete("/videos/{video_id}")
    def delete_video(video_id: str) -> VideoDeleted:
        """Delete a video: a queued one never runs, a running one stops at its next sampling step."""
        service.delete(video_id)
        return VideoDeleted(id=video_id)

    @api.get("/videos/{video_id}/content", response_class=FileResponse)
    def download_content(video_id: str, variant: Variant = "video") -> FileResponse:
        """The mp4 (``video``), a WebP ``thumbnail`` or a JPEG ``spritesheet`` of a completed video."""
        path, media_type = service.content(video_id, variant)
        return FileResponse(path, media_type=media_type, filename=f"{video_id}{path.suffix}")

    @api.post("/videos/{video_id}/remix")
    async def remix_video(video_id: str, request: Request) -> Video:
        """A completed video redone with a new prompt."""
        body = await read_request(request, RemixRequest, max_part)
        return video(await run_in_threadpool(service.remix, video_id, body))

    return api


# ---------------------------------------------------------------- request bodies
_NESTED_KEY = re.compile(r"(\w+)\[(\w+)\]")


async def read_request(request: Request, model: type[R], max_part_bytes: int) -> R:
    """Validate a JSON or form body against ``model``; any problem is one 400 naming the parameter."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.form(max_files=8, max_fields=64, max_part_size=max_part_bytes)
        fields = _unflatten(form)
    else:
        raw = await request.body()
        if content_type == "application/json" or (not content_type and raw.strip()):
            fields = _json_object(raw)
        elif not raw:
            fields = {}
        else:
            raise UnsupportedMediaTypeError(
                f"Content-Type {content_type!r} is not accepted; send application/json or multipart/form-data."
            )
    try:
        return model.model_validate(fields)
    except ValidationError as e:
        raise _invalid(e, model) from None
    except RecursionError:
        raise InvalidInputError("The request body nests too deeply; send a flat JSON object of parameters.") from None


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        fields = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidInputError(f"The request body is not valid JSON ({e}).") from None
    except RecursionError:
        raise InvalidInputError("The request body nests too deeply; send a flat JSON object of parameters.") from None
    if not isinstance(fields, dict):
        raise InvalidInputError(f"The request body must be a JSON object, got {type(fields).__name__}.")
    return fields


def _unflatten(form: FormData) -> dict[str, Any]:
    """Form keys as the SDK writes nested objects (``video[id]=...``) back into ``{"video": {"id": ...}}``."""
    fields: dict[str, Any] = {}
    for key, value in form.multi_items():
        nested = _NESTED_KEY.fullmatch(key)
        name, inner = (nested[1], nested[2]) if nested else (key, None)
        target = fields.setdefault(name, {}) if inner else fields
        slot = inner or name
        if not isinstance(target, dict) or slot in target:
            raise InvalidInputError(f"Parameter {key!r} was given more than once or in two forms.", param=name)
        target[slot] = value
    return fields


def _invalid(error: ValidationError, model: type[BaseModel]) -> InvalidInputError:
    first = error.errors()[0]
    param = str(first["loc"][0]) if first["loc"] else None
    if first["type"] == "missing":
        return InvalidInputError(f"Missing required parameter: {param!r}.", param=param)
    if first["type"] == "extra_forbidden":
        return InvalidInputError(f"Unrecognized request argument supplied: {param!r}.", param=param)
    field = model.model_fields.get(param or "")
    expected = f"expected {field.description}" if field is not None and field.description else first["msg"]
    return InvalidInputError(f"Invalid value for {param!r}: {expected}.", param=param)


# ---------------------------------------------------------------- auth, size limit, errors
def _bearer(api_key: str | None):
    def check(authorization: str | None = Header(None, include_in_schema=False)) -> None:
        if api_key is None:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise AuthenticationError("Incorrect or missing API key; send it as 'Authorization: Bearer <key>'.")

    return check


class BodyLimit:
    """Refuse a request body over ``max_bytes`` with 413: at once by Content-Length, else while it streams in."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            response = _error_response(self._too_large())
            return await response(scope, receive, send)
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise self._too_large()
            return message

        await self.app(scope, limited_receive, send)

    def _too_large(self) -> RequestTooLargeError:
        return RequestTooLargeError(f"The request is larger than the limit of {self.max_bytes} bytes.")


def _error_response(error: KinetoscopeError) -> JSONResponse:
    return JSONResponse({"error": error_body(error)}, status_code=error.status_code)


#: ``error.code`` of the errors routing raises before a route runs (an unknown path, a wrong method).
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large", 415: "unsupported_media_type"}


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(KinetoscopeError)
    async def kinetoscope_error(request: Request, error: KinetoscopeError) -> JSONResponse:
        return _error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid_query(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        param = str(first["loc"][-1])
        return _error_response(InvalidInputError(f"Invalid value for {param!r}: {first['msg']}.", param=param))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        message = f"{error.detail} ({request.method} {request.url.path})."
        code = _HTTP_CODES.get(error.status_code, "invalid_request")
        body = {"message": message, "type": error_type(error.status_code), "param": None, "code": code}
        return JSONResponse({"error": body}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        body = {
            "message": "The server had an error processing the request.",
            "type": "server_error",
            "param": None,
            "code": "server_error",
        }
        return JSONResponse({"error": body}, status_code=500)
