"""KeepAliveLimitMiddleware on its own (the live-server test checks it end to end)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from triage.api.keepalive import KeepAliveLimitMiddleware


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _closes(
    middleware: KeepAliveLimitMiddleware, client: tuple[str, int] | None, version: str = "1.1"
) -> bool:
    """Whether one request from ``client`` is answered with Connection: close."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "http_version": version, "client": client}
    asyncio.run(middleware(scope, None, send))  # type: ignore[arg-type]
    headers = sent[0]["headers"]
    assert headers[0] == (b"x-a", b"1") and sent[1]["body"] == b"ok"  # the rest untouched
    return (b"connection", b"close") in headers


def test_every_nth_request_of_a_connection_closes_it() -> None:
    m = KeepAliveLimitMiddleware(_app, max_requests=3)
    a, b = ("127.0.0.1", 5000), ("127.0.0.1", 5001)
    assert [_closes(m, a) for _ in range(7)] == [False, False, True] * 2 + [False]
    assert [_closes(m, b) for _ in range(3)] == [False, False, True]  # counted apart


def test_connections_it_cannot_count_or_need_not_close_pass_through() -> None:
    assert not any(_closes(KeepAliveLimitMiddleware(_app, 0), ("h", 1)) for _ in range(5))
    m = KeepAliveLimitMiddleware(_app, max_requests=1)
    assert _closes(m, ("h", 1))
    assert not _closes(m, None)  # no client address (e.g. a unix socket)
    assert not _closes(m, ("h", 1), version="1.0")  # closes after each answer anyway
    with pytest.raises(ValueError, match="got -1"):
        KeepAliveLimitMiddleware(_app, max_requests=-1)


def test_it_remembers_a_bounded_number_of_connections() -> None:
    m = KeepAliveLimitMiddleware(_app, max_requests=2, track=2)
    _closes(m, ("h", 1))
    _closes(m, ("h", 2))
    _closes(m, ("h", 3))  # forgets ("h", 1), the oldest
    assert len(m._counts) == 2
    assert not _closes(m, ("h", 1))  # counts again from one
    assert _closes(m, ("h", 3))
