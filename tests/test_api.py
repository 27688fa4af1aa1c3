"""TestClient tests of every endpoint and error path, on a small fake pipeline."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from triage.api.main import create_app
from triage.errors import TriageError
from triage.settings import Settings

PETITION = "我们村的土地被征收了，征地补偿款一直没有发放，联系电话13912345678，请领导帮忙。"


class FakeResult:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.data))


class FakeTriage:
    """Stands in for triage.pipeline.Triage: keyword rules, the TriageResult JSON shape."""

    labels = ("land_acquisition", "mining", "urban_housing")

    def __init__(self, version: str = "fake-1", repeat_index: Any = None) -> None:
        self.model_version = version
        self.repeat_index = repeat_index
        self.gate: threading.Event | None = None  # when set, classify waits for it
        self.entered = threading.Event()

    def classify(
        self,
        text: str,
        title: str = "",
        received_at: date | None = None,
        channel: str | None = None,
        region: str | None = None,
    ) -> FakeResult:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if "内部错误" in text:
            raise RuntimeError("boom")
        if "模型错误" in text:
            raise TriageError("the pipeline refused this text")
        label = "mining" if "采矿" in text else "land_acquisition"
        received = received_at or date.today()
        return FakeResult(
            {
                "label": label,
                "label_name": {"mining": "矿产资源"}.get(label, "征地拆迁补偿"),
                "confidence": 0.8,
                "candidates": [
                    {"label": label, "name": "x", "probability": 0.8},
                    {"label": "urban_housing", "name": "y", "probability": 0.15},
                    {"label": "mining", "name": "z", "probability": 0.05},
                ],
                "needs_review": False,
                "department": "自然资源局 征地管理科",
                "route": "none",
                "disposition": "受理",
                "reason": "模型判定",
                "flags": [{"id": "collective", "name": "集体访", "evidence": ["全体村民"]}]
                if "全体村民" in text
                else [],
                "priority": "normal",
                "deadlines": {
                    "received_at": received.isoformat(),
                    "acknowledge_by": (received + timedelta(days=15)).isoformat(),
                    "resolve_by": (received + timedelta(days=60)).isoformat(),
                    "extended_resolve_by": (received + timedelta(days=90)).isoformat(),
                    "review_request_days": 30,
                },
                "similar_cases": [
                    {"case_id": case_id, "similarity": sim}
                    for case_id, sim in (self.repeat_index.query(text) if self.repeat_index else [])
                ],
                "model_version": self.model_version,
            }
        )


def make_settings(db_url: str, **overrides: Any) -> Settings:
    # Worker threads, not the event loop: the fake pipeline can be held on a gate (reload
    # tests) while the loop keeps serving. The live-server tests run the default (0).
    values: dict[str, Any] = {
        "database_url": db_url,
        "api_keys": [],
        "log_requests": False,
        "api_threads": 2,
    }
    return Settings(**(values | overrides))


@pytest.fixture
def client(make_client: Callable[..., TestClient], api_key: str) -> TestClient:
    return make_client(api_keys=[api_key])


def rows(db_url: str, sql: str) -> list[Any]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)))
    finally:
        engine.dispose()


# --- classify -------------------------------------------------------------------------------


def test_classify_returns_result_and_stores_masked_case(client: TestClient, db_url: str) -> None:
    body = {"text": PETITION, "title": "征地补偿", "received_at": "2026-11-21", "channel": "来信"}
    r = client.post("/v1/classify", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["label"] == "land_acquisition"
    assert len(data["candidates"]) == 3
    assert data["deadlines"]["acknowledge_by"] == "2026-12-06"
    assert data["model_version"] == "fake-1"
    (row,) = rows(db_url, "select id, text, label, channel, received_at from cases")
    assert row.id == data["case_id"]
    assert "13912345678" not in row.text and "139****5678" in row.text
    assert (row.label, row.channel) == ("land_acquisition", "来信")
    assert str(row.received_at) == "2026-11-21"


def test_classify_can_keep_personal_numbers(make_client: Callable[..., TestClient], db_url: str):
    client = make_client(mask_personal_data=False)
    assert client.post("/v1/classify", json={"text": PETITION}).status_code == 200
    assert "13912345678" in rows(db_url, "select text from cases")[0].text


def test_preview_stores_nothing(client: TestClient, db_url: str) -> None:
    r = client.post("/v1/classify", json={"text": PETITION, "store": False})
    assert r.status_code == 200
    assert r.json()["case_id"] is None and r.json()["label"] == "land_acquisition"
    batch = client.post("/v1/classify/batch", json={"items": [{"text": "x", "store": False}]})
    assert batch.json()["results"][0]["result"]["case_id"] is None
    assert rows(db_url, "select count(*) from cases")[0][0] == 0
    assert client.app.state.service.indexer.sync() == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "text"),
        ({"text": None}, "text"),
        ({"text": 123}, "text"),
        ({"text": "   \n "}, "text"),
        ({"text": "x", "channel": "传真"}, "channel"),
        ({"text": "x", "received_at": "21/11/2026"}, "received_at"),
        ({"text": "x", "received_at": "9999-12-31"}, "received_at"),
        ({"text": "x", "received_at": 1700000000}, "received_at"),
        ({"text": "x", "store": 0}, "store"),
        ({"text": "x", "region": "县" * 201}, "region"),
    ],
)
def test_classify_rejects_bad_fields_with_readable_422(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    r = client.post("/v1/classify", json=body)
    assert r.status_code == 422
    data = r.json()
    assert data["error"] == "ValidationError"
    assert data["detail"].startswith(field)
    assert data["errors"][0]["field"] == field


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[]", b'"text"', b"\xff\xfe"])
def test_classify_rejects_malformed_json(client: TestClient, raw: bytes) -> None:
    r = client.post("/v1/classify", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "ValidationError"


def test_classify_too_long_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_text_length=50)
    r = client.post("/v1/classify", json={"text": "征" * 51})
    assert r.status_code == 413
    assert r.json()["error"] == "TextTooLongError"
    assert "51" in r.json()["detail"]
    assert client.post("/v1/classify", json={"text": "x", "title": "题" * 51}).status_code == 413


def test_classify_survives_lone_surrogates_and_nul(client: TestClient) -> None:
    raw = '{"text": "征地\\ud800补偿\\u0000款", "title": "\\udfff"}'
    r = client.post("/v1/classify", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text


def test_pipeline_errors_map_to_their_status(make_client: Callable[..., TestClient]) -> None:
    client = make_client(raise_errors=False)
    r = client.post("/v1/classify", json={"text": "模型错误"})
    assert (r.status_code, r.json()["error"]) == (400, "TriageError")
    r = client.post("/v1/classify", json={"text": "内部错误"})
    assert r.status_code == 500
    assert r.json() == {
        "error": "InternalError",
        "detail": "internal error; the server log has the details",
    }


def test_request_body_over_limit_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_request_bytes=1000)
    r = client.post("/v1/classify", json={"text": "征" * 1000})
    assert r.status_code == 413
    assert r.json()["error"] == "RequestTooLarge"


def test_similar_earlier_cases_survive_a_restart(
    make_client: Callable[..., TestClient],
) -> None:
    first = make_client().post("/v1/classify", json={"text": PETITION, "received_at": "2026-01-05"})
    first_id = first.json()["case_id"]
    assert first.json()["similar_cases"] == []
    restarted = make_client()
    again = restarted.post("/v1/classify", json={"text": PETITION + "谢谢。"}).json()
    (similar,) = again["similar_cases"]
    assert similar["case_id"] == first_id and similar["similarity"] > 0.8
    assert similar["received_at"] == "2026-01-05"
    assert similar["label"] == "land_acquisition" and similar["disposition"] == "受理"
    assert similar["snippet"].startswith("我们村的土地被征收了")
    assert "13912345678" not in similar["snippet"]
    # New cases are indexed in the background (synced here rather than waited for).
    assert restarted.app.state.service.indexer.sync() == 1  # type: ignore[attr-defined]
    third = restarted.post("/v1/classify", json={"text": PETITION}).json()
    assert {s["case_id"] for s in third["similar_cases"]} == {first_id, again["case_id"]}


# --- batch ----------------------------------------------------------------------------------


def test_batch_reports_item_errors_without_failing(
    make_client: Callable[..., TestClient], db_url: str
) -> None:
    client = make_client(max_text_length=100)
    items = [
        {"text": PETITION},
        {"text": ""},
        {"title": "no text"},
        {"text": "长" * 101},
        {"text": "内部错误"},
        {"text": "采矿 全体村民", "channel": "热线"},
    ]
    r = client.post("/v1/classify/batch", json={"items": items})
    assert r.status_code == 200, r.text
    data = r.json()
    assert (data["ok"], data["errors"]) == (2, 4)
    statuses = [x["status"] for x in data["results"]]
    assert statuses == ["ok", "error", "error", "error", "error", "ok"]
    assert [x["index"] for x in data["results"]] == list(range(6))
    assert data["results"][1]["error"]["status"] == 422
    assert data["results"][3]["error"] == {
        "error": "TextTooLongError",
        "detail": data["results"][3]["error"]["detail"],
        "status": 413,
    }
    assert data["results"][4]["error"]["status"] == 500
    assert data["results"][5]["result"]["label"] == "mining"
    assert data["results"][5]["result"]["flags"][0]["id"] == "collective"
    stored = {r.id for r in rows(db_url, "select id from cases")}
    assert stored == {data["results"][i]["result"]["case_id"] for i in (0, 5)}


def test_batch_over_max_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_batch_size=3)
    r = client.post("/v1/classify/batch", json={"items": [{"text": "x"}] * 4})
    assert r.status_code == 413
    assert r.json()["error"] == "BatchTooLargeError"


def test_batch_empty_and_malformed(client: TestClient) -> None:
    r = client.post("/v1/classify/batch", json={"items": []})
    assert r.status_code == 200 and r.json()["ok"] == 0
    r = client.post("/v1/classify/batch", json={"items": [{"text": 5}]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "items.0.text"
    assert client.post("/v1/classify/batch", json=[{"text": "x"}]).status_code == 422


# --- feedback -------------------------------------------------------------------------------


def test_feedback_stores_correction_with_key_fingerprint(
    client: TestClient, api_key: str, db_url: str
) -> None:
    case_id = client.post("/v1/classify", json={"text": PETITION}).json()["case_id"]
    body = {"case_id": case_id, "label": "mining", "department": "自然资源局 矿产资源管理科"}
    r = client.post("/v1/feedback", json=body, headers={"X-API-Key": api_key})
    assert r.status_code == 201, r.text
    assert r.json()["label"] == "mining"
    (row,) = rows(db_url, "select case_id, label, department, user_id from feedback")
    assert (row.case_id, row.label) == (case_id, "mining")
    assert row.user_id.startswith("key:") and api_key not in row.user_id


def test_feedback_auth(client: TestClient, api_key: str) -> None:
    body = {"case_id": "x", "label": "mining"}
    r = client.post("/v1/feedback", json=body)
    assert (r.status_code, r.json()["error"]) == (401, "AuthError")
    r = client.post("/v1/feedback", json=body, headers={"X-API-Key": api_key + "x"})
    assert r.status_code == 401
    r = client.post("/v1/feedback", json=body, headers={"X-API-Key": "ключ".encode()})
    assert r.status_code == 401


def test_writes_refused_when_no_key_configured(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_keys=[])
    for path, body in [("/v1/feedback", {"case_id": "x", "label": "mining"}),
                       ("/v1/model/reload", None)]:  # fmt: skip
        r = client.post(path, json=body, headers={"X-API-Key": "anything"})
        assert r.status_code == 403
        assert "TRIAGE_API_KEYS" in r.json()["detail"]


def test_feedback_unknown_label_and_case(client: TestClient, api_key: str) -> None:
    headers = {"X-API-Key": api_key}
    case_id = client.post("/v1/classify", json={"text": PETITION}).json()["case_id"]
    r = client.post("/v1/feedback", json={"case_id": case_id, "label": "ufo"}, headers=headers)
    assert r.status_code == 422
    assert "unknown label 'ufo'" in r.json()["detail"]
    r = client.post("/v1/feedback", json={"case_id": "nope", "label": "mining"}, headers=headers)
    assert (r.status_code, r.json()["error"]) == (404, "NotFoundError")
    r = client.post("/v1/feedback", json={"case_id": case_id}, headers=headers)
    assert r.status_code == 422


# --- model, taxonomy, health, metrics --------------------------------------------------------


def test_model_info_and_taxonomy(client: TestClient) -> None:
    r = client.get("/v1/model")
    assert r.status_code == 200
    assert r.json()["version"] == "fake-1"
    r = client.get("/v1/taxonomy")
    assert r.status_code == 200
    data = r.json()
    ids = [t["id"] for t in data["issue_types"]]
    assert "land_acquisition" in ids and "mining" in ids
    assert "林业局" in data["departments"]
    assert data["channels"] == ["来信", "来访", "网上", "热线"]


def test_health_metrics_and_page(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["database"] is True
    client.post("/v1/classify", json={"text": PETITION})
    client.post("/v1/classify", json={})
    body = client.get("/metrics").text
    assert 'triage_http_requests_total{method="POST",route="/v1/classify",status="200"} 1' in body
    assert 'triage_http_requests_total{method="POST",route="/v1/classify",status="422"} 1' in body
    assert 'triage_predictions_total{label="land_acquisition"} 1' in body
    assert 'triage_http_request_duration_seconds_bucket{route="/v1/classify",le="+Inf"} 2' in body
    assert client.get("/").headers["content-type"].startswith("text/html")


def test_unknown_route_and_method_are_json(client: TestClient) -> None:
    r = client.get("/v1/nope")
    assert (r.status_code, r.json()["error"]) == (404, "NotFound")
    r = client.get("/v1/classify")
    assert (r.status_code, r.json()["error"]) == (405, "MethodNotAllowed")


def test_cors_from_settings(make_client: Callable[..., TestClient]) -> None:
    client = make_client(cors_origins=["https://intake.example"])
    headers = {"Origin": "https://intake.example", "Access-Control-Request-Method": "POST"}
    r = client.options("/v1/classify", headers=headers)
    assert r.headers["access-control-allow-origin"] == "https://intake.example"


def test_model_load_failure_keeps_service_up(make_client: Callable[..., TestClient]) -> None:
    client = make_client(fail=True)
    r = client.get("/healthz")
    assert r.status_code == 503
    assert "model.skops" in r.json()["detail"]
    r = client.post("/v1/classify", json={"text": PETITION})
    assert (r.status_code, r.json()["error"]) == (503, "ModelError")
    assert client.get("/v1/taxonomy").status_code == 200


# --- reload ---------------------------------------------------------------------------------


def test_reload_swaps_model_and_in_flight_requests_finish_on_old(
    client: TestClient, api_key: str, pipelines: list[FakeTriage]
) -> None:
    old = pipelines[-1]
    old.entered.clear()  # set by the warm-up classification at load
    old.gate = threading.Event()
    result: dict[str, Any] = {}
    in_flight = threading.Thread(
        target=lambda: result.update(client.post("/v1/classify", json={"text": PETITION}).json())
    )
    in_flight.start()
    assert old.entered.wait(10)
    r = client.post("/v1/model/reload", headers={"X-API-Key": api_key})
    assert r.status_code == 200, r.text
    assert r.json()["previous_version"] == "fake-1" and r.json()["version"] == "fake-2"
    old.gate.set()
    in_flight.join(10)
    assert result["model_version"] == "fake-1"
    after = client.post("/v1/classify", json={"text": PETITION}).json()
    assert after["model_version"] == "fake-2"
    assert client.get("/v1/model").json()["version"] == "fake-2"


def test_reload_failure_keeps_old_model(
    client: TestClient, api_key: str, pipelines: list[FakeTriage]
) -> None:
    state = client.app.state.service  # type: ignore[attr-defined]

    def broken(settings: Settings, repeat_index: Any) -> FakeTriage:
        raise ValueError("artefact is corrupt")

    state.pipeline_factory = broken
    r = client.post("/v1/model/reload", headers={"X-API-Key": api_key})
    assert (r.status_code, r.json()["error"]) == (503, "ModelError")
    assert "corrupt" in r.json()["detail"]
    assert client.get("/v1/model").json()["version"] == "fake-1"
    assert client.post("/v1/model/reload").status_code == 401


def test_model_that_crashes_on_warm_up_is_refused(db_url: str) -> None:
    class Broken(FakeTriage):
        def classify(self, text: str, *args: Any, **kwargs: Any) -> FakeResult:
            raise AttributeError("'PetitionClassifier' object has no attribute 'calibrator_'")

    app = create_app(make_settings(db_url), pipeline_factory=lambda _s, _i: Broken())
    with TestClient(app) as client:
        r = client.get("/healthz")
        assert r.status_code == 503 and "fails on a test petition" in r.json()["detail"]
        assert client.post("/v1/classify", json={"text": PETITION}).status_code == 503


def test_batcher_groups_waiting_requests() -> None:
    import asyncio

    from triage.api.deps import Batcher

    gate, calls = threading.Event(), []

    def process(slot: Any, items: list[Any]) -> list[Any]:
        calls.append(list(items))
        gate.wait(10)
        return [ValueError(i) if i == "bad" else i.upper() for i in items]

    async def run() -> list[Any]:
        batcher = Batcher(process, threads=1)
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit("slot", "a"))
            while not calls:  # the worker is busy with "a"; the others queue up behind it
                await asyncio.sleep(0.01)
            rest = [asyncio.ensure_future(batcher.submit("slot", x)) for x in ("b", "bad", "c")]
            await asyncio.sleep(0.05)
            gate.set()
            return await asyncio.gather(first, *rest, return_exceptions=True)
        finally:
            batcher.close()

    results = asyncio.run(run())
    assert calls == [["a"], ["b", "bad", "c"]]
    assert results[:2] == ["A", "B"] and results[3] == "C"
    assert isinstance(results[2], ValueError)


def test_index_follower_takes_offered_cases_without_reading_them_back(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's own cases reach its index from memory; only other workers' are read."""
    from triage.api.deps import IndexFollower
    from triage.pipeline import index_text
    from triage.repeat import RepeatIndex
    from triage.store import Store

    store = Store(db_url)
    follower = IndexFollower(RepeatIndex(), store, index_text)
    assert follower.sync() == 0
    (own_record,) = store.add_case_records(
        [{"text": PETITION, "label": "land_acquisition", "confidence": 0.9}]
    )
    (other,) = store.add_cases([{"text": PETITION + "补充一句。", "label": "land_acquisition",
                                 "confidence": 0.9}])  # fmt: skip
    follower.offer([own_record])
    own = own_record.id
    read: list[list[str]] = []
    real = store.get_cases
    monkeypatch.setattr(
        store, "get_cases", lambda ids, **kw: read.append(list(ids)) or real(ids, **kw)
    )
    assert follower.sync() == 2
    assert read == [[other]]
    assert own in follower.index and other in follower.index
    store.close()


