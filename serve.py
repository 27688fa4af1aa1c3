"""Run the triage HTTP service: ``python serve.py [--host H] [--port P] [--model DIR]``.

The same as ``triage serve`` (also ``--workers N``); settings come from ``TRIAGE_*``
environment variables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run from a checkout, uninstalled

from triage.cli.serve import add_arguments, run
from triage.errors import TriageError


def main(argv: list[str] | None = None) -> int:
    """Parse the options and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="serve.py", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except TriageError as exc:
        print(f"serve.py: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
