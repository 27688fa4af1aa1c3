"""The petition classifier: hashed word + char n-gram TF-IDF, a linear SVM, calibrated.

Chosen by 5-fold cross-validation on the shared data (see ``scripts/eval_model.py`` and
``data/README.md``). The SVM's per-class decision values are turned into probabilities by a
multinomial logistic regression fitted on out-of-fold decision values (stacking; Platt
scaling generalised to many classes), so the top-3 candidates and the abstain threshold mean
what they say.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from triage.errors import InputError, ModelError
from triage.features import Analyzed, TextFeatures, prepare_text

__all__ = ["PetitionClassifier", "Prediction", "parallel_map", "subset_analyzed"]

AnalyzedDocs = tuple[Analyzed, Analyzed, int]


def subset_analyzed(analyzed: AnalyzedDocs, index: np.ndarray) -> AnalyzedDocs:
    """The analysed docs at positions ``index``, renumbered 0..len(index)-1."""
    (wr, wh), (cr, ch), n = analyzed
    pos = np.full(n, -1, dtype=np.int64)
    pos[index] = np.arange(len(index))
    pw, pc = pos[wr], pos[cr]
    mw, mc = pw >= 0, pc >= 0
    return (pw[mw], wh[mw]), (pc[mc], ch[mc]), len(index)


def _fit_svm(svm, X, y, X_test):  # type: ignore[no-untyped-def]
    """Fit ``svm`` on (X, y); also return its decision values on ``X_test`` if given."""
    from sklearn.base import clone

    svm = clone(svm).fit(X, y)
    return svm, (None if X_test is None else svm.decision_function(X_test))


def parallel_map(fn, args_list, n_jobs: int | None, on_done=None):  # type: ignore[no-untyped-def]
    """``[fn(*args) for args in args_list]``, in up to ``n_jobs`` processes.

    ``on_done(k)`` is called as the results come in (``k`` of them so far, in order).
    ``args_list`` may be a generator: it is consumed as workers free up, not all at once.

    Processes, not threads: liblinear draws from one process-wide random generator, so
    concurrent fits in threads could change each other's results; in processes every fit is
    exactly what it would be run alone.
    """
    if n_jobs is None or n_jobs == 1:
        results = (fn(*args) for args in args_list)
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(fn)(*args) for args in args_list
        )
    out = []
    for result in results:
        out.append(result)
        if on_done is not None:
            on_done(len(out))
    return out


@dataclass(frozen=True)
class Prediction:
    """One document's prediction: best label, its probability, top candidates, review flag."""

    label: str
    confidence: float
    candidates: tuple[tuple[str, float], ...]
    needs_review: bool


