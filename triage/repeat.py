"""Repeat-petition detection: near-duplicate search of a new petition against earlier cases.

Method (see ``docs/repeat.md`` for the measurements behind each choice):

1. **Canonical form.** NFKC, traditional → simplified, lower case, thousands separators and
   leading zeros removed, Chinese digits 〇–九 read as 0–9, personal numbers (7+ digits or
   ``*`` masks, which the store masks and a new petition may not) dropped, then every
   character that is not a letter or digit removed. Punctuation, spacing and number
   formatting therefore cannot make two copies of a petition differ.
2. **Shingles.** Character 3-grams of the canonical form, hashed to 32 bits with numpy in one
   vectorised pass (no Python loop over shingles).
3. **Candidates.** An inverted index (shingle → cases) in immutable numpy segments. A query
   probes only its rarest shingles (lowest document frequency): a near-duplicate shares most
   of them, while common shingles (“反映”, “小区”) would only make the posting lists long.
   Cases are ranked by how many probes they hit.
4. **Verification.** The best candidates are scored exactly from a forward index (case →
   sorted shingles) with :func:`similarity_from_counts`; those at or above ``threshold``
   are returned, best first.

Texts shorter than ``min_chars`` canonical characters match only an identical short text: a
ten-character complaint is contained in thousands of longer petitions.

New cases go to a small tail segment that is rebuilt on each ``add``; full tails are sealed
and merged log-structured (like Lucene segments), so queries touch O(log n) segments.
Queries search an immutable snapshot without the lock; mutations hold it. ``save``/``load``
write and read the segments as they are (one uncompressed ``.npz``), so loading is a read.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from triage.normalize import to_simplified

__all__ = [
    "DEFAULT_THRESHOLD",
    "RepeatIndex",
    "canonical",
    "canonical_many",
    "shingle_hashes",
    "similarity_from_counts",
]

#: Similarity at or above which two petitions are reported as the same matter (see
#: docs/repeat.md for the threshold sweep that chose it).
DEFAULT_THRESHOLD = 0.5
NGRAM = 3
_FORMAT_VERSION = 1
#: Canonical forms of this many recent queries are kept for the add that follows them.
_RECENT_MAX = 4096

try:  # the C kernel of shingling and segment search, when it was built (setup.py)
    from triage import _kernels as _kernel
except ImportError:  # pragma: no cover - a build without a C compiler
    _kernel = None
#: Use the C kernel when there is one (tests switch it off to compare the two).
_use_kernel = True

_MUL = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_EMPTY_U32 = np.zeros(0, dtype=np.uint32)
_NEWLINE, _STAR, _COMMA, _ZERO, _NINE = 10, 42, 44, 48, 57
#: Runs of this many digits / mask stars are personal numbers (phone, ID card, bank card).
_PERSONAL_DIGITS = 7


_ASTRAL = 0x10000  # tables cover the BMP; index 0x10000 stands for every code point above


@lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lookup tables over the BMP (plus one slot for the rest), built on first use.

    ``keep``: letters and digits (astral code points are mostly CJK extensions: kept);
    ``mapping``: Chinese digits to ASCII digits; ``traditional``: characters that OpenCC
    ``t2s`` changes, so that only texts containing one are converted.
    """
    keep = np.fromiter((chr(c).isalnum() for c in range(_ASTRAL)), dtype=bool, count=_ASTRAL)
    keep = np.append(keep, True)
    mapping = np.arange(_ASTRAL + 1, dtype=np.uint32)
    for cn, digit in zip("〇零一二三四五六七八九两", "001234567892", strict=True):
        mapping[ord(cn)] = ord(digit)  # 3栋 and 三栋 are the same building
    cjk = [chr(c) for c in range(0x3400, 0xA000)] + [chr(c) for c in range(0xF900, 0xFB00)]
    converted = to_simplified("\n".join(cjk)).split("\n")
    traditional = np.zeros(_ASTRAL + 1, dtype=bool)
    if len(converted) == len(cjk):
        for a, b in zip(cjk, converted, strict=True):
            traditional[ord(a)] = a != b
    else:  # cannot tell: convert every text
        traditional[0x3400:] = True
    return keep, mapping, traditional


def _runs(positions: np.ndarray) -> np.ndarray:
    """Run id of each sorted position (consecutive positions share a run)."""
    return np.cumsum(np.concatenate(([True], np.diff(positions) != 1))) - 1


