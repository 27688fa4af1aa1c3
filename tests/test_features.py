"""Features: the fast paths give bit-for-bit the values of the straightforward code.

The shipped model (models/default) depends on the hashing scheme and on every feature value,
so the reference implementation below is the original code, kept verbatim: any change to
``triage.features`` must leave its outputs identical to these.
"""

from __future__ import annotations

import csv
import gc
import subprocess
import sys
from hashlib import blake2b
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import triage.features as features
from triage.errors import InputError, ModelError
from triage.features import (
    _P,
    _SALT,
    TextFeatures,
    _lookup,
    _mix,
    _unique_pairs,
    char_ngram_hashes,
    prepare_text,
    word_hashes,
)
from triage.segment import tokenize

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"


# -- the reference: the original, straightforward implementation ---------------------------
def ref_word_hashes(token_lists, bigrams=True):  # type: ignore[no-untyped-def]
    def token_hash(token: str) -> int:
        return int.from_bytes(blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")

    flat = [token_hash(t) for toks in token_lists for t in toks]
    lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
    uni = np.array(flat, dtype=np.uint64)
    doc_of = np.repeat(np.arange(len(token_lists), dtype=np.int64), lengths)
    if not bigrams or len(uni) < 2:
        return doc_of, uni
    same = doc_of[1:] == doc_of[:-1]
    with np.errstate(over="ignore"):
        bi = _mix(uni[:-1] * _P + uni[1:] + _SALT)[same]
    return np.concatenate([doc_of, doc_of[1:][same]]), np.concatenate([uni, bi])


def ref_fit_view(rows, hashes, n_docs, min_df):  # type: ignore[no-untyped-def]
    order = np.lexsort((rows, hashes))
    h, r = hashes[order], rows[order]
    first = np.ones(len(h), dtype=bool)
    first[1:] = (h[1:] != h[:-1]) | (r[1:] != r[:-1])
    uniq, df = np.unique(h[first], return_counts=True)
    kept = df >= min_df
    idf = np.log((1 + n_docs) / (1 + df[kept])) + 1.0
    return uniq[kept], idf.astype(np.float32)


def ref_transform_view(rows, hashes, n_docs, vocab, idf):  # type: ignore[no-untyped-def]
    if len(vocab) == 0 or len(hashes) == 0:
        return sp.csr_matrix((n_docs, len(vocab)), dtype=np.float32)
    col = np.searchsorted(vocab, hashes)
    col[col == len(vocab)] = 0
    hit = vocab[col] == hashes
    counts = sp.csr_matrix(
        (np.ones(int(hit.sum()), dtype=np.float32), (rows[hit], col[hit])),
        shape=(n_docs, len(vocab)),
    )
    counts.sum_duplicates()
    counts.data = (np.log(counts.data) + 1.0) * idf[counts.indices]
    norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    counts.data /= np.repeat(norms, np.diff(counts.indptr)).astype(np.float32)
    return counts


def ref_matrix(vocab_from, docs, min_df=2, char_weight=1.0):  # type: ignore[no-untyped-def]
    """Fit the reference on ``vocab_from``, transform ``docs``."""
    def analyze(ds):  # type: ignore[no-untyped-def]
        return ref_word_hashes([tokenize(d) for d in ds]), char_ngram_hashes(ds), len(ds)

    (wr, wh), (cr, ch), n = analyze(vocab_from)
    wv, wi = ref_fit_view(wr, wh, n, min_df)
    cv, ci = ref_fit_view(cr, ch, n, min_df)
    (wr, wh), (cr, ch), n = analyze(docs)
    xw = ref_transform_view(wr, wh, n, wv, wi)
    xc = ref_transform_view(cr, ch, n, cv, ci)
    if char_weight != 1.0:
        xc = xc * np.float32(char_weight)
    return sp.hstack([xw, xc], format="csr", dtype=np.float32), (wv, wi, cv, ci)


def assert_same_matrix(a: sp.csr_matrix, b: sp.csr_matrix) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    assert np.array_equal(a.indptr, b.indptr)
    assert np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.data.view(np.uint32), b.data.view(np.uint32))  # bit for bit


DOCS = [prepare_text(t) for t in [
    "村里的征地补偿款至今没有发放到位，请求有关部门督促解决。",
    "征地补偿标准太低，失地农民生活没有保障，征地补偿款被村干部截留。",
    "小区物业乱收费，电梯长期停运，业主们联名投诉物业公司。",
    "物业公司不作为，小区环境脏乱差，业主多次投诉无果。",
    "工厂夜间排放废气，气味刺鼻，附近居民无法入睡，请环保部门查处。",
    "公司拖欠工资三个月，2019-10-29至今未发，劳动监察部门不处理。",
    "學校亂收費，家長意見很大。",
    "用地面积15767.51m2,容积率被擅自调高到3.5%,规划公示(GB50293-1999)不一致",
    "",
    "!!!，，，。。。",
    "a",
    "宅基地审批 宅基地审批 宅基地审批 宅基地审批",
    "村里的征地补偿款至今没有发放到位，请求有关部门督促解决。" * 40,
]]