def test_index_follower_indexes_other_workers_cases_by_their_stored_form(db_url: str) -> None:
    """A case stored with its form under the follower's key is indexed by that form (no
    normalisation); under another key, or without one, by its text."""
    from triage.api.deps import IndexFollower
    from triage.pipeline import index_text, repeat_form, repeat_form_key
    from triage.repeat import RepeatIndex
    from triage.store import CaseForm, Store

    other_text = "小区物业擅自占用公共绿地建停车场，多次反映无人处理，要求恢复绿地。"
    store = Store(db_url)
    key = repeat_form_key()
    follower = IndexFollower(RepeatIndex(), store, index_text, form=CaseForm(key, repeat_form))
    # Stored with a form that is not its text's: only the stored form can make it match.
    swapped = CaseForm(key, lambda title, text: repeat_form("", other_text))
    stale = CaseForm("0-old", lambda title, text: repeat_form("", other_text))
    row = {"text": PETITION, "label": "land_acquisition", "confidence": 0.9}
    (by_form,) = store.add_case_records([row], form=swapped)
    (by_text,) = store.add_case_records([row], form=stale)
    (plain,) = store.add_case_records([row])
    assert follower.sync() == 3
    index = follower.index
    assert [cid for cid, _ in index.query(index_text("", other_text))] == [by_form.id]
    masked = index_text("", store.masked(PETITION))
    assert {cid for cid, _ in index.query(masked)} == {by_text.id, plain.id}
    store.close()