def _number_formatting(cp: np.ndarray) -> np.ndarray:
    """Positions to drop: thousands separators, personal numbers and leading zeros.

    Phone, ID-card and bank numbers (7+ digits or ``*`` masks) are masked in the store
    (139****5678) but maybe not in a new petition, so they are dropped from both sides rather
    than compared. Works on the sparse digit positions only: digits are a few % of the text.
    """
    digit_pos = np.flatnonzero((cp >= _ZERO) & (cp <= _NINE))
    star_pos = np.flatnonzero(cp == _STAR)
    if not len(digit_pos) and not len(star_pos):
        return np.zeros(0, dtype=np.int64)
    is_digit = np.zeros(len(cp) + 5, dtype=bool)
    is_digit[digit_pos + 1] = True  # shifted by one: is_digit[i + 1] is cp[i]
    comma = np.flatnonzero(cp == _COMMA) + 1
    comma = (
        comma[
            is_digit[comma - 1]
            & is_digit[comma + 1]
            & is_digit[comma + 2]
            & is_digit[comma + 3]
            & ~is_digit[comma + 4]
        ]
        - 1
    )  # 12,000: a comma between a digit and exactly three digits
    # Digit/star runs (a separator comma joins its two halves): personal numbers.
    pos = np.sort(np.concatenate((digit_pos, star_pos, comma)))  # disjoint sets
    rid = _runs(pos)
    counted = np.bincount(rid, weights=cp[pos] != _COMMA)
    dropped = (counted[rid] >= _PERSONAL_DIGITS) | (cp[pos] == _STAR) | (cp[pos] == _COMMA)
    drop = pos[dropped]
    # 05月 -> 5月: zeros opening a digit run (in the text without the dropped characters).
    digits = pos[~dropped]
    if len(digits):
        compact = digits - np.searchsorted(drop, digits)
        rid = _runs(compact)
        zero = cp[digits] == _ZERO
        nonzero_seen = np.cumsum(~zero)
        run_start = np.concatenate(([True], rid[1:] != rid[:-1]))
        before = (nonzero_seen - ~zero)[run_start]  # non-zero digits before each run
        has_next = np.concatenate((rid[1:] == rid[:-1], [False]))
        lead = zero & (nonzero_seen == before[rid]) & has_next
        drop = np.concatenate((drop, digits[lead]))
    return drop


@lru_cache(maxsize=1)
def _traditional_pattern() -> re.Pattern[str]:
    """A pattern that finds a character OpenCC ``t2s`` changes (from :func:`_tables`)."""
    chars = "".join(map(chr, np.flatnonzero(_tables()[2][:_ASTRAL]).tolist()))
    # No traditional characters known (the converter failed): every CJK text is converted.
    return re.compile(f"[{re.escape(chars)}]" if chars else "[\u3400-\U0010ffff]")


# The array path's steps as string operations, for one text (:func:`_canonical_one`).
_DIGIT_OR_MASK = re.compile(r"[0-9*]")
#: A thousands separator: a comma after a digit, before exactly three digits.
_SEPARATOR = re.compile(r"(?<=[0-9]),(?=[0-9]{3}(?![0-9]))")
_SEPARATOR_MARK = "\ue000"  # a private-use character; texts containing it take the array path
_NUMBER_RUN = re.compile("[0-9*\ue000]+")
_LEADING_ZEROS = re.compile(r"(?<![0-9])0+(?=[0-9])")
#: What is not a letter or digit (``str.isalnum``); code points above the BMP are kept, as
#: the array path's tables keep them.
_NOT_ALNUM = re.compile("(?:[^\\w\U00010000-\U0010ffff]|_)+")
_CHINESE_DIGIT = re.compile("[〇零一二三四五六七八九两]")
_DIGIT_OF = dict(zip("〇零一二三四五六七八九两", "001234567892", strict=True))


def _number_run(match: re.Match[str]) -> str:
    run = match.group()
    if len(run) - run.count(_SEPARATOR_MARK) >= _PERSONAL_DIGITS:
        return ""  # a personal number (or its mask)
    return run.replace("*", "").replace(_SEPARATOR_MARK, "")


def _canonical_one(text: str) -> str:
    """:func:`canonical` of one text with string operations: the array path's result (a test
    checks it) in about a fifth of its time for one petition, whose numpy calls each cost
    microseconds of overhead whatever the size of the array."""
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    text = text.lower()
    if _traditional_pattern().search(text):
        text = to_simplified(text)
    if _DIGIT_OR_MASK.search(text):
        if _SEPARATOR_MARK in text:
            return _canonical_chunk([text])[0]
        text = _SEPARATOR.sub(_SEPARATOR_MARK, text)
        text = _LEADING_ZEROS.sub("", _NUMBER_RUN.sub(_number_run, text))
    text = _NOT_ALNUM.sub("", text)
    return _CHINESE_DIGIT.sub(lambda m: _DIGIT_OF[m.group()], text)


def _chunks(texts: Sequence[str], chars: int = 1 << 19) -> list[Sequence[str]]:
    """Consecutive slices of about ``chars`` characters: numpy temporaries stay in cache."""
    if len(texts) < 2:
        return [texts]
    ends = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
    cuts = np.unique(np.searchsorted(ends, np.arange(chars, ends[-1], chars), side="right"))
    bounds = [0, *cuts.tolist(), len(texts)]
    return [texts[i:j] for i, j in itertools.pairwise(bounds) if j > i]


def canonical_many(texts: Sequence[str]) -> list[str]:
    """Canonical forms of many texts, computed on joined arrays (no per-character Python)."""
    texts = list(texts)
    return [c for chunk in _chunks(texts) for c in _canonical_chunk(chunk)]


