"""In-process metrics rendered in the Prometheus text format, and the access-log middleware.

Rendered by hand (no prometheus_client dependency): a few counters and one histogram family
are all ``/metrics`` needs. Numbers are per process; with ``--workers N`` each worker reports
its own, which Prometheus sums when scraping every worker (or use one worker, the default).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from triage.privacy import mask_personal_data

from .responses import too_large_response

__all__ = ["BodySizeLimitMiddleware", "BodyTooLargeError", "Metrics", "MetricsMiddleware"]

access_log = logging.getLogger("triage.api.access")

#: Latency buckets (seconds): fine below 50 ms, where the service is meant to live.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


class Metrics:
    """Thread-safe counters and latency histograms for one process."""

    def __init__(self, buckets: Iterable[float] = DEFAULT_BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        # route -> (bucket counts, sum, count); bucket counts are not cumulative until render
        self._latency: dict[str, tuple[list[int], float, int]] = {}
        self._predictions: dict[str, int] = {}
        self._needs_review = 0
        self._feedback = 0
        self._batches = 0
        self._batched = 0
        self.started = time.time()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one finished request and add its latency to the route's histogram."""
        index = len(self.buckets)
        for i, bound in enumerate(self.buckets):
            if seconds <= bound:
                index = i
                break
        with self._lock:
            key = (method, route, str(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            counts, total, n = self._latency.get(route) or ([0] * (len(self.buckets) + 1), 0.0, 0)
            counts[index] += 1
            self._latency[route] = (counts, total + seconds, n + 1)

    def count_prediction(self, label: str, needs_review: bool = False) -> None:
        """Count one classified petition."""
        with self._lock:
            self._predictions[label] = self._predictions.get(label, 0) + 1
            self._needs_review += bool(needs_review)

    def count_batch(self, size: int) -> None:
        """Count one micro-batch of ``size`` petitions classified together."""
        with self._lock:
            self._batches += 1
            self._batched += size

    def count_feedback(self) -> None:
        """Count one stored correction."""
        with self._lock:
            self._feedback += 1

    def render(self, info: dict[str, str] | None = None) -> str:
        """The metrics in Prometheus text exposition format 0.0.4."""
        with self._lock:
            requests = dict(self._requests)
            latency = {k: (list(c), s, n) for k, (c, s, n) in self._latency.items()}
            predictions = dict(self._predictions)
            needs_review, feedback = self._needs_review, self._feedback
            batches, batched = self._batches, self._batched
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        family("triage_http_requests_total", "counter", "HTTP requests by route and status.")
        for (method, route, status), n in sorted(requests.items()):
            labels = _labels(method=method, route=route, status=status)
            out.append(f"triage_http_requests_total{labels} {n}")
        family("triage_http_request_duration_seconds", "histogram", "Request latency by route.")
        for route, (counts, total, n) in sorted(latency.items()):
            cumulative = 0
            for bound, c in zip((*self.buckets, float("inf")), counts, strict=True):
                cumulative += c
                le = "+Inf" if bound == float("inf") else _number(bound)
                labels = _labels(route=route, le=le)
                out.append(f"triage_http_request_duration_seconds_bucket{labels} {cumulative}")
            route_label = _labels(route=route)
            out.append(f"triage_http_request_duration_seconds_sum{route_label} {total!r}")
            out.append(f"triage_http_request_duration_seconds_count{route_label} {n}")
        family("triage_predictions_total", "counter", "Classified petitions by predicted label.")
        for label, n in sorted(predictions.items()):
            out.append(f"triage_predictions_total{_labels(label=label)} {n}")
        family("triage_needs_review_total", "counter", "Predictions marked needs_review.")
        out.append(f"triage_needs_review_total {needs_review}")
        family("triage_feedback_total", "counter", "Clerk corrections stored.")
        out.append(f"triage_feedback_total {feedback}")
        family("triage_classify_batches_total", "counter", "Micro-batches of /v1/classify.")
        out.append(f"triage_classify_batches_total {batches}")
        family("triage_classify_batched_total", "counter", "Petitions classified in micro-batches.")
        out.append(f"triage_classify_batched_total {batched}")
        family("triage_process_start_time_seconds", "gauge", "Start time (Unix seconds).")
        out.append(f"triage_process_start_time_seconds {self.started!r}")
        if info is not None:
            family("triage_model_info", "gauge", "The model being served (value is always 1).")
            out.append(f"triage_model_info{_labels(**info)} 1")
        return "\n".join(out) + "\n"


class MetricsMiddleware:
    """Pure ASGI middleware: times every HTTP request, counts it, logs one masked line.

    The route label is the matched route template (``/v1/classify``), never the raw path, so
    the number of series stays bounded and no petition text or id ends up in a label.
    """

    def __init__(
        self, app: ASGIApp, metrics: Metrics, log_requests: Callable[[], bool] = lambda: True
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client sees if the app raises before answering

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = _route_template(scope)
            self.metrics.observe_request(scope["method"], route, status, elapsed)
            if self.log_requests() and access_log.isEnabledFor(logging.INFO):
                path = route if route != "other" else mask_personal_data(scope["path"])[:200]
                access_log.info("%s %s %d %.1fms", scope["method"], path, status, elapsed * 1000.0)


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if scope.get("path", "").startswith("/static/"):
        return "/static"
    return "other"


class BodyTooLargeError(ValueError):
    """Raised while reading a body without Content-Length that grows over the limit."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"request body is over the limit of {max_bytes} bytes")
        self.max_bytes = max_bytes


class BodySizeLimitMiddleware:
    """Answer 413 to request bodies over ``max_bytes`` before anyone buffers them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False  # the server rejects a malformed header itself
                if too_big:
                    await too_large_response(self.max_bytes)(scope, receive, send)
                    return
                break
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Chunked upload without Content-Length: stop reading; the body parser
                    # sees a client error, never a half-read body.
                    raise BodyTooLargeError(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)
