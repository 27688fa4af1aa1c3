# ruff: noqa: B023, B905, RUF005, RUF059  (exploration script: closures run inside their loop)
"""Issue 2, third round: error analysis, dense local embeddings, LSA, score averaging, weighting.

Not part of the package. Same 5 folds as ``notebooks/issue2_variants.py`` (seed 0; written
examples added to petitions13's training folds only; real rows evaluated):

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 19 \
        python notebooks/issue2_round3.py --data teddy7 --variants base errors w2v lsa ...

Every learned part (TF-IDF vocabulary and IDF, word vectors, SVD, SVMs, calibrator) is fitted
inside the fold on its training rows only, plus, for the unsupervised parts (word vectors,
SVD), ``unlabelled.csv`` minus any message whose prepared text equals one of the fold's
evaluation rows. One process, one BLAS thread. Two scores are given per variant:

* ``argmax``: the arg-max of the fold model's scores (one fit per fold; cheap screen);
* ``full``: the shipped head (inner 3-fold out-of-fold scores → √-balanced multinomial LR
  calibrator, C 10, arg-max of its probabilities), i.e. exactly the shipped pipeline when the
  scorer is the plain SVM (reproduces 0.9064 on teddy7, 0.7889 on petitions13).

Score averaging ("avg:" variants) scales each view's decision values by one number, their
standard deviation on unlabelled.csv (label-free and outside every fold), then averages.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import f1_score, recall_score  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402
from sklearn.svm import LinearSVC  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from triage.dataset import load_labelled  # noqa: E402
from triage.features import TextFeatures, prepare_text  # noqa: E402
from triage.model import PetitionClassifier, subset_analyzed  # noqa: E402
from triage.nbsvm import NBLinearSVC  # noqa: E402
from triage.segment import tokenize  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
SHOW = ("land_title_dispute", "land_illegal_use")
threadpool_limits(limits=1)


# --------------------------------------------------------------------------------------
# data and folds (as notebooks/issue2_variants.py)
# --------------------------------------------------------------------------------------
def load(data_name: str):
    data = load_labelled(SHARED / f"{data_name}_train.csv")
    examples = []
    if data_name == "petitions13":
        examples = [load_labelled(p) for p in sorted((ROOT / "data" / "examples").glob("*.csv"))]
    ex_texts = [t for e in examples for t in e.texts]
    ex_labels = [lbl for e in examples for lbl in e.labels]
    y = np.asarray(data.labels, dtype=object)
    y_ex = np.asarray(ex_labels, dtype=object)
    texts = data.texts + ex_texts
    n, n_ex = len(y), len(y_ex)
    counts = {c: int((y == c).sum()) for c in set(y.tolist())}
    strat = np.array([c if counts[c] >= 5 else "__rare__" for c in y], dtype=object)
    splits = list(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(n), strat))
    ex_idx = np.arange(n, n + n_ex)
    trains = [np.concatenate([tr, ex_idx]) for tr, _ in splits]
    tests = [te for _, te in splits]
    y_all = np.concatenate([y, y_ex]) if n_ex else y
    un = pd.read_csv(SHARED / "unlabelled.csv", dtype=str).fillna("")
    un_texts = [
        f"{h}\n{t}" if h.strip() else t for h, t in zip(un["title"], un["text"], strict=True)
    ]
    return texts, y, y_all, trains, tests, un_texts


def prepare_all(data_name: str, texts, un_texts):
    """Prepared texts, analysed hashes and jieba tokens of labelled + unlabelled (cached)."""
    cache = Path(f"/tmp/r3_prep_{data_name}.pkl")
    if cache.is_file():
        return pickle.loads(cache.read_bytes())
    est = PetitionClassifier()
    prepared = [prepare_text(t) for t in texts]
    un_prepared = [prepare_text(t) for t in un_texts]
    analyzed = est.analyze_prepared(prepared)
    un_analyzed = est.analyze_prepared(un_prepared)
    toks = [tokenize(d) for d in prepared]
    un_toks = [tokenize(d) for d in un_prepared]
    out = (prepared, un_prepared, analyzed, un_analyzed, toks, un_toks)
    cache.write_bytes(pickle.dumps(out))
    return out


# --------------------------------------------------------------------------------------
# heads
# --------------------------------------------------------------------------------------
def sqrt_weights(y):
    classes, counts = np.unique(y, return_counts=True)
    w = np.sqrt(len(y) / (len(classes) * counts))
    return {str(c): float(v) for c, v in zip(classes, w, strict=True)}


def calibrate(oof, y, test, C=10.0):
    lr = LogisticRegression(C=C, class_weight=sqrt_weights(y), max_iter=2000).fit(oof, y)
    return lr.classes_, lr.predict_proba(test)


def svm_scores(X, y, Xs, C=1.0, cw="balanced"):
    s = LinearSVC(C=C, class_weight=cw, random_state=0).fit(X, y)
    return [s.decision_function(x) for x in Xs]


def nb_scores(X, y, Xs, C=0.3, beta=None):
    """NB-SVM (triage.nbsvm); ``beta`` < 1: Wang & Manning's interpolation
    w' = (1 - beta) * mean|w| + beta * w, per binary problem."""
    if beta is None:
        m = NBLinearSVC(C=C, random_state=0).fit(X, y)
        coef, b = m.coef_, m.intercept_
    else:
        coef, b = nb_interp(X, y, C, beta)
    return [np.asarray(x @ coef.T) + b for x in Xs]


