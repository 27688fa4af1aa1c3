"""``triage predict``: classify one petition and print JSON."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``predict`` subcommand."""
    p = sub.add_parser("predict", help="classify one petition text (JSON to stdout)")
    p.add_argument("text", help="petition text ('-' reads standard input)")
    p.add_argument("--title", default="")
    p.add_argument("--model", default=None, help="model folder or version (default: current)")
    p.add_argument("--routing", default=None, help="a routing table YAML replacing the default")
    p.add_argument(
        "--received", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default: today)"
    )
    p.add_argument(
        "--history",
        default=None,
        metavar="URL",
        help="earlier cases to search for repeats: a SQLite file or SQLAlchemy URL "
        "(default: TRIAGE_DATABASE_URL when its file exists; 'none' to skip)",
    )
    p.set_defaults(func=run)


def _history_url(arg: str | None, default_url: str) -> str | None:
    if arg is not None:
        if arg.lower() == "none":
            return None
        return arg if "://" in arg else f"sqlite:///{arg}"
    # The default store is only searched when it exists: predict never creates a database.
    if default_url.startswith("sqlite:///"):
        return default_url if Path(default_url.removeprefix("sqlite:///")).is_file() else None
    return default_url


def run(args: argparse.Namespace) -> int:
    """Classify and print the full triage result as JSON."""
    from triage.errors import DataFileError
    from triage.pipeline import Triage, repeat_index_from_store
    from triage.settings import get_settings

    text = sys.stdin.read() if args.text == "-" else args.text
    settings = get_settings()
    routing = args.routing or settings.routing_table
    history = _history_url(args.history, settings.database_url)
    explicit_sqlite = args.history is not None and history and history.startswith("sqlite:///")
    if explicit_sqlite and not Path(history.removeprefix("sqlite:///")).is_file():
        raise DataFileError(f"{args.history}: no such history database")
    index = repeat_index_from_store(history) if history else None
    triage = Triage.load(model=args.model, routing=routing, repeat_index=index)
    result = triage.classify(text, title=args.title, received_at=args.received)
    print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    return 0
