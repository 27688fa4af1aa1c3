"""The C kernels (``triage/_kernels.c``) give what the NumPy code they replace gives.

Each test runs the same work twice, with the kernel and with ``_use_kernel`` switched off,
on texts written for these tests and on random ones.
"""

from __future__ import annotations

import math
import random
import shutil
import sys

import numpy as np
import pytest

import triage.features as features
import triage.repeat as repeat
from triage.features import TextFeatures, char_ngram_hashes, prepare_text
from triage.repeat import RepeatIndex, shingle_hashes, similarity_from_counts

try:
    from triage import _kernels as kernel
except ImportError:  # every test but the first is skipped then
    kernel = None

needs_kernel = pytest.mark.skipif(kernel is None, reason="the C kernels were not built")

PETITIONS = [
    "村里的征地补偿款至今没有发放到位，请求有关部门督促解决。",
    "B2区青松路福安小区楼下的烧烤店每天营业到凌晨三点，油烟直接排到居民窗户里。",
    "A市宏达建筑公司拖欠我们三十二名农民工的工资共计486,000元，联系电话138****5678。",
    "C3县实验小学今年秋季招生划片不合理，我家住在学校围墙外两百米的翠湖花园。",
    "宅基地界址不清，邻居占用我家土地，村委会调解三次没有结果。",
    "矿山开采造成房屋开裂，地下水位下降，村民饮水困难，请求查处非法采矿。",
    "學校亂收費，家長意見很大。",
    "",
    "a",
    "𠮷野家 𠮷野家",
]


def random_text(rng: random.Random, length: int) -> str:
    pool = "征地补偿款村民小区物业工资拖欠采矿宅基地0123456789 ,。\x00a"
    return "".join(
        rng.choice(pool) if rng.random() < 0.9 else chr(rng.randint(0x4E00, 0x9FFF))
        for _ in range(length)
    )


def both(monkeypatch: pytest.MonkeyPatch, module: object, fn, *args):  # type: ignore[no-untyped-def]
    """``fn(*args)`` with the module's kernel off, then on."""
    monkeypatch.setattr(module, "_use_kernel", False)
    expected = fn(*args)
    monkeypatch.setattr(module, "_use_kernel", True)
    return expected, fn(*args)


def test_the_kernels_are_built_where_a_compiler_is() -> None:
    """A silently failed build (the extension is optional) would lose the speed unnoticed."""
    if not (shutil.which("cc") or shutil.which("gcc")) or not sys.platform.startswith("linux"):
        pytest.skip("no C compiler here")
    assert kernel is not None, "triage/_kernels.c was not built: see pip's output"
    assert repeat._kernel is kernel and features._kernel is kernel


@needs_kernel
def test_shingle_hashes_are_the_numpy_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(1)
    texts = [repeat.canonical(t) for t in PETITIONS] + ["ab", "abc", "𠮷𠮷𠮷𠮷"]
    texts += [random_text(rng, rng.choice([0, 2, 3, 4, 50, 400, 3000])) for _ in range(300)]
    for text in texts:
        expected, got = both(monkeypatch, repeat, shingle_hashes, text)
        assert got.dtype == np.uint32 and np.array_equal(got, expected), text[:20]
        assert np.all(np.diff(got.astype(np.int64)) > 0)  # sorted, unique


def _index(texts: list[str], tail_size: int = 32) -> RepeatIndex:
    index = RepeatIndex(tail_size=tail_size, merge_factor=2)
    for start in range(0, len(texts), 7):  # several segments and a tail, as the service builds
        index.add_many([(f"c{start + i}", t) for i, t in enumerate(texts[start : start + 7])])
    return index


