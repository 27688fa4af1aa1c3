"""The case store on a real SQLite file."""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from triage.errors import ConfigError, NotFoundError
from triage.store import Checkpointer, Store


@dataclass(frozen=True)
class Flag:
    id: str
    name: str


def case(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "text": "征地补偿款没有发放，身份证430102199001011234，电话13912345678",
        "title": "补偿款",
        "label": "land_acquisition",
        "confidence": 0.83,
        "department": "自然资源局 征地管理科",
        "route": "none",
        "disposition": "受理",
        "flags": [Flag("collective", "集体访"), "escalation"],
        "priority": "high",
        "received_at": date(2026, 11, 21),
        "channel": "来信",
        "region": "C2县",
        "model_version": "v1",
    }
    return values | overrides


def test_creates_folder_schema_and_masks(tmp_path: Path) -> None:
    db = tmp_path / "new" / "dir" / "cases.sqlite3"
    store = Store(f"sqlite:///{db}")
    case_id = store.add_case(**case())
    assert db.is_file()
    record = store.get_case(case_id)
    assert record is not None
    assert "430102********1234" in record.text and "139****5678" in record.text
    assert "13912345678" not in record.text
    assert record.flags == ("collective", "escalation")
    assert (record.received_at, record.channel, record.disposition) == (
        date(2026, 11, 21), "来信", "受理"
    )  # fmt: skip
    assert record.created_at.tzinfo is not None
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    store.close()
    # reopening keeps the data
    assert Store(f"sqlite:///{db}").count_cases() == 1


def test_mask_off_keeps_text(db_url: str) -> None:
    store = Store(db_url, mask=False)
    record = store.get_case(store.add_case(**case()))
    assert record is not None and "13912345678" in record.text


def test_add_cases_get_cases_iter_cases(db_url: str) -> None:
    store = Store(db_url)
    ids = store.add_cases([case(text=f"第{i}件") for i in range(5)])
    assert len(set(ids)) == 5
    assert store.add_case(**case(case_id="given-id")) == "given-id"
    found = store.get_cases([ids[0], ids[3], "missing"])
    assert set(found) == {ids[0], ids[3]}
    assert [c.id for c in store.iter_cases(batch_size=2)][:5] == ids
    assert store.get_case("missing") is None
    assert store.get_cases([]) == {}


def test_feedback_and_latest_correction_per_case(db_url: str) -> None:
    store = Store(db_url)
    a, b, c = (store.add_case(**case(text=t)) for t in ("甲", "乙", "丙"))
    store.add_feedback(a, "mining", None, "key:1")
    second = store.add_feedback(a, "land_illegal_use", "执法监察大队", "key:2")
    store.add_feedback(b, "urban_housing")
    assert second > 0
    corrections = store.corrections()
    assert [(x.case_id, x.label) for x in corrections] == [
        (a, "land_illegal_use"),
        (b, "urban_housing"),
    ]
    first = corrections[0]
    assert (first.text, first.department, first.user, first.predicted_label) == (
        "甲", "执法监察大队", "key:2", "land_acquisition"
    )  # fmt: skip
    assert c not in {x.case_id for x in corrections}
    assert store.count_feedback() == 3


def test_feedback_for_unknown_case(db_url: str) -> None:
    store = Store(db_url)
    with pytest.raises(NotFoundError, match="nope"):
        store.add_feedback("nope", "mining")
    assert store.count_feedback() == 0


def test_concurrent_writers_do_not_fail(db_url: str) -> None:
    stores = [Store(db_url), Store(db_url)]  # two engines = two processes' worth of pools
    errors: list[BaseException] = []

    def write(store: Store, n: int) -> None:
        try:
            for i in range(n):
                store.add_feedback(store.add_case(**case(text=f"并发{i}")), "mining")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(stores[i % 2], 50)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert stores[0].count_cases() == 300 and stores[1].count_feedback() == 300


def test_bad_url_is_config_error() -> None:
    with pytest.raises(ConfigError):
        Store("not a url")


def test_in_memory_sqlite() -> None:
    store = Store("sqlite://")
    assert store.get_case(store.add_case(**case())) is not None
    assert store.ping()


def test_iter_cases_since(db_url: str) -> None:
    store = Store(db_url)
    first = store.add_case(**case(text="早"))
    (record,) = store.iter_cases()
    later = store.add_case(**case(text="晚"))
    assert [c.id for c in store.iter_cases(since=record.created_at)] == [later]
    assert [c.id for c in store.iter_cases()] == [first, later]


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_writers_queue_on_a_lock_file_across_processes(tmp_path: Path) -> None:
    """A writer waits for another process's write to finish, then starts at once."""
    import subprocess
    import time

    db = tmp_path / "cases.sqlite3"
    store = Store(f"sqlite:///{db}")
    lock = tmp_path / "cases.sqlite3-writelock"
    assert lock.is_file()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time\n"
         f"fd = os.open({str(lock)!r}, os.O_RDWR)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "print('held', flush=True)\n"
         "time.sleep(0.4)\n"
         "fcntl.flock(fd, fcntl.LOCK_UN)\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    start = time.perf_counter()
    store.add_case(**case(text="排队写入"))
    waited = time.perf_counter() - start
    holder.wait(timeout=10)
    assert 0.25 < waited < 2.0  # waited for the other process, and not a backoff longer
    assert store.count_cases() == 1
    store.close()


