"""Service state, its background machinery, and the typed dependencies routes declare.

:class:`ServiceState` holds settings, store, the served model and metrics;
:class:`Batcher` classifies concurrent requests together; :class:`IndexFollower` keeps the
repeat index in step with the store. Routes declare ``SettingsDep``, ``StoreDep``,
``PipelineDep``, ``ModelDep`` and ``ApiKeyDep``.

The state lives on ``app.state.service`` (one :class:`ServiceState` per app), so several apps
with different settings can coexist in one process (tests do).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import hmac
import logging
import os
import queue
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from triage.errors import InputError, ModelError, TriageError
from triage.pipeline import index_cases
from triage.settings import Settings
from triage.store import CaseCursor, CaseForm, CaseRecord, Store

if TYPE_CHECKING:
    from .metrics import Metrics

log = logging.getLogger("triage.api")


class Pipeline(Protocol):
    """What the API needs from :class:`triage.pipeline.Triage`."""

    def classify(
        self,
        text: str,
        title: str = "",
        received_at: Any = None,
        channel: str | None = None,
        region: str | None = None,
    ) -> Any: ...


#: Builds a pipeline from the settings and the shared repeat index (None: detection off).
PipelineFactory = Callable[[Settings, Any], Pipeline]


class AuthError(TriageError):
    """The request lacks a valid API key."""

    status_code = 401


class WritesDisabledError(TriageError):
    """No API key is configured, so write endpoints are closed."""

    status_code = 403


class BatchTooLargeError(InputError):
    """A batch has more items than the configured maximum."""

    status_code = 413


def _lower_priority(increment: int) -> None:
    """Raise this thread's nice value by ``increment`` (at most 19). On Linux a thread is a
    task of its own to the scheduler; elsewhere this does nothing."""
    if increment <= 0 or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError):
        tid = threading.get_native_id()
        os.setpriority(
            os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment)
        )


class IndexFollower:
    """Keeps the repeat index in step with the store, from one background thread.

    Every ``interval`` seconds it indexes the cases stored since its last look, by this
    process or any other (several uvicorn workers, other servers on the same database), so
    every worker finds every case. Requests never pay for index updates, which rebuild a
    segment and cost milliseconds; a new case becomes findable within ``interval`` seconds
    (a repeat petition comes days later, not milliseconds).
    """

    def __init__(
        self,
        index: Any,
        store: Store,
        text_of: Callable[[str, str], str],
        interval: float = 0.5,
        on_records: Callable[[list[CaseRecord]], None] | None = None,
        nice: int = 0,
        form: CaseForm | None = None,
    ) -> None:
        self.index = index
        self.store = store
        self.text_of = text_of  # (title, text) -> the text the index expects
        # What writers store beside each case (``Store.add_case_records(form=)``), and what
        # this follower takes from the store instead of normalising a case again: the
        # index's canonical form of ``text_of(title, text)``.
        self.form = form
        self.interval = interval
        # Told of every case read from the store (other processes' cases), e.g. to cache
        # what a similar-case answer shows without reading it again.
        self.on_records = on_records
        self.nice = nice
        self.native_id: int | None = None  # the thread's OS id, once it runs
        self._cursor: CaseCursor | None = None  # where the last look at the store ended
        self._offered: queue.SimpleQueue[Sequence[CaseRecord]] = queue.SimpleQueue()
        self._sync_lock = threading.Lock()
        self._gc_paused = False  # automatic GC turned off by this follower, not yet back on
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="triage-index", daemon=True)

    def offer(self, cases: Sequence[CaseRecord]) -> None:
        """Cases this process has just stored, as stored: the next sync indexes them without
        reading them back from the database."""
        if cases:
            self._offered.put(cases)

    def _pause_gc(self) -> None:
        # A collection runs in whichever thread's allocation triggers it and holds the
        # interpreter lock throughout. Triggered here it ran at this thread's low priority,
        # and a collector the scheduler set aside stalled every request of the worker (up
        # to 52 ms, measured with gc.callbacks; the requests' own collections took at most
        # 3.5 ms). So automatic collection is off while this thread works, and a request
        # thread turns it back on (resume_gc), so that it also runs the collection that
        # the garbage made meanwhile is due.
        if gc.isenabled():
            gc.disable()
            self._gc_paused = True

    def resume_gc(self) -> None:
        """Turn automatic garbage collection back on if the indexer turned it off; called
        by request threads, never while the indexer works."""
        if self._gc_paused and not self._sync_lock.locked():
            self._gc_paused = False
            gc.enable()

    def sync(self) -> int:
        """Index the cases stored since the last sync (all of them the first time); return
        how many were indexed."""
        try:
            return self._sync()
        finally:
            self.resume_gc()  # called directly (start-up, tests): leave the GC as it was

    def _sync(self) -> int:
        with self._sync_lock:
            self._pause_gc()
            offered: list[CaseRecord] = []
            while not self._offered.empty():
                offered += self._offered.get_nowait()
            index_cases(self.index, offered, self.text_of)
            seen, cursor = self.store.case_ids_after(self._cursor)
            # This process's own cases were offered above, and on some databases the poll
            # re-reads a margin: only cases not yet indexed are read.
            new = [case_id for case_id in seen if case_id not in self.index]
            key = self.form.key if self.form is not None else None
            for start in range(0, len(new), 1_000):
                chunk = new[start : start + 1_000]
                records = self.store.get_cases(chunk, form_key=key)
                index_cases(self.index, (records[c] for c in chunk if c in records), self.text_of)
                if self.on_records is not None and records:
                    self.on_records(list(records.values()))
            self._cursor = cursor
            return len(offered) + len(new)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        self.native_id = threading.get_native_id()
        # Indexing comes in bursts (a segment merge takes up to ~100 ms of CPU): at a low
        # priority they use idle CPU instead of delaying the requests of both workers.
        _lower_priority(self.nice)
        while not self._stop.wait(self.interval):
            try:
                self._sync()  # the GC stays paused until a request thread resumes it
            except Exception:  # a database hiccup: the next round catches up
                log.exception("repeat index update failed")

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        if self._gc_paused:
            self._gc_paused = False
            gc.enable()


@dataclass
class _Job:
    slot: ModelSlot
    item: Any
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def _resolve(outcomes: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, result in outcomes:
        if future.done():  # the client went away and the request was cancelled
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


class _BatcherBase:
    """What both batchers share: the work function, the batch size limit, the batch hook."""

    def __init__(
        self,
        process: Callable[[ModelSlot, list[Any]], list[Any]],
        max_batch: int = 32,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.process = process
        self.on_batch = on_batch
        self.max_batch = max_batch

    def _batches(self, jobs: list[_Job]) -> Iterator[tuple[list[_Job], list[Any]]]:
        """Process ``jobs`` in batches of one model slot each: yield each batch and its
        results (an exception in place of every result when the whole batch failed)."""
        groups: dict[int, list[_Job]] = {}
        for job in jobs:
            groups.setdefault(id(job.slot), []).append(job)
        for group in groups.values():
            for start in range(0, len(group), self.max_batch):
                batch = group[start : start + self.max_batch]
                if self.on_batch is not None:
                    self.on_batch(len(batch))
                try:
                    results: list[Any] = self.process(batch[0].slot, [j.item for j in batch])
                except Exception as exc:  # e.g. the database is gone: every request gets it
                    log.exception("batch of %d failed", len(batch))
                    results = [exc] * len(batch)
                yield batch, results


class Batcher(_BatcherBase):
    """Micro-batching of single-petition requests on a few worker threads.

    A worker takes the oldest waiting request and every other one queued behind it (up to
    ``max_batch``) and hands them to ``process(slot, items)`` together. It never waits for a
    batch to fill: an idle service answers a lone request at once, a busy one classifies
    what piled up during the previous batch in one vectorised model call and one database
    transaction, which costs far less per petition than one call each. Requests keep the
    model slot they started with, so a batch never mixes models across a reload.
    """

    def __init__(
        self,
        process: Callable[[ModelSlot, list[Any]], list[Any]],
        threads: int = 1,
        max_batch: int = 32,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(process, max_batch, on_batch)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"triage-batch-{i}", daemon=True)
            for i in range(threads)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    async def submit(self, slot: ModelSlot, item: Any) -> Any:
        """Queue one item and wait for its result (or its exception, raised here)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Job(slot, item, future, loop))
        return await future

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            stop = False
            while len(jobs) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                jobs.append(more)
            self._handle(jobs)
            if stop:
                return

    def _handle(self, jobs: list[_Job]) -> None:
        for batch, results in self._batches(jobs):
            # One wake-up of each event loop per batch, not one per request.
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
            for job, result in zip(batch, results, strict=True):
                by_loop.setdefault(job.loop, []).append((job.future, result))
            for loop, outcomes in by_loop.items():
                # A closed event loop (shut down) has nobody waiting any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_resolve, outcomes)

    def close(self) -> None:
        """Finish what is queued, then stop the threads."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=30)


class InlineBatcher(_BatcherBase):
    """Micro-batching on the event loop itself (``TRIAGE_API_THREADS=0``).

    Requests that arrive in the same turn of the loop are classified together, in a callback
    scheduled after them, on the loop's own thread. Under the GIL worker threads add no
    parallelism to this CPU-bound work, only hand-offs: waking a thread, passing the GIL back
    and forth, waking the loop again cost about as much as classifying a petition. The price
    is that other requests wait while a batch runs (a few milliseconds; batch requests of
    up to 1,000 items still go to worker threads).
    """

    def __init__(
        self,
        process: Callable[[ModelSlot, list[Any]], list[Any]],
        max_batch: int = 32,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(process, max_batch, on_batch)
        self._pending: list[_Job] = []

    def start(self) -> None:
        """Nothing to start: the event loop runs the batches."""

    async def submit(self, slot: ModelSlot, item: Any) -> Any:
        """Queue one item and wait for its result (or its exception, raised here)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:  # the first of this turn: run the batch after the others
            loop.call_soon(self._flush)
        self._pending.append(_Job(slot, item, future, loop))
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for batch, results in self._batches(pending):
            _resolve([(job.future, result) for job, result in zip(batch, results, strict=True)])

    def close(self) -> None:
        """Nothing to stop; pending requests are answered by the loop's last turns."""


