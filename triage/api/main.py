"""The FastAPI application: :func:`create_app` and its lifespan.

Run it with ``triage serve`` / ``python serve.py``, or
``uvicorn --factory triage.api.main:create_app``. Settings come from the environment
(``TRIAGE_*``, see :mod:`triage.settings`) unless ``create_app`` is given a ``Settings``.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from triage import __version__
from triage.errors import ModelError, TriageError
from triage.pipeline import index_text
from triage.settings import Settings, get_settings

from .deps import (
    Batcher,
    IndexFollower,
    InlineBatcher,
    ModelSlot,
    Pipeline,
    PipelineFactory,
    ServiceState,
)
from .fastlane import CLASSIFY_PATH, ClassifyFastLane
from .keepalive import KeepAliveLimitMiddleware
from .metrics import (
    BodySizeLimitMiddleware,
    BodyTooLargeError,
    Metrics,
    MetricsMiddleware,
)
from .responses import (
    error_response,
    internal_error_response,
    too_large_response,
    triage_error_response,
)
from .routes import process, remember_cases, router

__all__ = ["build_slot", "create_app", "default_pipeline_factory"]

log = logging.getLogger("triage.api")

STATIC_DIR = Path(__file__).resolve().parent / "static"


def default_pipeline_factory(settings: Settings, repeat_index: Any) -> Pipeline:
    """The real pipeline: the configured model (or the registry's current one) and table."""
    from triage.pipeline import Triage
    from triage.registry import resolve_model_path

    # Resolved here, from these settings: on reload this picks up a newly promoted version.
    model = settings.model_path or resolve_model_path(None, settings.models_dir)
    return Triage.load(
        model=model,
        routing=settings.routing_table,
        repeat_index=repeat_index,
        max_similar=settings.similar_cases,
    )


def describe_model(pipeline: Any) -> tuple[str, dict[str, Any]]:
    """(version, info) of a pipeline; info has labels [(id, name)], metrics, trained_at, path.

    Reads ``pipeline.model`` (a ``registry.LoadedModel``) when present; tolerant of what is
    missing so a pipeline without metadata still serves.
    """
    loaded = getattr(pipeline, "model", None)
    metadata: dict[str, Any] = dict(getattr(loaded, "metadata", None) or {})
    version = (
        getattr(loaded, "version", None)
        or getattr(pipeline, "model_version", None)
        or metadata.get("version")
        or "unknown"
    )
    estimator = getattr(loaded, "estimator", None)
    labels = list(metadata.get("labels") or getattr(estimator, "classes_", None) or [])
    if not labels:
        labels = list(getattr(pipeline, "labels", None) or [])
    table = getattr(pipeline, "table", None)
    issue_types = getattr(table, "issue_types", None) or {}
    names = {k: getattr(v, "name", None) for k, v in issue_types.items()}
    label_names = metadata.get("label_names") or {}
    info = {
        "labels": [(str(lab), names.get(str(lab)) or label_names.get(str(lab))) for lab in labels],
        "metrics": metadata.get("metrics") or metadata.get("cv_metrics") or {},
        "trained_at": metadata.get("created_at") or metadata.get("trained_at"),
        "path": str(getattr(loaded, "path", "") or "") or None,
    }
    return str(version), info


#: Classified once when a model loads, so lazy initialisation (dictionaries, caches) is paid
#: before the model serves, not by the first clerk.
WARM_UP_TEXT = "村里征地补偿款至今没有发放到农户手中，请求有关部门核查处理。"


def _warm_up(pipeline: Pipeline) -> None:
    """Classify one petition; a model that crashes on it (an artefact from an incompatible
    version of the code, say) is refused here instead of answering 500 to every request."""
    try:
        pipeline.classify(WARM_UP_TEXT, title="征地补偿")
    except TriageError as exc:  # a pipeline that refuses this text still serves others
        log.warning("model warm-up: %s: %s", type(exc).__name__, exc)
    except Exception as exc:
        log.exception("model warm-up failed")
        raise ModelError(
            f"the model fails on a test petition ({type(exc).__name__}: {exc}); "
            "is it from another version of triage? retrain it"
        ) from exc


def build_slot(state: ServiceState) -> ModelSlot:
    """Load a pipeline (blocking) into a new :class:`ModelSlot`; errors become ModelError."""
    try:
        pipeline = state.pipeline_factory(state.settings, state.repeat_index)
    except ModelError:
        raise
    except TriageError as exc:  # no such folder, a broken routing table: still "no model"
        raise ModelError(f"cannot load the model: {exc}") from exc
    except Exception as exc:  # a missing module or a broken artefact: say so, keep serving
        log.exception("model load failed")
        raise ModelError(f"cannot load the model: {type(exc).__name__}: {exc}") from exc
    _warm_up(pipeline)
    version, info = describe_model(pipeline)
    return ModelSlot(
        pipeline=pipeline, version=version, info=info, loaded_at=datetime.now(timezone.utc)
    )


def _follow_store(state: ServiceState) -> IndexFollower | None:
    """A repeat index over every stored case, kept up to date in the background."""
    if not state.settings.repeat_detection:
        return None
    from triage.pipeline import repeat_form, repeat_form_key
    from triage.repeat import RepeatIndex
    from triage.store import CaseForm

    assert state.store is not None
    index = RepeatIndex()
    follower = IndexFollower(
        index,
        state.store,
        index_text,
        interval=state.settings.repeat_sync_seconds,
        nice=state.settings.index_nice,
        on_records=functools.partial(remember_cases, state),
        # A case is stored right after its query computed its form: the index reuses it.
        form=CaseForm(repeat_form_key(), functools.partial(repeat_form, index=index)),
    )
    follower.sync()
    log.info("repeat index built over %d stored cases", len(follower.index))
    follower.start()
    return follower


def _start(state: ServiceState) -> None:
    """Open the store, build the repeat index, load table and model (blocking; at start-up)."""
    from triage.routing import load_table
    from triage.store import Store

    settings = state.settings
    state.store = Store(
        settings.database_url,
        mask=settings.mask_personal_data,
        checkpoint_seconds=settings.sqlite_checkpoint_seconds or None,
    )
    state.use_table(load_table(settings.routing_table))  # a broken table stops the start-up
    state.indexer = _follow_store(state)
    state.repeat_index = state.indexer.index if state.indexer is not None else None
    try:
        state.slot = build_slot(state)
        log.info("serving model %s", state.slot.version)
    except ModelError as exc:
        # Keep the service up (health says 503) so the model can be fixed and reloaded.
        state.load_error = str(exc)
        log.error("no model loaded: %s", exc)


def _freeze_startup_objects() -> None:
    """Exempt what start-up built (modules, app, routing table, model, index) from the
    cyclic garbage collector.

    Those objects live as long as the process, but every full collection walked all of them
    again: 62 and 70 ms with the interpreter stopped, one in each worker of a server loaded
    with 150 requests/s per worker for 40 s (``gc.callbacks``), while every queued request
    waited.
    ``gc.freeze`` moves them to a generation that is never collected; later garbage is
    collected as before.
    """
    gc.collect()  # start-up's own garbage goes now, not into the frozen generation
    gc.freeze()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load store and model once per process; close the store on shutdown."""
    state: ServiceState = app.state.service
    state.limiter = anyio.CapacityLimiter(max(1, state.settings.api_threads))
    state.reload_lock = asyncio.Lock()
    await anyio.to_thread.run_sync(_start, state)
    threads = state.settings.api_threads
    state.batcher = (
        Batcher(
            functools.partial(process, state), threads=threads, on_batch=state.metrics.count_batch
        )
        if threads
        else InlineBatcher(functools.partial(process, state), on_batch=state.metrics.count_batch)
    )
    state.batcher.start()
    _freeze_startup_objects()
    try:
        yield
    finally:
        gc.unfreeze()  # a test suite starts many apps in one process
        state.batcher.close()
        if state.indexer is not None:
            state.indexer.close()
        if state.store is not None:
            state.store.close()


def _readable(errors: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    """pydantic errors as one readable line plus a JSON-safe list (never echoing the input)."""
    items: list[dict[str, Any]] = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        if loc and loc[0] == "body":
            loc = loc[1:]
        message = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid":
            message = "request body is not valid JSON"
            ctx = err.get("ctx") or {}
            if ctx.get("error"):
                message += f" ({ctx['error']})"
        items.append(
            {"field": ".".join(loc) or "body", "message": message, "type": err.get("type")}
        )
    text = "; ".join(f"{e['field']}: {e['message']}" for e in items[:10])
    if len(items) > 10:
        text += f"; and {len(items) - 10} more"
    return text or "invalid request", items


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TriageError)
    async def triage_error(_request: Request, exc: TriageError) -> JSONResponse:
        return triage_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, items = _readable(list(exc.errors()))
        return error_response(422, "ValidationError", detail, errors=items)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400 and isinstance(exc.__cause__, BodyTooLargeError):
            return too_large_response(exc.__cause__.max_bytes)
        if exc.status_code == 400:
            # FastAPI's "error parsing the body" (bytes that are not UTF-8 / JSON): the same
            # 422 as any other malformed JSON.
            return error_response(
                422, "ValidationError", "request body is not valid JSON in UTF-8",
                errors=[{"field": "body", "message": str(exc.detail), "type": "json_invalid"}],
            )  # fmt: skip
        names = {
            404: "NotFound",
            405: "MethodNotAllowed",
            400: "BadRequest",
            413: "RequestTooLarge",
        }
        response = error_response(
            exc.status_code, names.get(exc.status_code, "HTTPError"), str(exc.detail)
        )
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        return internal_error_response(exc)


def _route(router: APIRouter, method: str, path: str) -> Any:
    """The route object for ``method path`` (what the router puts in the scope)."""
    for route in router.routes:
        if getattr(route, "path", None) == path and method in (
            getattr(route, "methods", None) or ()
        ):
            return route
    raise LookupError(f"no route {method} {path}")


def create_app(
    settings: Settings | None = None, *, pipeline_factory: PipelineFactory | None = None
) -> FastAPI:
    """Build the app. Nothing is loaded until the lifespan starts (first request or server).

    ``pipeline_factory(settings, repeat_index)`` builds the pipeline (default: the real
    :class:`triage.pipeline.Triage`); tests inject a small one.
    """
    settings = settings or get_settings()
    app = FastAPI(
        title="triage",
        version=__version__,
        summary="Classify, route and prioritise petitions (信访事项分类与分办)",
        lifespan=lifespan,
    )
    metrics = Metrics()
    app.state.service = ServiceState(
        settings=settings,
        metrics=metrics,
        pipeline_factory=pipeline_factory or default_pipeline_factory,
    )
    _install_error_handlers(app)
    app.include_router(router)

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False, response_model=None)
    async def index() -> Response:
        page = STATIC_DIR / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html; charset=utf-8")
        return HTMLResponse('<p>triage API: see <a href="/docs">/docs</a></p>')

    # Added first = innermost: the fast lane answers inside CORS, size limit, metrics and
    # keep-alive, like the route it stands in for.
    if settings.fast_lane:
        app.add_middleware(
            ClassifyFastLane, state=app.state.service, route=_route(router, "POST", CLASSIFY_PATH)
        )
    # Added last = outermost: the size limit answers before anything reads the body, and
    # the metrics see every answer, CORS preflights included.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key"],
        )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(
        MetricsMiddleware, metrics=metrics, log_requests=lambda: settings.log_requests
    )
    if settings.keepalive_requests:
        app.add_middleware(KeepAliveLimitMiddleware, max_requests=settings.keepalive_requests)
    return app


def __getattr__(name: str) -> Any:
    # ``uvicorn triage.api.main:app`` works too: the app is built on first access.
    if name == "app":
        return create_app()
    raise AttributeError(name)