def test_add_case_records_returns_exactly_what_is_stored(tmp_path: Path) -> None:
    """The returned records equal a read-back: masked text, ids, timestamps, flags."""
    store = Store(f"sqlite:///{tmp_path / 'cases.sqlite3'}")
    records = store.add_case_records([case(), case(text="宅基地纠纷", flags=[])])
    assert set(store.get_cases([r.id for r in records])) == {r.id for r in records}
    for record in records:
        assert store.get_case(record.id) == record
    assert "139****5678" in records[0].text and records[1].flags == ()
    store.close()


def test_new_case_ids_reads_ids_after_a_time_and_the_newest_time(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'cases.sqlite3'}")
    assert store.new_case_ids() == ([], None)
    first = store.add_case_records([case()])[0]
    later = store.add_case_records([case(text="宅基地纠纷"), case(text="采矿塌陷")])
    ids, newest = store.new_case_ids()
    assert ids == [first.id, *(r.id for r in later)]
    assert newest == max(r.created_at for r in later)
    ids, newest = store.new_case_ids(first.created_at)
    assert set(ids) == {r.id for r in later}
    assert store.new_case_ids(newest) == ([], None)
    store.close()


def test_case_ids_after_follows_sqlite_by_rowid_exactly(tmp_path: Path) -> None:
    """Each poll returns exactly the cases committed since the last one, in commit order,
    also when another connection (another worker) wrote them."""
    url = f"sqlite:///{tmp_path / 'cases.sqlite3'}"
    store, other = Store(url), Store(url)
    assert store.case_ids_after(None) == ([], 0)
    first = store.add_case_records([case(), case(text="宅基地纠纷")])
    ids, cursor = store.case_ids_after(None)
    assert ids == [r.id for r in first] and cursor == 2
    assert store.case_ids_after(cursor) == ([], cursor)  # nothing new: nothing re-read
    later = other.add_case_records([case(text="采矿塌陷")]) + store.add_case_records([case()])
    assert store.case_ids_after(cursor) == ([r.id for r in later], 4)
    store.close()
    other.close()


def test_case_ids_after_on_other_databases_rereads_a_margin(tmp_path: Path) -> None:
    """Without rowids the poll goes by created_at and looks POLL_MARGIN back, so a case
    whose transaction took its time earlier but committed later is not missed."""
    store = Store(f"sqlite:///{tmp_path / 'cases.sqlite3'}")
    store.sqlite_file = None  # as a PostgreSQL store polls
    first = store.add_case_records([case(), case(text="宅基地纠纷")])
    ids, cursor = store.case_ids_after(None)
    assert ids == [r.id for r in first] and cursor == first[-1].created_at
    again, cursor2 = store.case_ids_after(cursor)
    assert set(again) <= {r.id for r in first} and cursor2 == cursor  # the margin, re-read
    store.POLL_MARGIN = timedelta(0)
    assert store.case_ids_after(cursor) == ([], cursor)
    store.close()


def test_background_checkpoints_replace_the_ones_inside_commits(tmp_path: Path) -> None:
    """With checkpoint_seconds, no commit checkpoints (automatic checkpoints are off on the
    store's connections) and a background thread copies the log into the database."""
    db = tmp_path / "cases.sqlite3"
    plain = Store(f"sqlite:///{db}")
    with plain.engine.connect() as conn:
        assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 1000
    plain.close()
    store = Store(f"sqlite:///{db}", checkpoint_seconds=0.05)
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 0
    checkpointer = store._checkpointer
    assert checkpointer is not None and checkpointer._thread.name == "triage-checkpoint"
    store.add_case_records([case(text=f"第{i}号信访件，反映征地补偿问题") for i in range(200)])
    deadline = time.monotonic() + 10
    while checkpointer.checkpoints < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert checkpointer.checkpoints >= 2
    busy, log_pages, copied = checkpointer.checkpoint()
    assert busy == 0 and log_pages > 0 and copied == log_pages  # all of the log is in the db
    store.close()
    assert not checkpointer._thread.is_alive()
    with pytest.raises(ValueError, match="> 0 seconds"):
        Checkpointer(db, 0)


def test_checkpoint_setting_is_ignored_for_in_memory_sqlite() -> None:
    store = Store("sqlite://", checkpoint_seconds=1.0)
    assert store._checkpointer is None and store.sqlite_file is None
    store.close()


