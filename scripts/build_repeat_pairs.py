"""Build a labelled set of petition pairs for repeat detection and evaluate the detector on it.

The pairs are derived from ``../shared/data`` and must not be committed: they are written to
``data/processed/repeat_pairs.csv`` (gitignored) and regenerated deterministically (fixed seed).

Positives
  * ``synthetic``: a real petition and an edited copy of it (punctuation, traditional
    characters, sentence reordering, deleted / inserted phrases, truncation, a greeting or
    "我再次反映" preamble, number reformatting, a new title, typos), 1–3 edits per pair.
  * ``real_same_user``: two messages in ``unlabelled.csv`` by the same ``user`` whose texts are
    identical or near-identical (reference char-3-gram Jaccard ≥ 0.5 or containment ≥ 0.8).
  * ``real_copy``: identical texts under different user ids (the same message exported twice
    by the platform, or copied by another account).

Negatives
  * ``random``: two different petitions.
  * ``hard_nearest``: same label and same place (e.g. both 城乡建设 in A3区), the partner being
    the most similar petition of that group (char-bigram TF-IDF cosine).
  * ``hard_group``: same label and same place, random partner.

Unlabelled stratum (label -1, reported but not in precision/recall)
  * ``same_user_rewrite``: same user, reference Jaccard in [0.15, 0.5): mostly the same matter
    written again from scratch, some different matters in a writer's fixed template.

Usage::

    python scripts/build_repeat_pairs.py                  # build pairs, evaluate, print
    python scripts/build_repeat_pairs.py --report reports/repeat_eval.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

from triage.normalize import normalize  # noqa: E402
from triage.repeat import DEFAULT_THRESHOLD, RepeatIndex  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "data" / "processed" / "repeat_pairs.csv"
SEED = 20261121

_SENTENCE_END = re.compile(r"(?<=[。!?;])")
_CLAUSE = re.compile(r"(?<=[,。!?;、])")
_PUNCT = re.compile(r"[,。!?;:、]")
_DIGITS = re.compile(r"\d+")
_PLACE = re.compile(r"[A-Z]\d+[区县市]|[A-Z]市")
_CN_DIGITS = "零一二三四五六七八九十"

PREAMBLES = (
    "我再次反映:",
    "再次反映。",
    "尊敬的领导:您好!",
    "领导您好,",
    "之前反映的问题至今没有解决,现再次反映:",
    "我上个月已经反映过这个问题,一直没有人处理。",
    "尊敬的书记:您好!我要再次反映一个问题。",
)
POSTSCRIPTS = ("望尽快答复,谢谢!", "请领导高度重视!", "希望相关部门尽快处理。", "盼复。")
PHRASES = (
    "至今没有解决",
    "请领导高度重视",
    "已经多次反映",
    "严重影响我们的生活",
    "希望尽快处理",
    "相关部门一直推诿",
    "我们非常着急",
    "恳请有关部门调查",
)
PUNCT_SUBST = (",", "。", "!", " ", "", "……", "、", ";")


# --------------------------------------------------------------------------- edits


def _punct(text: str, rng: np.random.Generator, _: Sequence[str]) -> str:
    return _PUNCT.sub(
        lambda m: PUNCT_SUBST[rng.integers(len(PUNCT_SUBST))] if rng.random() < 0.6 else m[0], text
    )


@lru_cache(maxsize=1)
def _s2t() -> Any:
    import opencc

    return opencc.OpenCC("s2t")


def _traditional(text: str, rng: np.random.Generator, _: Sequence[str]) -> str:
    return str(_s2t().convert(text))


def _reorder(text: str, rng: np.random.Generator, _: Sequence[str]) -> str:
    parts = [p for p in _SENTENCE_END.split(text) if p]
    if len(parts) < 3:
        parts = [p for p in _CLAUSE.split(text) if p]
    if len(parts) < 2:
        return text
    order = rng.permutation(len(parts))
    return "".join(parts[i] for i in order)


def _delete(text: str, rng: np.random.Generator, _: Sequence[str]) -> str:
    parts = [p for p in _CLAUSE.split(text) if p]
    if len(parts) < 3:
        return text
    n_del = max(1, int(len(parts) * rng.uniform(0.1, 0.3)))
    drop = set(rng.choice(len(parts), size=n_del, replace=False).tolist())
    return "".join(p for i, p in enumerate(parts) if i not in drop)


def _insert(text: str, rng: np.random.Generator, _: Sequence[str]) -> str:
    parts = [p for p in _CLAUSE.split(text) if p]
    for _i in range(int(rng.integers(1, 4))):
        pos = int(rng.integers(len(parts) + 1))
        parts.insert(pos, PHRASES[rng.integers(len(PHRASES))] + ",")
    return "".join(parts)


def _truncate(text: str, rng: np.random.Generator, _: Sequence[str]) -> str:
    keep = max(20, int(len(text) * rng.uniform(0.5, 0.85)))
    return text[:keep]


def _preamble(text: str, rng: np.random.Generator, _: Sequence[str]) -> str:
    text = PREAMBLES[rng.integers(len(PREAMBLES))] + text
    if rng.random() < 0.5:
        text += POSTSCRIPTS[rng.integers(len(POSTSCRIPTS))]
    return text


def _numbers(text: str, rng: np.random.Generator, _: Sequence[str]) -> str:
    def fmt(m: re.Match[str]) -> str:
        s = m[0]
        r = rng.random()
        if len(s) >= 4 and not s.startswith("0") and r < 0.5:
            return f"{int(s):,}"  # 12000 -> 12,000
        if len(s) == 1 and r < 0.5:
            return "0" + s  # 5月 -> 05月
        if len(s) <= 2 and 0 < int(s) <= 10:
            return _CN_DIGITS[int(s)]  # 3栋 -> 三栋
        return "".join(chr(ord(c) + 0xFEE0) for c in s)  # full-width digits

    return _DIGITS.sub(fmt, text)


def _retitle(text: str, rng: np.random.Generator, _: Sequence[str]) -> str:
    title, sep, body = text.partition("。")
    if not sep or len(title) > 60 or len(body) < 20:
        return text
    return ("再次反映" + title + "。" if rng.random() < 0.5 else "") + body


def _typos(text: str, rng: np.random.Generator, pool: Sequence[str]) -> str:
    chars = list(text)
    n = max(1, len(chars) // 60)
    for i in rng.choice(len(chars), size=min(n, len(chars)), replace=False):
        if "\u4e00" <= chars[i] <= "\u9fff":
            chars[i] = pool[rng.integers(len(pool))]
    return "".join(chars)


EDITS: dict[str, Callable[[str, np.random.Generator, Sequence[str]], str]] = {
    "punct": _punct,
    "traditional": _traditional,
    "reorder": _reorder,
    "delete": _delete,
    "insert": _insert,
    "truncate": _truncate,
    "preamble": _preamble,
    "numbers": _numbers,
    "retitle": _retitle,
    "typos": _typos,
}


# --------------------------------------------------------------------------- data


def _compose(title: object, text: object) -> str:
    title = title if isinstance(title, str) else ""
    text = text if isinstance(text, str) else ""
    return normalize(f"{title}。{text}" if title else text)


def load_docs(shared: Path = SHARED) -> pd.DataFrame:
    """All petitions of the shared data: id, doc (normalised title + text), label, place, user."""
    p = pd.read_csv(shared / "petitions13_train.csv")
    u = pd.read_csv(shared / "unlabelled.csv")
    docs = pd.concat(
        [
            pd.DataFrame(
                {
                    "id": p.id,
                    "doc": [_compose(a, b) for a, b in zip(p.title, p.text, strict=True)],
                    "label": p.label,
                    "user": None,
                    "time": None,
                }
            ),
            pd.DataFrame(
                {
                    "id": u.id,
                    "doc": [_compose(a, b) for a, b in zip(u.title, u.text, strict=True)],
                    "label": None,
                    "user": u.user,
                    "time": u.time,
                }
            ),
        ],
        ignore_index=True,
    )
    docs["place"] = docs.doc.str.extract(f"({_PLACE.pattern})", expand=False)
    return docs


def _ref_shingles(text: str) -> set[str]:
    """Reference shingles for *selecting* pairs (independent of the detector's own hashing)."""
    s = re.sub(r"[\W_]", "", text)
    return {s[i : i + 3] for i in range(len(s) - 2)}


def _ref_scores(a: str, b: str) -> tuple[float, float]:
    sa, sb = _ref_shingles(a), _ref_shingles(b)
    if not sa or not sb:
        return float(a == b), float(a == b)
    inter = len(sa & sb)
    return inter / len(sa | sb), inter / min(len(sa), len(sb))


def build_pairs(
    docs: pd.DataFrame,
    seed: int = SEED,
    n_synthetic: int = 2000,
    n_random: int = 3000,
    n_hard: int = 2500,
) -> pd.DataFrame:
    """Return the labelled pairs (columns: kind, ops, a_id, b_id, a, b, label)."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    pool = [
        c for c in "".join(docs.doc.sample(200, random_state=seed)) if "\u4e00" <= c <= "\u9fff"
    ]

    # Synthetic positives: edited copies of real petitions.
    names = list(EDITS)
    for i in rng.choice(len(docs), size=n_synthetic, replace=False):
        src = docs.doc.iat[i]
        ops = [
            names[j] for j in rng.choice(len(names), size=int(rng.integers(1, 4)), replace=False)
        ]
        edited = src
        for op in ops:
            edited = EDITS[op](edited, rng, pool)
        rows.append(
            {
                "kind": "synthetic",
                "ops": "+".join(ops),
                "a_id": docs.id.iat[i],
                "b_id": f"{docs.id.iat[i]}~edit",
                "a": src,
                "b": normalize(edited),
                "label": 1,
            }
        )

    # Real repeats in unlabelled.csv.
    u = docs[docs.user.notna()]
    for _user, grp in u.groupby("user"):
        for a, b in itertools.combinations(grp.index, 2):
            da, db = docs.doc[a], docs.doc[b]
            jac, cont = _ref_scores(da, db)
            if da == db or jac >= 0.5 or cont >= 0.8:
                kind, label = "real_same_user", 1
            elif jac >= 0.15:
                kind, label = "same_user_rewrite", -1
            else:
                continue
            rows.append(
                {
                    "kind": kind,
                    "ops": "",
                    "a_id": docs.id[a],
                    "b_id": docs.id[b],
                    "a": da,
                    "b": db,
                    "label": label,
                }
            )
    for _doc, grp in u.groupby("doc"):
        if grp.user.nunique() > 1:
            for a, b in itertools.combinations(grp.index, 2):
                if docs.user[a] != docs.user[b]:
                    rows.append(
                        {
                            "kind": "real_copy",
                            "ops": "",
                            "a_id": docs.id[a],
                            "b_id": docs.id[b],
                            "a": docs.doc[a],
                            "b": docs.doc[b],
                            "label": 1,
                        }
                    )

    # Random negatives (never the same user, never the same text).
    n = 0
    while n < n_random:
        a, b = rng.integers(len(docs), size=2)
        same_user = docs.user.iat[a] is not None and docs.user.iat[a] == docs.user.iat[b]
        if a == b or same_user or docs.doc.iat[a] == docs.doc.iat[b]:
            continue
        rows.append(
            {
                "kind": "random",
                "ops": "",
                "a_id": docs.id.iat[a],
                "b_id": docs.id.iat[b],
                "a": docs.doc.iat[a],
                "b": docs.doc.iat[b],
                "label": 0,
            }
        )
        n += 1

    hard, n_duplicates = _hard_negatives(docs, rng, n_hard)
    pairs = pd.DataFrame(rows + hard)
    pairs.attrs["excluded_duplicates"] = n_duplicates
    return pairs


def _hard_negatives(
    docs: pd.DataFrame, rng: np.random.Generator, n: int
) -> tuple[list[dict[str, object]], int]:
    """Same label, same place: the nearest petition of the group and a random one.

    Returns the pairs and the number of near-identical pairs skipped (dataset duplicates).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    lab = docs[docs.label.notna() & docs.place.notna()].reset_index(drop=True)
    groups = [g for _k, g in lab.groupby(["label", "place"]) if len(g) >= 2]
    vec = TfidfVectorizer(analyzer="char", ngram_range=(2, 2), sublinear_tf=True)
    matrix = vec.fit_transform(lab.doc)
    rows: list[dict[str, object]] = []
    duplicates: set[frozenset[str]] = set()
    per_group = {id(g): matrix[g.index.to_numpy()] for g in groups}
    sizes = np.array([len(g) for g in groups], dtype=float)
    for k in rng.choice(len(groups), size=n, p=sizes / sizes.sum()):
        g = groups[k]
        i = int(rng.integers(len(g)))
        if rng.random() < 0.6:
            sims = (per_group[id(g)] @ per_group[id(g)][i].T).toarray().ravel()
            sims[i] = -1
            j, kind = int(sims.argmax()), "hard_nearest"
        else:
            j = int(rng.integers(len(g) - 1))
            j, kind = j + (j >= i), "hard_group"
        jac, cont = _ref_scores(g.doc.iat[i], g.doc.iat[j])
        if jac >= 0.5 or cont >= 0.8:
            # The same text filed twice under two ids (with or without its title): a
            # duplicate, not a different petition, so it cannot serve as a negative.
            duplicates.add(frozenset((str(g.id.iat[i]), str(g.id.iat[j]))))
            continue
        rows.append(
            {
                "kind": kind,
                "ops": "",
                "a_id": g.id.iat[i],
                "b_id": g.id.iat[j],
                "a": g.doc.iat[i],
                "b": g.doc.iat[j],
                "label": 0,
            }
        )
    # Nearest partners repeat when two petitions are each other's nearest: keep one of each.
    seen: set[frozenset[str]] = set()
    unique = []
    for r in rows:
        key = frozenset((str(r["a_id"]), str(r["b_id"])))
        if key not in seen:
            seen.add(key)
            unique.append(r)
    return unique, len(duplicates)


# --------------------------------------------------------------------------- evaluation


def pair_scores(pairs: pd.DataFrame, index: RepeatIndex) -> np.ndarray:
    """The detector's exact similarity for every pair."""
    return np.array([index.similarity(a, b) for a, b in zip(pairs.a, pairs.b, strict=True)])


def prf(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    pred = scores >= threshold
    tp = int((pred & (labels == 1)).sum())
    fp = int((pred & (labels == 0)).sum())
    fn = int((~pred & (labels == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": threshold,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def retrieval_eval(
    docs: pd.DataFrame, pairs: pd.DataFrame, threshold: float, seed: int = SEED
) -> dict[str, object]:
    """Index-level check: search edited copies against every petition through ``query``.

    Recall counts a synthetic positive as found when its source comes back above the threshold
    (so candidate-generation losses count). The false-alarm rate queries petitions held out of
    the index: any hit above the threshold is a false alarm unless the hit has the same text.
    """
    rng = np.random.default_rng(seed)
    uniq = docs.drop_duplicates("doc")
    held = rng.random(len(uniq)) < 0.2
    index = RepeatIndex(threshold=threshold)
    t0 = time.perf_counter()
    index.add_many(zip(uniq.id[~held], uniq.doc[~held], strict=True))
    build_s = time.perf_counter() - t0
    indexed = set(uniq.id[~held])

    syn = pairs[(pairs.kind == "synthetic") & pairs.a_id.isin(indexed)]
    found = [
        a_id in {c for c, _s in index.query(b, k=5)}
        for a_id, b in zip(syn.a_id, syn.b, strict=True)
    ]
    held_docs = uniq[held]
    alarms = 0
    for text in held_docs.doc:
        hits = index.query(text, k=1)
        alarms += bool(hits)
    return {
        "indexed": len(index),
        "build_seconds": round(build_s, 3),
        "synthetic_queries": len(syn),
        "recall_top5": round(float(np.mean(found)), 4),
        "novel_queries": len(held_docs),
        "novel_queries_with_a_hit": alarms,
        "false_alarm_rate_upper_bound": round(alarms / len(held_docs), 4),
    }


def evaluate(pairs: pd.DataFrame, docs: pd.DataFrame, threshold: float) -> dict[str, object]:
    index = RepeatIndex(threshold=threshold)
    scores = pair_scores(pairs, index)
    labels = pairs.label.to_numpy()
    lab = labels >= 0
    report: dict[str, object] = {
        "pairs": {k: int(v) for k, v in pairs.kind.value_counts().items()},
        # Same-label same-place pairs that were near-identical (one text filed under two ids)
        # and so were kept out of the negatives.
        "excluded_near_identical_negatives": int(pairs.attrs.get("excluded_duplicates", 0)),
        "threshold": threshold,
        "overall": prf(labels[lab], scores[lab], threshold),
        "sweep": [
            prf(labels[lab], scores[lab], t) for t in (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)
        ],
    }
    by_kind = {}
    for kind, grp in pairs.groupby("kind"):
        s = scores[grp.index]
        key = "recall" if grp.label.iat[0] == 1 else "flagged"
        by_kind[kind] = {
            "n": len(grp),
            key: round(float((s >= threshold).mean()), 4),
            "median_similarity": round(float(np.median(s)), 3),
        }
    report["by_kind"] = by_kind
    syn = pairs[pairs.kind == "synthetic"]
    by_op = {}
    for op in EDITS:
        m = syn.ops.str.split("+").map(lambda ops, op=op: op in ops).to_numpy()
        by_op[op] = round(float((scores[syn.index[m]] >= threshold).mean()), 4)
    report["synthetic_recall_by_edit"] = by_op
    n_ops = syn.ops.str.count(r"\+") + 1
    report["synthetic_recall_by_edit_count"] = {
        int(k): round(float((scores[g.index] >= threshold).mean()), 4)
        for k, g in syn.groupby(n_ops)
    }
    fp = pairs[(labels == 0) & (scores >= threshold)].assign(
        score=scores[(labels == 0) & (scores >= threshold)]
    )
    report["false_positive_examples"] = [
        {"kind": r.kind, "a_id": r.a_id, "b_id": r.b_id, "similarity": round(float(r.score), 3)}
        for r in fp.sort_values("score", ascending=False).head(10).itertuples()
    ]
    report["retrieval"] = retrieval_eval(docs, pairs, threshold)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=SHARED, help="folder of the shared CSVs")
    ap.add_argument("--out", type=Path, default=OUT, help="where to write the pairs (gitignored)")
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--no-eval", action="store_true", help="only build the pairs")
    ap.add_argument("--report", type=Path, help="write the evaluation as JSON here")
    args = ap.parse_args(argv)
    if not (args.shared / "unlabelled.csv").exists():
        print(f"shared data not found in {args.shared}", file=sys.stderr)
        return 2
    docs = load_docs(args.shared)
    pairs = build_pairs(docs, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pairs.to_csv(args.out, index=False)
    print(f"{len(pairs)} pairs -> {args.out}")
    print(pairs.groupby(["kind", "label"]).size().to_string())
    if args.no_eval:
        return 0
    report = evaluate(pairs, docs, args.threshold)
    print(json.dumps(report, ensure_ascii=False, indent=1))
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