class SummaryCache:
    """A bounded LRU of stored cases' summaries (cases never change once stored)."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        with self._lock:
            for key in keys:
                value = self._items.get(key)
                if value is not None:
                    self._items.move_to_end(key)
                    found[key] = value
        return found

    def put_many(self, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        with self._lock:
            for key, value in items:
                self._items[key] = value
                self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def put(self, key: str, value: dict[str, Any]) -> dict[str, Any]:
        self.put_many([(key, value)])
        return value


@dataclass
class ModelSlot:
    """The pipeline being served; replaced as a whole on reload (an atomic reference swap)."""

    pipeline: Pipeline
    version: str
    info: dict[str, Any]
    loaded_at: datetime


@dataclass
class ServiceState:
    """Everything the routes share: settings, store, the current model, metrics."""

    settings: Settings
    metrics: Metrics
    pipeline_factory: PipelineFactory
    store: Store | None = None
    table: Any = None  # triage.routing.RoutingTable, when available
    repeat_index: Any = None  # triage.repeat.RepeatIndex (thread-safe), or None: off
    indexer: IndexFollower | None = None
    batcher: Batcher | InlineBatcher | None = None
    case_cache: SummaryCache = field(default_factory=SummaryCache)
    slot: ModelSlot | None = None
    load_error: str | None = None
    limiter: Any = None  # anyio.CapacityLimiter sized by settings.api_threads
    reload_lock: Any = None  # asyncio.Lock: one reload at a time
    known_labels: frozenset[str] = field(default_factory=frozenset)

    def use_table(self, table: Any) -> None:
        """Serve this routing table's taxonomy (None: keep the current one)."""
        if table is not None and getattr(table, "issue_types", None) is not None:
            self.table = table
            self.known_labels = frozenset(table.issue_types)