def test_the_service_stores_each_cases_form_for_the_other_workers(
    make_client: Callable[..., TestClient], db_url: str
) -> None:
    """/v1/classify stores the repeat form of the masked text under the current key."""
    from triage.pipeline import repeat_form, repeat_form_key

    client = make_client()
    case_id = client.post("/v1/classify", json={"text": PETITION, "title": "补偿款"}).json()[
        "case_id"
    ]
    ((title, text, form, key),) = rows(
        db_url, f"SELECT title, text, canonical, canonical_key FROM cases WHERE id = '{case_id}'"
    )
    assert "13912345678" not in text and key == repeat_form_key()
    assert form == repeat_form(title, text) and "13912345678" not in form


def test_index_follower_caches_other_workers_cases_and_runs_at_low_priority(
    db_url: str,
) -> None:
    """Cases read from the store are handed to ``on_records`` (the similar-case summaries),
    and the background thread runs at the configured nice value, below requests."""
    import os
    import time

    from triage.api.deps import IndexFollower
    from triage.pipeline import index_text
    from triage.repeat import RepeatIndex
    from triage.store import Store

    store = Store(db_url)
    told: list[str] = []
    follower = IndexFollower(
        RepeatIndex(),
        store,
        index_text,
        interval=0.05,
        on_records=lambda records: told.extend(r.id for r in records),
        nice=7,
    )
    follower.sync()
    (other,) = store.add_cases([{"text": PETITION, "label": "land_acquisition",
                                 "confidence": 0.9}])  # fmt: skip
    follower.start()
    try:
        deadline = time.monotonic() + 10
        while other not in follower.index and time.monotonic() < deadline:
            time.sleep(0.02)
        assert other in follower.index and told == [other]
        if sys.platform.startswith("linux"):
            assert follower.native_id is not None
            base = os.getpriority(os.PRIO_PROCESS, 0)  # this (the main) thread
            assert os.getpriority(os.PRIO_PROCESS, follower.native_id) == min(19, base + 7)
    finally:
        follower.close()
        store.close()