# -- equality with the reference ---------------------------------------------------------
@pytest.mark.parametrize("min_df", [1, 2, 3])
@pytest.mark.parametrize("char_weight", [1.0, 0.5])
def test_matrix_bit_identical(min_df: int, char_weight: float) -> None:
    feats = TextFeatures(min_df=min_df, char_weight=char_weight).fit(DOCS)
    held_out = [prepare_text("征地补偿款被截留，物业乱收费，空气污染"), "", DOCS[0]]
    for docs in (DOCS, held_out):
        expected, (wv, wi, cv, ci) = ref_matrix(DOCS, docs, min_df, char_weight)
        assert_same_matrix(feats.transform(docs), expected)
    for got, want in [(feats.word_vocab_, wv), (feats.word_idf_, wi),
                      (feats.char_vocab_, cv), (feats.char_idf_, ci)]:
        assert got.dtype == want.dtype and np.array_equal(got, want)


def test_word_hashes_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = [tokenize(d) for d in DOCS]
    for bigrams in (True, False):
        got, want = word_hashes(tokens, bigrams), ref_word_hashes(tokens, bigrams)
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b)
    # With a full cache every token is hashed afresh: same values.
    monkeypatch.setattr(features, "_TOKEN_CACHE_MAX", 0)
    monkeypatch.setattr(features, "_token_cache", features._TokenHashes())
    for a, b in zip(word_hashes(tokens), ref_word_hashes(tokens), strict=True):
        assert np.array_equal(a, b)
    assert len(features._token_cache) == 0
    assert word_hashes([])[1].dtype == np.uint64 and len(word_hashes([[], []])[0]) == 0


def test_hashing_scheme_is_frozen() -> None:
    # models/default was trained with these values; a change here breaks every model.
    assert word_hashes([["征地", "补偿"]])[1].tolist() == [
        10092771673391872330, 7591125561753510254, 5529863233952366628,
    ]
    rows, hashes = char_ngram_hashes(["征地 款"])  # 征, 地, 款, 征地: spaces break n-grams
    assert rows.tolist() == [0, 0, 0, 0]
    assert hashes.tolist() == [
        16541503976229148067, 6981371957615267837, 3502549631538347257, 15623781817174891929,
    ]


# -- the building blocks -----------------------------------------------------------------
@pytest.mark.parametrize("n_keys", [0, 1, 2, 7, 1000, 50_000])
def test_lookup_equals_searchsorted(n_keys: int) -> None:
    rng = np.random.default_rng(n_keys)
    keys = np.unique(rng.integers(0, 2**64, n_keys, dtype=np.uint64, endpoint=False))
    if n_keys >= 1000:  # a dense cluster: buckets of hundreds of keys, long walks
        keys = np.unique(np.concatenate([keys, np.arange(10**6, 10**6 + 500, dtype=np.uint64)]))
    queries = np.concatenate([
        rng.integers(0, 2**64, 5000, dtype=np.uint64, endpoint=False),
        keys[rng.integers(0, max(1, len(keys)), 5000)] if len(keys) else np.zeros(0, np.uint64),
        np.array([0, 1, 2**64 - 1, 10**6 + 250], dtype=np.uint64),
    ])
    pos, found = _lookup(keys, queries)
    want = np.searchsorted(keys, queries)
    want_found = want < len(keys)
    want_found[want_found] = keys[want[want_found]] == queries[want_found]
    assert np.array_equal(found, want_found)
    assert np.array_equal(pos[found], want[found])


def test_lookup_sentinel_and_empty() -> None:
    keys = np.array([5, 2**64 - 2], dtype=np.uint64)
    pos, found = _lookup(keys, np.array([2**64 - 1, 2**64 - 2, 5, 6], dtype=np.uint64))
    assert found.tolist() == [False, True, True, False] and pos[1:3].tolist() == [1, 0]
    pos, found = _lookup(keys, np.zeros(0, dtype=np.uint64))
    assert len(pos) == len(found) == 0


def test_bucket_index_lives_with_its_array() -> None:
    gc.collect()
    before = len(features._index_cache)
    keys = np.unique(np.random.default_rng(0).integers(0, 2**63, 100, dtype=np.uint64))
    _lookup(keys, keys)
    assert len(features._index_cache) == before + 1
    del keys
    gc.collect()
    assert len(features._index_cache) == before


