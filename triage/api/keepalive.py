"""Keep-alive connections that end after a number of requests, so that load spreads evenly.

Several uvicorn workers accept connections from one shared socket, and a client's keep-alive
connection stays with the worker that accepted it. Clients that connect together (a pool
opening 32 connections at once) split between the workers by chance: 19 and 13, or worse.
The worker with more connections then runs near a full core while the other idles, and it
sets the tail latency of every client.

Like nginx's ``keepalive_requests``, :class:`KeepAliveLimitMiddleware` answers the N-th
request of a connection with ``Connection: close``, and the client opens a new one for its
next request. A worker picks up a new connection only when its event loop is free to accept
it, so new connections go mostly to the less busy worker, and connections drift towards an
even split while the load lasts. A reconnect on loopback or a LAN costs about 0.1 ms, once
per N requests.
"""

from __future__ import annotations

from collections import OrderedDict

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["KeepAliveLimitMiddleware"]


class KeepAliveLimitMiddleware:
    """Pure ASGI middleware: ``Connection: close`` on every ``max_requests``-th request of a
    connection (0: never). A connection is known by its client address and port; at most
    ``track`` of them are remembered (the oldest are forgotten and start counting again)."""

    def __init__(self, app: ASGIApp, max_requests: int, track: int = 8192) -> None:
        if max_requests < 0:
            raise ValueError(f"max_requests must be 0 (no limit) or more, got {max_requests}")
        self.app = app
        self.max_requests = max_requests
        self.track = track
        self._counts: OrderedDict[tuple[str, int], int] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if (
            scope["type"] != "http"
            or not self.max_requests
            or client is None
            or scope.get("http_version") != "1.1"  # 1.0 closes anyway; 2 multiplexes
        ):
            await self.app(scope, receive, send)
            return
        key = (client[0], client[1])
        # The event loop runs one request's bookkeeping at a time: no lock needed.
        count = self._counts.pop(key, 0) + 1
        if count < self.max_requests:
            self._counts[key] = count
            if len(self._counts) > self.track:
                self._counts.popitem(last=False)
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_closing)
