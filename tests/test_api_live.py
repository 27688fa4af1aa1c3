"""Integration: the real uvicorn server on a loopback port, spoken to over HTTP with httpx.

One server runs in a thread with a fake pipeline (exact assertions on the HTTP flow and the
SQLite file); another is ``python serve.py`` in a subprocess with the real pipeline and a
real model (the shipped default, else a tiny one trained here on data/examples).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api import PETITION, FakeTriage, make_settings

from triage.api.main import create_app

pytestmark = pytest.mark.slow


def test_http_flow_on_a_real_server(
    live_server: Callable[[Any], str], tmp_path: Path, api_key: str
) -> None:
    db = tmp_path / "cases.sqlite3"
    app = create_app(
        make_settings(f"sqlite:///{db}", api_keys=[api_key]),
        pipeline_factory=lambda _s, index: FakeTriage(repeat_index=index),
    )
    base = live_server(app)
    with httpx.Client(base_url=base, timeout=30) as http:
        assert http.get("/healthz").json()["status"] == "ok"
        case = http.post("/v1/classify", json={"text": PETITION, "channel": "热线"}).json()
        batch = http.post("/v1/classify/batch", json={"items": [{"text": "采矿"}, {}]}).json()
        assert (batch["ok"], batch["errors"]) == (1, 1)
        fb = http.post(
            "/v1/feedback",
            json={"case_id": case["case_id"], "label": "mining"},
            headers={"X-API-Key": api_key},
        )
        assert fb.status_code == 201
        bad = http.post(
            "/v1/classify", content=b'{"text":', headers={"content-type": "application/json"}
        )
        assert bad.status_code == 422
        metrics = http.get("/metrics").text
    assert 'route="/v1/feedback",status="201"} 1' in metrics
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from cases").fetchone() == (2,)
        assert conn.execute("select case_id, label from feedback").fetchall() == [
            (case["case_id"], "mining")
        ]


def test_concurrent_clients_get_no_errors(live_server: Callable[[Any], str], db_url: str) -> None:
    app = create_app(
        make_settings(db_url), pipeline_factory=lambda _s, i: FakeTriage(repeat_index=i)
    )
    base = live_server(app)

    async def run() -> list[int]:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
            answers = await asyncio.gather(
                *(http.post("/v1/classify", json={"text": f"{PETITION}{i}"}) for i in range(200))
            )
        return [r.status_code for r in answers]

    assert asyncio.run(run()) == [200] * 200


# --- the real pipeline, started as a separate process -----------------------------------------


def test_serve_py_with_the_real_pipeline(
    server_process: Callable[..., str], real_model: Path, tmp_path: Path, api_key: str
) -> None:
    db = tmp_path / "var" / "cases.sqlite3"
    env = {
        "TRIAGE_DATABASE_URL": f"sqlite:///{db}",
        "TRIAGE_API_KEYS": json.dumps([api_key]),
    }
    base = server_process(["--model", str(real_model), "--log-level", "warning"], env)
    with httpx.Client(base_url=base, timeout=30) as http:
        health = http.get("/healthz").json()
        assert health["status"] == "ok", health
        model = http.get("/v1/model").json()
        assert "land_acquisition" in {label["id"] for label in model["labels"]}
        text = (
            "我们是C2县白鹤岭镇马鬃岭村村民，2019年村里土地被征收修物流园，征地补偿款至今还有"
            "一半没有发到农户手里，全体村民要求县里核查补偿款去向，尽快足额发放。"
        )
        first = http.post("/v1/classify", json={"text": text, "received_at": "2026-11-21"})
        assert first.status_code == 200, first.text
        data = first.json()
        assert data["label"] == "land_acquisition"
        assert len(data["candidates"]) == 3
        assert data["deadlines"]["acknowledge_by"] == "2026-12-06"
        assert data["model_version"] == model["version"]
        items = [{"text": text}, {"text": "   "}, {"text": "no Chinese at all"}, {"text": text}]
        batch = http.post("/v1/classify/batch", json={"items": items}).json()
        assert [r["status"] for r in batch["results"]] == ["ok", "error", "error", "ok"]
        assert batch["results"][2]["error"]["status"] == 422
        assert batch["results"][3]["result"]["label"] == "land_acquisition"
        too_long = http.post("/v1/classify", json={"text": "征" * 20_001})
        assert too_long.status_code == 413
        fb = http.post(
            "/v1/feedback",
            json={"case_id": data["case_id"], "label": "land_illegal_use"},
            headers={"X-API-Key": api_key},
        )
        assert fb.status_code == 201, fb.text
        reload = http.post("/v1/model/reload", headers={"X-API-Key": api_key})
        assert reload.status_code == 200, reload.text
        assert http.post("/v1/classify", json={"text": text}).status_code == 200
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from cases").fetchone() == (4,)
        assert conn.execute("select label from feedback").fetchall() == [("land_illegal_use",)]


def test_keepalive_connections_end_after_the_configured_number_of_requests(
    live_server: Callable[[Any], str], db_url: str
) -> None:
    """With TRIAGE_KEEPALIVE_REQUESTS=3 the third answer on a connection says ``Connection:
    close`` and the server closes it; a client that reconnects is served on."""
    import socket

    app = create_app(
        make_settings(db_url, keepalive_requests=3),
        pipeline_factory=lambda _s, i: FakeTriage(repeat_index=i),
    )
    host, port = live_server(app).removeprefix("http://").split(":")
    request = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()

    def answers(sock: socket.socket) -> list[bytes]:
        heads = []
        with sock.makefile("rb") as stream:
            for _ in range(3):
                sock.sendall(request)
                head = b"".join(iter(stream.readline, b"\r\n"))
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                stream.read(length)
                heads.append(head.lower())
            assert stream.read() == b""  # closed by the server
        return heads

    for _ in range(2):  # a new connection counts from zero
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            heads = answers(sock)
        assert [b"connection: close" in head for head in heads] == [False, False, True]
        assert all(head.startswith(b"http/1.1 200") for head in heads)


def test_two_workers_find_each_others_cases(
    server_process: Callable[..., str], real_model: Path, tmp_path: Path
) -> None:
    """``serve.py --workers 2``: a petition classified by one worker process is found as a
    similar earlier case by both, the other one through the form stored with the case."""
    db = tmp_path / "cases.sqlite3"
    env = {"TRIAGE_DATABASE_URL": f"sqlite:///{db}", "TRIAGE_REPEAT_SYNC_SECONDS": "0.1"}
    base = server_process(["--model", str(real_model), "--workers", "2"], env)
    text = (
        "我们是C2县白鹤岭镇马鬃岭村村民，2019年村里土地被征收修物流园，征地补偿款至今还有"
        "一半没有发到农户手里，全体村民要求县里核查补偿款去向，尽快足额发放。"
    )

    def worker(http: httpx.Client) -> str:
        """Which process answers on this connection (its start time, from /metrics)."""
        for line in http.get("/metrics").text.splitlines():
            if line.startswith("triage_process_start_time_seconds "):
                return line.split()[1]
        raise AssertionError("no start time in /metrics")

    with httpx.Client(base_url=base, timeout=30) as http:
        first_worker = worker(http)
        first = http.post("/v1/classify", json={"text": text}).json()["case_id"]
    found: dict[str, list[str]] = {}
    for _ in range(200):  # new connections until both processes have answered
        with httpx.Client(base_url=base, timeout=30) as http:
            answering = worker(http)
            if answering in found:
                continue
            for _ in range(50):  # the other worker indexes it within its sync interval
                similar = http.post("/v1/classify", json={"text": text + "谢谢。", "store": False})
                found[answering] = [s["case_id"] for s in similar.json()["similar_cases"]]
                if found[answering]:
                    break
                time.sleep(0.1)
        if len(found) == 2:
            break
    assert len(found) == 2 and first_worker in found, found
    assert all(ids == [first] for ids in found.values()), found
    with sqlite3.connect(db) as conn:
        ((form, key),) = conn.execute("select canonical, canonical_key from cases").fetchall()
    assert form and key