def nb_interp(X, y, C, beta, alpha=1.0):
    classes = np.array(sorted(set(y.tolist())), dtype=object)
    X = sp.csr_matrix(X)
    present = X.copy()
    present.data = np.ones_like(present.data)
    member = sp.csr_matrix(
        (np.ones(len(y)), (np.searchsorted(classes, y), np.arange(len(y)))),
        shape=(len(classes), len(y)),
    )
    docs_with = np.asarray((member @ present).todense(), dtype=np.float64) + alpha
    total = docs_with.sum(axis=0)
    coef = np.zeros((len(classes), X.shape[1]))
    intercept = np.zeros(len(classes))
    for k, label in enumerate(classes):
        p, q = docs_with[k], total - docs_with[k] - alpha * (len(classes) - 2)
        ratio = np.log((p / p.sum()) / (q / q.sum()))
        svm = LinearSVC(C=C, class_weight="balanced", random_state=0)
        svm.fit(X.multiply(ratio.astype(np.float32)).tocsr(), y == label)
        w = svm.coef_.ravel()
        w = (1 - beta) * np.abs(w).mean() + beta * w
        coef[k] = w * ratio
        intercept[k] = svm.intercept_[0]
    return coef, intercept


def lr_scores(X, y, Xs, C=30.0):
    m = LogisticRegression(C=C, max_iter=3000, class_weight="balanced").fit(X, y)
    return [m.decision_function(x) for x in Xs]


# --------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------
def metrics(y, pred):
    labels = sorted(set(y.tolist()))
    f1 = f1_score(y, pred, labels=labels, average="macro", zero_division=0)
    rec = dict(zip(labels, recall_score(y, pred, labels=labels, average=None), strict=True))
    return {"macro_f1": float(f1), "accuracy": float(np.mean(y == pred)), "recall": rec}


def report(name, y, pred, secs, log):
    m = metrics(y, pred)
    rec = m["recall"]
    low = min(rec, key=rec.get)
    shown = " ".join(f"{k[:10]}={rec[k]:.3f}" for k in SHOW if k in rec)
    line = (
        f"{name:52s} F1 {m['macro_f1']:.4f} acc {m['accuracy']:.4f} | {shown} "
        f"| low {low} {rec[low]:.3f} | {secs:.0f}s"
    )
    print(line, flush=True)
    log[name] = {**m, "seconds": secs}
    return m