class PetitionClassifier:
    """Classify petition texts into issue types with calibrated probabilities.

    Parameters
    ----------
    C : SVM regularisation (larger fits the training data more closely).
    class_weight : ``None`` or ``"balanced"`` (up-weights rare classes).
    char_ngram_range, word_bigrams, min_df, char_weight : see :class:`TextFeatures`.
    calibration_folds : folds for the out-of-fold decision values the calibrator learns from.
    stack_C, stack_class_weight : regularisation and class weighting (None, "balanced" or
        "sqrt") of the calibrator, a multinomial logistic regression over the SVM's scores.
    abstain_threshold : below this top probability a prediction is marked ``needs_review``.
    max_chars : characters of each text read (the rest is ignored).
    nb_scaling : fit :class:`triage.nbsvm.NBLinearSVC` (naive-Bayes log-count-ratio
        scaled one-vs-rest SVMs, class-balanced per binary problem; ``class_weight`` is then
        unused) instead of a plain ``LinearSVC``. Same prediction cost.
    n_jobs : processes fitting the SVM and the calibration folds' SVMs side by side (``None``
        or 1: one after the other, -1: one per CPU). Results are identical either way.

    ``X`` is a sequence of raw texts (title and body joined by a newline); normalisation
    and segmentation happen inside, so callers never pre-process.
    """

    def __init__(
        self,
        C: float = 1.0,
        class_weight: str | None = None,
        char_ngram_range: tuple[int, int] = (1, 3),
        word_bigrams: bool = True,
        min_df: int = 2,
        char_weight: float = 1.0,
        calibration_folds: int = 3,
        stack_C: float = 10.0,
        stack_class_weight: str | None = "sqrt",
        abstain_threshold: float = 0.45,
        max_chars: int = 4000,
        random_state: int = 0,
        n_jobs: int | None = None,
        nb_scaling: bool = False,
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.char_ngram_range = char_ngram_range
        self.word_bigrams = word_bigrams
        self.min_df = min_df
        self.char_weight = char_weight
        self.calibration_folds = calibration_folds
        self.stack_C = stack_C
        self.stack_class_weight = stack_class_weight
        self.abstain_threshold = abstain_threshold
        self.max_chars = max_chars
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.nb_scaling = nb_scaling

    # -- estimator API: scikit-learn's conventions without importing it (1.2 s) ----------
    _estimator_type = "classifier"

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (``sklearn.base.clone`` and grid searches use this)."""
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

    def set_params(self, **params: Any) -> PetitionClassifier:
        """Set constructor parameters."""
        valid = self.get_params()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for PetitionClassifier")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = type(self)().get_params()
        changed = {k: v for k, v in self.get_params().items() if v != defaults[k]}
        return f"PetitionClassifier({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        # Only scikit-learn asks for tags, so importing it here costs nothing extra.
        from sklearn.base import BaseEstimator, ClassifierMixin

        class _Classifier(ClassifierMixin, BaseEstimator):
            pass

        return _Classifier().__sklearn_tags__()

    def score(self, X: Sequence[str], y: Sequence[str]) -> float:
        """Accuracy on ``X``, ``y`` (as ``ClassifierMixin.score``)."""
        return float(np.mean(self.predict(X) == np.asarray(y, dtype=object)))

    # -- helpers ------------------------------------------------------------------------
    def _features(self) -> TextFeatures:
        return TextFeatures(
            char_ngram_range=tuple(self.char_ngram_range),
            word_bigrams=self.word_bigrams,
            min_df=self.min_df,
            char_weight=self.char_weight,
        )

    def _svm(self):  # type: ignore[no-untyped-def]
        if self.nb_scaling:
            from triage.nbsvm import NBLinearSVC

            return NBLinearSVC(C=self.C, random_state=self.random_state)
        # Imported here, not at module level: loading a model to predict needs neither the
        # SVM nor the optimisers, and importing them costs a large part of cold start.
        from sklearn.svm import LinearSVC

        return LinearSVC(C=self.C, class_weight=self.class_weight, random_state=self.random_state)

    def analyze(self, X: Sequence[str]) -> AnalyzedDocs:
        """Normalise and segment raw texts once (reusable across CV folds)."""
        if isinstance(X, str):
            raise InputError("expected a sequence of texts, got a single str; wrap it in a list")
        docs = [prepare_text(x if isinstance(x, str) else "", max_chars=self.max_chars) for x in X]
        return self.analyze_prepared(docs)

    def analyze_prepared(self, docs: Sequence[str]) -> AnalyzedDocs:
        """Segment texts already passed through :func:`~triage.features.prepare_text`."""
        return self._features().analyze(docs)

    # -- fitting ------------------------------------------------------------------------
    def fit(self, X: Sequence[str], y: Sequence[str]) -> PetitionClassifier:
        """Fit on raw texts ``X`` and labels ``y``."""
        return self.fit_analyzed(self.analyze(X), y)

    def fit_analyzed(
        self,
        analyzed: AnalyzedDocs,
        y: Sequence[str],
        oof_scores: np.ndarray | None = None,
    ) -> PetitionClassifier:
        """Fit on the output of :meth:`analyze`.

        ``oof_scores`` (out-of-fold decision values of these rows) spare the inner
        cross-validation the calibrator otherwise needs.
        """
        y = np.asarray(y, dtype=object)
        if len(y) != analyzed[2]:
            raise InputError(f"X has {analyzed[2]} texts but y has {len(y)} labels")
        classes = np.array(sorted(set(y.tolist())), dtype=object)
        if len(classes) < 2:
            raise InputError(f"need at least 2 distinct labels to train, got {classes.tolist()}")
        self.features_ = self._features().fit_analyzed(analyzed)
        X = self.features_.transform_analyzed(analyzed)
        self.classes_ = classes
        if oof_scores is None:
            svm, oof_scores = self._fit_with_oof(X, y)
        else:
            svm = self._svm().fit(X, y)
        # Store the linear head as float32 arrays: half the size, same decisions.
        self.coef_ = svm.coef_.astype(np.float32)
        self.intercept_ = svm.intercept_.astype(np.float32)
        if self.coef_.shape[0] == 1:  # LinearSVC stores one row for two classes
            self.coef_ = np.vstack([-self.coef_, self.coef_])
            self.intercept_ = np.concatenate([-self.intercept_, self.intercept_])
        # The calibrator sees every class's SVM score at once, so besides turning scores into
        # probabilities it learns how classes trade off (a rare land class whose score is
        # close to urban_housing's is often the right answer): +1.5 points macro-F1 in CV.
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits

        # One BLAS thread: lbfgs's sums then do not depend on the machine's core count or on
        # running in a worker process (where joblib allows one thread), so a model and its
        # CV figures are the same whatever ``n_jobs`` and the machine.
        with threadpool_limits(limits=1):
            calibrator = LogisticRegression(
                C=self.stack_C, class_weight=self._stack_weights(y), max_iter=2000
            ).fit(oof_scores, y)
        # Keep only the calibrator's arrays: the artefact then holds no sklearn estimator,
        # and loading it for prediction does not import sklearn.linear_model.
        coef, intercept = calibrator.coef_.astype(np.float64), calibrator.intercept_.astype(float)
        if len(classes) == 2:  # binary: sigmoid(w·s + b) is a softmax over [0, w·s + b]
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([[0.0], intercept])
        self.calibrator_coef_, self.calibrator_intercept_ = coef, intercept
        self.n_features_in_ = 1
        return self

    def _stack_weights(self, y: np.ndarray) -> dict[str, float] | str | None:
        """Class weights of the calibrator: None, "balanced", or "sqrt" (half-way between).

        Full balancing buys rare-class recall with the frequent classes' precision; the
        square root keeps most of the recall at a smaller cost in macro-F1.
        """
        if self.stack_class_weight != "sqrt":
            return self.stack_class_weight
        classes, counts = np.unique(y, return_counts=True)
        weights = np.sqrt(len(y) / (len(classes) * counts))
        return {str(c): float(w) for c, w in zip(classes, weights, strict=True)}

    def _fit_with_oof(self, X, y: np.ndarray):  # type: ignore[no-untyped-def]
        """The SVM fitted on all rows, and every row's decision values from an SVM that did
        not see it (the calibrator's training data); the fits run in ``n_jobs`` processes."""
        counts = {c: int((y == c).sum()) for c in self.classes_}
        folds = max(2, min(self.calibration_folds, max(counts.values())))
        from sklearn.model_selection import StratifiedKFold

        cv = StratifiedKFold(folds, shuffle=True, random_state=self.random_state)
        # Classes rarer than the fold count still land in some training folds; a fold that
        # lacks a class scores it very low, which is what a model that never saw it would do.
        oof = np.full((len(y), len(self.classes_)), -3.0)
        strat = np.where([counts[c] >= folds for c in y], y, "__rare__")
        splits = [
            (train, test)
            for train, test in cv.split(np.zeros(len(y)), strat)
            if len(np.unique(y[train])) >= 2
        ]
        tasks = [(X, y, None)] + [(X[train], y[train], X[test]) for train, test in splits]
        results = parallel_map(_fit_svm, [(self._svm(), *t) for t in tasks], self.n_jobs)
        svm = results[0][0]
        for (_, test), (fold_svm, scores) in zip(splits, results[1:], strict=True):
            if scores.ndim == 1:
                scores = np.column_stack([-scores, scores])
            cols = np.searchsorted(self.classes_, fold_svm.classes_)
            oof[np.ix_(test, cols)] = scores
        return svm, oof

    # -- prediction ---------------------------------------------------------------------
    def decision_function_analyzed(self, analyzed: AnalyzedDocs) -> np.ndarray:
        """Raw SVM scores, one column per class."""
        if not hasattr(self, "coef_"):
            raise ModelError("this PetitionClassifier is not fitted yet: call fit first")
        return self.features_.scores_analyzed(analyzed, self.coef_) + self.intercept_

    def predict_proba_analyzed(self, analyzed: AnalyzedDocs) -> np.ndarray:
        """Calibrated probabilities of analysed docs, columns in ``classes_`` order."""
        z = self.decision_function_analyzed(analyzed) @ self.calibrator_coef_.T
        z += self.calibrator_intercept_
        z -= z.max(axis=1, keepdims=True)  # softmax, stable for large scores
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def decision_function(self, X: Sequence[str]) -> np.ndarray:
        """Raw SVM scores of raw texts."""
        return self.decision_function_analyzed(self.analyze(X))

    def predict_proba(self, X: Sequence[str]) -> np.ndarray:
        """Calibrated class probabilities of raw texts."""
        return self.predict_proba_analyzed(self.analyze(X))

    def predict(self, X: Sequence[str]) -> np.ndarray:
        """Most probable label of each raw text."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def explain(self, proba: np.ndarray, k: int = 3) -> list[Prediction]:
        """Top-``k`` candidates and the review flag for each row of ``proba``."""
        order = np.argsort(-proba, axis=1)[:, :k]
        out = []
        for row, idx in zip(proba, order, strict=True):
            cands = tuple((str(self.classes_[i]), float(row[i])) for i in idx)
            out.append(
                Prediction(cands[0][0], cands[0][1], cands, cands[0][1] < self.abstain_threshold)
            )
        return out