async def get_state(request: Request) -> ServiceState:
    """The app's :class:`ServiceState`."""
    return request.app.state.service


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    """The app's settings (those given to ``create_app``, else the environment's)."""
    return state.settings


async def get_store(state: StateDep) -> Store:
    """The case store (opened in the lifespan)."""
    if state.store is None:  # pragma: no cover - only before start-up finished
        raise ModelError("the service is starting; retry in a moment")
    return state.store


async def get_model(state: StateDep) -> ModelSlot:
    """The model slot at the start of the request: a reload does not affect this request."""
    slot = state.slot
    if slot is None:
        raise ModelError(
            f"no model is loaded ({state.load_error or 'starting'}); train or install one, "
            "then POST /v1/model/reload"
        )
    return slot


_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="Required by write endpoints."
)


def key_fingerprint(key: str) -> str:
    """A stable, non-reversible id for an API key, safe to store and log."""
    return "key:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


async def require_api_key(
    state: StateDep, key: Annotated[str | None, Security(_api_key_header)] = None
) -> str:
    """Check ``X-API-Key`` in constant time; return the key's fingerprint (never the key)."""
    keys = state.settings.api_keys
    if not keys:
        raise WritesDisabledError(
            "write endpoints are disabled: no API key is configured on the server "
            "(set TRIAGE_API_KEYS, e.g. TRIAGE_API_KEYS='[\"a-long-random-key\"]')"
        )
    if not key:
        raise AuthError("missing API key: send it in the X-API-Key header")
    given = key.encode("utf-8")
    matched = False
    for candidate in keys:  # compare with every key so timing does not tell which matched
        matched |= hmac.compare_digest(candidate.encode("utf-8"), given)
    if not matched:
        raise AuthError("invalid API key (X-API-Key)")
    return key_fingerprint(key)


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
ModelDep = Annotated[ModelSlot, Depends(get_model)]
ApiKeyDep = Annotated[str, Depends(require_api_key)]


async def get_pipeline(slot: ModelDep) -> Pipeline:
    """The pipeline of the model slot this request uses."""
    return slot.pipeline


PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
