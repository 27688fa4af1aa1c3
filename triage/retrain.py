"""Retraining loop: base labelled data + clerks' corrections → challenger → champion or not.

``retrain`` merges the base file with the store's corrections (the latest correction of a
case wins; duplicate texts, compared after normalisation, are removed, corrections beating
base rows), trains a challenger with the champion's settings, scores challenger and champion
on the same held-out split, saves the challenger as a new version in the registry and makes
it the current version only if its macro-F1 is not lower than the champion's by more than
``margin``. A label seen only in the corrections (a county's own issue type) is accepted
when it has at least ``min_examples`` rows and is in the routing table; otherwise nothing is
trained and the error says what is missing.

What is dropped, and why, is counted in :class:`RetrainResult` (never silently): base rows
without a label (unlabelled rows are not training data: nothing is lost, they stay in the
file), rows without text, unreadable rows, duplicate texts, corrections of cases the store
no longer has.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from triage.errors import DataFileError, InputError, ModelError, NotFoundError
from triage.normalize import normalize

__all__ = [
    "LABEL_COLUMNS",
    "Example",
    "RetrainOptions",
    "RetrainResult",
    "check_labels",
    "format_result",
    "held_out_split",
    "load_base",
    "load_feedback",
    "merge_examples",
    "retrain",
]

#: Label column names tried, in order, when none is named.
LABEL_COLUMNS = ("label", "issue_type", "标签", "类别", "一级标签", "事项类别", "分类")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Example:
    """One labelled petition; ``source`` is ``base`` or ``feedback``."""

    text: str
    title: str
    label: str
    source: str
    case_id: str | None = None

    @property
    def model_input(self) -> str:
        """What the classifier reads: ``"title\\ntext"`` (see PetitionClassifier.fit)."""
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass
class RetrainResult:
    """Everything the retrain command reports (and writes to ``retrain.json``)."""

    base_file: str = ""
    base_rows: int = 0
    base_blank_label: int = 0
    base_empty_text: int = 0
    base_unreadable: int = 0
    feedback_corrections: int = 0
    feedback_unknown_cases: list[str] = field(default_factory=list)
    feedback_empty_text: int = 0
    duplicates_removed: int = 0
    duplicate_conflicts: int = 0
    corrections_overriding_base: int = 0
    training_rows: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)
    new_labels: dict[str, int] = field(default_factory=dict)
    train_rows: int = 0
    test_rows: int = 0
    champion: str | None = None
    champion_macro_f1: float | None = None
    champion_accuracy: float | None = None
    champion_optimistic: bool = False
    challenger: str | None = None
    challenger_path: str | None = None
    challenger_macro_f1: float | None = None
    challenger_accuracy: float | None = None
    per_class_f1: dict[str, dict[str, float | None]] = field(default_factory=dict)
    margin: float = 0.01
    promoted: bool = False
    reason: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RetrainOptions:
    """Arguments of :func:`retrain` (the ``triage retrain`` flags)."""

    base: Path
    out: Path  # the model registry folder (settings.models_dir)
    feedback_db: str | None = None
    margin: float = 0.01
    min_examples: int = 20
    text_col: str | None = None
    title_col: str | None = None
    label_col: str | None = None
    test_size: float = 0.2
    seed: int = 42
    #: Model folder to beat; None: the registry's current version (else the shipped default).
    champion: str | Path | None = None
    routing: str | Path | None = None
    #: Builds an unfitted challenger from the champion's estimator (None when there is no
    #: champion). Default: a clone of the champion, or a default PetitionClassifier.
    make_estimator: Callable[[Any | None], Any] | None = None


# ============================================================================================
# Data
# ============================================================================================


def load_base(
    path: str | Path,
    text_col: str | None = None,
    title_col: str | None = None,
    label_col: str | None = None,
    result: RetrainResult | None = None,
) -> list[Example]:
    """Labelled rows of a CSV/XLSX file (any encoding :mod:`triage.bulk` reads).

    Rows with a blank label, an empty text or a reading error are not returned; they are
    counted in ``result``.
    """
    from triage.bulk import find_column, open_source

    result = result if result is not None else RetrainResult()
    source = open_source(path, text_col=text_col, title_col=title_col)
    try:
        label_i = find_column(source.columns, label_col, LABEL_COLUMNS)
        if label_i is None:
            what = f"no column {label_col!r}" if label_col else "no label column"
            tried = "" if label_col else f" (looked for {'/'.join(LABEL_COLUMNS)})"
            raise DataFileError(
                f"{path}: {what}{tried}; columns are {', '.join(source.columns)};"
                " name it with --label-col"
            )
        examples = []
        for row in source.rows():
            result.base_rows += 1
            label = str(row.values[label_i] if row.values[label_i] is not None else "").strip()
            if row.issue:
                result.base_unreadable += 1
            elif not label:
                result.base_blank_label += 1
            elif not (row.text.strip() or row.title.strip()):  # as `triage train` decides
                result.base_empty_text += 1
            else:
                examples.append(Example(row.text, row.title, label, "base"))
    finally:
        source.close()
    return examples


def load_feedback(url: str, result: RetrainResult | None = None) -> list[Example]:
    """The latest correction of every case in the store at ``url``, as examples.

    Corrections whose case is not in the store (deleted, or imported from elsewhere) cannot
    be trained on: their case ids go to ``result.feedback_unknown_cases``.
    """
    from sqlalchemy import exists, select

    from triage.store import Store, cases, feedback

    result = result if result is not None else RetrainResult()
    store = Store(url)
    try:
        corrections = store.corrections()
        orphan_query = (
            select(feedback.c.case_id)
            .where(~exists(select(cases.c.id).where(cases.c.id == feedback.c.case_id)))
            .distinct()
            .order_by(feedback.c.case_id)
        )
        with store.engine.connect() as conn:
            result.feedback_unknown_cases = [r[0] for r in conn.execute(orphan_query)]
    finally:
        store.close()
    result.feedback_corrections = len(corrections)
    examples = []
    for c in corrections:
        if not (c.text or "").strip():
            result.feedback_empty_text += 1
            continue
        examples.append(Example(c.text, c.title or "", c.label.strip(), "feedback", c.case_id))
    return examples


def _dedupe_key(example: Example) -> str:
    # The text decides what a petition is about (the same letter filed with and without a
    # title is one petition); spacing differs between exports of the same letter.
    return _SPACE.sub("", normalize(example.text) or normalize(example.title))


def merge_examples(
    base: Sequence[Example], corrections: Sequence[Example], result: RetrainResult | None = None
) -> list[Example]:
    """Base rows then corrections, one example per normalised text.

    Within the base file the first row of a text is kept (a later duplicate with another
    label is counted as a conflict); a correction replaces the base row of the same text,
    because a clerk's decision is newer than the file.
    """
    result = result if result is not None else RetrainResult()
    merged: dict[str, Example] = {}
    for example in base:
        key = _dedupe_key(example)
        kept = merged.get(key)
        if kept is None:
            merged[key] = example
            continue
        result.duplicates_removed += 1
        if kept.label != example.label:
            result.duplicate_conflicts += 1
    for example in corrections:
        key = _dedupe_key(example)
        kept = merged.get(key)
        if kept is not None:
            result.duplicates_removed += 1
            if kept.source == "base" and kept.label != example.label:
                result.corrections_overriding_base += 1
        merged[key] = example
    examples = list(merged.values())
    result.training_rows = len(examples)
    result.label_counts = dict(Counter(e.label for e in examples).most_common())
    return examples


def check_labels(
    examples: Sequence[Example],
    base_labels: set[str],
    min_examples: int,
    known_labels: set[str] | None,
    result: RetrainResult | None = None,
) -> list[str]:
    """Problems that stop training (empty list: fine).

    A label only in the corrections needs ``min_examples`` rows; every label needs an issue
    type in the routing table (``known_labels``), or the pipeline could not load the model.
    """
    counts = Counter(e.label for e in examples)
    new = {label: n for label, n in counts.items() if label not in base_labels}
    if result is not None:
        result.new_labels = dict(sorted(new.items()))
    problems = []
    for label, n in sorted(new.items()):
        if n < min_examples:
            problems.append(
                f"new label {label!r} (only in the corrections) has {n} example(s); at least"
                f" {min_examples} are needed ({min_examples - n} more), or lower --min-examples"
            )
    if known_labels is not None:
        unknown = sorted(set(counts) - known_labels)
        if unknown:
            problems.append(
                f"label(s) {', '.join(map(repr, unknown))} are not issue types of the routing"
                " table; add them under issue_types in routing.yaml (name, department,"
                " disposition) first, or the pipeline cannot route them"
            )
    if len(counts) < 2:
        problems.append(f"at least 2 labels are needed to train, found {len(counts)}")
    return problems


def held_out_split(
    labels: Sequence[str], test_size: float = 0.2, seed: int = 42
) -> tuple[list[int], list[int]]:
    """Stratified (train indices, test indices).

    Every label keeps at least one training row; a label with one row has no test row (it
    cannot be scored, but the challenger must still learn it).
    """
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    rng = random.Random(seed)
    train, test = [], []
    for label in sorted(by_label):
        idx = by_label[label]
        rng.shuffle(idx)
        n_test = min(len(idx) - 1, max(1, round(len(idx) * test_size))) if len(idx) > 1 else 0
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return sorted(train), sorted(test)


def _scores(y_true: Sequence[str], y_pred: Sequence[Any], labels: list[str]) -> dict[str, Any]:
    """Held-out metrics as ``triage evaluate`` computes them (macro-F1 over ``labels``)."""
    from triage.evaluate import classification_metrics

    metrics = classification_metrics(y_true, [str(p) for p in y_pred], labels)
    metrics["per_class_f1"] = {k: v["f1"] for k, v in metrics["per_class"].items()}
    return metrics


def _training_hashes(meta: dict[str, Any]) -> set[str]:
    """SHA-256 values of the files a model was trained on, as its metadata records them."""
    found = set()
    for key in ("training_data", "training", "data", "retrain"):
        node = meta.get(key)
        if isinstance(node, dict):
            found.update(str(v) for k, v in node.items() if "sha256" in k and v)
    found.update(str(v) for k, v in meta.items() if "sha256" in k and k != "artefact_sha256" and v)
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# ============================================================================================
# The loop
# ============================================================================================


def _default_estimator(champion: Any | None) -> Any:
    """An unfitted challenger: the champion's settings (chosen by CV), or the defaults."""
    if champion is not None:
        from sklearn.base import clone

        return clone(champion)
    from triage.model import PetitionClassifier

    return PetitionClassifier()


