"""``triage batch``: classify every row of a CSV/XLSX file (see :mod:`triage.bulk`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from triage.bulk import BatchOptions

__all__ = ["options_from_args", "register", "run"]

_EPILOG = """\
output columns: every input column, then pred_label, pred_label_name, pred_confidence,
pred_top3, pred_department, pred_route, pred_disposition, pred_flags, pred_priority,
pred_needs_review, pred_status (ok/error), pred_error (reason: detail).

exit status: 0 every row classified; 1 finished, some rows have pred_status=error;
2 the job cannot proceed (unreadable file, missing column); 4 model error; 130 interrupted
(rerun with --resume to continue).

example:
  triage batch --input 2019年来信登记.xlsx --output 分类结果.csv --report 报告/
"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``batch`` subcommand."""
    p = subparsers.add_parser(
        "batch",
        help="classify every row of a CSV/XLSX file",
        description="Classify every row of a CSV or XLSX file into a CSV or XLSX file. "
        "Encodings (UTF-8, UTF-8 with BOM, GB18030/GBK) and the text, title and date columns "
        "are detected; every input row and column is kept.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", metavar="DIR", help="model folder (default: the current model)")
    p.add_argument("--routing", metavar="YAML", help="routing table (default: packaged)")
    p.add_argument("--input", required=True, metavar="FILE", help="CSV or XLSX to classify")
    p.add_argument("--output", required=True, metavar="FILE", help="result .csv or .xlsx")
    p.add_argument("--text-col", metavar="C", help="text column (default: detected)")
    p.add_argument("--title-col", metavar="C", help="title column (default: detected, optional)")
    p.add_argument(
        "--date-col", metavar="C", help="date column for the per-month report (default: detected)"
    )
    p.add_argument("--sheet", metavar="NAME", help="XLSX: only this sheet (default: every sheet)")
    p.add_argument(
        "--jobs", type=int, default=0, metavar="N", help="worker processes (default: every core)"
    )
    p.add_argument(
        "--chunk-size", type=int, default=500, metavar="N", help="rows per chunk (default 500)"
    )
    p.add_argument(
        "--resume", action="store_true", help="skip the rows already in --output and append"
    )
    p.add_argument(
        "--report", metavar="DIR", help="write PNG charts, pivot.csv and summary.json here"
    )
    p.add_argument(
        "--encoding",
        default="utf-8-sig",
        choices=("utf-8-sig", "utf-8", "gb18030"),
        help="CSV output encoding (default utf-8-sig: UTF-8 that Excel opens correctly)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the batch job; 0 all rows ok, 1 some row errors (TriageError → 2 via the CLI)."""
    import sys

    from triage.bulk import format_summary, run_batch

    try:
        summary = run_batch(options_from_args(args))
    except KeyboardInterrupt:
        # Every row written so far is whole (the output is flushed chunk by chunk).
        print(
            f"triage batch: interrupted; the rows classified so far are in {args.output}:"
            " run the same command with --resume to continue",
            file=sys.stderr,
        )
        return 130
    print(format_summary(summary), flush=True)
    if args.report:
        print(f"report: {args.report}", flush=True)
    return 1 if summary.error_rows else 0


def options_from_args(args: argparse.Namespace) -> BatchOptions:
    """The :class:`~triage.bulk.BatchOptions` of parsed ``triage batch`` arguments."""
    from triage.bulk import BatchOptions

    return BatchOptions(
        input=Path(args.input),
        output=Path(args.output),
        model=args.model,
        routing=args.routing,
        text_col=args.text_col,
        title_col=args.title_col,
        date_col=args.date_col,
        sheet=args.sheet,
        jobs=args.jobs or None,
        chunk_size=args.chunk_size,
        resume=args.resume,
        report=Path(args.report) if args.report else None,
        progress=not args.no_progress,
        output_encoding=args.encoding,
    )
