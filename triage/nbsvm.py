"""NB-SVM: one-vs-rest linear SVMs over features scaled by naive-Bayes log-count ratios.

An opt-in head of :class:`triage.model.PetitionClassifier` (``nb_scaling=True``), kept in its
own module because it subclasses scikit-learn's estimator base classes: importing it costs
scikit-learn's import, which prediction must never pay (see docs/speed.md, cold start).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

__all__ = ["NBLinearSVC"]


class NBLinearSVC(ClassifierMixin, BaseEstimator):
    """One-vs-rest linear SVMs over features scaled by naive-Bayes log-count ratios (NB-SVM).

    For each class, every feature is multiplied by log(p/q), where p and q are the smoothed
    shares of documents of the class and of the other classes containing it (Wang & Manning
    2012); a binary, class-balanced ``LinearSVC`` is fitted on the scaled features. Scaling
    then a linear function is itself linear, so ``coef_`` folds the ratios in and prediction
    costs exactly what a plain linear SVM costs.
    """

    def __init__(
        self, C: float = 0.3, alpha: float = 1.0, tol: float = 1e-3, random_state: int = 0
    ) -> None:
        self.C = C
        self.alpha = alpha
        self.tol = tol
        self.random_state = random_state

    def fit(self, X, y):  # type: ignore[no-untyped-def]
        import scipy.sparse as sp
        from sklearn.svm import LinearSVC

        y = np.asarray(y, dtype=object)
        self.classes_ = np.array(sorted(set(y.tolist())), dtype=object)
        X = sp.csr_matrix(X)
        present = X.copy()
        present.data = np.ones_like(present.data)
        member = sp.csr_matrix(
            (np.ones(len(y)), (np.searchsorted(self.classes_, y), np.arange(len(y)))),
            shape=(len(self.classes_), len(y)),
        )
        docs_with = np.asarray((member @ present).todense(), dtype=np.float64) + self.alpha
        total = docs_with.sum(axis=0)  # smoothed counts over all classes
        coef = np.zeros((len(self.classes_), X.shape[1]), dtype=np.float64)
        intercept = np.zeros(len(self.classes_))
        for k, label in enumerate(self.classes_):
            p, q = docs_with[k], total - docs_with[k] - self.alpha * (len(self.classes_) - 2)
            ratio = np.log((p / p.sum()) / (q / q.sum()))
            svm = LinearSVC(
                C=self.C, class_weight="balanced", tol=self.tol, random_state=self.random_state
            )
            svm.fit(X.multiply(ratio.astype(np.float32)).tocsr(), y == label)
            coef[k] = svm.coef_.ravel() * ratio
            intercept[k] = svm.intercept_[0]
        self.coef_, self.intercept_ = coef, intercept
        return self

    def decision_function(self, X):  # type: ignore[no-untyped-def]
        return np.asarray(X @ self.coef_.T) + self.intercept_
