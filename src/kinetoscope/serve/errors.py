"""The service's own errors (one family with :mod:`kinetoscope.errors`) and the OpenAI error body."""

from __future__ import annotations

from typing import Any

from kinetoscope.errors import KinetoscopeError


class NotFoundError(KinetoscopeError):
    status_code = 404
    code = "not_found"


class ConflictError(KinetoscopeError):
    """The video exists but is not in a state that allows this (still running, not finished)."""

    status_code = 409
    code = "video_not_ready"


class AuthenticationError(KinetoscopeError):
    status_code = 401
    code = "invalid_api_key"


class RequestTooLargeError(KinetoscopeError):
    status_code = 413
    code = "request_too_large"


class UnsupportedMediaTypeError(KinetoscopeError):
    status_code = 415
    code = "unsupported_media_type"


class QueueFullError(KinetoscopeError):
    status_code = 429
    code = "queue_full"


def error_type(status: int) -> str:
    """OpenAI's ``error.type`` for an HTTP status."""
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def error_body(error: KinetoscopeError) -> dict[str, Any]:
    """The OpenAI ``error`` object of a kinetoscope error (also stored on a failed job)."""
    return {"message": str(error), "type": error_type(error.status_code), "param": error.param, "code": error.code}
