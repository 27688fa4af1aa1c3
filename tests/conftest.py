"""Shared fixtures: a temporary database URL, an API key, live servers on loopback."""

from __future__ import annotations

import csv
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_API_KEY = "test-key-0123456789abcdef"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A SQLAlchemy URL of a fresh SQLite file (its folder does not exist yet)."""
    return f"sqlite:///{tmp_path / 'var' / 'cases.sqlite3'}"


@pytest.fixture
def api_key() -> str:
    """The API key the test settings accept."""
    return TEST_API_KEY


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(base_url: str, timeout: float = 60.0, proc: Any = None) -> httpx.Response:
    """Poll ``/healthz`` until the server answers (any status); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering")
        try:
            return httpx.get(f"{base_url}/healthz", timeout=2.0)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def live_server() -> Iterator[Callable[..., str]]:
    """``start(app) -> base_url``: serve an ASGI app with uvicorn in a thread on loopback."""
    import uvicorn

    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: Any) -> str:
        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        base_url = f"http://127.0.0.1:{port}"
        wait_until_up(base_url)
        servers.append((server, thread))
        return base_url

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def server_process() -> Iterator[Callable[..., str]]:
    """``start(args, env) -> base_url``: run ``python serve.py`` in a subprocess on loopback."""
    procs: list[tuple[subprocess.Popen[bytes], Any]] = []

    def start(args: list[str] | None = None, env: dict[str, str] | None = None) -> str:
        port = free_port()
        cmd = [sys.executable, str(ROOT / "serve.py"), "--host", "127.0.0.1", "--port", str(port)]
        # A file, not a pipe: a chatty server never blocks on a full pipe.
        log = tempfile.TemporaryFile()  # noqa: SIM115 - closed at teardown
        proc = subprocess.Popen(
            [*cmd, *(args or [])],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append((proc, log))
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(base_url, proc=proc)
        except Exception as exc:
            proc.kill()
            proc.wait()
            log.seek(0)
            output = log.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"server did not start: {exc}\n{output}") from exc
        return base_url

    yield start
    for proc, log in procs:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def real_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model folder: the shipped default, else a small one trained on data/examples."""
    if importlib.util.find_spec("triage.pipeline") is None:
        pytest.skip("triage.pipeline is not there yet")
    default = ROOT / "models" / "default"
    if (default / "metadata.json").is_file():
        return default
    work = tmp_path_factory.mktemp("model")
    rows: list[dict[str, str]] = []
    for path in sorted((ROOT / "data" / "examples").glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            rows.extend(csv.DictReader(fh))
    with (work / "train.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["title", "text", "label"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    cmd = [
        sys.executable,
        "-m",
        "triage",
        "train",
        "--data",
        str(work / "train.csv"),
        "--folds",
        "2",
    ]
    done = subprocess.run(
        [*cmd, "--out", str(work / "tiny")], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return work / "tiny"


@pytest.fixture
def pipelines() -> list[Any]:
    """Every fake pipeline the app built, in order (the last one is being served)."""
    return []


@pytest.fixture
def make_client(db_url: str, pipelines: list[Any]) -> Iterator[Callable[..., Any]]:
    """Start services on the fake pipeline of ``test_api`` (TestClient, lifespan run);
    keyword overrides go to the settings (``fail``: the model does not load)."""
    from fastapi.testclient import TestClient
    from test_api import FakeTriage, make_settings

    from triage.api.main import create_app

    clients: list[TestClient] = []

    def factory(raise_errors: bool = True, fail: bool = False, **overrides: Any) -> Any:
        def build(settings: Any, repeat_index: Any) -> Any:
            if fail:
                raise FileNotFoundError("models/default/model.skops")
            pipeline = FakeTriage(f"fake-{len(pipelines) + 1}", repeat_index)
            pipelines.append(pipeline)
            return pipeline

        app = create_app(make_settings(db_url, **overrides), pipeline_factory=build)
        client = TestClient(app, raise_server_exceptions=raise_errors)
        client.__enter__()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.__exit__(None, None, None)
