"""Chinese word segmentation with a domain user dictionary and stop words.

One explicitly owned :class:`Segmenter` per process (``get_segmenter()``), initialised once.
Model artefacts reference the module-level :func:`tokenize`, never a bound jieba method,
because jieba's bound methods cannot be pickled and skops must name what it loads.

Two backends produce the same tokens from the same dictionaries:

* ``jieba``: the pure-Python reference implementation;
* ``rjieba``: the Rust port (jieba-rs 0.11), 15-20× faster; the default when installed.

jieba-rs differs from Python jieba in three ways, each corrected here so that the tokens are
identical (``tests/test_segment.py`` checks every row of the shared data):

1. In a run of characters the dictionary does not join (jieba's HMM "buffer"), Python jieba
   splits the non-Chinese part with ``finalseg.re_skip`` (``2012-2017`` → ``2012`` ``-``
   ``2017``, ``15.5m2`` → ``15.5`` ``m2``); jieba-rs keeps it whole. We re-split such tokens
   with the same regex.
2. jieba-rs counts CJK extension A-F and compatibility ideographs (``㐀``, ``𠀀``) as Chinese;
   Python jieba stops at U+9FD5 and emits every other character on its own. Texts holding
   such characters are cut around them.
3. ``add_word`` of a word already in the main dictionary *replaces* its frequency in
   jieba-rs's total but *adds* to it in Python jieba. The total scales every word
   probability, so we add the difference back through a word that can never match (the
   old frequencies come from jieba's ``dict.txt``; without jieba installed there is no
   reference to match).

Two (near-)ties in floating point are broken differently by the two implementations and are
left alone; ``docs/speed.md`` lists the shared-data rows they affect.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache, partial
from importlib import resources
from itertools import filterfalse
from pathlib import Path
from typing import Any

from triage.errors import ConfigError

__all__ = [
    "BACKENDS",
    "Segmenter",
    "available_backends",
    "get_segmenter",
    "load_stopwords",
    "load_userdict",
    "set_default_backend",
    "tokenize",
]

BACKENDS = ("rjieba", "jieba")
# Tokens made only of punctuation, symbols or whitespace carry no topic information.
_NOISE = re.compile(r"^[\W_]+$")
# Characters jieba-rs treats as Chinese but Python jieba (``[\u4E00-\u9FD5]``) does not.
_EXTRA_HAN = re.compile(
    "([\u3400-\u4dbf\u9fd6-\u9fff\uf900-\ufaff\U00020000-\U0002a6df"
    "\U0002a700-\U0002ebef\U0002f800-\U0002fa1f])"
)
# A token jieba-rs must re-split is ASCII with one of ``+#&._%-`` beside a letter, digit or
# another of them; a text without such a pair needs no re-split.
_RESPLIT_HINT = re.compile(r"[A-Za-z0-9+#&._%\-][+#&._%\-]|[+#&._%\-][A-Za-z0-9+#&._%\-]")
# ``jieba.finalseg.re_skip``: how Python jieba splits the non-Chinese part of an HMM buffer.
_SKIP = re.compile(r"([a-zA-Z0-9]+(?:\.\d+)?%?)")
# Never inside a segmentable run (control characters break runs in both backends), so this
# word only moves jieba-rs's frequency total; see the module docstring, point 3.
_TOTAL_PAD_WORD = "\x00\x01"
# Per-token verdict tables are bounded: numbers and names make the token space unbounded.
_TABLE_MAX = 500_000


def _data_path(name: str) -> Path:
    return Path(str(resources.files("triage") / "data" / name))


def load_userdict(path: Path | None = None) -> list[tuple[str, int, str]]:
    """Read a jieba user dictionary: ``word [freq] [tag]`` per line, ``#`` comments."""
    path = path or _data_path("userdict.txt")
    entries: list[tuple[str, int, str]] = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        try:
            freq = int(parts[1]) if len(parts) > 1 else 2000
        except ValueError as exc:
            raise ConfigError(
                f"{path}:{lineno}: expected 'word [freq] [tag]' with an integer freq, got {line!r}"
            ) from exc
        if freq < 1:
            # freq 0 means "force split" in Python jieba, which jieba-rs cannot express.
            raise ConfigError(f"{path}:{lineno}: freq must be at least 1, got {line!r}")
        entries.append((parts[0], freq, parts[2] if len(parts) > 2 else "n"))
    return entries


def load_stopwords(path: Path | None = None) -> frozenset[str]:
    """Read a stop-word file: one word per line, ``#`` comments."""
    path = path or _data_path("stopwords.txt")
    words = (w.strip() for w in path.read_text(encoding="utf-8").splitlines())
    return frozenset(w for w in words if w and not w.startswith("#"))


def available_backends() -> list[str]:
    """Backends importable in this environment, fastest first."""
    # find_spec does not import: importing jieba alone costs a second.
    return [name for name in BACKENDS if importlib.util.find_spec(name) is not None]


