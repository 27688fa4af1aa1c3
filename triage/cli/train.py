"""``triage train``: cross-validate, fit and save a model."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``train`` subcommand."""
    p = sub.add_parser(
        "train",
        help="train a model on a labelled CSV/XLSX",
        description="Cross-validate on a labelled CSV/XLSX, fit on all rows, save a model folder.",
    )
    p.add_argument("--data", required=True, help="labelled CSV or XLSX")
    p.add_argument(
        "--text-col", default=None, help="text column (default: text / 信访内容 / 内容 …)"
    )
    p.add_argument(
        "--title-col", default=None, help="title column (default: title / 标题 …, optional)"
    )
    p.add_argument("--label-col", default=None, help="label column (default: label)")
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="FILE",
        help="extra labelled rows used for training only, never evaluated (repeatable)",
    )
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (0 to skip)")
    p.add_argument("--C", type=float, default=None, help="SVM regularisation")
    p.add_argument("--class-weight", choices=["balanced", "none"], default=None)
    p.add_argument("--abstain-threshold", type=float, default=None)
    p.add_argument("--segmenter", choices=["auto", "rjieba", "jieba"], default="auto")
    p.add_argument("--json", action="store_true", help="print the metadata as JSON at the end")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train and save; print cross-validated metrics."""
    from triage.evaluate import format_metrics
    from triage.segment import set_default_backend
    from triage.training import load_training_files, train_and_save

    set_default_backend(args.segmenter)
    data, extra = load_training_files(
        args.data, args.extra, args.text_col, args.title_col, args.label_col
    )
    params = {}
    if args.C is not None:
        params["C"] = args.C
    if args.class_weight is not None:
        params["class_weight"] = None if args.class_weight == "none" else "balanced"
    if args.abstain_threshold is not None:
        params["abstain_threshold"] = args.abstain_threshold
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    for d in [data, *extra]:
        dropped = ", ".join(f"{v} {k}" for k, v in d.dropped.items())
        log(f"{d.path}: {len(d.texts):,} rows" + (f" (dropped {dropped})" if dropped else ""))
    _, meta = train_and_save(data, args.out, extra, params, folds=args.folds, progress=log)
    if meta["cv_metrics"]:
        print(f"cross-validated ({args.folds} folds, on {args.data} rows only):")
        print(format_metrics(meta["cv_metrics"]))
    print(
        f"saved {args.out} ({meta['n_features']:,} features, trained in {meta['train_seconds']} s)"
    )
    if args.json:
        print(json.dumps(meta, ensure_ascii=False, indent=2))
    return 0
