"""``triage serve``: run the HTTP service (FastAPI on uvicorn)."""

from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path
from typing import Any

from triage.errors import ModelError

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add ``serve`` to the ``triage`` command."""
    parser = subparsers.add_parser(
        "serve",
        help="run the HTTP API and the intake page",
        description=(
            "Serve /v1/classify, /v1/classify/batch, /v1/feedback, /v1/model, /healthz, "
            "/metrics and the intake page at /. Other settings come from TRIAGE_* "
            "environment variables (see docs/api.md)."
        ),
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``triage serve`` (shared with the top-level serve.py)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--model", type=Path, default=None, help="model folder to serve (default: the registry's)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (default 1; each loads its own model and repeat index)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level (info logs one masked line per request)",
    )


def logging_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config plus the ``triage`` loggers on the same handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["triage"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


def run(args: argparse.Namespace) -> int:
    """Start uvicorn; returns when the server stops."""
    import uvicorn

    from triage.settings import get_settings

    if args.model is not None:
        model = args.model.expanduser().resolve()
        if not model.is_dir():
            raise ModelError(f"model folder {args.model} does not exist")
        # Through the environment, so that every worker process sees it too.
        os.environ["TRIAGE_MODEL_PATH"] = str(model)
        get_settings.cache_clear()
    if args.workers < 1:
        raise ModelError("--workers must be at least 1")
    # Create the database schema once, before several workers race to create it.
    from triage.store import Store

    Store(get_settings().database_url).close()
    uvicorn.run(
        "triage.api.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        log_config=logging_config(args.log_level),
        # Our middleware logs each request with the route template and masked path; uvicorn's
        # access log would print raw query strings.
        access_log=False,
    )
    return 0
