"""HTTP endpoints. Handlers are thin: validate on the event loop, hand the blocking work to
worker threads, answer.

The blocking work is :func:`process`: classify petitions in one vectorised call, store them
in one transaction, describe their similar earlier cases. ``/v1/classify`` requests reach it
through the micro-batcher (:class:`~triage.api.deps.Batcher`), ``/v1/classify/batch`` directly
on a bounded thread pool (``settings.api_threads``); the event loop never classifies.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any, TypeVar

import anyio
from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse

from triage.errors import InputError, TextTooLongError, TriageError
from triage.pipeline import PetitionInput, Triage
from triage.store import CaseRecord

from .deps import (
    ApiKeyDep,
    BatchTooLargeError,
    ModelDep,
    ModelSlot,
    ServiceState,
    StateDep,
    StoreDep,
)
from .schemas import (
    BatchIn,
    BatchOut,
    ClassificationOut,
    ErrorOut,
    FeedbackIn,
    FeedbackOut,
    HealthOut,
    ModelOut,
    PetitionIn,
    ReloadOut,
    TaxonomyOut,
)

log = logging.getLogger("triage.api")
router = APIRouter()

T = TypeVar("T")

#: Channels the intake page offers (same order as the schema's enum).
CHANNELS = ["来信", "来访", "网上", "热线"]
#: Characters of stored text shown for a similar earlier case.
SNIPPET_CHARS = 60


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorOut} for code in codes}


async def run_in_pool(state: ServiceState, fn: Callable[..., T], *args: Any) -> T:
    """Run blocking ``fn(*args)`` on the service's bounded worker threads."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=state.limiter)


def _check_lengths(text: str, title: str, max_length: int) -> None:
    if len(text) > max_length:
        raise TextTooLongError(
            f"text has {len(text)} characters, more than the maximum of {max_length} "
            "(TRIAGE_MAX_TEXT_LENGTH); split the petition or raise the limit"
        )
    if len(title) > max_length:
        raise TextTooLongError(f"title has {len(title)} characters, more than {max_length}")


def _as_dict(result: Any, slot: ModelSlot) -> dict[str, Any]:
    data = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    if not data.get("model_version"):
        data["model_version"] = slot.version
    return data


def _classify_one(slot: ModelSlot, item: PetitionIn) -> dict[str, Any]:
    result = slot.pipeline.classify(
        item.text,
        title=item.title or "",
        received_at=item.received_at,
        channel=item.channel,
        region=item.region,
    )
    return _as_dict(result, slot)


def _classify_items(
    slot: ModelSlot, items: Sequence[PetitionIn]
) -> list[dict[str, Any] | Exception]:
    """Each item's result dict or the exception that item raised (never raises itself).

    The real pipeline classifies all items in one vectorised call (``classify_many``), which
    costs a fraction per item of classifying them one by one; other pipelines go item by item.
    """
    if isinstance(slot.pipeline, Triage) and len(items) > 1:
        inputs = [
            PetitionInput(i.text or "", i.title or "", i.received_at, i.channel, i.region)
            for i in items
        ]
        try:
            out = slot.pipeline.classify_many(inputs)
            return [r if isinstance(r, Exception) else _as_dict(r, slot) for r in out]
        except Exception:  # one bad item must not fail the others: retry one by one
            log.exception("batch classification failed; classifying items one by one")
    results: list[dict[str, Any] | Exception] = []
    for item in items:
        try:
            results.append(_classify_one(slot, item))
        except Exception as exc:
            results.append(exc)
    return results


def _case_fields(item: PetitionIn, data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "text": item.text,
        "title": item.title or "",
        "label": data["label"],
        "confidence": data["confidence"],
        "department": data.get("department"),
        "route": data.get("route"),
        "disposition": data.get("disposition"),
        "flags": data.get("flags") or (),
        "priority": data.get("priority"),
        "received_at": item.received_at or date.today(),
        "channel": item.channel,
        "region": item.region,
        "model_version": data.get("model_version"),
    }


