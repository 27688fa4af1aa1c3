"""Error answers shared by the app's exception handlers, its middleware and the classify
fast lane."""

from __future__ import annotations

import logging
from typing import Any

from fastapi.responses import JSONResponse

from triage.errors import TriageError

__all__ = [
    "error_response",
    "internal_error_response",
    "too_large_response",
    "triage_error_response",
]

log = logging.getLogger("triage.api")


def error_response(status: int, error: str, detail: str, **extra: Any) -> JSONResponse:
    """Every error answer: ``{"error": type, "detail": message, ...}``."""
    return JSONResponse({"error": error, "detail": detail, **extra}, status_code=status)


def triage_error_response(exc: TriageError) -> JSONResponse:
    """A domain error as its own status (4xx for bad input, 503 for no model, ...)."""
    if exc.status_code >= 500:  # a known server-side condition, e.g. no model loaded
        log.warning("%s: %s", type(exc).__name__, exc)
    return error_response(exc.status_code, type(exc).__name__, str(exc))


def internal_error_response(exc: BaseException) -> JSONResponse:
    """500 for a bug: the traceback goes to the log; the request (petition text) never does."""
    log.error("unhandled %s", type(exc).__name__, exc_info=exc)
    return error_response(500, "InternalError", "internal error; the server log has the details")


def too_large_response(max_bytes: int) -> JSONResponse:
    """413 for a request body over ``max_bytes``, whoever notices it (the size limit, the
    body parser, the fast lane)."""
    detail = f"request body is over the limit of {max_bytes} bytes (TRIAGE_MAX_REQUEST_BYTES)"
    return error_response(413, "RequestTooLarge", detail)