def _routing_labels(routing: str | Path | None) -> set[str]:
    from triage.routing import load_table

    return set(load_table(routing).issue_types)


def _load_champion(options: RetrainOptions, models_dir: Path) -> Any | None:
    """The model to beat (a registry ``LoadedModel``), or None when the registry has none.

    An explicit ``champion`` must load; the registry's current version may be missing (a
    fresh registry folder), which makes the first challenger the current model.
    """
    from triage.registry import load_model

    if options.champion is not None:
        return load_model(options.champion, models_dir)
    try:
        return load_model(None, models_dir)
    except (ModelError, NotFoundError):
        if any(models_dir.glob("*/metadata.json")):
            raise  # versions exist but the current one is broken: do not guess
        return None


def retrain(options: RetrainOptions) -> RetrainResult:
    """Run the champion/challenger loop (see the module docstring); the result.

    Raises :class:`InputError` (nothing trained) when the labels do not allow training.
    """
    started = time.monotonic()
    opts = options
    if not 0 <= opts.margin < 1:
        raise InputError("--margin must be between 0 and 1 (a macro-F1 difference)")
    if opts.min_examples < 1:
        raise InputError("--min-examples must be at least 1")
    models_dir = Path(opts.out)
    result = RetrainResult(base_file=str(opts.base), margin=opts.margin)

    base = load_base(opts.base, opts.text_col, opts.title_col, opts.label_col, result)
    corrections = load_feedback(opts.feedback_db, result) if opts.feedback_db else []
    examples = merge_examples(base, corrections, result)
    problems = check_labels(
        examples,
        {e.label for e in base},
        opts.min_examples,
        _routing_labels(opts.routing),
        result,
    )
    if problems:
        raise InputError("cannot retrain: " + "; ".join(problems))

    champion = _load_champion(opts, models_dir)
    labels = [e.label for e in examples]
    train_idx, test_idx = held_out_split(labels, opts.test_size, opts.seed)
    result.train_rows, result.test_rows = len(train_idx), len(test_idx)
    x_train = [examples[i].model_input for i in train_idx]
    y_train = [labels[i] for i in train_idx]
    x_test = [examples[i].model_input for i in test_idx]
    y_test = [labels[i] for i in test_idx]
    scored = sorted(set(y_test))

    make = opts.make_estimator or _default_estimator
    challenger = make(champion.estimator if champion is not None else None)
    challenger.fit(x_train, y_train)
    new = _scores(y_test, challenger.predict(x_test), scored)
    result.challenger_macro_f1 = round(new["macro_f1"], 4)
    result.challenger_accuracy = round(new["accuracy"], 4)
    old: dict[str, Any] | None = None
    if champion is not None:
        result.champion = str(getattr(champion, "version", None) or champion.path)
        old = _scores(y_test, champion.estimator.predict(x_test), scored)
        result.champion_macro_f1 = round(old["macro_f1"], 4)
        result.champion_accuracy = round(old["accuracy"], 4)
        # A champion trained on this base file may have seen held-out rows: its score is
        # optimistic, which can only make promotion harder (the safe side). Say so.
        result.champion_optimistic = _sha256(Path(opts.base)) in _training_hashes(
            getattr(champion, "metadata", None) or {}
        )
    result.per_class_f1 = {
        label: {
            "challenger": round(new["per_class_f1"][label], 4),
            "champion": round(old["per_class_f1"][label], 4) if old else None,
        }
        for label in scored
    }

    if old is None:
        result.promoted = True
        result.reason = "no champion in the registry: the challenger becomes the current model"
    else:
        drop = old["macro_f1"] - new["macro_f1"]
        result.promoted = drop <= opts.margin + 1e-12
        if drop <= 0:
            how = f"challenger macro-F1 {new['macro_f1']:.4f} ≥ champion {old['macro_f1']:.4f}"
        elif result.promoted:
            how = (
                f"challenger macro-F1 {new['macro_f1']:.4f} is {drop:.4f} below the champion's"
                f" {old['macro_f1']:.4f}, within the margin {opts.margin}"
            )
        else:
            worst = sorted(
                (v["challenger"] - (v["champion"] or 0), k) for k, v in result.per_class_f1.items()
            )[:3]
            losses = ", ".join(f"{k} {d:+.3f}" for d, k in worst if d < 0)
            how = (
                f"challenger macro-F1 {new['macro_f1']:.4f} is {drop:.4f} below the champion's"
                f" {old['macro_f1']:.4f}, more than the margin {opts.margin}"
                + (f" (largest per-class F1 losses: {losses})" if losses else "")
            )
        result.reason = how if result.promoted else f"kept the champion: {how}"

    version = _save_challenger(challenger, models_dir, opts, result)
    result.challenger = version
    result.challenger_path = str(models_dir / version)
    if result.promoted:
        from triage.registry import promote

        promote(version, models_dir)
    from triage.evaluate import write_report

    # The held-out evaluation beside the version, as `triage evaluate --report` writes it.
    write_report(models_dir / version / "held_out", new, title=f"{version} held-out")
    result.seconds = round(time.monotonic() - started, 2)
    (models_dir / version / "retrain.json").write_text(
        json.dumps(result.to_dict(), ensure_ascii=False, indent=2), encoding="utf-8"
    )
    return result