def _rjieba_class() -> Any:
    """``rjieba.Jieba`` without running ``rjieba/__init__.py``.

    The package's ``__init__`` builds a module-level default tokenizer (0.15 s of CPU, a
    tenth of the cold-start budget) that we never use, so load the extension module alone.
    """
    for name in ("rjieba", "rjieba.rjieba"):  # already loaded, by us or by an import
        if name in sys.modules:
            return sys.modules[name].Jieba
    try:
        spec = importlib.util.find_spec("rjieba")
        folder = Path(next(iter(spec.submodule_search_locations or [])))  # type: ignore[union-attr]
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = folder / f"rjieba{suffix}"
            if path.is_file():
                loader = importlib.machinery.ExtensionFileLoader("rjieba.rjieba", str(path))
                ext_spec = importlib.util.spec_from_file_location(
                    "rjieba.rjieba", path, loader=loader
                )
                module = importlib.util.module_from_spec(ext_spec)  # type: ignore[arg-type]
                loader.exec_module(module)
                # A later ``import rjieba`` then reuses it instead of initialising it twice.
                sys.modules["rjieba.rjieba"] = module
                return module.Jieba
    except Exception:  # any surprise (a renamed file, a new layout): the normal import
        pass
    import rjieba

    return rjieba.Jieba


def _reference_freqs(words: Iterable[str]) -> dict[str, int]:
    """Frequencies of ``words`` in Python jieba's ``dict.txt`` (empty when jieba is absent).

    Read without importing jieba (a second) and without a Python loop over its 349,000
    lines: NumPy finds the lines that start with one of the words' first bytes.
    """
    wanted = {w.encode("utf-8") + b" ": w for w in set(words)}
    spec = importlib.util.find_spec("jieba") if wanted else None
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / "dict.txt"
    if not path.is_file():
        return {}
    import numpy as np

    data = path.read_bytes()
    buf = np.frombuffer(data, dtype=np.uint8)
    width = min(8, *(len(k) for k in wanted))  # a prefix every wanted line has
    starts = np.flatnonzero(buf == ord("\n")) + 1
    starts = np.concatenate([[0], starts[starts + width <= len(buf)]])
    prefix = np.zeros(len(starts), dtype=np.uint64)
    for i in range(width):  # the first ``width`` bytes of every line, as one integer
        prefix = (prefix << np.uint64(8)) | buf[starts + i].astype(np.uint64)
    keys = np.array([int.from_bytes(k[:width], "big") for k in wanted], dtype=np.uint64)
    found: dict[str, int] = {}
    for start in starts[np.isin(prefix, keys)].tolist():
        end = data.find(b"\n", start)
        line = data[start : end if end >= 0 else len(data)]
        for key, word in wanted.items():
            if line.startswith(key):
                found[word] = int(line[len(key) :].split(b" ", 1)[0])
    return found


def _build_rjieba(entries: Sequence[tuple[str, int, str]]) -> tuple[Any, Callable[[str], bool]]:
    """A jieba-rs tokenizer with the user words, its total matched to Python jieba's."""
    tok = _rjieba_class()()
    set_freq: dict[str, int] = {}
    in_main = [w for w, _, _ in entries if tok.has_word(w)]
    main_freq = _reference_freqs(in_main)
    pad = 0
    for word, freq, tag in entries:
        # Python jieba: total += freq. jieba-rs: total += freq - previous freq of the word.
        pad += set_freq.get(word, main_freq.get(word, 0))
        tok.add_word(word, freq, tag)
        set_freq[word] = freq
    if pad:
        tok.add_word(_TOTAL_PAD_WORD, pad, "x")
    return tok, tok.has_word


def _positions(items: list[str], value: str) -> Iterator[int]:
    """Every index of ``value`` in ``items``."""
    i = -1
    try:
        while True:
            i = items.index(value, i + 1)
            yield i
    except ValueError:
        return


