"""Issue 2 follow-up: hierarchical land model, domain lexicon features, title view (exploration).

Not part of the package. Reproduces the shipped pipeline's 5-fold CV (same folds, written
examples in training folds only, real rows evaluated) and screens variants on top of it:

    nice -n 19 python notebooks/issue2_variants.py [--data petitions13|teddy7] [--variants ...]

Every fold's base quantities (features, SVM scores, inner out-of-fold scores) are computed
inside the fold from its training rows only; nothing is learned from the evaluation rows.
The lexicon (``issue2_lexicon.txt``) was written from the taxonomy (../shared/taxonomy.md)
and general knowledge of 信访 practice, not mined from the data. The reference run's fold
results are cached in /tmp/issue2_base_<data>.pkl; delete it after changing the pipeline.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, recall_score
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from triage.dataset import load_labelled  # noqa: E402
from triage.features import TextFeatures, prepare_text  # noqa: E402
from triage.model import PetitionClassifier, subset_analyzed  # noqa: E402

LAND = (
    "land_acquisition",
    "land_illegal_use",
    "land_planning",
    "land_title_dispute",
    "mining",
    "property_registration",
)
SHOW = ("land_title_dispute", "land_illegal_use", "urban_housing", "land_planning")


#: Class-indicative terms (label → terms), from ``issue2_lexicon.txt``.
def load_lexicon(path: Path) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text("utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            label, terms = line.split(":", 1)
            out.setdefault(label.strip(), []).extend(terms.split())
    return {k: tuple(v) for k, v in out.items()}


LEXICON = load_lexicon(Path(__file__).with_name("issue2_lexicon.txt"))


def lexicon_counts(docs: list[str], lexicon: dict[str, tuple[str, ...]]) -> np.ndarray:
    """log(1 + hits of each class's terms) per document, one column per lexicon class."""
    out = np.zeros((len(docs), len(lexicon)), dtype=np.float32)
    for j, terms in enumerate(lexicon.values()):
        for i, d in enumerate(docs):
            out[i, j] = sum(d.count(t) for t in terms)
    return np.log1p(out)


def term_matrix(docs: list[str], lexicon: dict[str, tuple[str, ...]]) -> sp.csr_matrix:
    """Binary presence of every lexicon term (one column per term)."""
    terms = sorted({t for ts in lexicon.values() for t in ts})
    rows, cols = [], []
    for i, d in enumerate(docs):
        for j, t in enumerate(terms):
            if t in d:
                rows.append(i)
                cols.append(j)
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(docs), len(terms)))
    norms = np.sqrt(np.asarray(m.sum(axis=1)).ravel())
    norms[norms == 0] = 1
    return sp.csr_matrix(sp.diags(1 / norms) @ m)


def sqrt_weights(y: np.ndarray) -> dict[str, float]:
    classes, counts = np.unique(y, return_counts=True)
    w = np.sqrt(len(y) / (len(classes) * counts))
    return {str(c): float(v) for c, v in zip(classes, w, strict=True)}


def calibrate(oof: np.ndarray, y: np.ndarray, test: np.ndarray, C: float = 10.0, cw="sqrt"):
    weights = sqrt_weights(y) if cw == "sqrt" else cw
    with threadpool_limits(limits=1):
        lr = LogisticRegression(C=C, class_weight=weights, max_iter=2000).fit(oof, y)
    return lr.classes_, lr.predict_proba(test)


def svm_with_oof(X, y, X_test, C=1.0, folds=3, seed=0):
    """As PetitionClassifier._fit_with_oof: test scores of an SVM on all rows + inner OOF."""
    classes = np.array(sorted(set(y.tolist())), dtype=object)
    counts = {c: int((y == c).sum()) for c in classes}
    folds = max(2, min(folds, max(counts.values())))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    oof = np.full((len(y), len(classes)), -3.0)
    strat = np.where([counts[c] >= folds for c in y], y, "__rare__")
    for tr, te in cv.split(np.zeros(len(y)), strat):
        if len(np.unique(y[tr])) < 2:
            continue
        s = LinearSVC(C=C, class_weight="balanced", random_state=0).fit(X[tr], y[tr])
        d = s.decision_function(X[te])
        if d.ndim == 1:
            d = np.column_stack([-d, d])
        oof[np.ix_(te, np.searchsorted(classes, s.classes_))] = d
    s = LinearSVC(C=C, class_weight="balanced", random_state=0).fit(X, y)
    d = s.decision_function(X_test)
    if d.ndim == 1:
        d = np.column_stack([-d, d])
    return classes, oof, d


