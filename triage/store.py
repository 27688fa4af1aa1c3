"""Case store: every classified petition and every clerk's correction, in a SQL database.

SQLAlchemy 2.0 Core over a SQLite file by default (``settings.database_url``); any SQLAlchemy
URL (PostgreSQL, MySQL) works too. The schema is created when a :class:`Store` is opened.
Each write is one short transaction. Stored text has ID-card, phone and bank-card numbers
masked (:func:`triage.privacy.mask_personal_data`) unless the store is opened with
``mask=False``.

SQLite runs in WAL mode, so the API's concurrent requests (threads, or several uvicorn
workers) read while one writes. SQLite allows one writer at a time, and a writer that finds the
file locked polls with growing sleeps (1, 2, 5 … 100 ms): under load that turned a 1 ms insert
into a 10–30 ms one. Writers to a SQLite file therefore queue on a lock of their own, a thread
lock plus ``flock`` on a ``-writelock`` file beside the database, so each one starts the moment
the previous one commits (the busy timeout stays as a backstop for other programs).

In WAL mode SQLite copies the log back into the database (a checkpoint, with two ``fsync``
calls) inside whichever commit finds the log over 1,000 pages. At the API's rate that was a
commit every second, and it stalled that commit's request and, through the writer queue,
the other workers' too (5–22 ms each, measured with ``perf trace``). A store opened with
``checkpoint_seconds`` turns those off and checkpoints from a background thread instead;
a checkpoint runs beside readers and writers, so nobody waits for it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
)
from sqlalchemy import (
    text as sql_text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from triage.errors import ConfigError, NotFoundError
from triage.privacy import mask_personal_data

__all__ = ["CaseCursor", "CaseForm", "CaseRecord", "Checkpointer", "Correction", "Store"]

log = logging.getLogger(__name__)

#: How long (ms) a SQLite connection waits for another writer before giving up.
SQLITE_BUSY_TIMEOUT_MS = 10_000

metadata = MetaData()

#: Where :meth:`Store.case_ids_after` left off: a SQLite rowid, else a ``created_at``.
CaseCursor = int | datetime

cases = Table(
    "cases",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("received_at", Date, nullable=True),
    Column("channel", String(16), nullable=True),
    Column("region", String(200), nullable=True),
    Column("title", Text, nullable=False, default=""),
    Column("text", Text, nullable=False),
    Column("label", String(100), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("department", String(200), nullable=True),
    Column("route", String(32), nullable=True),
    Column("disposition", String(16), nullable=True),
    Column("flags", String(200), nullable=False, default=""),  # ';'-joined flag ids
    Column("priority", String(16), nullable=True),
    Column("model_version", String(100), nullable=True),
    # The repeat index's form of the stored (masked) title and text, and the key of the code
    # that computed it (:class:`CaseForm`): other workers index the case without computing it
    # again. NULL for cases stored without one; added to older databases on open.
    Column("canonical", Text, nullable=True),
    Column("canonical_key", String(64), nullable=True),
    Index("ix_cases_created_at", "created_at"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", String(64), ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
    Column("label", String(100), nullable=False),
    Column("department", String(200), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Who corrected: a key fingerprint or a clerk id, never an API key itself.
    Column("user_id", String(100), nullable=True),
    Index("ix_feedback_case_id", "case_id", "id"),
)


@dataclass(frozen=True)
class CaseRecord:
    """One stored case. ``text`` and ``title`` are as stored (masked when masking is on)."""

    id: str
    created_at: datetime
    received_at: date | None
    channel: str | None
    region: str | None
    title: str
    text: str
    label: str
    confidence: float
    department: str | None
    route: str | None
    disposition: str | None
    flags: tuple[str, ...]
    priority: str | None
    model_version: str | None
    #: The repeat index's form stored with the case, when read with the key that wrote it.
    canonical: str | None = None


@dataclass(frozen=True)
class CaseForm:
    """What the repeat index keeps of a case, computed when it is stored.

    ``compute(title, text)`` gets the title and text as stored (masked), so the form holds
    nothing the text does not. ``key`` names the code that computes it: a reader asking with
    another key (other normalisation or canonical-form code) gets no form and computes its own.
    """

    key: str
    compute: Callable[[str, str], str]


@dataclass(frozen=True)
class Correction:
    """The latest clerk correction of one case, with the case's stored text.

    ``label``/``department`` are the corrected values; ``predicted_label`` is what the model
    said when the case was classified.
    """

    case_id: str
    title: str
    text: str
    label: str
    department: str | None
    predicted_label: str
    created_at: datetime
    user: str | None


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _flag_ids(flags: Iterable[Any] | None) -> str:
    """Flags as ';'-joined ids; accepts ids, ``Flag`` objects or the API's flag dicts."""
    ids: list[str] = []
    for flag in flags or ():
        if isinstance(flag, str):
            ids.append(flag)
        elif isinstance(flag, Mapping):
            ids.append(str(flag["id"]))
        else:
            ids.append(str(flag.id))
    return ";".join(ids)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes even for timezone=True columns; we always store UTC.
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _case_from_row(row: Any, form_key: str | None = None) -> CaseRecord:
    return _case_from_mapping(row._mapping, form_key)


