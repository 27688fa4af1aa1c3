"""A fast lane for ``POST /v1/classify``, the one endpoint that carries the intake load.

FastAPI serves a request through a dozen layers: its exception and exit-stack middleware,
the router and the included router, the route, the request wrapper, dependency solving,
body parsing, validation, the endpoint, response validation and serialisation, each with
its own closures around ``send`` and ``receive``. For this endpoint that was about 0.5 ms of
CPU per request in-process, more than the repeat query, on a service whose tail latency is
set by how busy its cores are.

:class:`ClassifyFastLane` sits inside the app's own middleware (keep-alive, metrics, body
size, CORS) and answers a well-formed request itself, with the same parts the route uses:
``PetitionIn`` to validate the body, :func:`triage.api.routes.classify_petition` to do the
work, ``ClassificationOut`` to serialise the answer, and the same error answers. Anything
else (another path or method, a body that is not JSON or does not validate, no model
loaded) goes on to FastAPI unchanged, with the body it has already read, so every error
message, status and the OpenAPI schema stay FastAPI's own. ``TRIAGE_FAST_LANE=false``
sends every request through FastAPI.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter, ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from triage.errors import TriageError

from .deps import ServiceState
from .metrics import BodyTooLargeError
from .responses import internal_error_response, too_large_response, triage_error_response
from .routes import classify_petition
from .schemas import ClassificationOut, PetitionIn

__all__ = ["CLASSIFY_PATH", "ClassifyFastLane"]

CLASSIFY_PATH = "/v1/classify"

#: The route's response model, serialised as FastAPI does it (validate, then dump JSON).
_OUT = TypeAdapter(ClassificationOut)


def _is_json(content_type: bytes) -> bool:
    # FastAPI reads any application/*+json as JSON; the fast lane takes the common spelling
    # and leaves the rest to FastAPI.
    return content_type.split(b";", 1)[0].strip().lower() == b"application/json"


class ClassifyFastLane:
    """Pure ASGI middleware: serve well-formed ``POST /v1/classify`` requests directly.

    ``route`` is the app's route object for the path: it is put in the request scope as the
    router would, so that metrics and logs name the route.
    """

    def __init__(self, app: ASGIApp, state: ServiceState, route: Any = None) -> None:
        self.app = app
        self.state = state
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        slot = self.state.slot
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != CLASSIFY_PATH
            or scope.get("root_path")
            or slot is None  # FastAPI's 503 says why
            or not _is_json(_header(scope, b"content-type"))
        ):
            await self.app(scope, receive, send)
            return
        try:
            body = await _read_body(receive)
        except BodyTooLargeError as exc:  # a chunked upload over the limit
            await too_large_response(exc.max_bytes)(scope, receive, send)
            return
        petition = _petition(body)
        if petition is None:  # FastAPI words the 422
            await self.app(scope, _replay(body, receive), send)
            return
        if self.route is not None:
            scope["route"] = self.route
        response: Response
        try:
            result = await classify_petition(self.state, slot, petition)
            content = _OUT.dump_json(_OUT.validate_python(result), by_alias=True)
            response = Response(content, media_type="application/json")
        except TriageError as exc:
            response = triage_error_response(exc)
        except Exception as exc:
            response = internal_error_response(exc)
        await response(scope, receive, send)


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return b""


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _petition(body: bytes) -> PetitionIn | None:
    """The body as a petition, validated as FastAPI validates it (``json.loads``, then the
    model in Python mode), or None when FastAPI should answer instead."""
    try:
        data = json.loads(body)
    except ValueError:  # not JSON, or not UTF-8
        return None
    if not isinstance(data, dict):
        return None
    try:
        return PetitionIn.model_validate(data)
    except ValidationError:
        return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the app behind: the body already read, then the client's messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