def test_index_follower_leaves_garbage_collection_to_request_threads(db_url: str) -> None:
    """The low-priority indexer never triggers a collection (which would hold the
    interpreter lock at its priority): collection is off while it syncs and until a request
    thread calls ``resume_gc``; if it was off already, it stays off."""
    import gc

    from triage.api.deps import IndexFollower
    from triage.store import Store

    seen: list[bool] = []

    class Index:
        def add_many(self, items: Any) -> None:
            list(items)
            seen.append(gc.isenabled())

        def __contains__(self, case_id: object) -> bool:
            return False

    store = Store(db_url)
    store.add_cases([{"text": PETITION, "label": "land_acquisition", "confidence": 0.9}])
    follower = IndexFollower(Index(), store, lambda title, text: text)
    assert gc.isenabled()
    try:
        follower._sync()  # as the background thread runs it
        assert seen and not any(seen) and not gc.isenabled()
        follower.resume_gc()
        assert gc.isenabled()
        follower.resume_gc()  # nothing to resume: no change
        assert gc.isenabled()
        follower.sync()  # called directly: collection is back on when it returns
        assert seen[-1] is False and gc.isenabled()
        gc.disable()  # someone else's choice: the follower does not undo it
        follower._sync()
        follower.resume_gc()
        assert not gc.isenabled()
    finally:
        gc.enable()
        store.close()


