"""Chinese word segmentation with a domain user dictionary and stop words.

One explicitly owned :class:`Segmenter` per process (``get_segmenter()``), initialised once.
Model artefacts reference the module-level :func:`tokenize`, never a bound jieba method,
because jieba's bound methods cannot be pickled and skops must name what it loads.

Two backends produce the same tokens from the same dictionaries:

* ``jieba``: the pure-Python reference implementation;
* ``rjieba``: the Rust port (jieba-rs), much faster; the default when installed.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from collections.abc import Callable, Iterable
from functools import lru_cache
from importlib import resources
from pathlib import Path

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
            raise ConfigError(f"unknown segmentation backend {backend!r}; expected one of {BACKENDS}")
        self.backend = backend
        self.stopwords = load_stopwords(stopwords)
        self._cut = self._build(backend, load_userdict(userdict))

    @staticmethod
    def _build(
        backend: str, entries: Iterable[tuple[str, int, str]]
    ) -> Callable[[str], list[str]]:
        if backend == "rjieba":
            import rjieba

            tok = rjieba.Jieba()
            for word, freq, tag in entries:
                tok.add_word(word, freq, tag)
            return lambda text: tok.cut(text, True)
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)
        tok = jieba.Tokenizer()
        tok.initialize()
        for word, freq, tag in entries:
            tok.add_word(word, freq, tag)
        return lambda text: tok.lcut(text, HMM=True)

    def cut(self, text: str) -> list[str]:
        """All tokens, including punctuation and stop words."""
        return self._cut(text) if text else []

    def tokens(self, text: str) -> list[str]:
        """Content tokens: no whitespace, punctuation-only tokens or stop words."""
        stop = self.stopwords
        return [
            t for t in self._cut(text) if t not in stop and not t.isspace() and not _NOISE.match(t)
        ] if text else []


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
