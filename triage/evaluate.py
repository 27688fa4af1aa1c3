"""Metrics, cross-validation and evaluation reports (JSON + PNG confusion matrix)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)
from sklearn.model_selection import StratifiedKFold

from triage.model import PetitionClassifier, parallel_map, subset_analyzed

__all__ = ["classification_metrics", "cross_validate", "format_metrics", "write_report"]


def classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] | None = None
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    y_true, y_pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    labels = list(labels) if labels is not None else sorted(set(y_true.tolist()))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "per_class": {
            lbl: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, lbl in enumerate(labels)
        },
        "labels": labels,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def cross_validate(
    estimator: PetitionClassifier,
    texts: Sequence[str],
    labels: Sequence[str],
    extra_texts: Sequence[str] = (),
    extra_labels: Sequence[str] = (),
    folds: int = 5,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    n_jobs: int | None = -1,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Stratified k-fold cross-validation.

    Returns the metrics, the out-of-fold predictions and the out-of-fold probabilities
    (columns: sorted labels of real and extra rows).

    ``extra_*`` rows (e.g. examples the project wrote) are added to every training fold and
    never evaluated, so the metrics are on the real rows only. Text is normalised and
    segmented once for all folds. Folds are fitted in ``n_jobs`` processes (-1: one per
    CPU); the figures do not depend on it.
    """
    t0 = time.perf_counter()
    y = np.asarray(labels, dtype=object)
    y_extra = np.asarray(extra_labels, dtype=object)
    analyzed = estimator.analyze(list(texts) + list(extra_texts))
    n, n_extra = len(y), len(y_extra)
    extra_idx = np.arange(n, n + n_extra)
    counts = {c: int((y == c).sum()) for c in set(y.tolist())}
    # Classes with fewer rows than folds cannot be stratified; they still get predicted.
    strat = np.array([c if counts[c] >= folds else "__rare__" for c in y], dtype=object)
    pred = np.empty(n, dtype=object)
    classes = np.array(sorted(set(y.tolist()) | set(y_extra.tolist())), dtype=object)
    scores = np.zeros((n, len(classes)))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(np.zeros(n), strat))
    parallel = n_jobs is not None and n_jobs != 1
    # Folds side by side, each fitting its own calibration folds one after the other.
    fold_estimator = clone(estimator).set_params(n_jobs=1) if parallel else estimator

    def tasks():  # built as workers ask for them: one fold's arrays in memory at a time
        for train, test in splits:
            train_all = np.concatenate([train, extra_idx])
            y_train = np.concatenate([y[train], y_extra]) if n_extra else y[train]
            yield (
                fold_estimator,
                subset_analyzed(analyzed, train_all),
                y_train,
                subset_analyzed(analyzed, test),
            )

    on_done = (lambda k: progress(k, folds)) if progress else None
    results = parallel_map(_fit_fold, tasks(), n_jobs, on_done)
    for (_, test), (model_classes, fold_proba) in zip(splits, results, strict=True):
        scores[np.ix_(test, np.searchsorted(classes, model_classes))] = fold_proba
        pred[test] = model_classes[fold_proba.argmax(axis=1)]
    metrics = classification_metrics(y, pred, sorted(counts))
    metrics.update(
        folds=folds, seed=seed, extra_rows=n_extra, seconds=round(time.perf_counter() - t0, 1)
    )
    return metrics, pred, scores


def _fit_fold(estimator, analyzed_train, y_train, analyzed_test):  # type: ignore[no-untyped-def]
    """Fit a clone of ``estimator`` on one training fold; its classes and test probabilities."""
    model = clone(estimator).fit_analyzed(analyzed_train, y_train)
    return model.classes_, model.predict_proba_analyzed(analyzed_test)


def _width(text: str) -> int:
    """Terminal columns of ``text``: CJK characters take two."""
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def format_metrics(metrics: dict[str, Any], names: dict[str, str] | None = None) -> str:
    """A plain-text table of the metrics for terminals and logs."""
    names = names or {}
    shown = {lbl: f"{lbl} ({names[lbl]})" if lbl in names else lbl for lbl in metrics["labels"]}
    width = max([_width(s) for s in shown.values()] + [10]) + 2
    head = (
        f"accuracy {metrics['accuracy']:.4f}   macro-F1 {metrics['macro_f1']:.4f}   "
        f"n={metrics['n']}"
    )
    lines = [head, f"{'label':<{width}}precision  recall      f1  support"]
    for lbl, m in metrics["per_class"].items():
        pad = " " * (width - _width(shown[lbl]))
        lines.append(
            f"{shown[lbl]}{pad}{m['precision']:9.3f} {m['recall']:7.3f} {m['f1']:7.3f}"
            f" {m['support']:8d}"
        )
    return "\n".join(lines)


def write_report(
    out_dir: str | Path, metrics: dict[str, Any], title: str = "confusion matrix"
) -> list[Path]:
    """Write ``metrics.json`` and ``confusion_matrix.png`` into ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "metrics.json"
    json_path.write_text(json.dumps(metrics, ensure_ascii=False, indent=2) + "\n", "utf-8")
    png_path = out / "confusion_matrix.png"
    _plot_confusion(metrics, png_path, title)
    return [json_path, png_path]


def _plot_confusion(metrics: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    cm = np.asarray(metrics["confusion_matrix"], dtype=float)
    labels = metrics["labels"]
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = max(5.0, 0.55 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    int(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if share[i, j] > 0.5 else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} (acc {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f})")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