@needs_kernel
def test_segment_search_gives_the_numpy_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same candidates, intersections and sizes on every segment, same query answers, also
    where probes and candidates are cut (ties broken the same way)."""
    rng = random.Random(2)
    base = [prepare_text(t) for t in PETITIONS if len(t) > 10]
    texts = [
        rng.choice(base)[: rng.randint(15, 60)] + random_text(rng, rng.randint(0, 40))
        for _ in range(300)
    ]
    index = _index(texts)
    segments = [*index._segments, index._tail_segment]
    assert len(segments) >= 3
    queries = texts[::7] + [random_text(rng, 80) for _ in range(20)]
    for text in queries:
        q = shingle_hashes(repeat.canonical(text))
        for seg in segments:
            for probes, limit, min_hits in [(64, 40, 0.2), (4, 3, 0.0), (8, 2, 0.5)]:
                expected, got = both(monkeypatch, repeat, seg.search, q, probes, limit, min_hits)
                for e, g in zip(expected, got, strict=True):
                    assert np.array_equal(e, g)
        expected, got = both(monkeypatch, repeat, index.query, text, 10, 0.1)
        assert got == expected
    assert any(index.query(t) for t in queries)  # the test searched for something


def test_similarity_in_query_is_similarity_from_counts_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    q = int(rng.integers(1, 3000))
    sizes = rng.integers(1, 5000, size=20_000)
    inter = np.minimum(rng.integers(0, 5000, size=20_000), np.minimum(sizes, q))
    fast = inter / (np.sqrt(sizes) * math.sqrt(q))
    np.minimum(fast, 1.0, out=fast)
    slow = similarity_from_counts(inter, np.full(len(sizes), q), sizes)
    assert np.array_equal(fast.view(np.uint64), slow.view(np.uint64))


@needs_kernel
@pytest.mark.parametrize("ngram_range", [(1, 3), (2, 3), (1, 1), (3, 5)])
def test_char_ngrams_are_the_numpy_ones(
    monkeypatch: pytest.MonkeyPatch, ngram_range: tuple[int, int]
) -> None:
    rng = random.Random(4)
    texts = PETITIONS + [random_text(rng, rng.choice([0, 1, 2, 3, 300])) for _ in range(100)]
    for text in texts:
        (er, eh), (gr, gh) = both(monkeypatch, features, char_ngram_hashes, [text], ngram_range)
        assert gh.dtype == eh.dtype == np.uint64 and np.array_equal(gh, eh)
        assert gr.dtype == er.dtype and np.array_equal(gr, er)


@needs_kernel
@pytest.mark.parametrize("order", ["F", "C"])
def test_one_petition_scores_match_numpy(monkeypatch: pytest.MonkeyPatch, order: str) -> None:
    """Fortran-ordered weights (as a fitted model has them) take the kernel, C-ordered ones
    NumPy; both equal the sparse product up to float32 rounding."""
    docs = [prepare_text(t) for t in PETITIONS]
    feats = TextFeatures(min_df=1).fit(docs)
    weights = np.random.default_rng(5).normal(size=(7, feats.n_features_out_))
    weights = np.asarray(weights, dtype=np.float32, order=order)
    for doc in [*docs, "从未见过的字词组合", "  "]:
        analyzed = feats.analyze([doc])
        expected = np.asarray(feats.transform_analyzed(analyzed) @ weights.T)
        numpy_scores, kernel_scores = both(
            monkeypatch, features, feats.scores_analyzed, analyzed, weights
        )
        assert kernel_scores.dtype == np.float32 and kernel_scores.shape == (1, 7)
        np.testing.assert_allclose(kernel_scores, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(kernel_scores, numpy_scores, rtol=1e-5, atol=1e-5)


@needs_kernel
@pytest.mark.parametrize("size", [2, 3, 16])
def test_a_small_batch_scores_each_petition_as_alone(
    monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """Up to 16 petitions (a micro-batch) take the kernel one by one: each row is what that
    petition gets alone, and the sparse product up to float32 rounding. An empty petition in
    the middle gets zeros without shifting the others."""
    docs = [prepare_text(t) for t in PETITIONS]
    feats = TextFeatures(min_df=1).fit(docs)
    weights = np.asarray(
        np.random.default_rng(6).normal(size=(5, feats.n_features_out_)), np.float32, order="F"
    )
    batch = ([docs[0], "  ", *docs[1:], *reversed(docs)] * 8)[:size]
    analyzed = feats.analyze(batch)
    numpy_scores, kernel_scores = both(
        monkeypatch, features, feats.scores_analyzed, analyzed, weights
    )
    alone = np.vstack([feats.scores_analyzed(feats.analyze([d]), weights) for d in batch])
    assert kernel_scores.shape == (size, 5)
    np.testing.assert_array_equal(kernel_scores, alone)
    expected = np.asarray(feats.transform_analyzed(analyzed) @ weights.T)
    np.testing.assert_allclose(kernel_scores, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(numpy_scores, expected, rtol=1e-5, atol=1e-5)


@needs_kernel
def test_kernels_refuse_wrong_arguments_instead_of_reading_past_them() -> None:
    u32 = np.zeros(4, dtype=np.uint32)
    with pytest.raises(TypeError, match="codepoints: expected items of 4 bytes, got 8"):
        kernel.shingles(np.zeros(4, dtype=np.uint64), 3, u32)
    with pytest.raises(ValueError, match="fewer items"):
        kernel.shingles(np.zeros(10, dtype=np.uint32), 3, u32)
    with pytest.raises(ValueError, match="lo <= hi"):
        kernel.char_ngrams(u32, 3, 1, np.zeros(4, dtype=np.uint64))
    with pytest.raises(ValueError, match="fewer items"):
        kernel.char_ngrams(np.ones(10, dtype=np.uint32) * 99, 1, 3, np.zeros(4, dtype=np.uint64))
    out = np.zeros((3, 2), dtype=np.int64)
    with pytest.raises(ValueError, match="fewer than limit"):
        kernel.search(u32, np.zeros(5, np.int64), np.zeros(0, np.int32), np.zeros(1, np.int64),
                      u32, u32, None, 0, 4, 5, 1, out[0], out[1], out[2])  # fmt: skip
    with pytest.raises(ValueError, match="inconsistent sizes"):
        kernel.view_scores(np.zeros(3, np.uint64), np.zeros(5, np.uint64), np.zeros(2, np.int32),
                           0, np.zeros(4, np.float32), np.zeros(4, np.float32), 2,
                           np.zeros(2, np.float32))  # fmt: skip


@needs_kernel
def test_segment_merge_gives_the_numpy_arrays(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every array of a merged segment, with removed cases dropped, bit for bit."""
    rng = random.Random(6)
    index = RepeatIndex(tail_size=16, merge_factor=0)  # never merges by itself
    for start in range(0, 600, 20):
        index.add_many(
            [(f"c{start + i}", random_text(rng, rng.randint(12, 200))) for i in range(20)]
        )
    for i in range(0, 600, 7):
        index.remove(f"c{i}")
    segments = index._segments
    assert len(segments) > 10
    for i in range(len(segments) - 1):
        pair = segments[i : i + 2]
        expected, got = both(monkeypatch, repeat, repeat._Segment.merge, pair, index._alive)
        for field in repeat._Segment.FIELDS:
            e, g = getattr(expected, field), getattr(got, field)
            assert g.dtype == e.dtype and np.array_equal(g, e), field


@needs_kernel
def test_an_index_fed_like_the_service_answers_the_same_with_and_without_kernels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Small batches (tail merged by the kernel, or rebuilt), seals, merges and removals."""
    rng = random.Random(7)
    base = [prepare_text(t) for t in PETITIONS if len(t) > 10]
    batches = [
        [
            (f"c{b}-{i}", rng.choice(base)[: rng.randint(15, 60)] + random_text(rng, 30))
            for i in range(rng.randint(1, 9))
        ]
        for b in range(120)
    ]
    answers = []
    for use in (False, True):
        monkeypatch.setattr(repeat, "_use_kernel", use)
        index = RepeatIndex(tail_size=24, merge_factor=4)
        for b, batch in enumerate(batches):
            index.add_many(batch)
            if b % 5 == 0:
                index.remove(batch[0][0])
        answers.append([index.query(t, k=8, threshold=0.2) for t in base])
    assert answers[0] == answers[1] and any(answers[0])
