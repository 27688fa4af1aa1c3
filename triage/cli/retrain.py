"""``triage retrain``: merge corrections into the training data, champion vs challenger."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run"]

_EPILOG = """\
The challenger is always saved as a new version in --out (see `triage models list`); it
becomes the current version only if its held-out macro-F1 is not lower than the champion's by
more than --margin. `triage models promote VERSION` overrides the decision, `triage models
rollback` undoes a promotion.

exit status: 0 done (promoted or not: the output says which and why); 2 cannot retrain
(unreadable file, missing column, a new label with too few examples or not in the routing
table); 3 bad database URL or routing table; 4 model error.
"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``retrain`` subcommand."""
    p = subparsers.add_parser(
        "retrain",
        help="retrain on base data + clerks' corrections, promote if not worse",
        description="Merge the base labelled file with the clerks' corrections from the case "
        "store, train a challenger, compare it with the current model on the same held-out "
        "split and promote it only if it is not worse by more than the margin.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--base", required=True, metavar="FILE", help="labelled CSV/XLSX")
    p.add_argument(
        "--feedback-db", metavar="URL", help="SQLAlchemy URL of the case store (corrections)"
    )
    p.add_argument(
        "--out", metavar="DIR", help="model registry folder (default: settings models_dir)"
    )
    p.add_argument(
        "--margin", type=float, default=0.01, help="largest macro-F1 drop still promoted (0.01)"
    )
    p.add_argument(
        "--min-examples",
        type=int,
        default=20,
        metavar="N",
        help="examples a label found only in the corrections needs (default 20)",
    )
    p.add_argument("--text-col", metavar="C", help="text column (default: detected)")
    p.add_argument("--title-col", metavar="C", help="title column (default: detected)")
    p.add_argument("--label-col", metavar="C", help="label column (default: label)")
    p.add_argument("--champion", metavar="DIR", help="model to beat (default: current version)")
    p.add_argument("--routing", metavar="YAML", help="routing table the labels must exist in")
    p.add_argument("--test-size", type=float, default=0.2, help="held-out share (default 0.2)")
    p.add_argument("--seed", type=int, default=42, help="seed of the held-out split")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Retrain and print what happened."""
    from triage.retrain import RetrainOptions, format_result, retrain
    from triage.settings import get_settings

    result = retrain(
        RetrainOptions(
            base=Path(args.base),
            out=Path(args.out) if args.out else get_settings().models_dir,
            feedback_db=args.feedback_db,
            margin=args.margin,
            min_examples=args.min_examples,
            text_col=args.text_col,
            title_col=args.title_col,
            label_col=args.label_col,
            test_size=args.test_size,
            seed=args.seed,
            champion=args.champion,
            routing=args.routing,
        )
    )
    print(format_result(result), flush=True)
    return 0
