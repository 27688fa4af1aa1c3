"""The ``triage`` command line. Each subcommand lives in its own module with a ``register``.

Exit codes scripts can rely on: 0 success, 1 finished but some rows failed (batch), 2 bad
input or usage, 3 configuration error, 4 model error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from triage import __version__
from triage.errors import TriageError

# Subcommand modules, in the order `triage --help` lists them. Each defines
# ``register(subparsers) -> None`` that adds its parser and sets ``func`` (args -> int).
_COMMANDS = ("train", "evaluate", "predict", "batch", "serve", "retrain", "models")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and shell completion)."""
    parser = argparse.ArgumentParser(
        prog="triage", description="Classify, route and prioritise petitions (信访事项分类与分办)."
    )
    parser.add_argument("--version", action="version", version=f"triage {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"triage.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"triage.cli.{name}":
                continue  # a subcommand not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``triage`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except TriageError as exc:
        print(f"triage {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"triage {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