class Fold:
    """Everything one outer fold needs, fitted on its training rows only."""

    def __init__(self, k, tr, te, analyzed, un_analyzed, feats_kw=None):
        self.k, self.tr, self.te = k, tr, te
        a_tr, a_te = subset_analyzed(analyzed, tr), subset_analyzed(analyzed, te)
        self.feats = TextFeatures(**(feats_kw or {})).fit_analyzed(a_tr)
        self.Xtr = self.feats.transform_analyzed(a_tr)
        self.Xte = self.feats.transform_analyzed(a_te)
        self.Xun = self.feats.transform_analyzed(un_analyzed)
        self.n_word = len(self.feats.word_vocab_)


def inner_splits(y, folds=3, seed=0):
    classes = sorted(set(y.tolist()))
    counts = {c: int((y == c).sum()) for c in classes}
    strat = np.where([counts[c] >= folds for c in y], y, "__rare__")
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return list(cv.split(np.zeros(len(y)), strat))


def run_variant(name, scorer, folds, y, y_all, mode, log, n_classes):
    """``scorer(fold, tr_rows, Xsets)``: fits on the training rows ``tr_rows`` (indices into
    fold.tr) and returns scores on each of ``Xsets`` (list of row-index selectors 'te' or
    inner test rows). mode: argmax / full / both."""
    n = len(y)
    t = time.perf_counter()
    pred_arg = np.empty(n, dtype=object)
    pred_full = np.empty(n, dtype=object)
    classes = np.array(sorted(set(y_all.tolist())), dtype=object)
    for f in folds:
        ytr = y_all[f.tr]
        all_rows = np.arange(len(f.tr))
        (d_te,) = scorer(f, all_rows, ["te"])
        pred_arg[f.te] = classes[np.argmax(d_te, 1)]
        if mode in ("full", "both"):
            oof = np.full((len(ytr), len(classes)), -3.0)
            for itr, ite in inner_splits(ytr):
                (d,) = scorer(f, itr, [ite])
                oof[ite] = d
            c, p = calibrate(oof, ytr, d_te)
            pred_full[f.te] = c[p.argmax(1)]
    secs = time.perf_counter() - t
    out = {}
    if mode in ("argmax", "both"):
        out["argmax"] = report(f"{name} [argmax]", y, pred_arg, secs, log)
    if mode in ("full", "both"):
        out["full"] = report(f"{name} [full]", y, pred_full, secs, log)
    return out, pred_arg, pred_full


def rows(f, which, src="X"):
    """Feature rows: 'te' → the fold's test rows, an index array → training rows."""
    if isinstance(which, str):
        return getattr(f, f"{src}te")
    return getattr(f, f"{src}tr")[which]


# --------------------------------------------------------------------------------------
# dense features: word2vec / fasttext on training fold + unlabelled, SIF / TF-IDF mean
# --------------------------------------------------------------------------------------
def doc_vectors(toks, kv, weight):
    dim = kv.vector_size
    out = np.zeros((len(toks), dim), dtype=np.float32)
    for i, ts in enumerate(toks):
        ts = [t for t in ts if t in kv.key_to_index]
        if not ts:
            continue
        w = np.array([weight.get(t, 0.0) for t in ts], dtype=np.float32)
        if w.sum() <= 0:
            w = np.ones(len(ts), np.float32)
        out[i] = (w[:, None] * kv[ts]).sum(0) / w.sum()
    return out


