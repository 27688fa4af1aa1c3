"""The classify fast lane answers exactly as FastAPI's route does, and really bypasses it."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_api import PETITION

from triage.api.deps import get_model
from triage.api.fastlane import _is_json
from triage.errors import ModelError

JSON = {"content-type": "application/json"}
JSON_UTF8 = {"content-type": "application/json; charset=utf-8"}
FORM = {"content-type": "application/x-www-form-urlencoded"}

#: (description, request keywords): valid petitions and every kind of bad input.
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("plain", {"json": {"text": PETITION}}),
    (
        "all fields",
        {
            "json": {
                "text": "全体村民反映采矿破坏耕地",
                "title": "采矿",
                "received_at": "2026-11-21",
                "channel": "来访",
                "region": "C2县",
            }
        },
    ),
    ("repeat of the first", {"json": {"text": PETITION}}),
    ("preview", {"json": {"text": PETITION, "store": False}}),
    ("extra field", {"json": {"text": PETITION, "unknown": 1}}),
    ("charset", {"content": json.dumps({"text": PETITION}), "headers": JSON_UTF8}),
    ("text too long", {"json": {"text": "地" * 101}}),
    ("title too long", {"json": {"text": PETITION, "title": "题" * 101}}),
    ("pipeline refuses", {"json": {"text": "模型错误"}}),
    ("pipeline crashes", {"json": {"text": "内部错误"}}),
    ("missing text", {"json": {"title": "x"}}),
    ("blank text", {"json": {"text": "   "}}),
    ("wrong type", {"json": {"text": 5}}),
    ("bad date", {"json": {"text": PETITION, "received_at": "21/11/2026"}}),
    ("bad channel", {"json": {"text": PETITION, "channel": "传真"}}),
    ("store not bool", {"json": {"text": PETITION, "store": "no"}}),
    ("not an object", {"json": [PETITION]}),
    ("malformed JSON", {"content": b'{"text": ', "headers": JSON}),
    ("not UTF-8", {"content": b'{"text": "\xff\xfe"}', "headers": JSON}),
    ("empty body", {"content": b"", "headers": JSON}),
    ("no content type", {"content": json.dumps({"text": PETITION})}),
    ("form content type", {"content": "text=x", "headers": FORM}),
    ("chunked", {"content": [b'{"text": "', PETITION.encode(), b'"}']}),
]


@pytest.fixture
def pair(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> Callable[..., tuple[TestClient, TestClient]]:
    """Two services on stores of their own, fast lane on and off: send each request to both."""

    def build(**overrides: Any) -> tuple[TestClient, TestClient]:
        settings = {"max_text_length": 100, "api_threads": 0, **overrides}
        fast = make_client(raise_errors=False, fast_lane=True, **settings)
        slow = make_client(
            raise_errors=False,
            fast_lane=False,
            database_url=f"sqlite:///{tmp_path / 'slow.sqlite3'}",
            **settings,
        )
        return fast, slow

    return build


def _normalised(body: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """The answer with case ids replaced by their order of first appearance, and what differs
    between the two services by a placeholder: when cases were stored, the fake model's
    version (one per service)."""
    body = {**body, "model_version": "<version>"} if "model_version" in body else body
    text = json.dumps(body, ensure_ascii=False, sort_keys=True)
    text = re.sub(r'"\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:\d\d)?"', '"<time>"', text)
    for case_id in re.findall(r"[0-9a-f]{32}", text):
        ids.setdefault(case_id, f"case-{len(ids)}")
    return json.loads(re.sub(r"[0-9a-f]{32}", lambda m: ids[m.group()], text))


def test_fast_lane_answers_every_request_as_fastapi_does(pair: Callable[..., Any]) -> None:
    fast, slow = pair()
    fast_ids: dict[str, str] = {}
    slow_ids: dict[str, str] = {}
    statuses = set()
    for what, kwargs in REQUESTS:
        if isinstance(kwargs.get("content"), list):  # a body sent in chunks, no length
            a, b = (
                c.post("/v1/classify", content=iter(kwargs["content"]), headers=JSON)
                for c in (fast, slow)
            )
        else:
            a, b = (c.post("/v1/classify", **kwargs) for c in (fast, slow))
        for client in (fast, slow):  # stored cases become findable now, not at the next sync
            client.app.state.service.indexer.sync()  # type: ignore[attr-defined]
        assert a.status_code == b.status_code, (what, a.text, b.text)
        assert a.headers["content-type"] == b.headers["content-type"], what
        assert _normalised(a.json(), fast_ids) == _normalised(b.json(), slow_ids), what
        statuses.add(a.status_code)
        if what == "repeat of the first":
            assert a.json()["similar_cases"], "the repeat finds the first petition"
    # The list covers answers, the route's own errors, the pipeline's and FastAPI's.
    assert {200, 413, 422, 500} <= statuses
    assert len(fast_ids) >= 3  # stored cases, and the repeat found the first one


def test_fast_lane_bypasses_fastapi_routing(make_client: Callable[..., TestClient]) -> None:
    """FastAPI's route would fail here (its model dependency raises); the fast lane does not
    use it. Without the fast lane the same request gets FastAPI's answer."""

    def broken() -> Any:
        raise ModelError("the route was used")

    for fast_lane, status in ((True, 200), (False, 503)):
        client = make_client(fast_lane=fast_lane)
        client.app.dependency_overrides[get_model] = broken  # type: ignore[attr-defined]
        r = client.post("/v1/classify", json={"text": PETITION})
        assert r.status_code == status, (fast_lane, r.text)


def test_fast_lane_is_counted_and_logged_under_its_route(
    make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(log_requests=True)
    with caplog.at_level(logging.INFO):
        assert client.post("/v1/classify", json={"text": PETITION}).status_code == 200
    metrics = client.get("/metrics").text
    assert 'triage_http_requests_total{method="POST",route="/v1/classify",status="200"} 1' in (
        metrics
    )
    assert 'triage_predictions_total{label="land_acquisition"} 1' in metrics
    lines = [r.getMessage() for r in caplog.records if r.name == "triage.api.access"]
    assert len(lines) == 1 and lines[0].startswith("POST /v1/classify 200 ")
    assert "13912345678" not in caplog.text  # the petition never reaches the log


def test_fast_lane_answers_keep_cors_headers(make_client: Callable[..., TestClient]) -> None:
    client = make_client(cors_origins=["http://intake.example"])
    r = client.post(
        "/v1/classify", json={"text": PETITION}, headers={"Origin": "http://intake.example"}
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "http://intake.example"


def test_chunked_body_over_the_limit_is_413_both_ways(pair: Callable[..., Any]) -> None:
    fast, slow = pair(max_request_bytes=64)
    chunks = [b'{"text": "', ("地" * 40).encode(), b'"}']
    answers = [c.post("/v1/classify", content=iter(chunks), headers=JSON) for c in (fast, slow)]
    assert [a.status_code for a in answers] == [413, 413]
    assert answers[0].json() == answers[1].json()
    assert answers[0].json()["error"] == "RequestTooLarge"


def test_without_a_model_fastapi_answers(make_client: Callable[..., TestClient]) -> None:
    client = make_client(fail=True)
    r = client.post("/v1/classify", json={"text": PETITION})
    assert r.status_code == 503
    assert "no model is loaded" in r.json()["detail"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"application/json", True),
        (b"Application/JSON; charset=utf-8", True),
        (b"application/problem+json", False),  # JSON to FastAPI, left to it
        (b"text/plain", False),
        (b"", False),
    ],
)
def test_is_json(value: bytes, expected: bool) -> None:
    assert _is_json(value) is expected