def _case_from_mapping(m: Mapping[str, Any], form_key: str | None = None) -> CaseRecord:
    canonical = m["canonical"] if form_key is not None and m["canonical_key"] == form_key else None
    return CaseRecord(
        id=m["id"],
        created_at=_aware(m["created_at"]),
        received_at=m["received_at"],
        channel=m["channel"],
        region=m["region"],
        title=m["title"] or "",
        text=m["text"],
        label=m["label"],
        confidence=float(m["confidence"]),
        department=m["department"],
        route=m["route"],
        disposition=m["disposition"],
        flags=tuple(f for f in (m["flags"] or "").split(";") if f),
        priority=m["priority"],
        model_version=m["model_version"],
        canonical=canonical,
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, autocheckpoint: bool = True) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets readers run beside one writer; NORMAL sync is durable across crashes of the
        # process (not of the OS) and avoids an fsync per request.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        if not autocheckpoint:  # a Checkpointer thread does it (see the module docstring)
            cursor.execute("PRAGMA wal_autocheckpoint=0")
    finally:
        cursor.close()


class Checkpointer:
    """Copies a WAL-mode SQLite database's log back into it every ``interval`` seconds, on a
    thread of its own, so that no commit has to (the connections it serves have automatic
    checkpoints off).

    A passive checkpoint never waits for readers or writers and never blocks them; the
    ``sqlite3`` module releases the interpreter lock while it copies and syncs. Several
    processes on one file may each run one: SQLite runs one checkpoint at a time, and a
    second one that finds it busy skips its turn.
    """

    def __init__(self, database: Path, interval: float = 1.0) -> None:
        if interval <= 0:
            raise ValueError(f"checkpoint interval must be > 0 seconds, got {interval!r}")
        self.database = database
        self.interval = interval
        self.checkpoints = 0  # completed rounds, for tests and monitoring
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="triage-checkpoint", daemon=True)

    def checkpoint(self) -> tuple[int, int, int]:
        """Run one passive checkpoint now: ``(busy, log pages, pages copied)`` as SQLite
        reports them."""
        connection = sqlite3.connect(self.database, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        try:
            row = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            connection.close()
        self.checkpoints += 1
        return tuple(row) if row is not None else (0, -1, -1)  # type: ignore[return-value]

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.checkpoint()
            except sqlite3.Error as exc:  # locked by another program: the next round
                log.warning("SQLite checkpoint of %s failed: %s", self.database, exc)

    def close(self) -> None:
        """Stop the thread, then checkpoint once more so the log does not outlive us."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        with contextlib.suppress(sqlite3.Error):
            self.checkpoint()


def _sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite ``url``; None for other databases and in-memory ones."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # _make_engine says what is wrong with it
    database = parsed.database or ""
    if (
        parsed.get_backend_name() != "sqlite"
        or database in ("", ":memory:")
        or database.startswith("file:")
    ):
        return None
    return Path(database).expanduser()


def _make_engine(url: str, *, autocheckpoint: bool = True) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database URL {url!r} is not a valid SQLAlchemy URL: {exc}") from exc
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
        if not in_memory:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # Connections are used from the API's worker threads; each is used by one thread at
        # a time (the pool hands them out), so sqlite3's same-thread check is not needed.
        kwargs["connect_args"] = {
            "check_same_thread": False,
            "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
        }
        if in_memory:
            from sqlalchemy.pool import StaticPool

            kwargs["poolclass"] = StaticPool  # one shared connection, or each sees an empty db
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(url, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(f"cannot open database {parsed!r}: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        event.listen(
            engine, "connect", functools.partial(_sqlite_pragmas, autocheckpoint=autocheckpoint)
        )
    return engine


def _sqlite_insert(
    engine: Engine, table: Table
) -> tuple[str, list[tuple[str, Callable[[Any], Any] | None]]] | None:
    """For SQLite: ``table``'s INSERT as SQLAlchemy compiles it, and each parameter's name
    with the dialect's bind processor (what SQLAlchemy would do to the value); else None."""
    dialect = engine.dialect
    if dialect.name != "sqlite" or dialect.paramstyle != "qmark":
        return None
    compiled = insert(table).compile(dialect=dialect)
    names = list(compiled.positiontup or ())
    if set(names) != set(table.columns.keys()):
        return None
    columns = [
        (name, table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names
    ]
    return str(compiled), columns


def _add_missing_columns(engine: Engine) -> list[str]:
    """Add to an existing database the nullable columns that newer versions declare (``ALTER
    TABLE … ADD COLUMN``; old rows get NULL); return them as ``table.column``."""
    quote = engine.dialect.identifier_preparer.quote
    added: list[str] = []

    def present(table: Table) -> set[str]:
        return {c["name"] for c in inspect(engine).get_columns(table.name)}

    for table in metadata.sorted_tables:
        have = present(table)
        missing = [c for c in table.columns if c.name not in have]
        for column in missing:
            if not column.nullable:  # existing rows would have no value for it
                raise ConfigError(
                    f"the database's table {table.name} lacks column {column.name}, which "
                    "this version needs; open it with the version that created it and export"
                )
            kind = column.type.compile(dialect=engine.dialect)
            ddl = f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} {kind}"
            try:
                with engine.begin() as conn:
                    conn.execute(sql_text(ddl))
            except SQLAlchemyError:
                if column.name not in present(table):  # not another worker that added it
                    raise
                continue
            added.append(f"{table.name}.{column.name}")
            log.warning("database upgraded: added column %s.%s", table.name, column.name)
    return added


_IDS_AFTER_ROWID = sql_text("SELECT rowid, id FROM cases WHERE rowid > :after ORDER BY rowid")


class _WriterQueue:
    """Serialises writers to one SQLite file across this process's threads and across
    processes: a thread lock, then an exclusive ``flock`` that the kernel hands over the
    moment it is released (no polling). Without ``fcntl`` (Windows) only the thread lock."""

    def __init__(self, database: Path) -> None:
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        try:
            import fcntl  # noqa: F401 - POSIX only
        except ImportError:  # pragma: no cover - Windows
            return
        self._fd = os.open(f"{database}-writelock", os.O_RDWR | os.O_CREAT, 0o600)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._thread_lock:
            if self._fd is None:  # pragma: no cover - Windows
                yield
                return
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Store:
    """Cases and feedback in a SQL database (see the module docstring)."""

    def __init__(
        self, url: str, mask: bool = True, checkpoint_seconds: float | None = None
    ) -> None:
        """Open (and create when needed) the database at SQLAlchemy ``url``.

        ``checkpoint_seconds``: for a SQLite file, checkpoint its write-ahead log from a
        background thread this often instead of inside commits (the API does; see the
        module docstring). Ignored for other databases.
        """
        self.url = url
        self.mask = mask
        self._writers: _WriterQueue | None = None
        self._checkpointer: Checkpointer | None = None
        database = self.sqlite_file = _sqlite_file(url)
        background = database is not None and checkpoint_seconds is not None
        self.engine = _make_engine(url, autocheckpoint=not background)
        if database is not None:
            self._writers = _WriterQueue(database)
            if checkpoint_seconds is not None:
                self._checkpointer = Checkpointer(database, checkpoint_seconds)
        self._fast_insert = _sqlite_insert(self.engine, cases)
        for attempt in range(3):
            try:
                metadata.create_all(self.engine)
                break
            except SQLAlchemyError as exc:
                # Another process (a second uvicorn worker) may have created a table between
                # our check and our CREATE: check again.
                if attempt < 2 and "already exists" in str(exc):
                    continue
                self.engine.dispose()
                raise ConfigError(f"cannot open database {self.engine.url!r}: {exc}") from exc
        try:
            _add_missing_columns(self.engine)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise ConfigError(f"cannot upgrade database {self.engine.url!r}: {exc}") from exc
        if self._checkpointer is not None:
            self._checkpointer.start()

    def __repr__(self) -> str:
        return f"Store({self.engine.url!r}, mask={self.mask})"

    def close(self) -> None:
        """Close every pooled connection (and stop the background checkpoints)."""
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        self.engine.dispose()
        if self._writers is not None:
            self._writers.close()

    def _writer_turn(self) -> contextlib.AbstractContextManager[None]:
        """Held while writing: this store's place in the queue of writers to its SQLite file."""
        return self._writers.hold() if self._writers is not None else contextlib.nullcontext()

    @contextlib.contextmanager
    def _write(self) -> Iterator[Any]:
        """One write transaction, queued behind other writers to the same SQLite file."""
        with self._writer_turn(), self.engine.begin() as conn:
            yield conn

    def masked(self, text: str | None) -> str:
        """``text`` as the store keeps it: personal numbers masked when masking is on."""
        text = text or ""
        return mask_personal_data(text) if self.mask else text

    def _case_row(
        self,
        *,
        text: str,
        title: str = "",
        label: str,
        confidence: float,
        department: str | None = None,
        route: str | None = None,
        flags: Iterable[Any] | None = (),
        priority: str | None = None,
        received_at: date | None = None,
        channel: str | None = None,
        region: str | None = None,
        model_version: str | None = None,
        disposition: str | None = None,
        case_id: str | None = None,
        form: CaseForm | None = None,
    ) -> dict[str, Any]:
        title, text = self.masked(title), self.masked(text)
        return {
            "id": case_id or uuid.uuid4().hex,
            "created_at": _utcnow(),
            "received_at": received_at,
            "channel": channel,
            "region": region,
            "title": title,
            "text": text,
            "label": label,
            "confidence": float(confidence),
            "department": department,
            "route": route,
            "disposition": disposition,
            "flags": _flag_ids(flags),
            "priority": priority,
            "model_version": model_version,
            "canonical": form.compute(title, text) if form is not None else None,
            "canonical_key": form.key if form is not None else None,
        }

    def add_case(
        self,
        *,
        text: str,
        title: str = "",
        label: str,
        confidence: float,
        department: str | None = None,
        route: str | None = None,
        flags: Iterable[Any] | None = (),
        priority: str | None = None,
        received_at: date | None = None,
        channel: str | None = None,
        region: str | None = None,
        model_version: str | None = None,
        disposition: str | None = None,
        case_id: str | None = None,
    ) -> str:
        """Store one classified case and return its id (a new uuid4 hex unless given).

        ``flags`` may be flag ids, ``Flag`` objects or ``{"id": ...}`` dicts.
        """
        row = self._case_row(
            text=text, title=title, label=label, confidence=confidence, department=department,
            route=route, flags=flags, priority=priority, received_at=received_at,
            channel=channel, region=region, model_version=model_version,
            disposition=disposition, case_id=case_id,
        )  # fmt: skip
        self._insert_cases([row])
        return row["id"]

    def add_cases(self, items: Sequence[Mapping[str, Any]]) -> list[str]:
        """Store many cases (each a mapping of :meth:`add_case`'s keywords) in one transaction."""
        return [record.id for record in self.add_case_records(items)]

    def add_case_records(
        self, items: Sequence[Mapping[str, Any]], form: CaseForm | None = None
    ) -> list[CaseRecord]:
        """Like :meth:`add_cases`, but return the cases as stored (ids, timestamps, masked
        text), so that callers need not read back what they have just written. With ``form``,
        each case's repeat-index form is stored beside it (and returned)."""
        rows = [self._case_row(**item, form=form) for item in items]
        if rows:
            self._insert_cases(rows)
        key = form.key if form is not None else None
        return [_case_from_mapping(row, key) for row in rows]

    def _insert_cases(self, rows: list[dict[str, Any]]) -> None:
        fast = self._fast_insert
        if fast is None:
            with self._write() as conn:
                conn.execute(insert(cases), rows)
            return
        # SQLite: the statement compiled once, run on the driver's connection. SQLAlchemy's
        # per-call work (statement construction, cache key, compiled-cache lookup, result
        # set-up) cost more than the insert itself on the API's request path.
        sql, columns = fast
        params = [
            tuple(row[name] if process is None else process(row[name]) for name, process in columns)
            for row in rows
        ]
        with self._writer_turn():
            connection = self.engine.raw_connection()
            try:
                connection.cursor().executemany(sql, params)
                connection.commit()
            except BaseException:
                connection.rollback()
                raise
            finally:
                connection.close()  # back to the pool

    def get_case(self, case_id: str) -> CaseRecord | None:
        """The case with this id, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(cases).where(cases.c.id == case_id)).first()
        return _case_from_row(row) if row is not None else None

    def get_cases(
        self, case_ids: Iterable[str], form_key: str | None = None
    ) -> dict[str, CaseRecord]:
        """The cases among ``case_ids`` that exist, by id (one query); with ``form_key``, each
        with the repeat-index form stored under that key (:class:`CaseForm`), if any."""
        ids = list(dict.fromkeys(case_ids))
        if not ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(cases).where(cases.c.id.in_(ids))).all()
        return {record.id: record for record in (_case_from_row(r, form_key) for r in rows)}

    def count_cases(self) -> int:
        """Number of stored cases."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(cases)).scalar_one())

    def iter_cases(
        self, since: datetime | None = None, batch_size: int = 1_000, form_key: str | None = None
    ) -> Iterator[CaseRecord]:
        """Every case (stored after ``since`` if given), oldest first, streamed in batches;
        ``form_key`` as for :meth:`get_cases`.

        For building the repeat index and keeping it up to date.
        """
        query = select(cases).order_by(cases.c.created_at, cases.c.id)
        if since is not None:
            query = query.where(cases.c.created_at > since.astimezone(timezone.utc))
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=batch_size).execute(query)
            for row in result:
                yield _case_from_row(row, form_key)

    #: How far :meth:`case_ids_after` looks back behind its cursor on databases other than
    #: SQLite: a transaction that took its timestamp earlier may commit after a later one.
    POLL_MARGIN = timedelta(seconds=5)

    def case_ids_after(self, cursor: CaseCursor | None) -> tuple[list[str], CaseCursor | None]:
        """Ids of the cases stored since ``cursor`` (all of them for None), oldest first, and
        the cursor to pass next time. For following the store (the repeat index does).

        SQLite: exactly the new ones, by rowid. Writers take turns and each row gets the
        next rowid inside its write transaction, so a row that is visible has every smaller
        rowid visible too (cases are never deleted). Other databases: by ``created_at``,
        re-reading :attr:`POLL_MARGIN` behind the newest one seen, so some ids come again;
        the caller skips those it has.
        """
        if self.sqlite_file is not None:
            after = cursor if isinstance(cursor, int) else 0
            with self.engine.connect() as conn:
                rows = conn.execute(_IDS_AFTER_ROWID, {"after": after}).all()
            return [row[1] for row in rows], (rows[-1][0] if rows else after)
        since = cursor if isinstance(cursor, datetime) else None
        ids, newest = self.new_case_ids(since - self.POLL_MARGIN if since else None)
        if newest is not None and since is not None:
            newest = max(since, newest)
        return ids, newest or since

    def new_case_ids(self, since: datetime | None = None) -> tuple[list[str], datetime | None]:
        """Ids of the cases stored after ``since`` (all if None), oldest first, and the newest
        one's ``created_at`` (None when there is none).

        For frequent polling (the repeat index follower): no per-row timestamp is read,
        which would be most of the cost of a few thousand rows.
        """
        ids = select(cases.c.id).order_by(cases.c.created_at, cases.c.id)
        newest = select(func.max(cases.c.created_at))
        if since is not None:
            after = cases.c.created_at > since.astimezone(timezone.utc)
            ids, newest = ids.where(after), newest.where(after)
        with self.engine.connect() as conn:
            found = list(conn.execute(ids).scalars())
            last = conn.execute(newest).scalar() if found else None
        return found, _aware(last) if last is not None else None

    def add_feedback(
        self, case_id: str, label: str, department: str | None = None, user: str | None = None
    ) -> int:
        """Store a clerk's correction of ``case_id`` and return the feedback id.

        ``user`` identifies who corrected (a clerk id or an API-key fingerprint); never pass a
        secret. Raises :class:`NotFoundError` when the case does not exist. The label is not
        checked here: the caller knows the taxonomy.
        """
        with self._write() as conn:
            exists = conn.execute(select(cases.c.id).where(cases.c.id == case_id)).first()
            if exists is None:
                raise NotFoundError(f"case {case_id!r} does not exist")
            result = conn.execute(
                insert(feedback).values(
                    case_id=case_id,
                    label=label,
                    department=department,
                    created_at=_utcnow(),
                    user_id=user,
                )
            )
            return int(result.inserted_primary_key[0])

    def corrections(self) -> list[Correction]:
        """The latest correction of every corrected case, joined with the case's stored text.

        Returns one :class:`Correction` per case that has feedback (``case_id``, ``title``,
        ``text`` as stored, i.e. masked when masking is on, the corrected ``label`` and
        ``department``, the model's ``predicted_label``, the correction's ``created_at`` and
        ``user``), ordered by case creation time. "Latest" is the highest feedback id, which
        is also the latest insert. Used by ``triage.retrain`` to merge clerks' labels.
        """
        latest = (
            select(feedback.c.case_id, func.max(feedback.c.id).label("fid"))
            .group_by(feedback.c.case_id)
            .subquery()
        )
        query = (
            select(
                cases.c.id,
                cases.c.title,
                cases.c.text,
                cases.c.label.label("predicted_label"),
                feedback.c.label,
                feedback.c.department,
                feedback.c.created_at,
                feedback.c.user_id,
            )
            .select_from(latest)
            .join(feedback, feedback.c.id == latest.c.fid)
            .join(cases, cases.c.id == latest.c.case_id)
            .order_by(cases.c.created_at, cases.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            Correction(
                case_id=r.id,
                title=r.title or "",
                text=r.text,
                label=r.label,
                department=r.department,
                predicted_label=r.predicted_label,
                created_at=_aware(r.created_at),
                user=r.user_id,
            )
            for r in rows
        ]

    def count_feedback(self) -> int:
        """Number of stored corrections (all, not only the latest per case)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(feedback)).scalar_one())

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sql_text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True