def _save_challenger(
    estimator: Any, models_dir: Path, opts: RetrainOptions, result: RetrainResult
) -> str:
    """Save the challenger as a new version folder of the registry; its version name."""
    from triage import registry

    version = new_version_name(models_dir)
    path = models_dir / version
    extra = {
        "retrain": {
            "base_file": str(opts.base),
            "base_sha256": _sha256(Path(opts.base)),
            "feedback_corrections": result.feedback_corrections,
            "training_rows": result.training_rows,
            "held_out_rows": result.test_rows,
            "held_out_macro_f1": result.challenger_macro_f1,
            "champion": result.champion,
            "champion_held_out_macro_f1": result.champion_macro_f1,
            "promoted": result.promoted,
            "reason": result.reason,
        }
    }
    registry.save_model(estimator, path, metadata=extra)
    return version


def format_result(result: RetrainResult) -> str:
    """The summary printed by ``triage retrain``."""
    r = result
    lines = [
        f"base: {r.base_rows:,} rows in {r.base_file}",
    ]
    if r.base_blank_label:
        lines.append(
            f"  {r.base_blank_label:,} row(s) without a label: not training data, left out of"
            " training (they stay in the file; nothing is lost)"
        )
    if r.base_empty_text:
        lines.append(f"  {r.base_empty_text:,} labelled row(s) without text: left out")
    if r.base_unreadable:
        lines.append(f"  {r.base_unreadable:,} row(s) that could not be decoded: left out")
    lines.append(f"corrections: {r.feedback_corrections:,} (latest per case)")
    if r.feedback_unknown_cases:
        shown = ", ".join(r.feedback_unknown_cases[:5])
        more = (
            f" and {len(r.feedback_unknown_cases) - 5} more"
            if len(r.feedback_unknown_cases) > 5
            else ""
        )
        lines.append(
            f"  {len(r.feedback_unknown_cases)} correction(s) refer to cases not in the store"
            f" ({shown}{more}): skipped"
        )
    if r.feedback_empty_text:
        lines.append(f"  {r.feedback_empty_text} corrected case(s) have no stored text: skipped")
    lines.append(
        f"merged: {r.training_rows:,} examples ({r.duplicates_removed:,} duplicate texts removed,"
        f" {r.corrections_overriding_base:,} base labels changed by corrections,"
        f" {r.duplicate_conflicts:,} conflicting duplicates in the base file kept first)"
    )
    if r.new_labels:
        lines.append(
            "new labels from corrections: "
            + ", ".join(f"{k} ({v})" for k, v in r.new_labels.items())
        )
    lines.append(f"held-out split: {r.train_rows:,} train / {r.test_rows:,} test rows")
    if r.champion is not None:
        lines.append(
            f"champion {r.champion}: macro-F1 {r.champion_macro_f1:.4f}, accuracy"
            f" {r.champion_accuracy:.4f}"
            + (
                " (may be optimistic: it was trained on this base file)"
                if r.champion_optimistic
                else ""
            )
        )
    lines.append(
        f"challenger {r.challenger}: macro-F1 {r.challenger_macro_f1:.4f}, accuracy"
        f" {r.challenger_accuracy:.4f}"
    )
    if r.promoted:
        lines.append(f"PROMOTED {r.challenger} to current version: {r.reason}")
    else:
        lines.append(f"NOT PROMOTED: {r.reason}; current version stays {r.champion}")
    lines.append(f"challenger saved in {r.challenger_path} ({r.seconds:.0f} s)")
    return "\n".join(lines)


def new_version_name(models_dir: str | Path) -> str:
    """A new, sortable version name like the registry's (``YYYYMMDD-HHMMSS``, UTC)."""
    base = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    name, n = base, 1
    while (Path(models_dir) / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name
