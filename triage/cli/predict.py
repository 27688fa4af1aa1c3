"""``triage predict``: classify one petition and print JSON."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``predict`` subcommand."""
    p = sub.add_parser("predict", help="classify one petition text (JSON to stdout)")
    p.add_argument("text", help="petition text ('-' reads standard input)")
    p.add_argument("--title", default="")
    p.add_argument("--model", default=None, help="model folder or version (default: current)")
    p.add_argument("--routing", default=None, help="a routing table YAML replacing the default")
    p.add_argument("--received", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default: today)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Classify and print the full triage result as JSON."""
    from triage.pipeline import Triage
    from triage.settings import get_settings

    text = sys.stdin.read() if args.text == "-" else args.text
    routing = args.routing or get_settings().routing_table
    triage = Triage.load(model=args.model, routing=routing)
    result = triage.classify(text, title=args.title, received_at=args.received)
    print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    return 0