def fold_base(analyzed_tr, y_tr, analyzed_te, extra_tr=None, extra_te=None, C=1.0, title=None):
    feats = TextFeatures().fit_analyzed(analyzed_tr)
    Xtr, Xte = feats.transform_analyzed(analyzed_tr), feats.transform_analyzed(analyzed_te)
    if title is not None:  # (analysed titles of train, of test, weight): a separate view
        t_tr, t_te, w = title
        tf = TextFeatures().fit_analyzed(t_tr)
        Xtr = sp.hstack([Xtr, w * tf.transform_analyzed(t_tr)], format="csr", dtype=np.float32)
        Xte = sp.hstack([Xte, w * tf.transform_analyzed(t_te)], format="csr", dtype=np.float32)
    if extra_tr is not None:
        Xtr = sp.hstack([Xtr, extra_tr], format="csr", dtype=np.float32)
        Xte = sp.hstack([Xte, extra_te], format="csr", dtype=np.float32)
    return svm_with_oof(Xtr, y_tr, Xte, C=C)


def report(name, y, pred, extra=""):
    labels = sorted(set(y.tolist()))
    f1 = f1_score(y, pred, labels=labels, average="macro", zero_division=0)
    rec = dict(zip(labels, recall_score(y, pred, labels=labels, average=None), strict=True))
    low = min(rec, key=rec.get)
    shown = " ".join(f"{k[:10]}={rec[k]:.3f}" for k in SHOW if k in rec)
    acc = float(np.mean(y == pred))
    print(f"{name:46s} F1 {f1:.4f} acc {acc:.4f} | {shown} | low {low} {rec[low]:.3f} {extra}")
    sys.stdout.flush()
    return {"macro_f1": f1, "accuracy": acc, "recall": rec}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="petitions13")
    ap.add_argument("--variants", nargs="*", default=["base"])
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    shared = ROOT.parent / "shared" / "data"
    data = load_labelled(shared / f"{args.data}_train.csv")
    if args.data == "petitions13":
        examples = [load_labelled(p) for p in sorted((ROOT / "data" / "examples").glob("*.csv"))]
    else:
        examples = []
    ex_texts = [t for e in examples for t in e.texts]
    ex_labels = [lbl for e in examples for lbl in e.labels]
    y = np.asarray(data.labels, dtype=object)
    y_ex = np.asarray(ex_labels, dtype=object)
    texts = data.texts + ex_texts
    est = PetitionClassifier()
    t0 = time.perf_counter()
    prepared = [prepare_text(t) for t in texts]
    analyzed = est.analyze_prepared(prepared)
    print(f"analysed {len(texts)} docs in {time.perf_counter() - t0:.1f} s")
    n, n_ex = len(y), len(y_ex)
    ex_idx = np.arange(n, n + n_ex)
    counts = {c: int((y == c).sum()) for c in set(y.tolist())}
    strat = np.array([c if counts[c] >= 5 else "__rare__" for c in y], dtype=object)
    splits = list(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(n), strat))
    y_all = np.concatenate([y, y_ex]) if n_ex else y
    trains = [np.concatenate([tr, ex_idx]) for tr, _ in splits]
    results: dict[str, dict] = {}

    def run_base(extra=None, C=1.0, title=None):
        t = time.perf_counter()
        out = Parallel(n_jobs=args.n_jobs)(
            delayed(fold_base)(
                subset_analyzed(analyzed, tr),
                y_all[tr],
                subset_analyzed(analyzed, te),
                None if extra is None else extra[tr],
                None if extra is None else extra[te],
                C,
                None
                if title is None
                else (subset_analyzed(title[0], tr), subset_analyzed(title[0], te), title[1]),
            )
            for tr, (_, te) in zip(trains, splits, strict=True)
        )
        return out, time.perf_counter() - t

    def flat_probs(base, C=10.0, cw="sqrt", oof_extra=None):
        classes = base[0][0]
        proba = np.zeros((n, len(classes)))
        for (tr, (_, te)), (_c, oof, d) in zip(zip(trains, splits, strict=True), base, strict=True):
            a, b = oof, d
            if oof_extra is not None:
                a = np.hstack([oof, oof_extra[tr]])
                b = np.hstack([d, oof_extra[te]])
            c, p = calibrate(a, y_all[tr], b, C=C, cw=cw)
            proba[np.ix_(te, np.searchsorted(classes, c))] = p
        return classes, proba

    cache = Path(f"/tmp/issue2_base_{args.data}.pkl")  # the reference run, reused
    if cache.is_file():
        base, secs = pickle.loads(cache.read_bytes())
    else:
        base, secs = run_base()
        cache.write_bytes(pickle.dumps((base, secs)))
    classes, proba = flat_probs(base)
    results["shipped"] = report("shipped (reference)", y, classes[proba.argmax(1)], f"{secs:.0f}s")
    land_cols = np.array([c in LAND for c in classes])

    lex = lexicon_counts(prepared, LEXICON)
    for v in args.variants:
        if v == "lexcal":  # lexicon counts as extra calibrator inputs (no SVM refit)
            for w in (0.5, 1.0, 2.0):
                c, p = flat_probs(base, oof_extra=w * lex)
                results[f"lexcal{w}"] = report(f"lexicon in calibrator ×{w}", y, c[p.argmax(1)])
        elif v.startswith("lexsvm"):  # lexicon class counts as extra SVM features
            for w in [float(x) for x in v[6:].split(",")] if v != "lexsvm" else (0.1, 0.3):
                b, s = run_base(sp.csr_matrix(lex * w))
                c, p = flat_probs(b)
                results[f"lexsvm{w}"] = report(
                    f"lexicon class counts in SVM ×{w}", y, c[p.argmax(1)], f"{s:.0f}s"
                )
        elif v.startswith("lexterm"):  # every lexicon term a feature
            tm = term_matrix(prepared, LEXICON)
            for w in [float(x) for x in v[7:].split(",")] if v != "lexterm" else (0.3, 1.0):
                b, s = run_base(sp.csr_matrix(tm * w))
                c, p = flat_probs(b)
                results[f"lexterm{w}"] = report(
                    f"lexicon terms in SVM ×{w}", y, c[p.argmax(1)], f"{s:.0f}s"
                )
        elif v.startswith("hier"):  # land-subtype model on land rows only
            # hier<C> or hierlex<w>: the latter adds the lexicon class counts × w (C = 1)
            lexw = float(v[7:]) if v.startswith("hierlex") else 0.0
            Csub = 1.0 if lexw else (float(v[4:]) if len(v) > 4 else 1.0)
            lx = sp.csr_matrix(lex * lexw) if lexw else None
            t = time.perf_counter()
            sub = Parallel(n_jobs=args.n_jobs)(
                delayed(fold_base)(
                    subset_analyzed(analyzed, tr[np.isin(y_all[tr], LAND)]),
                    y_all[tr][np.isin(y_all[tr], LAND)],
                    subset_analyzed(analyzed, te),
                    None if lx is None else lx[tr[np.isin(y_all[tr], LAND)]],
                    None if lx is None else lx[te],
                    Csub,
                )
                for tr, (_, te) in zip(trains, splits, strict=True)
            )
            s = time.perf_counter() - t
            psub = np.zeros((n, land_cols.sum()))
            land_classes = classes[land_cols]
            for (tr, (_, te)), (_c, oof, d) in zip(
                zip(trains, splits, strict=True), sub, strict=True
            ):
                ytr = y_all[tr][np.isin(y_all[tr], LAND)]
                for cw in ("sqrt",):
                    c, p = calibrate(oof, ytr, d, cw=cw)
                psub[np.ix_(te, np.searchsorted(land_classes, c))] = p
            mass = proba[:, land_cols].sum(1, keepdims=True)
            for a in (0.0, 0.3, 0.5, 0.7):
                flat_land = proba[:, land_cols] / mass
                mix = np.exp(a * np.log(flat_land + 1e-12) + (1 - a) * np.log(psub + 1e-12))
                mix /= mix.sum(1, keepdims=True)
                p = proba.copy()
                p[:, land_cols] = mass * mix
                results[f"{v}_a{a}"] = report(
                    f"{v} (C={Csub}), flat weight {a}", y, classes[p.argmax(1)], f"+{s:.0f}s"
                )
        elif v.startswith("title"):  # the title alone as a third view
            titles = [prepare_text(t.split("\n", 1)[0]) if "\n" in t else "" for t in texts]
            ta = est.analyze_prepared(titles)
            for w in [float(x) for x in v[5:].split(",")] if v != "title" else (0.5,):
                b, s = run_base(title=(ta, w))
                c, p = flat_probs(b)
                results[f"title{w}"] = report(f"title view ×{w}", y, c[p.argmax(1)], f"{s:.0f}s")
        elif v == "calC":
            for C in (3.0, 30.0):
                c, p = flat_probs(base, C=C)
                results[f"calC{C}"] = report(f"calibrator C={C}", y, c[p.argmax(1)])
    np.save(f"/tmp/issue2_proba_{args.data}.npy", proba)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
