"""``triage evaluate``: score a model on a labelled file."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``evaluate`` subcommand."""
    p = sub.add_parser("evaluate", help="evaluate a model on a labelled CSV/XLSX")
    p.add_argument("--model", default=None, help="model folder or version (default: current)")
    p.add_argument("--data", required=True, help="labelled CSV or XLSX")
    p.add_argument("--text-col", default=None)
    p.add_argument("--title-col", default=None)
    p.add_argument("--label-col", default=None)
    p.add_argument(
        "--report", default=None, metavar="DIR", help="write metrics.json and confusion_matrix.png"
    )
    p.add_argument("--json", action="store_true", help="print metrics as JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print accuracy, macro-F1, per-class figures and the confusion matrix."""
    from triage.dataset import load_labelled
    from triage.evaluate import classification_metrics, format_metrics, write_report
    from triage.registry import load_model

    model = load_model(args.model)
    data = load_labelled(args.data, args.text_col, args.title_col, args.label_col)
    est = model.estimator
    pred = est.predict(data.texts)
    labels = sorted(set(data.labels) | {str(c) for c in est.classes_})
    metrics = classification_metrics(data.labels, pred, labels)
    metrics["model_version"] = model.version
    unknown = sorted(set(data.labels) - {str(c) for c in est.classes_})
    if args.json:
        print(json.dumps(metrics, ensure_ascii=False, indent=2))
    else:
        print(f"model {model.version} on {args.data}")
        print(format_metrics(metrics))
        print("confusion matrix (rows: true, columns: predicted):")
        print("  " + " ".join(f"{i:>5d}" for i in range(len(labels))))
        for i, row in enumerate(metrics["confusion_matrix"]):
            print(f"{i:>2d}" + " ".join(f"{v:>5d}" for v in row) + f"  {labels[i]}")
        if unknown:
            print(f"note: labels the model does not know: {unknown}")
    if args.report:
        paths = write_report(args.report, metrics, f"model {model.version}")
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0