@pytest.mark.parametrize(("n_rows", "n_cols"), [(50, 300), (2**20, 2**14)])  # 32-, 64-bit keys
def test_unique_pairs_equal_scipy(n_rows: int, n_cols: int) -> None:
    rng = np.random.default_rng(1)
    rows = rng.integers(0, min(n_rows, 60), 20_000).astype(np.int64)
    rows[rows == 7] = 8  # an empty row
    cols = rng.integers(0, n_cols, 20_000).astype(np.int32)
    indptr, indices, counts = _unique_pairs(rows, cols, n_rows, n_cols)
    want = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_rows, n_cols)
    )
    want.sum_duplicates()
    assert np.array_equal(indptr, want.indptr) and np.array_equal(indices, want.indices)
    assert np.array_equal(counts.astype(np.float32), want.data)
    assert _unique_pairs(rows, cols, 2**40, 2**40) is None  # does not fit 64 bits


# -- the estimator API -------------------------------------------------------------------
def test_estimator_api() -> None:
    from sklearn.base import clone

    feats = TextFeatures(min_df=1)
    assert repr(feats) == "TextFeatures(min_df=1)"
    assert feats.get_params() == {
        "char_ngram_range": (1, 3), "word_bigrams": True, "min_df": 1, "char_weight": 1.0,
    }
    assert clone(feats).get_params() == feats.get_params()
    assert feats.set_params(min_df=2) is feats and feats.min_df == 2
    with pytest.raises(ValueError, match="invalid parameter"):
        feats.set_params(ngram=3)
    with pytest.raises(ModelError, match="not fitted"):
        feats.transform(DOCS)
    with pytest.raises(InputError, match="single str"):
        feats.fit("一段文字")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="zero documents"):
        feats.fit([])
    assert_same_matrix(TextFeatures().fit_transform(DOCS), TextFeatures().fit(DOCS).transform(DOCS))


def test_import_does_not_load_sklearn() -> None:
    code = "import sys, triage.features; assert 'sklearn' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "petitions13_train.csv").is_file(), reason="no ../shared")
def test_shared_data_bit_identical() -> None:
    with (SHARED / "petitions13_train.csv").open(encoding="utf-8", newline="") as fh:
        docs = [prepare_text(f"{r['title']}\n{r['text']}") for r in csv.DictReader(fh)]
    half = len(docs) // 2
    feats = TextFeatures().fit(docs[:half])
    expected, (wv, wi, cv, ci) = ref_matrix(docs[:half], docs[half:])
    assert np.array_equal(feats.char_vocab_, cv) and np.array_equal(feats.char_idf_, ci)
    assert np.array_equal(feats.word_vocab_, wv) and np.array_equal(feats.word_idf_, wi)
    assert_same_matrix(feats.transform(docs[half:]), expected)


@pytest.mark.parametrize(("n_docs", "first"), [(1, 0), (1, 1), (1, 2), (3, 0), (40, 0)])
def test_scores_match_the_sparse_product(n_docs: int, first: int) -> None:
    """The gather path (small batches) and the sparse path give the same scores."""
    import numpy as np

    from triage.features import TextFeatures, prepare_text

    docs = [prepare_text(t) for t in _SCORE_DOCS]
    feats = TextFeatures(min_df=1).fit(docs)
    weights = np.random.default_rng(0).normal(size=(5, feats.n_features_out_)).astype(np.float32)
    batch = ([""] + docs * 20)[first : first + n_docs]  # an empty document among them
    analyzed = feats.analyze(batch)
    expected = np.asarray(feats.transform_analyzed(analyzed) @ weights.T)
    got = feats.scores_analyzed(analyzed, weights)
    assert got.shape == (n_docs, 5) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert got[0].any() == bool(batch[0])  # the empty document scores zero


def test_scores_refuse_wrong_weight_shape() -> None:
    import numpy as np

    from triage.errors import ModelError
    from triage.features import TextFeatures

    feats = TextFeatures(min_df=1).fit(_SCORE_DOCS)
    with pytest.raises(ModelError, match=r"expected weights of shape \(k, \d+\), got \(2, 3\)"):
        feats.scores_analyzed(feats.analyze(_SCORE_DOCS), np.zeros((2, 3)))


_SCORE_DOCS = [
    "村里征地补偿款一直没有发放，请求督促解决",
    "小区楼下烧烤店油烟扰民，晚上吵得睡不着",
    "公司拖欠三个月工资，劳动监察不管",
    "宅基地界址不清，邻居占用我家土地",
]


def test_prepare_text_cache_hits_whatever_the_call_form() -> None:
    """The service prepares a petition with ``max_chars=`` to classify it and without it to
    index it: the second call must come from the cache."""
    from triage.features import _prepare_text, prepare_text

    text = "村里的征地补偿款至今没有发放到位，请求督促解决。" + "缓存检查"
    first = prepare_text(text, "标题", max_chars=4000)
    hits = _prepare_text.cache_info().hits
    assert prepare_text(text, "标题") == first
    assert _prepare_text.cache_info().hits == hits + 1
