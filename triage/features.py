"""Feature extraction: word uni+bigrams and character n-grams, hashed, TF-IDF weighted.

Why not ``TfidfVectorizer``: its character analyzer builds every n-gram as a Python string
(the top item of a profile of the usual recipe), and its ``vocabulary_`` dict of several
hundred thousand strings makes artefacts large and slow to load. Here every n-gram is a 64-bit
hash computed with vectorised NumPy arithmetic over code points; the fitted state is a sorted
array of the hashes seen in at least ``min_df`` training documents and their IDF weights, so
a hash maps to its column by its position in that array. 64-bit hashes make collisions
negligible.

Speed (``docs/speed.md``): tokens map to hashes through one C-level pass over a dict; a hash
finds its column through a bucket index on its top bits (two gathers, not a binary search);
(document, column) pairs are counted by sorting packed 64-bit keys with NumPy's SIMD sort
instead of SciPy's per-row sorts. Every output is bit-for-bit what the straightforward code
gives (``tests/test_features.py`` keeps that code as the reference).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from functools import lru_cache
from hashlib import blake2b as _blake2b
from itertools import chain
from typing import TYPE_CHECKING, Any

import numpy as np

from triage.errors import InputError, ModelError
from triage.normalize import normalize
from triage.segment import get_segmenter

if TYPE_CHECKING:  # SciPy costs 0.2 s of import; prediction does not need it
    import scipy.sparse as sp

__all__ = ["Analyzed", "TextFeatures", "char_ngram_hashes", "prepare_text", "word_hashes"]

_P = np.uint64(0x100000001B3)  # FNV prime: cheap multiplicative mixing of code points
_SALT = np.uint64(0x9E3779B97F4A7C15)
_MASK_SHIFT = np.uint64(31)

try:  # C kernels (setup.py builds them where a compiler is available)
    from triage import _kernels as _kernel
except ImportError:  # pragma: no cover - a build without a C compiler
    _kernel = None
#: Use the C kernel when there is one (tests switch it off to compare the two).
_use_kernel = True

#: (doc index array, hash array) for one view of a batch of documents.
Analyzed = tuple[np.ndarray, np.ndarray]


def prepare_text(text: str, title: str = "", max_chars: int = 4000) -> str:
    """Normalise ``title`` and ``text`` into the one string the model reads.

    Texts longer than ``max_chars`` are cut: a petition states its matter early, and a 1 MB
    paste must not cost a second of CPU. Cached for the last few hundred texts: the service
    prepares each petition twice (to classify it, then to index it once stored).
    """
    # One positional key whatever the call's form: lru_cache keys f(a, b) and
    # f(a, b, max_chars=4000) differently.
    return _prepare_text(text, title, max_chars)


@lru_cache(maxsize=512)
def _prepare_text(text: str, title: str, max_chars: int) -> str:
    title = normalize(title[:max_chars]) if title else ""
    body = normalize(text[: max_chars * 2])[:max_chars]
    return f"{title} {body}" if title else body


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads the bits of a polynomial hash."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(30))
        h = h * np.uint64(0xBF58476D1CE4E5B9)
        h = h ^ (h >> np.uint64(27))
        h = h * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> _MASK_SHIFT)


def _codepoints(docs: Sequence[str], sep: str = "\x00") -> tuple[np.ndarray, np.ndarray]:
    """Code points of all docs joined by ``sep`` and the doc index of every position."""
    joined = sep.join(docs)
    cps = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    lengths = np.fromiter((len(d) + 1 for d in docs), dtype=np.int64, count=len(docs))
    doc_of = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)[: len(cps)]
    return cps, doc_of


def char_ngram_hashes(docs: Sequence[str], ngram_range: tuple[int, int] = (1, 3)) -> Analyzed:
    """Hashes of all character n-grams of ``docs`` (spaces excluded), with their doc index."""
    lo, hi = ngram_range
    if len(docs) == 1 and _kernel is not None and _use_kernel and 1 <= lo <= hi <= 16:
        cp = np.frombuffer(docs[0].encode("utf-32-le"), dtype=np.uint32)
        out = np.empty(max(0, len(cp) * (hi - lo + 1)), dtype=np.uint64)
        hashes = out[: _kernel.char_ngrams(cp, lo, hi, out)]
        return np.zeros(len(hashes), dtype=np.int64), hashes
    cps, doc_of = _codepoints(docs)
    keep = cps > 32  # separators and spaces never start or sit inside an n-gram
    rows, hashes = [], []
    with np.errstate(over="ignore"):
        h = np.zeros_like(cps)
        valid = np.ones(len(cps), dtype=bool)
        for n in range(1, hi + 1):
            m = len(cps) - n + 1
            if m <= 0:
                break
            h = h[:m] * _P + cps[n - 1 : n - 1 + m]
            valid = valid[:m] & keep[n - 1 : n - 1 + m]
            if n >= lo:
                rows.append(doc_of[:m][valid])
                hashes.append(_mix(h[valid] + np.uint64(n) * _SALT))
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    return np.concatenate(rows), np.concatenate(hashes)


class _TokenHashes(dict):  # type: ignore[type-arg]
    """``token → 64-bit hash``; a miss computes and (while there is room) stores it."""

    def __missing__(self, token: str) -> int:
        h = _token_hash(token)
        if len(self) < _TOKEN_CACHE_MAX:
            self[token] = h
        return h


_token_cache = _TokenHashes()
_TOKEN_CACHE_MAX = 2_000_000


def _token_hash(token: str) -> int:
    # blake2b is stable across processes (unlike hash()) and fast for short strings.
    return int.from_bytes(_blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")


def word_hashes(token_lists: Sequence[Sequence[str]], bigrams: bool = True) -> Analyzed:
    """Hashes of word unigrams (and adjacent bigrams) of pre-tokenised docs, with doc index."""
    lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
    total = int(lengths.sum())
    # One C-level pass (map over a dict lookup) instead of a Python loop over every token;
    # the tokens' string hashes are already cached from segmentation.
    uni = np.fromiter(
        map(_token_cache.__getitem__, chain.from_iterable(token_lists)),
        dtype=np.uint64,
        count=total,
    )
    doc_of = np.repeat(np.arange(len(token_lists), dtype=np.int64), lengths)
    if not bigrams or len(uni) < 2:
        return doc_of, uni
    same = doc_of[1:] == doc_of[:-1]
    with np.errstate(over="ignore"):
        bi = _mix(uni[:-1] * _P + uni[1:] + _SALT)[same]
    return np.concatenate([doc_of, doc_of[1:][same]]), np.concatenate([uni, bi])


# -- hash → column lookups ----------------------------------------------------------------
# A sorted array of uniformly distributed 64-bit hashes is indexed by its top bits: bucket
# ``b`` starts at ``starts[b]`` and holds about half a hash, so a lookup is two gathers
# instead of the ~20 cache-missing steps of a binary search (``searchsorted`` was the top
# item of the prediction profile). Keys of later buckets are larger, so a walk that starts
# at ``starts[b]`` and stops at the first key ≥ the query never leaves bucket ``b``.
_MAX_U64 = np.uint64(2**64 - 1)
_index_cache: dict[int, tuple[weakref.ref, int, np.ndarray, np.ndarray]] = {}  # type: ignore[type-arg]
_index_lock = threading.Lock()


def _bucket_index(keys: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(shift, bucket starts, keys + a max sentinel) of a sorted uint64 array, cached."""
    entry = _index_cache.get(id(keys))
    if entry is not None and entry[0]() is keys:
        return entry[1], entry[2], entry[3]
    bits = len(keys).bit_length() + 1  # twice as many buckets as keys
    shift = 64 - bits
    counts = np.bincount((keys >> np.uint64(shift)).astype(np.intp), minlength=1 << bits)
    starts = np.zeros(1 << bits, dtype=np.int32 if len(keys) < 2**31 else np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    padded = np.append(keys, _MAX_U64)  # a walk that runs off the end stops here
    key = id(keys)
    ref = weakref.ref(keys, lambda _: _index_cache.pop(key, None))  # evicted with the array
    with _index_lock:
        _index_cache[key] = (ref, shift, starts, padded)
    return shift, starts, padded


def _lookup(keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of each query in the sorted unique ``keys`` and whether it is there.

    Equal to ``np.searchsorted(keys, queries)`` wherever the returned mask is true.
    """
    if len(keys) == 0 or len(queries) == 0:
        return np.zeros(len(queries), dtype=np.intp), np.zeros(len(queries), dtype=bool)
    shift, starts, padded = _bucket_index(keys)
    pos = starts[queries >> np.uint64(shift)]
    k = padded[pos]
    found = k == queries
    active = np.flatnonzero(k < queries)  # walk these forward through their bucket
    while len(active):
        p = pos[active] + 1
        pos[active] = p
        k = padded[p]
        q = queries[active]
        found[active] = k == q
        active = active[k < q]
    found &= pos < len(keys)  # a query equal to the sentinel
    return pos, found


def _unique_pairs(
    rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Distinct (row, col) pairs in CSR layout: ``indptr``, ``indices`` and multiplicities.

    Rows in order, columns sorted within a row: exactly what SciPy's COO → CSR conversion
    and ``sum_duplicates`` produce, but each pair is packed into one integer and sorted by
    NumPy's SIMD sort, several times faster than SciPy's per-row sorts or ``lexsort``.
    ``None`` when a pair does not fit 64 bits.
    """
    col_bits = max(1, n_cols.bit_length())
    bits = max(1, n_rows.bit_length()) + col_bits
    if bits > 64:
        return None
    # 32-bit keys when they fit (a batch of a few thousand docs): the sort is twice as fast.
    kdt = np.uint32 if bits <= 32 else np.uint64
    key = cols.astype(kdt)
    rows = np.asarray(rows, dtype=np.int64)  # ≥ 0, so the unsigned view is the same number
    key |= (rows.view(np.uint64) if kdt is np.uint64 else rows.astype(kdt)) << kdt(col_bits)
    key.sort()
    first = np.empty(len(key), dtype=bool)
    first[:1] = True
    np.not_equal(key[1:], key[:-1], out=first[1:])
    at = np.flatnonzero(first)
    ukey = key[at]
    counts = np.empty(len(at), dtype=np.intp)  # run lengths, without diff's concatenate
    np.subtract(at[1:], at[:-1], out=counts[:-1])
    counts[-1:] = len(key) - at[-1:]
    index_dtype = np.int32 if n_cols < 2**31 and len(ukey) < 2**31 else np.int64
    indices = (ukey & kdt((1 << col_bits) - 1)).astype(index_dtype)
    row_starts = np.arange(n_rows + 1, dtype=kdt) << kdt(col_bits)
    indptr = np.searchsorted(ukey, row_starts).astype(index_dtype)  # sorted queries: fast
    return indptr, indices, counts


def _fit_view(
    rows: np.ndarray, hashes: np.ndarray, n_docs: int, min_df: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted hashes kept (document frequency ≥ ``min_df``) and their smoothed IDF."""
    # np.unique is hash-based and slow here; NumPy's SIMD sort of the hashes alone is not.
    uniq = np.sort(hashes)
    if len(uniq):
        distinct = np.empty(len(uniq), dtype=bool)
        distinct[0] = True
        np.not_equal(uniq[1:], uniq[:-1], out=distinct[1:])
        uniq = uniq[distinct]
    ids, _ = _lookup(uniq, hashes)
    pairs = _unique_pairs(rows, ids, n_docs, len(uniq))
    if pairs is None:  # pragma: no cover - beyond 2**64 (docs x n-grams)
        order = np.lexsort((rows, hashes))
        h, r = hashes[order], rows[order]
        first = np.ones(len(h), dtype=bool)  # first occurrence of each (hash, doc) pair
        first[1:] = (h[1:] != h[:-1]) | (r[1:] != r[:-1])
        uniq, df = np.unique(h[first], return_counts=True)
    else:
        df = np.bincount(pairs[1], minlength=len(uniq))  # docs per n-gram
    kept = df >= min_df
    idf = np.log((1 + n_docs) / (1 + df[kept])) + 1.0
    return uniq[kept], idf.astype(np.float32)


def _view_counts(
    rows: np.ndarray, hashes: np.ndarray, n_docs: int, vocab: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Term counts over the kept hashes in CSR layout (``indptr``, ``indices``, counts);
    ``None`` when a (document, column) pair does not fit 64 bits."""
    col, hit = _lookup(vocab, hashes)
    return _unique_pairs(rows[hit], col[hit], n_docs, len(vocab))


def _transform_view(
    rows: np.ndarray, hashes: np.ndarray, n_docs: int, vocab: np.ndarray, idf: np.ndarray
) -> sp.csr_matrix:
    """Sublinear TF × IDF, L2-normalised rows, over the kept hashes."""
    import scipy.sparse as sp

    if len(vocab) == 0 or len(hashes) == 0:
        return sp.csr_matrix((n_docs, len(vocab)), dtype=np.float32)
    pairs = _view_counts(rows, hashes, n_docs, vocab)
    if pairs is None:  # pragma: no cover - beyond 2**64 (docs x columns)
        col, hit = _lookup(vocab, hashes)
        counts = sp.csr_matrix(
            (np.ones(int(hit.sum()), dtype=np.float32), (rows[hit], col[hit])),
            shape=(n_docs, len(vocab)),
        )
        counts.sum_duplicates()
    else:
        # Built directly in canonical form (sorted, summed): bit for bit what the COO route
        # above produces, without its per-row sorts.
        indptr, indices, n = pairs
        counts = sp.csr_matrix((n.astype(np.float32), indices, indptr), shape=(n_docs, len(vocab)))
        counts.has_canonical_format = True
    counts.data = (np.log(counts.data) + 1.0) * idf[counts.indices]
    norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    counts.data /= np.repeat(norms, np.diff(counts.indptr)).astype(np.float32)
    return counts


#: Up to this many documents, gathering weights beats building a sparse matrix (0.45 against
#: 1.2 ms for one petition); beyond it SciPy's product wins (measured, 300-char petitions).
_GATHER_MAX_DOCS = 16


def _view_scores(
    rows: np.ndarray,
    hashes: np.ndarray,
    n_docs: int,
    vocab: np.ndarray,
    idf: np.ndarray,
    weights: np.ndarray,
) -> np.ndarray:
    """``_transform_view(...) @ weights.T`` without building a sparse matrix.

    Prediction needs only the scores: gathering the weight columns of each document's
    n-grams and summing them per row spares SciPy's import (0.2 s of cold start) and its
    per-call overhead. Same values as the matrix product up to float32 rounding.
    """
    out = np.zeros((n_docs, weights.shape[0]), dtype=np.float32)
    if len(vocab) == 0 or len(hashes) == 0:
        return out
    weights_t = weights.T  # (features, classes): one class row per n-gram, contiguous
    if (
        n_docs <= _GATHER_MAX_DOCS
        and _kernel is not None
        and _use_kernel
        and weights_t.flags.c_contiguous
    ):
        # One C call (triage/_kernels.c) per petition instead of some twenty NumPy calls.
        # Also for the few petitions of a micro-batch, which form when requests queue up:
        # the NumPy path below cost them three times as much per petition (492 against
        # 164 µs), just when a queue must drain; and each petition gets exactly the scores
        # it would get alone.
        shift, starts, padded = _bucket_index(vocab)
        idf32 = np.ascontiguousarray(idf, dtype=np.float32)
        w32 = np.asarray(weights_t, dtype=np.float32)
        hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
        k = weights.shape[0]
        for doc, doc_hashes in enumerate(_per_doc(rows, hashes, n_docs)):
            _kernel.view_scores(doc_hashes, padded, starts, shift, idf32, w32, k, out[doc])
        return out
    if n_docs == 1:
        # One petition (what the API classifies most of the time): the same arithmetic in
        # half the NumPy calls, each of which costs microseconds whatever its size.
        col, hit = _lookup(vocab, hashes)
        col = col[hit]
        if len(col):
            out[0] = _one_doc_scores(col, idf, weights)
        return out
    pairs = _view_counts(rows, hashes, n_docs, vocab)
    if pairs is None:  # pragma: no cover - beyond 2**64 (docs x columns)
        matrix = _transform_view(rows, hashes, n_docs, vocab, idf)
        return np.asarray(matrix @ weights.T, dtype=np.float32)
    indptr, indices, n = pairs
    if len(indices) == 0:
        return out
    data = (np.log(n.astype(np.float32)) + 1.0) * idf[indices]
    lengths = np.diff(indptr)
    nonempty = lengths > 0
    # reduceat over the starts of non-empty rows only: each segment then ends where its
    # row ends (an empty row would otherwise repeat its neighbour's first value).
    starts = indptr[:-1][nonempty]
    norms = np.sqrt(np.add.reduceat(data * data, starts))
    data /= np.repeat(norms, lengths[nonempty])  # > 0: every value is ≥ 1 × idf ≥ 1
    out[nonempty] = np.add.reduceat(weights[:, indices] * data, starts, axis=1).T
    return out


def _per_doc(rows: np.ndarray, hashes: np.ndarray, n_docs: int) -> list[np.ndarray]:
    """``hashes`` split by document (``rows`` gives each one's document, in any order)."""
    if n_docs == 1:
        return [hashes]
    order = np.argsort(rows, kind="stable")
    bounds = np.searchsorted(rows[order], np.arange(n_docs + 1)).tolist()
    grouped = hashes[order]
    return [grouped[bounds[d] : bounds[d + 1]] for d in range(n_docs)]


def _one_doc_scores(col: np.ndarray, idf: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Scores of one document from the columns of its n-grams (with repeats)."""
    col.sort()
    first = np.empty(len(col), dtype=bool)
    first[0] = True
    np.not_equal(col[1:], col[:-1], out=first[1:])
    at = np.flatnonzero(first)
    counts = np.empty(len(at), dtype=np.float32)  # run lengths = term counts
    np.subtract(at[1:], at[:-1], out=counts[:-1])
    counts[-1] = len(col) - at[-1]
    cols = col[at]
    data = (np.log(counts) + 1.0) * idf[cols]  # sublinear tf x idf, as _transform_view
    data /= np.sqrt(np.dot(data, data))  # > 0: every value is >= 1 x idf >= 1
    return weights[:, cols] @ data


class TextFeatures:
    """Prepared petition text → word and character n-gram TF-IDF features.

    Parameters
    ----------
    char_ngram_range : smallest and largest character n-gram.
    word_bigrams : add adjacent word pairs to the word view.
    min_df : drop n-grams seen in fewer training documents.
    char_weight : scale of the character view relative to the word view.

    Input is the output of :func:`prepare_text`; ``analyze`` / ``fit_analyzed`` /
    ``transform_analyzed`` let cross-validation segment each document once.

    A scikit-learn style transformer (``get_params``, ``set_params``, ``fit_transform``)
    that does not import scikit-learn: ``sklearn.base`` alone costs over a second of cold
    start, and predicting needs nothing from it.
    """

    _PARAMS = ("char_ngram_range", "word_bigrams", "min_df", "char_weight")

    def __init__(
        self,
        char_ngram_range: tuple[int, int] = (1, 3),
        word_bigrams: bool = True,
        min_df: int = 2,
        char_weight: float = 1.0,
    ) -> None:
        self.char_ngram_range = char_ngram_range
        self.word_bigrams = word_bigrams
        self.min_df = min_df
        self.char_weight = char_weight

    # -- estimator API ------------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters, as scikit-learn's ``get_params``."""
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params: Any) -> TextFeatures:
        """Set constructor parameters, as scikit-learn's ``set_params``."""
        for name, value in params.items():
            if name not in self._PARAMS:
                raise ValueError(f"invalid parameter {name!r} for TextFeatures: {self._PARAMS}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = TextFeatures().__dict__
        changed = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if v != defaults[k])
        return f"TextFeatures({changed})"

    def _check_fitted(self) -> None:
        if not hasattr(self, "word_vocab_"):
            raise ModelError("TextFeatures is not fitted yet: call fit (or fit_analyzed) first")

    # -- analysis (stateless, shared by fit and transform) ------------------------------
    def analyze(self, docs: Sequence[str]) -> tuple[Analyzed, Analyzed, int]:
        """Word and char hashes of prepared docs (segmentation happens here)."""
        if isinstance(docs, str):
            raise InputError(
                "TextFeatures expects a sequence of texts, got a single str; wrap it in a list"
            )
        docs = [d if isinstance(d, str) else "" for d in docs]
        words = word_hashes(list(map(get_segmenter().tokens, docs)), self.word_bigrams)
        chars = char_ngram_hashes(docs, tuple(self.char_ngram_range))
        return words, chars, len(docs)

    def fit_analyzed(self, analyzed: tuple[Analyzed, Analyzed, int]) -> TextFeatures:
        """Fit on the output of :meth:`analyze`."""
        (wr, wh), (cr, ch), n = analyzed
        if n == 0:
            raise InputError("cannot fit features on zero documents")
        self.word_vocab_, self.word_idf_ = _fit_view(wr, wh, n, self.min_df)
        self.char_vocab_, self.char_idf_ = _fit_view(cr, ch, n, self.min_df)
        self.n_features_out_ = len(self.word_vocab_) + len(self.char_vocab_)
        return self

    def transform_analyzed(self, analyzed: tuple[Analyzed, Analyzed, int]) -> sp.csr_matrix:
        """Transform the output of :meth:`analyze`."""
        self._check_fitted()
        (wr, wh), (cr, ch), n = analyzed
        xw = _transform_view(wr, wh, n, self.word_vocab_, self.word_idf_)
        xc = _transform_view(cr, ch, n, self.char_vocab_, self.char_idf_)
        if self.char_weight != 1.0:
            xc = xc * np.float32(self.char_weight)
        import scipy.sparse as sp

        return sp.hstack([xw, xc], format="csr", dtype=np.float32)

    def scores_analyzed(
        self, analyzed: tuple[Analyzed, Analyzed, int], weights: np.ndarray
    ) -> np.ndarray:
        """``transform_analyzed(analyzed) @ weights.T`` for a dense ``(k, n_features_out_)``
        weight matrix, without materialising the sparse features (the prediction path)."""
        self._check_fitted()
        weights = np.asarray(weights)
        if weights.ndim != 2 or weights.shape[1] != self.n_features_out_:
            raise ModelError(
                f"expected weights of shape (k, {self.n_features_out_}), got {weights.shape}"
            )
        (wr, wh), (cr, ch), n = analyzed
        if n > _GATHER_MAX_DOCS:
            return np.asarray(self.transform_analyzed(analyzed) @ weights.T, dtype=np.float32)
        n_word = len(self.word_vocab_)
        scores = _view_scores(wr, wh, n, self.word_vocab_, self.word_idf_, weights[:, :n_word])
        char = _view_scores(cr, ch, n, self.char_vocab_, self.char_idf_, weights[:, n_word:])
        if self.char_weight != 1.0:
            char *= np.float32(self.char_weight)
        scores += char
        return scores

    def fit(self, X: Sequence[str], y: object = None) -> TextFeatures:
        """Learn the kept n-grams and their IDF from prepared texts."""
        return self.fit_analyzed(self.analyze(X))

    def transform(self, X: Sequence[str]) -> sp.csr_matrix:
        """Prepared texts → sparse float32 feature matrix."""
        return self.transform_analyzed(self.analyze(X))

    def fit_transform(self, X: Sequence[str], y: object = None) -> sp.csr_matrix:
        """``fit(X).transform(X)``, segmenting each text once."""
        analyzed = self.analyze(X)
        return self.fit_analyzed(analyzed).transform_analyzed(analyzed)
