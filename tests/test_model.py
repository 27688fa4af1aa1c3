"""PetitionClassifier and TextFeatures: estimator conventions, calibration, errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from triage.errors import InputError
from triage.features import TextFeatures, prepare_text
from triage.model import PetitionClassifier

ROOT = Path(__file__).resolve().parent.parent


def _examples() -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for path in sorted((ROOT / "data" / "examples").glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                texts.append(f"{row['title']}\n{row['text']}")
                labels.append(row["label"])
    return texts, labels


@pytest.fixture(scope="module")
def fitted() -> tuple[PetitionClassifier, list[str], list[str]]:
    texts, labels = _examples()
    return PetitionClassifier(calibration_folds=2).fit(texts, labels), texts, labels


def test_init_stores_params_only() -> None:
    est = PetitionClassifier(C=0.5, class_weight="balanced")
    assert est.get_params()["C"] == 0.5
    assert not hasattr(est, "coef_")
    assert clone(est).get_params() == est.get_params()


def test_fit_predict_proba(fitted: tuple[PetitionClassifier, list[str], list[str]]) -> None:
    est, texts, labels = fitted
    proba = est.predict_proba(texts[:20])
    assert proba.shape == (20, len(est.classes_))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert set(est.predict(texts)) <= set(est.classes_)
    # A linear model on its own training data should be nearly perfect.
    assert np.mean(est.predict(texts) == np.array(labels, dtype=object)) > 0.95
    assert est.coef_.dtype == np.float32


def test_new_text_about_mining(fitted: tuple[PetitionClassifier, list[str], list[str]]) -> None:
    est, _, _ = fitted
    text = "我村后山有人无证开采石料，炸山放炮，村民房屋被震裂，请国土部门查处非法采矿。"
    assert est.predict([text])[0] == "mining"


def test_calibrated_on_held_out_scores(
    fitted: tuple[PetitionClassifier, list[str], list[str]],
) -> None:
    est, texts, _ = fitted
    # The calibrator was fitted on out-of-fold scores, which are less extreme than
    # in-sample ones: so training texts get confident probabilities.
    assert est.predict_proba(texts[:50]).max(axis=1).mean() > 0.6
    assert est.calibrator_coef_.shape == (len(est.classes_), len(est.classes_))


def test_explain_top3_and_review(fitted: tuple[PetitionClassifier, list[str], list[str]]) -> None:
    est, texts, _ = fitted
    preds = est.explain(est.predict_proba(texts[:5]))
    for p in preds:
        probs = [c[1] for c in p.candidates]
        assert len(p.candidates) == 3 and probs == sorted(probs, reverse=True)
        assert p.label == p.candidates[0][0]
    strict = clone(est).set_params(abstain_threshold=1.01)
    strict.__dict__.update({k: v for k, v in est.__dict__.items() if k.endswith("_")})
    assert all(p.needs_review for p in strict.explain(strict.predict_proba(texts[:5])))


def test_errors_say_what_was_expected() -> None:
    with pytest.raises(InputError, match="single str"):
        PetitionClassifier().fit("一段文字", ["a"])  # type: ignore[arg-type]
    with pytest.raises(InputError, match="at least 2 distinct labels"):
        PetitionClassifier().fit(["征地补偿", "拆迁补偿"], ["a", "a"])
    with pytest.raises(InputError, match="2 texts but y has 3"):
        PetitionClassifier().fit(["征地补偿", "拆迁补偿"], ["a", "b", "c"])


def test_features_rows_are_normalised() -> None:
    docs = [
        prepare_text(t) for t in ["村民反映征地补偿款未到位", "小区物业乱收费，业主们联名投诉", ""]
    ]
    feats = TextFeatures(min_df=1).fit(docs)
    X = feats.transform(docs)
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    np.testing.assert_allclose(norms[:2], np.sqrt(2), rtol=1e-5)  # word view + char view
    assert norms[2] == 0
    # Unseen n-grams are ignored, not errors.
    assert feats.transform(["完全不同的内容 xyz"]).shape == (1, feats.n_features_out_)


def test_parallel_fit_and_cv_match_sequential() -> None:
    from triage.evaluate import cross_validate

    texts, labels = _examples()
    one = PetitionClassifier(calibration_folds=2).fit(texts, labels)
    two = PetitionClassifier(calibration_folds=2, n_jobs=2).fit(texts, labels)
    np.testing.assert_array_equal(one.coef_, two.coef_)
    np.testing.assert_array_equal(one.calibrator_coef_, two.calibrator_coef_)
    est = PetitionClassifier(calibration_folds=2)
    m1, _, s1 = cross_validate(est, texts, labels, folds=3, n_jobs=1)
    m2, _, s2 = cross_validate(est, texts, labels, folds=3, n_jobs=2)
    assert m1["macro_f1"] == m2["macro_f1"]
    np.testing.assert_array_equal(s1, s2)


def test_nb_scaling_is_a_plain_linear_head() -> None:
    texts, labels = _examples()
    est = PetitionClassifier(calibration_folds=2, nb_scaling=True, C=0.3).fit(texts, labels)
    assert est.coef_.shape == (len(est.classes_), est.features_.n_features_out_)
    proba = est.predict_proba(texts[:20])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert (est.predict(texts) == np.asarray(labels, dtype=object)).mean() > 0.9