def test_similar_case_summaries_come_from_memory(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A case this process stored is described without reading it back from the store."""
    client = make_client()
    state = client.app.state.service  # type: ignore[attr-defined]
    first = client.post("/v1/classify", json={"text": PETITION, "received_at": "2026-01-05"})
    state.indexer.sync()
    monkeypatch.setattr(state.store, "get_cases", lambda ids: pytest.fail(f"read back {list(ids)}"))
    (similar,) = client.post("/v1/classify", json={"text": PETITION + "谢谢。"}).json()[
        "similar_cases"
    ]
    assert similar["case_id"] == first.json()["case_id"]
    assert similar["received_at"] == "2026-01-05" and similar["disposition"] == "受理"
    assert similar["snippet"].startswith("我们村的土地被征收了")
    assert "13912345678" not in similar["snippet"]


def test_inline_batching_on_the_event_loop(make_client: Callable[..., TestClient]) -> None:
    """TRIAGE_API_THREADS=0: requests are classified on the loop, concurrent ones together."""
    import asyncio

    import httpx

    from triage.api.deps import InlineBatcher

    client = make_client(raise_errors=False, api_threads=0)
    state = client.app.state.service  # type: ignore[attr-defined]
    assert isinstance(state.batcher, InlineBatcher)
    one = client.post("/v1/classify", json={"text": PETITION})
    assert one.status_code == 200 and one.json()["label"] == "land_acquisition"
    assert client.post("/v1/classify", json={"text": "内部错误" + PETITION}).status_code == 500

    sizes: list[int] = []
    state.batcher.on_batch = sizes.append

    async def many() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as ac:
            return await asyncio.gather(
                *(ac.post("/v1/classify", json={"text": f"{PETITION}{i}"}) for i in range(6))
            )

    answers = asyncio.run(many())
    assert [a.status_code for a in answers] == [200] * 6
    assert len({a.json()["case_id"] for a in answers}) == 6
    assert sum(sizes) == 6 and max(sizes) > 1  # arrived in one turn: classified together