def dense_block(
    f, toks, un_toks, prepared, un_prepared, kind="w2v", dim=100, weighting="sif", epochs=5
):
    """Doc vectors for train / test / unlabelled rows of fold ``f`` (cached per fold)."""
    cache = Path(f"/tmp/r3_dense_{DATA}_{kind}{dim}_{weighting}_e{epochs}_f{f.k}.npz")
    if cache.is_file():
        z = np.load(cache)
        return z["tr"], z["te"], z["un"], float(z["secs"])
    from gensim.models import FastText, Word2Vec

    t = time.perf_counter()
    test_set = {prepared[i] for i in f.te}
    un_keep = [i for i, d in enumerate(un_prepared) if d not in test_set]
    corpus = [toks[i] for i in f.tr] + [un_toks[i] for i in un_keep]
    corpus = [c for c in corpus if c]
    # w2v: CBOW; sg: skip-gram (10 epochs of it took 2 min per fold: over budget); ft: FastText CBOW
    cls = FastText if kind == "ft" else Word2Vec
    model = cls(
        sentences=corpus,
        vector_size=dim,
        window=5,
        min_count=2,
        sg=int(kind == "sg"),
        negative=5,
        epochs=epochs,
        workers=1,
        seed=0,
    )
    kv = model.wv
    freq = Counter(t for c in corpus for t in c)
    total = sum(freq.values())
    if weighting == "sif":
        a = 1e-3
        weight = {w: a / (a + c / total) for w, c in freq.items()}
    else:  # idf over documents of the corpus
        dfreq = Counter(t for c in corpus for t in set(c))
        weight = {w: np.log((1 + len(corpus)) / (1 + c)) + 1 for w, c in dfreq.items()}
    tr = doc_vectors([toks[i] for i in f.tr], kv, weight)
    te = doc_vectors([toks[i] for i in f.te], kv, weight)
    un = doc_vectors(un_toks, kv, weight)
    if weighting == "sif":  # remove the first principal component (fitted on train + unl.)
        base = np.vstack([tr, un])
        u = np.linalg.svd(base - 0 * base.mean(0), full_matrices=False)[2][0]
        tr, te, un = (x - np.outer(x @ u, u) for x in (tr, te, un))
    secs = time.perf_counter() - t
    np.savez(cache, tr=tr, te=te, un=un, secs=secs)
    return tr, te, un, secs


def standardise(tr, te, un):
    mu = np.vstack([tr, un]).mean(0)
    sd = np.vstack([tr, un]).std(0) + 1e-6
    return tuple((x - mu) / sd for x in (tr, te, un))


def l2rows(x):
    n = np.linalg.norm(x, axis=1, keepdims=True)
    n[n == 0] = 1
    return x / n


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------
DATA = "teddy7"