class Segmenter:
    """Owns one jieba tokenizer, its user dictionary and the stop words."""

    def __init__(
        self,
        backend: str = "auto",
        userdict: Path | None = None,
        stopwords: Path | None = None,
    ) -> None:
        if backend == "auto":
            found = available_backends()
            if not found:
                raise ConfigError("no segmentation backend: install 'rjieba' or 'jieba'")
            backend = found[0]
        if backend not in BACKENDS:
            raise ConfigError(
                f"unknown segmentation backend {backend!r}; expected one of {BACKENDS}"
            )
        self.backend = backend
        self.stopwords = load_stopwords(stopwords)
        entries = load_userdict(userdict)
        self._has_word: Callable[[str], bool] | None = None
        if backend == "rjieba":
            tok, self._has_word = _build_rjieba(entries)
            self._raw: Callable[[str], list[str]] = partial(tok.cut, hmm=True)
        else:
            self._raw = self._build_jieba(entries)
        # Verdicts per distinct token, learnt on first sight. ``_drop`` is written before
        # ``_known``, so a thread that sees a token as known also sees its verdict.
        self._known: set[str] = set()
        self._drop: set[str] = set()
        self._checked: set[str] = set()  # ASCII tokens of texts with a re-split hint, judged
        self._resplit: dict[str, list[str]] = {}  # those of them jieba-rs must re-split

    @staticmethod
    def _build_jieba(entries: Iterable[tuple[str, int, str]]) -> Callable[[str], list[str]]:
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)
        tok = jieba.Tokenizer()
        tok.initialize()
        for word, freq, tag in entries:
            tok.add_word(word, freq, tag)
        return lambda text: tok.lcut(text, HMM=True)

    def _pieces(self, token: str) -> list[str]:
        """``token`` as Python jieba emits it (module docstring, point 1)."""
        # Only an all-ASCII token that is not a dictionary word can be a non-Chinese HMM
        # block that jieba-rs kept whole.
        if (
            self._has_word is not None
            and len(token) > 1
            and token.isascii()
            and not self._has_word(token)
        ):
            return [p for p in _SKIP.split(token) if p]
        return [token]

    def _is_content(self, token: str) -> bool:
        return not (token in self.stopwords or token.isspace() or _NOISE.match(token))

    def _learn(self, tokens: Iterable[str]) -> bool:
        """Record whether unseen ``tokens`` are content; False when the table is full."""
        known, drop = self._known, self._drop
        new = set(tokens).difference(known)
        if len(known) + len(new) > _TABLE_MAX:
            return False
        for token in new:
            if not self._is_content(token):
                drop.add(token)
            known.add(token)
        return True

    def _cut_raw(self, text: str) -> list[str]:
        """Backend tokens (before the jieba-rs re-split), cut around extension ideographs."""
        if not _EXTRA_HAN.search(text):
            return self._raw(text)
        out: list[str] = []
        for k, piece in enumerate(_EXTRA_HAN.split(text)):
            if k % 2:  # the captured character: Python jieba emits it on its own
                out.append(piece)
            elif piece:
                out.extend(self._raw(piece))
        return out

    def _cut(self, text: str) -> list[str]:
        if self._has_word is None:  # jieba itself: nothing to correct
            return self._raw(text)
        raw = self._cut_raw(text)
        # Three texts in four have no ASCII punctuation next to a letter or digit, hence no
        # token to re-split and no per-token Python work at all.
        if not _RESPLIT_HINT.search(text):
            return raw
        # Only ASCII tokens can need it. C-level passes: pick them out, judge those never
        # seen before, re-split only the ones that need it (in one text in nine).
        ascii_tokens = set(filter(str.isascii, raw))
        checked, resplit = self._checked, self._resplit
        new = ascii_tokens.difference(checked)
        if new:
            if len(checked) + len(new) > _TABLE_MAX:  # table full: judge each token
                return [p for t in raw for p in self._pieces(t)]
            for token in new:
                pieces = self._pieces(token)
                if len(pieces) > 1:
                    resplit[token] = pieces  # before ``checked``, for concurrent readers
                checked.add(token)
        hits = resplit.keys() & ascii_tokens  # iterates over the smaller of the two
        if not hits:
            return raw
        # Splice the few tokens to re-split (found with C-level list.index) into place.
        at = sorted(i for token in hits for i in _positions(raw, token))
        out: list[str] = []
        prev = 0
        for i in at:
            out += raw[prev:i]
            out += resplit[raw[i]]
            prev = i + 1
        out += raw[prev:]
        return out

    def cut(self, text: str) -> list[str]:
        """All tokens, including punctuation and stop words."""
        return self._cut(text) if text else []

    def tokens(self, text: str) -> list[str]:
        """Content tokens: no whitespace, punctuation-only tokens or stop words."""
        if not text:
            return []
        toks = self._cut(text)
        # Two C-level set passes instead of a predicate and a regex per token.
        if self._known.issuperset(toks) or self._learn(toks):
            return list(filterfalse(self._drop.__contains__, toks))
        return [t for t in toks if self._is_content(t)]  # table full: judge each token


_lock = threading.Lock()
_default_backend = "auto"


def set_default_backend(backend: str) -> None:
    """Choose the backend :func:`get_segmenter` builds (``auto``, ``rjieba`` or ``jieba``)."""
    global _default_backend
    with _lock:
        _default_backend = backend
        get_segmenter.cache_clear()


@lru_cache(maxsize=1)
def get_segmenter() -> Segmenter:
    """The process-wide segmenter, built on first use."""
    with _lock:
        return Segmenter(_default_backend)


def tokenize(text: str) -> list[str]:
    """Content tokens of already normalised ``text`` with the process-wide segmenter."""
    return get_segmenter().tokens(text)