def _canonical_chunk(texts: Sequence[str]) -> list[str]:
    if not texts:
        return []
    keep_table, digit_map, traditional = _tables()
    # Whitespace is dropped anyway, so a newline can separate the texts throughout.
    parts = [t.replace("\n", " ") if t else "" for t in texts]
    joined = "\n".join(parts)
    if not unicodedata.is_normalized("NFKC", joined):
        joined = "\n".join(unicodedata.normalize("NFKC", t) for t in parts)
    joined = joined.lower()
    cp = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    trad = np.flatnonzero(traditional[np.minimum(cp, _ASTRAL)])
    if len(trad):  # convert only the texts that need it: OpenCC is the slow part
        breaks = np.flatnonzero(cp == _NEWLINE)
        parts = joined.split("\n")
        for i in np.unique(np.searchsorted(breaks, trad)).tolist():
            parts[i] = to_simplified(parts[i])
        joined = "\n".join(parts)
        cp = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    bmp = np.minimum(cp, _ASTRAL)
    keep = keep_table[bmp]
    keep[_number_formatting(cp)] = False
    breaks = np.flatnonzero(cp == _NEWLINE)
    kept = cp[keep]
    kept = np.where(kept < _ASTRAL, digit_map[bmp[keep]], kept)
    # Kept characters per text, from the positions of the separating newlines.
    cum = np.concatenate(([0], np.cumsum(keep)))
    begins = cum[np.concatenate(([0], breaks + 1))]
    ends = cum[np.concatenate((breaks, [len(cp)]))]
    flat = kept.tobytes().decode("utf-32-le")
    return [flat[a:b] for a, b in zip(begins.tolist(), ends.tolist(), strict=True)]


def canonical(text: str) -> str:
    """Return the comparison form of ``text``: letters and digits only, formatting removed."""
    return _canonical_one(text) if text else ""


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads the polynomial hash over all 64 bits."""
    h = h ^ (h >> np.uint64(30))
    h = h * _MIX1
    h = h ^ (h >> np.uint64(27))
    h = h * _MIX2
    return h ^ (h >> np.uint64(31))


def _ngram_hashes(codepoints: np.ndarray, n: int = NGRAM) -> np.ndarray:
    """32-bit hashes (uint32) of every n-gram of a code point array, in text order."""
    m = len(codepoints) - n + 1
    if m <= 0:
        return _EMPTY_U32
    cp = codepoints.astype(np.uint64)
    with np.errstate(over="ignore"):
        h = np.full(m, n, dtype=np.uint64)
        for j in range(n):
            h = (h ^ cp[j : j + m]) * _MUL
        return (_mix(h) >> np.uint64(32)).astype(np.uint32)


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


# (high, low) uint32 halves of uint64 keys, so that sort keys are built and taken apart by
# copying halves instead of shifting and casting whole arrays.
_HI, _LO = (1, 0) if np.little_endian else (0, 1)


def _pack(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    keys = np.empty(len(high), dtype=np.uint64)
    halves = keys.view(np.uint32)
    halves[_HI::2] = high
    halves[_LO::2] = low
    return keys


def _halves(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    halves = keys.view(np.uint32)
    return halves[_HI::2], halves[_LO::2]


def _dedupe_sorted(a: np.ndarray) -> np.ndarray:
    """Drop repeats from a sorted array."""
    if len(a) < 2:
        return a
    return a[np.concatenate(([True], a[1:] != a[:-1]))]


def shingle_hashes(canonical_text: str, n: int = NGRAM) -> np.ndarray:
    """Sorted unique 32-bit hashes (uint32) of the character n-grams of a canonical text."""
    if not canonical_text:
        return _EMPTY_U32
    if _kernel is not None and _use_kernel:
        if len(canonical_text) < n:
            return _EMPTY_U32
        out = np.empty(len(canonical_text) - n + 1, dtype=np.uint32)
        return out[: _kernel.shingles(_codepoints(canonical_text), n, out)]
    # np.unique is avoided throughout: numpy 2's hash-based path is slow on these arrays.
    return _dedupe_sorted(np.sort(_ngram_hashes(_codepoints(canonical_text), n)))


def _batch_hashes(texts: Sequence[str], n: int = NGRAM) -> tuple[np.ndarray, np.ndarray]:
    """Hash the n-grams of many canonical texts at once: ``(hashes, text_index)``, uint32.

    The texts are concatenated and hashed in one pass; n-grams that straddle two texts are
    dropped. Duplicates within a text are kept (callers deduplicate when they need to).
    """
    chunks = _chunks(texts)
    if len(chunks) > 1:
        parts = [_batch_hashes(c, n) for c in chunks]
        offsets = np.cumsum([0] + [len(c) for c in chunks[:-1]]).astype(np.uint32)
        return (
            np.concatenate([h for h, _o in parts]),
            np.concatenate([o + off for (_h, o), off in zip(parts, offsets, strict=True)]),
        )
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    hashes = _ngram_hashes(_codepoints("".join(texts)), n)
    if not len(hashes):
        return hashes, np.zeros(0, dtype=np.uint32)
    # The n-grams starting in the last n-1 characters of a text straddle into the next one.
    valid = np.ones(len(hashes), dtype=bool)
    ends = np.cumsum(lengths)
    for k in range(1, n):
        cross = ends - k
        valid[cross[(cross >= 0) & (cross < len(hashes))]] = False
    owner = np.repeat(np.arange(len(texts), dtype=np.uint32), np.maximum(lengths - n + 1, 0))
    return hashes[valid], owner


def similarity_from_counts(
    inter: np.ndarray, size_a: np.ndarray, size_b: np.ndarray, power: float = 0.5
) -> np.ndarray:
    """Similarity of two shingle sets from ``|A ∩ B|``, ``|A|`` and ``|B|``.

    ``|A ∩ B| / (min^(1-power) · max^power)``; the default ``power`` = 0.5 is the cosine of
    the sets' indicator vectors. Unlike Jaccard it forgives a repeat that adds a preamble or
    was cut short (0.71 for a copy cut in half); unlike plain containment (``power`` = 0) a
    one-line complaint does not match every long petition that quotes it (a text fully
    contained in one four times its size scores 0.5).
    """
    inter = np.asarray(inter, dtype=np.float64)
    small = np.minimum(size_a, size_b).astype(np.float64)
    large = np.maximum(size_a, size_b).astype(np.float64)
    denominator = small ** (1 - power) * large**power
    # 0 where a set is empty (no shingles in common then either); np.divide's ``where``
    # instead of nan_to_num, which cost more than the rest of this function.
    sim = np.divide(inter, denominator, out=np.zeros_like(inter), where=denominator > 0)
    return np.minimum(sim, 1.0, out=sim)


#: Candidates of segments with at most this many cases are counted with one ``bincount``
#: (an array of one counter per case); larger segments sort their hits instead.
_BINCOUNT_MAX_CASES = 1 << 12

#: Segments with at most this many terms are searched by binary search, larger ones through
#: their bucket table (a binary search there is ~20 cache misses per query shingle).
_BINARY_SEARCH_MAX_TERMS = 1 << 19


def _slices(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the slices ``starts[i] : starts[i] + lengths[i]`` (lengths > 0 for
    some i), and where each slice begins among them."""
    ends = np.cumsum(lengths)
    offsets = ends - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(ends[-1]), offsets