def main() -> int:
    global DATA
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="teddy7")
    ap.add_argument("--variants", nargs="*", default=["base"])
    ap.add_argument("--mode", default="argmax", choices=["argmax", "full", "both"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    DATA = args.data
    t0 = time.perf_counter()
    texts, y, y_all, trains, tests, un_texts = load(args.data)
    prepared, un_prepared, analyzed, un_analyzed, toks, un_toks = prepare_all(
        args.data, texts, un_texts
    )
    n_classes = len(set(y.tolist()))
    print(
        f"{args.data}: {len(y)} rows (+{len(y_all) - len(y)} examples), "
        f"{len(un_texts)} unlabelled; prepared in {time.perf_counter() - t0:.0f}s",
        flush=True,
    )
    t = time.perf_counter()
    folds = [
        Fold(k, tr, te, analyzed, un_analyzed) for k, (tr, te) in enumerate(zip(trains, tests))
    ]
    print(f"features of 5 folds in {time.perf_counter() - t:.0f}s", flush=True)
    log: dict[str, dict] = {}
    mode = args.mode

    def svm_on(src_fn, C=1.0, cw="balanced"):
        def scorer(f, tr_rows, sets):
            Xtr = src_fn(f, tr_rows)
            return svm_scores(Xtr, y_all[f.tr][tr_rows], [src_fn(f, s) for s in sets], C=C, cw=cw)

        return scorer

    full_X = lambda f, w: rows(f, w)  # noqa: E731

    for v in args.variants:
        if v == "base":
            run_variant(
                "shipped SVM C1 balanced", svm_on(full_X), folds, y, y_all, mode, log, n_classes
            )
        elif v == "errors":
            _, pa, pf = run_variant(
                "shipped SVM C1 balanced", svm_on(full_X), folds, y, y_all, "both", log, n_classes
            )
            np.save(f"/tmp/r3_oof_pred_{args.data}.npy", pf)
            wrong = np.flatnonzero(pf != y)
            print(f"{len(wrong)} errors of {len(y)}")
            pairs = Counter((y[i], pf[i]) for i in wrong)
            for (a, b), c in pairs.most_common(15):
                print(f"  {a} -> {b}: {c}")
        elif v.startswith("C"):  # C grid for the plain SVM
            for C in [float(x) for x in v[1:].split(",")]:
                run_variant(f"SVM C{C}", svm_on(full_X, C=C), folds, y, y_all, mode, log, n_classes)
        elif v == "cwnone":
            run_variant(
                "SVM C1 no class weight",
                svm_on(full_X, cw=None),
                folds,
                y,
                y_all,
                mode,
                log,
                n_classes,
            )
        elif v.startswith(("w2v", "ft", "sg")):
            # w2v<dim>_<weighting>_<how>  how: app<scale> (append) or avg<weight> (LR averaged)
            kind = next(k for k in ("w2v", "ft", "sg") if v.startswith(k))
            spec = v[len(kind) :].split("_")
            dim, weighting, how = int(spec[0]), spec[1], spec[2]
            dense = {}
            secs = 0.0
            for f in folds:
                tr, te, un, s = dense_block(
                    f, toks, un_toks, prepared, un_prepared, kind, dim, weighting
                )
                secs += s
                dense[f.k] = standardise(tr, te, un)
            print(f"  {v}: vectors {secs:.0f}s over 5 folds", flush=True)
            if how.startswith("app"):
                scale = float(how[3:])

                def src(f, w, scale=scale):
                    D = dense[f.k][1] if isinstance(w, str) else dense[f.k][0][w]
                    X = rows(f, w)
                    blk = sp.csr_matrix(l2rows(D) * scale, dtype=np.float32)
                    return sp.hstack([X, blk], format="csr", dtype=np.float32)

                run_variant(f"{v}", svm_on(src), folds, y, y_all, mode, log, n_classes)
            elif how.startswith("avg"):
                wgt = float(how[3:])

                def scorer(f, tr_rows, sets, wgt=wgt):
                    ytr = y_all[f.tr][tr_rows]
                    Dtr = dense[f.k][0][tr_rows]
                    Ds = [dense[f.k][1] if isinstance(s, str) else dense[f.k][0][s] for s in sets]
                    s_svm = svm_scores(rows(f, tr_rows), ytr, [rows(f, s) for s in sets] + [f.Xun])
                    s_lr = lr_scores(Dtr, ytr, Ds + [dense[f.k][2]], C=1.0)
                    a, b = s_svm[-1].std(), s_lr[-1].std()
                    return [x / a + wgt * z / b for x, z in zip(s_svm[:-1], s_lr[:-1])]

                run_variant(f"{v}", scorer, folds, y, y_all, mode, log, n_classes)
            elif how == "alone":

                def scorer(f, tr_rows, sets):
                    ytr = y_all[f.tr][tr_rows]
                    Ds = [dense[f.k][1] if isinstance(s, str) else dense[f.k][0][s] for s in sets]
                    return lr_scores(dense[f.k][0][tr_rows], ytr, Ds, C=1.0)

                run_variant(f"{v}", scorer, folds, y, y_all, mode, log, n_classes)
        elif v.startswith("lsa"):
            # lsa<dims>_<how>: TruncatedSVD of the fold's TF-IDF on train + unlabelled
            from sklearn.decomposition import TruncatedSVD

            spec = v[3:].split("_")
            dims, how = int(spec[0]), spec[1]
            lsa = {}
            t = time.perf_counter()
            for f in folds:
                cache = Path(f"/tmp/r3_lsa_{DATA}_{dims}_f{f.k}.npz")
                if cache.is_file():
                    z = np.load(cache)
                    lsa[f.k] = (z["tr"], z["te"], z["un"])
                    continue
                test_set = {prepared[i] for i in f.te}
                keep = np.array([d not in test_set for d in un_prepared])
                svd = TruncatedSVD(dims, random_state=0, n_iter=5)
                svd.fit(sp.vstack([f.Xtr, f.Xun[keep]]))
                z = (svd.transform(f.Xtr), svd.transform(f.Xte), svd.transform(f.Xun))
                np.savez(cache, tr=z[0], te=z[1], un=z[2])
                lsa[f.k] = z
            print(f"  {v}: SVD {time.perf_counter() - t:.0f}s over 5 folds", flush=True)
            if how.startswith("app"):
                scale = float(how[3:])

                def src(f, w, scale=scale):
                    D = lsa[f.k][1] if isinstance(w, str) else lsa[f.k][0][w]
                    blk = sp.csr_matrix(l2rows(D) * scale, dtype=np.float32)
                    return sp.hstack([rows(f, w), blk], format="csr", dtype=np.float32)

                run_variant(f"{v}", svm_on(src), folds, y, y_all, mode, log, n_classes)
            elif how.startswith("avg"):
                wgt = float(how[3:])
                std = {k: standardise(*lsa[k]) for k in lsa}

                def scorer(f, tr_rows, sets, wgt=wgt):
                    ytr = y_all[f.tr][tr_rows]
                    Ds = [std[f.k][1] if isinstance(s, str) else std[f.k][0][s] for s in sets]
                    s_svm = svm_scores(rows(f, tr_rows), ytr, [rows(f, s) for s in sets] + [f.Xun])
                    s_lr = lr_scores(std[f.k][0][tr_rows], ytr, Ds + [std[f.k][2]], C=1.0)
                    a, b = s_svm[-1].std(), s_lr[-1].std()
                    return [x / a + wgt * z / b for x, z in zip(s_svm[:-1], s_lr[:-1])]

                run_variant(f"{v}", scorer, folds, y, y_all, mode, log, n_classes)
        elif v.startswith("avg:"):
            # avg:view1+view2+...  views: svm, word, char, nb, nbi<beta>, lr
            views = v[4:].split("+")

            def scorer(f, tr_rows, sets, views=views):
                ytr = y_all[f.tr][tr_rows]
                Xtr = rows(f, tr_rows)
                Xs = [rows(f, s) for s in sets] + [f.Xun]
                nw = f.n_word
                total = None
                for view in views:
                    wgt = 1.0
                    if "*" in view:
                        view, wgt = view.split("*")
                        wgt = float(wgt)
                    if view == "svm":
                        out = svm_scores(Xtr, ytr, Xs)
                    elif view == "word":
                        out = svm_scores(Xtr[:, :nw], ytr, [x[:, :nw] for x in Xs])
                    elif view == "char":
                        out = svm_scores(Xtr[:, nw:], ytr, [x[:, nw:] for x in Xs])
                    elif view == "nb":
                        out = nb_scores(Xtr, ytr, Xs, C=0.3)
                    elif view.startswith("nbi"):
                        out = nb_scores(Xtr, ytr, Xs, C=0.3, beta=float(view[3:]))
                    elif view == "lr":
                        out = lr_scores(Xtr, ytr, Xs, C=30.0)
                    else:
                        raise ValueError(view)
                    sd = out[-1].std()
                    out = [wgt * o / sd for o in out[:-1]]
                    total = out if total is None else [a + b for a, b in zip(total, out)]
                return total

            run_variant(v, scorer, folds, y, y_all, mode, log, n_classes)
        elif v.startswith("feat:"):
            # feat:<kw>=<val>,...  TextFeatures variants (char_ngram_range=1-4, min_df, ...)
            kw = {}
            for item in v[5:].split(","):
                key, val = item.split("=")
                if key == "char_ngram_range":
                    lo, hi = val.split("-")
                    kw[key] = (int(lo), int(hi))
                elif key == "word_bigrams":
                    kw[key] = val == "1"
                else:
                    kw[key] = float(val) if "." in val else int(val)
            t = time.perf_counter()
            an = analyzed
            un_an = un_analyzed
            if "char_ngram_range" in kw:
                est = PetitionClassifier(char_ngram_range=kw["char_ngram_range"])
                an = est.analyze_prepared(prepared)
                un_an = est.analyze_prepared(un_prepared)
            fs = [Fold(k, tr, te, an, un_an, kw) for k, (tr, te) in enumerate(zip(trains, tests))]
            print(f"  {v}: features {time.perf_counter() - t:.0f}s", flush=True)
            run_variant(v, svm_on(full_X), fs, y, y_all, mode, log, n_classes)
        elif v.startswith("bm25"):
            # bm25<k1>: tf → (k1+1) tf / (k1 (1-b+b len/avglen) + tf), b = 0.75, × idf, L2/view
            k1 = float(v[4:] or 1.2)
            t = time.perf_counter()
            fs = [bm25_fold(f, analyzed, un_analyzed, k1) for f in folds]
            print(f"  {v}: features {time.perf_counter() - t:.0f}s", flush=True)
            run_variant(v, svm_on(full_X), fs, y, y_all, mode, log, n_classes)
        elif v.startswith("chi2"):
            # chi2<k>: keep the k best features by chi2 on the training rows
            from sklearn.feature_selection import SelectKBest, chi2

            k = int(v[4:])

            def scorer(f, tr_rows, sets, k=k):
                ytr = y_all[f.tr][tr_rows]
                sel = SelectKBest(chi2, k=min(k, f.Xtr.shape[1])).fit(rows(f, tr_rows), ytr)
                return svm_scores(
                    sel.transform(rows(f, tr_rows)), ytr, [sel.transform(rows(f, s)) for s in sets]
                )

            run_variant(v, scorer, folds, y, y_all, mode, log, n_classes)
        else:
            print(f"unknown variant {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(log, indent=1, default=float))
    print(f"total {time.perf_counter() - t0:.0f}s")
    return 0


def bm25_fold(f, analyzed, un_analyzed, k1, b=0.75):
    """A copy of fold ``f`` whose views use BM25 tf saturation instead of sublinear tf."""
    from triage.features import _view_counts

    g = Fold.__new__(Fold)
    g.k, g.tr, g.te, g.feats, g.n_word = f.k, f.tr, f.te, f.feats, f.n_word
    feats = f.feats

    def build(an, avg=None):
        (wr, wh), (cr, ch), n = an
        mats, avgs = [], []
        for (r, h), vocab, idf, av in (
            ((wr, wh), feats.word_vocab_, feats.word_idf_, None if avg is None else avg[0]),
            ((cr, ch), feats.char_vocab_, feats.char_idf_, None if avg is None else avg[1]),
        ):
            indptr, indices, cnt = _view_counts(r, h, n, vocab)
            m = sp.csr_matrix((cnt.astype(np.float32), indices, indptr), shape=(n, len(vocab)))
            length = np.asarray(m.sum(1)).ravel()
            av = length.mean() if av is None else av
            avgs.append(av)
            denom = k1 * (1 - b + b * length / av)
            rep = np.repeat(denom, np.diff(m.indptr)).astype(np.float32)
            m.data = (k1 + 1) * m.data / (rep + m.data) * idf[m.indices]
            nr = np.sqrt(np.asarray(m.multiply(m).sum(1)).ravel())
            nr[nr == 0] = 1
            m = sp.csr_matrix(sp.diags(1 / nr) @ m, dtype=np.float32)
            mats.append(m)
        return sp.hstack(mats, format="csr", dtype=np.float32), avgs

    g.Xtr, avgs = build(subset_analyzed(analyzed, f.tr))
    g.Xte, _ = build(subset_analyzed(analyzed, f.te), avgs)
    g.Xun, _ = build(un_analyzed, avgs)
    return g


if __name__ == "__main__":
    sys.exit(main())