def _summary(record: CaseRecord) -> dict[str, Any]:
    return {
        "received_at": record.received_at,
        "created_at": record.created_at,
        "snippet": record.text[:SNIPPET_CHARS],
        "label": record.label,
        "department": record.department,
        "disposition": record.disposition,
    }


def remember_cases(state: ServiceState, records: Sequence[CaseRecord]) -> None:
    """Cache the summaries of stored cases, for when they turn up as similar cases."""
    state.case_cache.put_many((record.id, _summary(record)) for record in records)


def _describe_similar(state: ServiceState, results: list[dict[str, Any]]) -> None:
    """Add date, first words and handling of each similar earlier case (cache, then store)."""
    ids = [s["case_id"] for data in results for s in data.get("similar_cases") or ()]
    if not ids:
        return
    summaries = state.case_cache.get_many(ids)
    missing = [case_id for case_id in ids if case_id not in summaries]
    if missing and state.store is not None:
        for record in state.store.get_cases(missing).values():
            summaries[record.id] = state.case_cache.put(record.id, _summary(record))
    for data in results:
        for similar in data.get("similar_cases") or ():
            summary = summaries.get(similar["case_id"])
            if summary is not None:
                similar.update(summary)


def process(
    state: ServiceState, slot: ModelSlot, items: Sequence[PetitionIn]
) -> list[dict[str, Any] | Exception]:
    """Classify ``items``, store those with ``store`` set in one transaction, describe their
    similar earlier cases and count them. Per item: the result dict (with ``case_id``) or the
    exception for that item. Blocking: runs on a worker thread."""
    results = _classify_items(slot, items)
    ok = [(item, data) for item, data in zip(items, results, strict=True) if isinstance(data, dict)]
    storable = [(item, data) for item, data in ok if item.store]
    if storable:
        assert state.store is not None
        indexer = state.indexer
        # Each case is stored with its repeat-index form, computed from the stored (masked)
        # text: other workers index it without normalising it again. Text without personal
        # numbers is stored unchanged, so the form is the one the query just computed.
        records = state.store.add_case_records(
            [_case_fields(item, data) for item, data in storable],
            form=indexer.form if indexer is not None else None,
        )
        for (_, data), record in zip(storable, records, strict=True):
            data["case_id"] = record.id
        # What later answers show of these cases, and the index, take them as stored,
        # without reading them back.
        remember_cases(state, records)
        if indexer is not None:
            indexer.offer(records)
    _describe_similar(state, [data for _, data in ok])
    for _, data in ok:
        data.setdefault("case_id", None)
        state.metrics.count_prediction(data["label"], bool(data.get("needs_review")))
    if state.indexer is not None:
        state.indexer.resume_gc()  # collections run here, at the requests' priority
    return results


@router.post(
    "/v1/classify",
    response_model=ClassificationOut,
    responses=_errors(413, 422, 503),
    summary="Classify and route one petition",
    tags=["classify"],
)
async def classify(body: PetitionIn, state: StateDep, slot: ModelDep) -> dict[str, Any]:
    """Issue type with top-3 candidates, department, disposition, flags, priority, deadlines
    and similar earlier cases. The petition is stored (personal numbers masked) as a case
    whose ``case_id`` feedback refers to; with ``"store": false`` nothing is stored (live
    suggestions while a clerk types) and ``case_id`` is null.

    Well-formed requests are answered by :class:`~triage.api.fastlane.ClassifyFastLane`
    with :func:`classify_petition`, as here."""
    return await classify_petition(state, slot, body)


async def classify_petition(
    state: ServiceState, slot: ModelSlot, body: PetitionIn
) -> dict[str, Any]:
    """What ``POST /v1/classify`` answers (before serialisation); raises TriageError."""
    _check_lengths(body.text, body.title or "", state.settings.max_text_length)
    assert state.batcher is not None
    # Concurrent requests are classified together (see Batcher): one vectorised model call
    # and one transaction for all of them.
    result: dict[str, Any] = await state.batcher.submit(slot, body)
    return result