def test_sqlite_fast_insert_stores_what_sqlalchemy_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SQLite insert path writes byte-for-byte the row SQLAlchemy Core writes."""
    from datetime import datetime, timezone

    import triage.store as store_module

    fixed = datetime(2026, 11, 21, 8, 15, 30, 123456, tzinfo=timezone.utc)
    monkeypatch.setattr(store_module, "_utcnow", lambda: fixed)
    store = Store(f"sqlite:///{tmp_path / 'cases.sqlite3'}")
    assert store._fast_insert is not None
    store.add_case_records(
        [
            case(case_id="fast"),
            case(case_id="fast-none", received_at=None, channel=None, region=None, flags=[]),
        ]
    )
    store._fast_insert = None  # SQLAlchemy Core from here on
    store.add_case_records(
        [
            case(case_id="core"),
            case(case_id="core-none", received_at=None, channel=None, region=None, flags=[]),
        ]
    )
    with store.engine.connect() as conn:
        rows = {
            row[0]: tuple(row[1:]) for row in conn.exec_driver_sql("SELECT * FROM cases").fetchall()
        }
    assert rows["fast"] == rows["core"] and rows["fast-none"] == rows["core-none"]
    assert rows["fast"][0] == "2026-11-21 08:15:30.123456"  # how SQLite holds a DateTime
    assert store.get_case("fast") == dataclasses.replace(store.get_case("core"), id="fast")
    store.close()


def test_failed_fast_insert_rolls_back_and_the_store_goes_on(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'cases.sqlite3'}")
    store.add_case_records([case(case_id="a")])
    with pytest.raises(Exception, match="UNIQUE"):
        store.add_case_records([case(case_id="b"), case(case_id="a")])  # duplicate id
    assert store.get_case("b") is None  # the whole batch rolled back
    store.add_case_records([case(case_id="c")])
    assert store.count_cases() == 2
    store.close()


def test_case_form_is_stored_from_the_masked_text_under_its_key(tmp_path: Path) -> None:
    """A form is computed from the text as stored (masked), kept beside the case, and read
    back only by a reader that asks with the key that wrote it."""
    from triage.store import CaseForm

    db = tmp_path / "cases.sqlite3"
    seen: list[tuple[str, str]] = []

    def compute(title: str, text: str) -> str:
        seen.append((title, text))
        return f"form:{title}:{text}"

    store = Store(f"sqlite:///{db}")
    (record,) = store.add_case_records([case()], form=CaseForm("k1", compute))
    assert seen == [(record.title, record.text)] and "139****5678" in seen[0][1]
    assert record.canonical == f"form:{record.title}:{record.text}"
    assert store.get_cases([record.id], form_key="k1")[record.id] == record
    assert store.get_cases([record.id], form_key="k2")[record.id].canonical is None
    assert store.get_case(record.id) == dataclasses.replace(record, canonical=None)
    assert [c.canonical for c in store.iter_cases(form_key="k1")] == [record.canonical]
    (plain,) = store.add_case_records([case(text="宅基地纠纷")])  # no form: NULL
    assert store.get_cases([plain.id], form_key="k1")[plain.id].canonical is None
    store.close()
    # Neither the text nor its form keeps a personal number, anywhere in the file.
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("cases"))
    assert b"13912345678" not in raw and b"430102199001011234" not in raw


def test_a_database_of_an_older_version_gains_the_new_columns(tmp_path: Path) -> None:
    """Opening a database created before the form columns existed adds them (NULL for old
    cases), keeps its cases, and new cases store their form; a second open changes nothing."""
    import sqlite3

    from triage.store import CaseForm, cases

    db = tmp_path / "old.sqlite3"
    old_columns = [c for c in cases.columns if c.name not in ("canonical", "canonical_key")]
    assert len(old_columns) == len(cases.columns) - 2
    with sqlite3.connect(db) as conn:  # the table as the previous release created it
        conn.execute(
            "CREATE TABLE cases (id VARCHAR(64) PRIMARY KEY, created_at DATETIME NOT NULL, "
            "received_at DATE, channel VARCHAR(16), region VARCHAR(200), title TEXT NOT NULL, "
            "text TEXT NOT NULL, label VARCHAR(100) NOT NULL, confidence FLOAT NOT NULL, "
            "department VARCHAR(200), route VARCHAR(32), disposition VARCHAR(16), "
            "flags VARCHAR(200) NOT NULL, priority VARCHAR(16), model_version VARCHAR(100))"
        )
        conn.execute(
            "INSERT INTO cases VALUES ('old', '2026-01-02 03:04:05.000000', NULL, NULL, NULL, "
            "'', '宅基地纠纷', 'homestead', 0.9, NULL, NULL, NULL, '', NULL, NULL)"
        )
    store = Store(f"sqlite:///{db}")
    with sqlite3.connect(db) as conn:
        names = [row[1] for row in conn.execute("PRAGMA table_info(cases)")]
    assert names[-2:] == ["canonical", "canonical_key"]
    old = store.get_cases(["old"], form_key="k")["old"]
    assert old.text == "宅基地纠纷" and old.canonical is None
    (new,) = store.add_case_records([case()], form=CaseForm("k", lambda title, text: "f"))
    assert store.get_cases([new.id], form_key="k")[new.id].canonical == "f"
    store.close()
    from triage.store import _add_missing_columns

    again = Store(f"sqlite:///{db}")
    assert _add_missing_columns(again.engine) == [] and again.count_cases() == 2
    again.close()
