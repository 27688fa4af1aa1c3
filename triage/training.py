"""Training a model from labelled files: cross-validate, fit on everything, save with provenance."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from triage.dataset import LabelledData, load_labelled
from triage.evaluate import cross_validate
from triage.model import PetitionClassifier
from triage.registry import file_sha256, save_model
from triage.segment import get_segmenter

__all__ = ["DEFAULT_PARAMS", "train_and_save"]

#: Hyper-parameters of the shipped model, chosen by cross-validation (data/README.md).
DEFAULT_PARAMS: dict[str, Any] = {
    "C": 1.0,
    "class_weight": "balanced",
    "stack_class_weight": "sqrt",
    "abstain_threshold": 0.45,
}


def _provenance(data: LabelledData) -> dict[str, Any]:
    return {
        "file": data.path.name,
        "sha256": file_sha256(data.path),
        "rows_read": data.rows_read,
        "rows_used": len(data.texts),
        "rows_dropped": data.dropped,
    }


def train_and_save(
    data: LabelledData,
    out_dir: str | Path,
    extra: Sequence[LabelledData] = (),
    params: dict[str, Any] | None = None,
    folds: int = 5,
    version: str | None = None,
    progress: Callable[[str], None] = lambda msg: None,
) -> tuple[PetitionClassifier, dict[str, Any]]:
    """Cross-validate on ``data`` (``extra`` rows only ever train), fit on all, save.

    Returns the fitted estimator and the metadata written beside it.
    """
    t0 = time.perf_counter()
    # n_jobs=-1: the SVM and its calibration folds are fitted side by side (same result).
    estimator = PetitionClassifier(**{**DEFAULT_PARAMS, "n_jobs": -1, **(params or {})})
    extra_texts = [t for d in extra for t in d.texts]
    extra_labels = [lbl for d in extra for lbl in d.labels]
    metrics = None
    if folds >= 2:
        progress(
            f"cross-validating ({folds} folds) on {len(data.texts):,} rows"
            + (f" + {len(extra_texts):,} extra training rows" if extra_texts else "")
        )
        metrics, _, _ = cross_validate(
            estimator,
            data.texts,
            data.labels,
            extra_texts,
            extra_labels,
            folds=folds,
            progress=lambda k, n: progress(f"  fold {k}/{n} done"),
        )
    progress("fitting the final model on all rows")
    t_fit = time.perf_counter()
    all_labels = data.labels + extra_labels
    analyzed = estimator.analyze(data.texts + extra_texts)
    estimator.fit_analyzed(analyzed, all_labels)
    fit_seconds = time.perf_counter() - t_fit
    meta: dict[str, Any] = {
        "version": version or Path(out_dir).name,
        "training_data": _provenance(data),
        "extra_training_data": [_provenance(d) for d in extra],
        "label_counts": dict(sorted(Counter(data.labels + extra_labels).items())),
        "cv_metrics": metrics,
        "segmenter": get_segmenter().backend,
        "fit_seconds": round(fit_seconds, 1),
        "train_seconds": round(time.perf_counter() - t0, 1),
        "n_features": int(estimator.features_.n_features_out_),
    }
    save_model(estimator, out_dir, meta)
    return estimator, meta


def load_training_files(
    path: str | Path,
    extra: Sequence[str | Path] = (),
    text_col: str | None = None,
    title_col: str | None = None,
    label_col: str | None = None,
) -> tuple[LabelledData, list[LabelledData]]:
    """The main labelled file and any extra training-only files (same column options)."""
    main = load_labelled(path, text_col, title_col, label_col)
    return main, [load_labelled(p, text_col, title_col, label_col) for p in extra]