def _item_error(exc: TriageError | Exception) -> dict[str, Any]:
    if isinstance(exc, TriageError):
        return {"error": type(exc).__name__, "detail": str(exc), "status": exc.status_code}
    return {"error": "InternalError", "detail": "this item could not be classified", "status": 500}


def _classify_batch(state: ServiceState, slot: ModelSlot, body: BatchIn) -> dict[str, Any]:
    max_length = state.settings.max_text_length
    errors: dict[int, Exception] = {}
    valid: list[tuple[int, PetitionIn]] = []
    for index, item in enumerate(body.items):
        try:
            if item.text is None or not item.text.strip():
                raise InputError("text is missing or empty")
            _check_lengths(item.text, item.title or "", max_length)
        except TriageError as exc:
            errors[index] = exc
            continue
        valid.append((index, item))  # type: ignore[arg-type]
    outcome = dict(
        zip((i for i, _ in valid), process(state, slot, [it for _, it in valid]), strict=True)
    )
    outcome.update(errors)
    results: list[dict[str, Any]] = []
    for index in range(len(body.items)):
        value = outcome[index]
        if isinstance(value, Exception):
            if not isinstance(value, TriageError):
                log.error("batch item %d failed: %s", index, type(value).__name__, exc_info=value)
            results.append({"index": index, "status": "error", "error": _item_error(value)})
        else:
            results.append({"index": index, "status": "ok", "result": value})
    ok = sum(r["status"] == "ok" for r in results)
    return {
        "results": results,
        "ok": ok,
        "errors": len(results) - ok,
        "model_version": slot.version,
    }


@router.post(
    "/v1/classify/batch",
    response_model=BatchOut,
    responses=_errors(413, 422, 503),
    summary="Classify many petitions",
    tags=["classify"],
)
async def classify_batch(body: BatchIn, state: StateDep, slot: ModelDep) -> dict[str, Any]:
    """Up to ``TRIAGE_MAX_BATCH_SIZE`` items. An item that cannot be classified (empty, too
    long) gets ``status: "error"`` with the reason; the other items are classified and stored."""
    limit = state.settings.max_batch_size
    if len(body.items) > limit:
        raise BatchTooLargeError(
            f"batch has {len(body.items)} items, more than the maximum of {limit} "
            "(TRIAGE_MAX_BATCH_SIZE); split it into several requests"
        )
    return await run_in_pool(state, _classify_batch, state, slot, body)


@router.post(
    "/v1/feedback",
    response_model=FeedbackOut,
    status_code=201,
    responses=_errors(401, 403, 404, 422),
    summary="Store a clerk's correction (API key)",
    tags=["feedback"],
)
async def feedback(
    body: FeedbackIn, state: StateDep, store: StoreDep, user: ApiKeyDep
) -> dict[str, Any]:
    """The right issue type (and department) for a classified case; used for retraining."""
    labels = known_labels(state)
    if labels and body.label not in labels:
        raise InputError(
            f"unknown label {body.label!r}; use one of: {', '.join(sorted(labels))} "
            "(see GET /v1/taxonomy)"
        )
    feedback_id = await run_in_pool(
        state, store.add_feedback, body.case_id, body.label, body.department, user
    )
    state.metrics.count_feedback()
    return {"id": feedback_id, "case_id": body.case_id, "label": body.label,
            "department": body.department}  # fmt: skip


def known_labels(state: ServiceState) -> set[str]:
    """Labels feedback may use: the routing table's issue types and the model's labels."""
    labels = set(state.known_labels)
    if state.slot is not None:
        labels.update(label for label, _ in state.slot.info.get("labels", ()))
    return labels


