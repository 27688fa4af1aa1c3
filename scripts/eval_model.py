"""Reproduce the model figures of issue 2 on the shared data (skips cleanly without it).

    python scripts/eval_model.py [--shared ../shared/data] [--json reports/model_eval.json]

1. teddy7_train.csv (7 classes, the public benchmark): 5-fold cross-validated macro-F1.
2. petitions13_train.csv (13 issue types): 5-fold cross-validated per-class figures, with and
   without the project's written examples (data/examples/*.csv) added to every training fold;
   evaluated on real rows only.
3. Time to train (cross-validation + final fit) on each file, with ``--n-jobs`` processes
   (default: one per CPU, as ``triage train``; the figures do not depend on it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from triage.dataset import load_labelled  # noqa: E402
from triage.evaluate import cross_validate, format_metrics  # noqa: E402
from triage.model import PetitionClassifier  # noqa: E402
from triage.training import DEFAULT_PARAMS  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--json", default=None, help="write all figures to this JSON file")
    parser.add_argument("--only", choices=["teddy7", "petitions13"], default=None)
    parser.add_argument(
        "--n-jobs", type=int, default=-1, help="processes for folds and fits (1: sequential)"
    )
    args = parser.parse_args()
    shared = Path(args.shared)
    if not (shared / "teddy7_train.csv").is_file():
        print(f"shared data not found in {shared}; nothing to evaluate", file=sys.stderr)
        return 2
    out: dict[str, object] = {"params": DEFAULT_PARAMS}
    examples = [load_labelled(p) for p in sorted((ROOT / "data" / "examples").glob("*.csv"))]
    ex_texts = [t for e in examples for t in e.texts]
    ex_labels = [lbl for e in examples for lbl in e.labels]

    runs = []
    if args.only in (None, "teddy7"):
        runs.append(("teddy7", "teddy7_train.csv", False))
    if args.only in (None, "petitions13"):
        runs += [
            ("petitions13_without_examples", "petitions13_train.csv", False),
            ("petitions13_with_examples", "petitions13_train.csv", True),
        ]
    for name, file, with_examples in runs:
        data = load_labelled(shared / file)
        est = PetitionClassifier(**DEFAULT_PARAMS)
        t0, c0 = time.perf_counter(), time.process_time()
        metrics, _, _ = cross_validate(
            est,
            data.texts,
            data.labels,
            ex_texts if with_examples else [],
            ex_labels if with_examples else [],
            n_jobs=args.n_jobs,
        )
        metrics["wall_seconds"] = round(time.perf_counter() - t0, 1)
        metrics["cpu_seconds"] = round(time.process_time() - c0, 1)
        if name != "petitions13_without_examples":
            t0, c0 = time.perf_counter(), time.process_time()
            PetitionClassifier(**DEFAULT_PARAMS, n_jobs=args.n_jobs).fit(
                data.texts + (ex_texts if with_examples else []),
                data.labels + (ex_labels if with_examples else []),
            )
            metrics["final_fit_wall_seconds"] = round(time.perf_counter() - t0, 1)
        worst = min(metrics["per_class"].items(), key=lambda kv: kv[1]["recall"])
        print(
            f"\n== {name}: 5-fold CV on real rows ({metrics['wall_seconds']} s wall, "
            f"{metrics['cpu_seconds']} s CPU) =="
        )
        print(format_metrics(metrics))
        print(f"lowest recall: {worst[0]} {worst[1]['recall']:.3f}")
        out[name] = metrics
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, ensure_ascii=False, indent=2) + "\n", "utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