def _gather(ptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the slices ``ptr[r]:ptr[r+1]`` of ``rows`` and their lengths."""
    lengths = ptr[rows + 1] - ptr[rows]
    if not len(rows):
        return np.zeros(0, dtype=np.int64), lengths
    return _slices(ptr[rows], lengths)[0], lengths


@dataclass(frozen=True, eq=False)  # compared by identity when merging
class _Segment:
    """Immutable index over some cases: a forward index (case → shingles) for exact
    verification and an inverted index (shingle → cases) for candidate search."""

    gids: np.ndarray  # int64 (n,): local case -> global id
    fwd_ptr: np.ndarray  # int64 (n+1,): shingles of local case i are fwd[fwd_ptr[i]:fwd_ptr[i+1]]
    fwd: np.ndarray  # uint32: sorted unique shingle hashes per case
    terms: np.ndarray  # uint32 (V,): sorted unique shingle hashes of the segment
    ptr: np.ndarray  # int64 (V+1,): cases with terms[t] are docs[ptr[t]:ptr[t+1]]
    docs: np.ndarray  # int32: local case ids, ascending within a term

    FIELDS = ("gids", "fwd_ptr", "fwd", "terms", "ptr", "docs")

    @classmethod
    def from_hashes(cls, gids: np.ndarray, hashes: np.ndarray, owner: np.ndarray) -> _Segment:
        """Build from ``(hash, local case)`` pairs (duplicates allowed, owner ascending)."""
        keys = _pack(owner, hashes)
        keys.sort()
        keys = _dedupe_sorted(keys)
        case_of, fwd = _halves(keys)
        counts = np.bincount(case_of, minlength=len(gids))
        return cls.from_forward(gids, np.concatenate(([0], np.cumsum(counts))), fwd.copy())

    @classmethod
    def from_forward(cls, gids: np.ndarray, fwd_ptr: np.ndarray, fwd: np.ndarray) -> _Segment:
        """Build the inverted index from the forward one (one sort of all postings)."""
        owner = np.repeat(np.arange(len(gids), dtype=np.uint32), np.diff(fwd_ptr))
        keys = _pack(fwd, owner)
        keys.sort()
        return cls._from_sorted_postings(gids, fwd_ptr, fwd, keys)

    @classmethod
    def _from_sorted_postings(
        cls, gids: np.ndarray, fwd_ptr: np.ndarray, fwd: np.ndarray, keys: np.ndarray
    ) -> _Segment:
        term_of, docs = _halves(keys)
        first = np.flatnonzero(np.concatenate(([True], term_of[1:] != term_of[:-1])))
        return cls(
            gids=np.asarray(gids, dtype=np.int64),
            fwd_ptr=np.asarray(fwd_ptr, dtype=np.int64),
            fwd=np.ascontiguousarray(fwd, dtype=np.uint32),
            terms=term_of[first],
            ptr=np.append(first, len(term_of)).astype(np.int64),
            docs=docs.astype(np.int32),
        )

    @classmethod
    def merge(cls, segments: Sequence[_Segment], alive: np.ndarray) -> _Segment:
        """One segment with the live cases of ``segments`` (no re-hashing, no full sort).

        Each segment's postings, renumbered, are already one sorted run of (term, case)
        keys: NumPy's stable sort (timsort) merges the runs in linear time, where sorting
        all postings afresh cost several times more (the indexer's largest cost).
        """
        if _kernel is not None and _use_kernel and len(segments) == 2:
            return cls._merge_c(segments[0], segments[1], alive)
        gids, lengths, parts, runs = [], [], [], []
        offset = 0
        for seg in segments:
            live = alive[seg.gids]
            rows = np.flatnonzero(live)
            idx, lens = _gather(seg.fwd_ptr, rows)
            gids.append(seg.gids[rows])
            lengths.append(lens)
            parts.append(seg.fwd[idx])
            terms = np.repeat(seg.terms, np.diff(seg.ptr))
            if len(rows) == len(seg):  # the usual case: nothing removed, ids shift
                docs = seg.docs.view(np.uint32) + np.uint32(offset)
            else:  # old local id -> new one (monotonic: a term's cases stay ascending)
                renumber = (np.cumsum(live, dtype=np.int64) - 1 + offset).astype(np.uint32)
                kept = live[seg.docs]
                terms, docs = terms[kept], renumber[seg.docs[kept]]
            runs.append(_pack(terms, docs))
            offset += len(rows)
        lens = np.concatenate(lengths)
        keys = np.concatenate(runs)
        keys.sort(kind="stable")
        return cls._from_sorted_postings(
            np.concatenate(gids),
            np.concatenate(([0], np.cumsum(lens))),
            np.concatenate(parts),
            keys,
        )

    @classmethod
    def _merge_c(cls, a: _Segment, b: _Segment, alive: np.ndarray) -> _Segment:
        """:meth:`merge` of two segments in the C kernel: one linear pass, without the
        interpreter lock (the nice-19 indexer held it through NumPy's steps, and a request
        thread that needed it waited while the scheduler ran others)."""
        n, shingles = len(a) + len(b), len(a.fwd) + len(b.fwd)
        terms, postings = len(a.terms) + len(b.terms), len(a.docs) + len(b.docs)
        out = (
            np.empty(n, np.int64), np.empty(n + 1, np.int64), np.empty(shingles, np.uint32),
            np.empty(terms, np.uint32), np.empty(terms + 1, np.int64), np.empty(postings, np.int32),
        )  # fmt: skip
        args = [getattr(seg, f) for seg in (a, b) for f in cls.FIELDS]
        counts = _kernel.merge(*args, np.asarray(alive).view(np.uint8), *out)
        cases, shingles, terms, postings = counts
        sizes = (cases, cases + 1, shingles, terms, terms + 1, postings)
        # Removed cases leave the arrays longer than needed: copy the used part then.
        parts = [
            arr[:k] if k == len(arr) else arr[:k].copy() for arr, k in zip(out, sizes, strict=True)
        ]
        return cls(**dict(zip(cls.FIELDS, parts, strict=True)))

    def __len__(self) -> int:
        return len(self.gids)

    def nbytes(self) -> int:
        return sum(getattr(self, f).nbytes for f in self.FIELDS)

    @cached_property
    def _buckets(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(shift, bucket starts, terms + sentinel): a hash table over the sorted terms.

        ``searchsorted`` on a million terms is ~20 cache misses per query shingle; the top
        bits of a (uniform) hash point straight at a bucket of about two terms instead.
        Built on first search (about 10 ms per million terms), never saved.
        """
        bits = max(1, len(self.terms).bit_length())  # about one bucket per term
        shift = 32 - bits if bits < 32 else 0
        counts = np.bincount(self.terms >> np.uint32(shift), minlength=1 << bits)
        starts = np.zeros((1 << bits) + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        return shift, starts, np.append(self.terms, np.uint32(0xFFFFFFFF))

    def _find(self, query: np.ndarray) -> np.ndarray:
        """Term positions of the query shingles present in this segment."""
        if len(self.terms) <= _BINARY_SEARCH_MAX_TERMS:
            # A small segment's terms stay in cache: one binary search per shingle costs
            # fewer numpy calls (each a few microseconds) than walking the buckets.
            pos = np.searchsorted(self.terms, query)
            found = self.terms[np.minimum(pos, len(self.terms) - 1)] == query
            return pos[found]
        shift, starts, terms = self._buckets
        pos = starts[query >> np.uint32(shift)]
        # Walk each query forward through its bucket (terms are sorted, so the walk stops at
        # the first term not below it; the sentinel stops a walk off the end).
        found = np.zeros(len(query), dtype=bool)
        active = np.arange(len(query))
        while len(active):
            t, q = terms[pos[active]], query[active]
            found[active] = t == q
            active = active[t < q]
            pos[active] += 1
        found &= pos < len(self.terms)
        return pos[found]

    def search(
        self, query: np.ndarray, probes: int, limit: int, min_hits: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Verify the ``limit`` cases hitting most of the query's ``probes`` rarest shingles
        (and at least a ``min_hits`` fraction of them).

        Returns their global ids, ``|query ∩ case|`` and ``|case|``.
        """
        if not len(self.terms) or not len(query):
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        # Relative to the probes the query could have had, not to those this segment holds:
        # a segment that holds few of them cannot hold its near-duplicate.
        least = max(1.0, min_hits * min(probes, len(query))) if min_hits > 0 else 1
        if _kernel is not None and _use_kernel:
            return self._search_c(query, probes, limit, math.ceil(least))
        empty = np.zeros(0, dtype=np.int64)
        pos = self._find(query)
        if not len(pos):
            return empty, empty, empty
        # Every step below is one NumPy call on a few hundred or thousand values, so a
        # query's cost is mostly the number of calls (a few microseconds each): the steps
        # are written to make few of them.
        lo = self.ptr[pos]
        df = self.ptr[pos + 1] - lo
        if len(pos) > probes:  # ties in query order (as the C kernel breaks them)
            rarest = np.argsort(df, kind="stable")[:probes]
            lo, df = lo[rarest], df[rarest]
        hit = self.docs[_slices(lo, df)[0]]
        # A near-duplicate shares most of the query's rare shingles; a case that hits a few
        # of them shares a name or a place. Skipping those spares their exact check.
        if len(self) <= _BINCOUNT_MAX_CASES:  # cases in ascending order, as below
            counts = np.bincount(hit)
            cands = np.flatnonzero(counts >= least)
            counts = counts[cands]
        else:
            hit.sort()
            first = np.flatnonzero(np.concatenate(([True], hit[1:] != hit[:-1])))
            counts = np.diff(np.append(first, len(hit)))
            keep = counts >= least
            cands, counts = hit[first][keep], counts[keep]
        if not len(cands):
            return empty, empty, empty
        if len(cands) > limit:  # most hits first, ties by local id; then in id order
            cands = np.sort(cands[np.argsort(-counts, kind="stable")[:limit]])
        # Exact verification against the forward index.
        lo = self.fwd_ptr[cands]
        sizes = self.fwd_ptr[cands + 1] - lo
        idx, starts = _slices(lo, sizes)
        shingles = self.fwd[idx]
        at = np.searchsorted(query, shingles)
        np.minimum(at, len(query) - 1, out=at)
        # Every indexed case has shingles (sizes > 0), so each reduceat slice is its own.
        inter = np.add.reduceat(query[at] == shingles, starts, dtype=np.int64)
        return self.gids[cands], inter, sizes

    def _search_c(
        self, query: np.ndarray, probes: int, limit: int, least: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`search` in the C kernel (one call instead of some forty NumPy calls)."""
        shift, starts, _padded = self._buckets
        out = np.empty((3, limit), dtype=np.int64)
        n = _kernel.search(
            self.terms, self.ptr, self.docs, self.fwd_ptr, self.fwd,
            np.ascontiguousarray(query, dtype=np.uint32), starts, shift,
            probes, limit, least, out[0], out[1], out[2],
        )  # fmt: skip
        return self.gids[out[0, :n]], out[1, :n], out[2, :n]


class RepeatIndex:
    """Near-duplicate search over earlier cases (case id → normalised petition text).

    Parameters
    ----------
    threshold:
        Default minimum similarity for :meth:`query` results.
    min_chars:
        Canonical texts shorter than this only match an identical short text.
    probes:
        How many of the query's rarest shingles are looked up per segment.
    candidates:
        How many candidates per segment are verified exactly.
    min_probe_hits:
        Fraction of the probes a candidate must hit to be verified at all.
    tail_size, merge_factor:
        Single adds collect in a tail of up to ``tail_size`` cases; sealed segments are
        merged while the older one is at most ``merge_factor`` times the newer one. Each
        segment costs a query a fixed ~0.3 M instructions: 8 keeps fewer segments than 4
        (fed like the service feeds it, 15k cases: 2 segments + tail instead of 3 + tail,
        -12 % instructions per query) for +10 % of indexing CPU, which the service spends at
        a low priority.
    """

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        *,
        min_chars: int = 10,
        probes: int = 64,
        candidates: int = 40,
        min_probe_hits: float = 0.2,
        tail_size: int = 256,
        merge_factor: int = 8,
    ) -> None:
        self.threshold = threshold
        self.min_chars = min_chars
        self.probes = probes
        self.candidates = candidates
        self.min_probe_hits = min_probe_hits
        self.tail_size = tail_size
        self.merge_factor = merge_factor
        self._lock = threading.RLock()
        self._merge_lock = threading.Lock()
        self._add_lock = threading.Lock()  # one add_many at a time (it rebuilds the tail)
        self._ids: list[str | None] = []  # global id -> case id (None once removed)
        self._gid: dict[str, int] = {}  # live case id -> global id
        self._short: dict[str, set[int]] = {}  # short canonical text -> global ids
        self._short_of: dict[int, str] = {}  # global id -> its short canonical text
        self._alive = np.zeros(0, dtype=bool)
        self._segments: tuple[_Segment, ...] = ()  # sealed; replaced, never mutated
        self._tail_segment: _Segment | None = None
        # text -> canonical form of recent queries, for the add that usually follows
        self._recent: dict[str, str] = {}

    def _params(self) -> dict[str, float | int]:
        return {
            name: getattr(self, name)
            for name in (
                "threshold",
                "min_chars",
                "probes",
                "candidates",
                "min_probe_hits",
                "tail_size",
                "merge_factor",
            )
        }

    # ------------------------------------------------------------------ mutation

    def add(self, case_id: str, text: str) -> None:
        """Index (or re-index) one case; ``text`` is the normalised petition text."""
        self.add_many([(case_id, text)])

    def add_many(self, items: Iterable[tuple[str, str]]) -> None:
        """Index many cases; a large batch is built as one segment in a vectorised pass."""
        items = [(str(cid), text) for cid, text in items]
        if not items:
            return
        # The slow part (canonical form, hashing) runs outside the lock. A case is usually
        # added right after it was queried (the service stores what it classified): reuse
        # the canonical form the query computed.
        recent = self._recent
        canon = [recent.pop(text, None) for _cid, text in items]
        todo = [text for (_cid, text), c in zip(items, canon, strict=True) if c is None]
        computed = iter(canonical_many(todo))
        forms = [c if c is not None else next(computed) for c in canon]
        self._add_canonical([cid for cid, _text in items], forms)

    def add_canonical_many(self, items: Iterable[tuple[str, str]]) -> None:
        """Index many cases given in canonical form (:func:`canonical` of their text), e.g.
        the form stored beside each case: no normalisation work at all."""
        ids, canon = [], []
        for cid, form in items:
            ids.append(str(cid))
            canon.append(form)
        if ids:
            self._add_canonical(ids, canon)

    def canonical_of(self, text: str) -> str:
        """:func:`canonical` of ``text``, reusing (and forgetting) the form that a recent
        query of the same text computed: the add that follows a query is its one reuse."""
        form = self._recent.pop(text, None)
        return canonical(text) if form is None else form

    def _add_canonical(self, ids: list[str], canon: list[str]) -> None:
        long_rows = [i for i, c in enumerate(canon) if len(c) >= self.min_chars]
        hashes, owner = _batch_hashes([canon[i] for i in long_rows])
        with self._add_lock:
            sealed = self._add_hashed(ids, canon, long_rows, hashes, owner)
        if sealed:
            self._maybe_merge()

    def _add_hashed(
        self,
        ids: list[str],
        canon: list[str],
        long_rows: list[int],
        hashes: np.ndarray,
        owner: np.ndarray,
    ) -> bool:
        """Register hashed cases and build their segment (under the add lock); whether a
        segment was sealed. Queries wait for the main lock only while ids are assigned and
        while the new segments are put in place, not while they are built: the indexer
        runs at a low priority, and a request waiting for a lock it holds waited for the
        scheduler to run it again."""
        with self._lock:
            self._grow_alive(len(self._ids) + len(ids))
            gids = np.empty(len(ids), dtype=np.int64)
            for i, case_id in enumerate(ids):
                if case_id in self._gid:
                    self._remove_locked(case_id)
                gid = gids[i] = len(self._ids)
                self._ids.append(case_id)
                self._gid[case_id] = gid
                self._alive[gid] = True
                if len(canon[i]) < self.min_chars:
                    self._short.setdefault(canon[i], set()).add(gid)
                    self._short_of[gid] = canon[i]
            alive = self._alive
        if not long_rows:
            return False
        # Only _add_canonical (serialised by the add lock) changes the tail, so it is read and grown
        # here without the main lock: merged with the batch in one linear pass (the C kernel,
        # or NumPy's run merging), not rebuilt from all its cases.
        batch = _Segment.from_hashes(gids[long_rows], hashes, owner)
        tail = self._tail_segment
        if len(batch) + (len(tail) if tail is not None else 0) <= self.tail_size:
            grown = batch if tail is None else _Segment.merge([tail, batch], alive)
            with self._lock:
                self._tail_segment = grown
            return False
        # The tail is full: seal it. A small batch starts the next tail, a bulk load becomes
        # a segment of its own.
        sealed = [tail] if tail is not None and len(tail) else []
        if len(batch) <= self.tail_size:
            tail = batch
        else:
            sealed.append(batch)
            tail = None
        with self._lock:
            self._tail_segment = tail
            self._segments = (*self._segments, *sealed)
        return True

    def remove(self, case_id: str) -> bool:
        """Forget a case; returns whether it was indexed. Its postings go at the next merge."""
        with self._lock:
            return self._remove_locked(str(case_id))

    def _remove_locked(self, case_id: str) -> bool:
        gid = self._gid.pop(case_id, None)
        if gid is None:
            return False
        self._alive[gid] = False
        self._ids[gid] = None
        text = self._short_of.pop(gid, None)
        if text is not None:
            self._short[text].discard(gid)
            if not self._short[text]:
                del self._short[text]
        return True

    def _grow_alive(self, size: int) -> None:
        if size > len(self._alive):
            # Queries may hold the old array: copy on growth, never resize in place.
            grown = np.zeros(max(size, 2 * len(self._alive), 1024), dtype=bool)
            grown[: len(self._alive)] = self._alive
            self._alive = grown

    def _maybe_merge(self) -> None:
        """Merge the newest segments while they are of comparable size (log-structured).

        The merged segment is built outside the main lock so that queries and adds go on
        meanwhile; a second merger waits for the first.
        """
        with self._merge_lock:
            while True:
                with self._lock:
                    segs, alive = self._segments, self._alive
                    if len(segs) < 2 or len(segs[-2]) > self.merge_factor * len(segs[-1]):
                        return
                merged = _Segment.merge(segs[-2:], alive)
                with self._lock:
                    # Only this method replaces segments (under the merge lock), so the two
                    # merged ones are still in place; adds may have appended newer ones.
                    i = self._segments.index(segs[-2])
                    self._segments = (*self._segments[:i], merged, *self._segments[i + 2 :])

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._gid)

    def __contains__(self, case_id: object) -> bool:
        return case_id in self._gid

    def similarity(self, text_a: str, text_b: str) -> float:
        """Exact similarity of two normalised texts (what :meth:`query` reports)."""
        a, b = canonical_many([text_a, text_b])
        if len(a) < self.min_chars or len(b) < self.min_chars:
            return float(a == b and bool(a))
        sa, sb = shingle_hashes(a), shingle_hashes(b)
        inter = len(np.intersect1d(sa, sb, assume_unique=True))
        sim = similarity_from_counts(np.array([inter]), np.array([len(sa)]), np.array([len(sb)]))
        return float(sim[0])

    def query(
        self, text: str, k: int = 5, threshold: float | None = None
    ) -> list[tuple[str, float]]:
        """Earlier cases similar to ``text``: up to ``k`` ``(case_id, similarity)``, best first."""
        threshold = self.threshold if threshold is None else threshold
        if k <= 0:
            return []
        canon = canonical(text)
        if len(self._recent) >= _RECENT_MAX:  # a query not followed by its add: forget old ones
            self._recent.clear()
        self._recent[text] = canon
        with self._lock:  # a consistent snapshot; the search itself runs unlocked
            segments = self._segments
            if self._tail_segment is not None:
                segments = (*segments, self._tail_segment)
            alive, ids = self._alive, self._ids
            if len(canon) < self.min_chars:  # short: identical short texts only
                same = sorted(self._short.get(canon, ())) if canon else []
                return [(str(ids[g]), 1.0) for g in same[:k] if threshold <= 1.0]
        q = shingle_hashes(canon)
        found = [
            seg.search(q, self.probes, self.candidates, self.min_probe_hits) for seg in segments
        ]
        found = [f for f in found if len(f[0])]
        if not found:  # the usual case: no earlier case is anywhere near
            return []
        gids, inter, sizes = (np.concatenate(parts) for parts in zip(*found, strict=True))
        # similarity_from_counts(inter, len(q), sizes) at its default power (0.5), bit for bit
        # (x ** 0.5 is sqrt, and the product commutes) in four NumPy calls instead of twelve.
        sims = inter / (np.sqrt(sizes) * math.sqrt(len(q)))
        np.minimum(sims, 1.0, out=sims)
        keep = alive[gids] & (sims >= threshold)
        gids, sims = gids[keep], sims[keep]
        out: list[tuple[str, float]] = []
        for i in np.argsort(-sims, kind="stable"):
            case_id = ids[gids[i]]
            if case_id is not None:  # None: removed after the snapshot
                out.append((case_id, round(float(sims[i]), 4)))
                if len(out) == k:
                    break
        return out

    # ------------------------------------------------------------------ persistence

    def stats(self) -> dict[str, int]:
        """Sizes for monitoring: cases, segments, postings and index memory in bytes."""
        with self._lock:
            segments = self._segments
            if self._tail_segment is not None:
                segments = (*segments, self._tail_segment)
            return {
                "cases": len(self._gid),
                "short_cases": len(self._short_of),
                "segments": len(segments),
                "postings": int(sum(len(s.docs) for s in segments)),
                "index_bytes": int(sum(s.nbytes() for s in segments)),
            }

    def save(self, path: str | Path) -> None:
        """Write the whole index to one ``.npz`` file (uncompressed: loading is a read)."""
        with self._lock:
            segments = self._segments
            if self._tail_segment is not None:
                segments = (*segments, self._tail_segment)
            meta = {
                "version": _FORMAT_VERSION,
                "ngram": NGRAM,
                "params": self._params(),
                "ids": list(self._ids),
                "short": {str(g): t for g, t in self._short_of.items()},
                "segments": len(segments),
            }
        arrays = {
            f"s{i}_{f}": getattr(seg, f) for i, seg in enumerate(segments) for f in _Segment.FIELDS
        }
        blob = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), np.uint8)
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as fh:
            np.savez(fh, meta=blob, **arrays)
        tmp.replace(path)  # never leave a half-written index behind

    @classmethod
    def load(cls, path: str | Path, **overrides: float) -> RepeatIndex:
        """Read an index written by :meth:`save`; ``overrides`` replace saved parameters."""
        with np.load(Path(path)) as data:
            meta = json.loads(data["meta"].tobytes().decode("utf-8"))
            if meta.get("version") != _FORMAT_VERSION or meta.get("ngram") != NGRAM:
                raise ValueError(f"{path}: not a repeat index of format {_FORMAT_VERSION}")
            segments = tuple(
                _Segment(**{f: data[f"s{i}_{f}"] for f in _Segment.FIELDS})
                for i in range(meta["segments"])
            )
        index = cls(**{**meta["params"], **overrides})
        index._ids = meta["ids"]
        index._gid = {cid: g for g, cid in enumerate(index._ids) if cid is not None}
        for g, text in meta["short"].items():
            index._short.setdefault(text, set()).add(int(g))
            index._short_of[int(g)] = text
        index._grow_alive(len(index._ids))
        index._alive[list(index._gid.values())] = True
        index._segments = segments
        return index