@router.get("/v1/model", response_model=ModelOut, responses=_errors(503), tags=["model"])
async def model_info(slot: ModelDep) -> dict[str, Any]:
    """Version, labels, cross-validated metrics and training date of the served model."""
    info = slot.info
    return {
        "version": slot.version,
        "labels": [{"id": label, "name": name} for label, name in info.get("labels", ())],
        "metrics": info.get("metrics") or {},
        "trained_at": info.get("trained_at"),
        "path": info.get("path"),
        "loaded_at": slot.loaded_at,
    }


@router.post(
    "/v1/model/reload",
    response_model=ReloadOut,
    responses=_errors(401, 403, 500, 503),
    summary="Load the registry's current model (API key)",
    tags=["model"],
)
async def reload_model(state: StateDep, _user: ApiKeyDep) -> dict[str, Any]:
    """Build the new pipeline on a thread, then swap it in: requests already running finish on
    the old model, later ones use the new one. On failure the old model stays."""
    from .main import build_slot  # main imports this module

    async with state.reload_lock:
        previous = state.slot
        # Not on the request limiter: loading must not wait behind (or block) classification.
        slot = await anyio.to_thread.run_sync(build_slot, state)
        state.slot = slot  # one reference assignment: atomic for every reader
        state.load_error = None
        state.use_table(getattr(slot.pipeline, "table", None))  # an edited table comes along
    log.info("model reloaded: %s -> %s", previous.version if previous else None, slot.version)
    return {
        "previous_version": previous.version if previous else None,
        "version": slot.version,
        "changed": previous is None or previous.version != slot.version,
        "loaded_at": slot.loaded_at,
    }


@router.get("/v1/taxonomy", response_model=TaxonomyOut, responses=_errors(503), tags=["model"])
async def taxonomy(state: StateDep) -> dict[str, Any]:
    """Issue types, departments and channels, for pick lists."""
    return taxonomy_of(state.table)


def taxonomy_of(table: Any) -> dict[str, Any]:
    """The pick-list view of a routing table."""
    issue_types = [
        {"id": t.id, "name": t.name, "department": t.department, "disposition": t.disposition}
        for t in table.issue_types.values()
    ]
    routes = [
        {"id": r.id, "name": r.name, "department": r.department, "disposition": r.disposition}
        for r in (getattr(table, "routes", None) or {}).values()
    ]
    flags = [{"id": f.id, "name": f.name} for f in (getattr(table, "flags", None) or {}).values()]
    departments = [t["department"] for t in issue_types] + [r["department"] for r in routes]
    return {
        "issue_types": issue_types,
        "departments": list(dict.fromkeys(d for d in departments if d)),
        "routes": routes,
        "flags": flags,
        "channels": CHANNELS,
    }


@router.get(
    "/healthz",
    response_model=HealthOut,
    responses={503: {"model": HealthOut}},
    tags=["ops"],
)
async def healthz(state: StateDep, store: StoreDep, response: Response) -> dict[str, Any]:
    """200 when a model is loaded and the database answers, 503 otherwise."""
    # Not on the classification threads: a busy service must still answer its health check.
    database = await anyio.to_thread.run_sync(store.ping)
    slot = state.slot
    ok = slot is not None and database
    if not ok:
        response.status_code = 503
    detail = None
    if slot is None:
        detail = f"no model loaded: {state.load_error or 'starting'}"
    elif not database:
        detail = "database does not answer"
    return {
        "status": "ok" if ok else "unavailable",
        "model_loaded": slot is not None,
        "model_version": slot.version if slot else None,
        "database": database,
        "detail": detail,
    }


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    tags=["ops"],
)
async def metrics(state: StateDep) -> PlainTextResponse:
    """Request counts and latencies by route, predictions per label (Prometheus format)."""
    info = {"version": state.slot.version} if state.slot else None
    return PlainTextResponse(
        state.metrics.render(info), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
