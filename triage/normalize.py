"""Normalise messy petition text before segmentation.

A pure function: same input, same output, no state. Order matters: decode escapes first so the
later steps see real characters, strip pinyin glosses before converting to simplified so the
gloss regex sees the characters the writer typed.
"""

from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache

import numpy as np

__all__ = ["normalize", "to_simplified"]

# Excel writes control characters as _xHHHH_ (``_x000D_`` for a carriage return).
_EXCEL_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
# Only real tags: a letter right after '<' so that "<5人" or "a<b" survive.
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")
_HTML_BREAK = re.compile(r"<(?:br|p|div|li|tr)\b[^<>]*>", re.IGNORECASE)
# Paywall / web boilerplate: "……(新文秘网https://www.wm114.cn省略814字，正式会员可完整阅读)……"
_BOILERPLATE = re.compile(
    r"[…\.。]*[(（][^()（）]{0,80}?(?:省略\d*字|正式会员|完整阅读|阅读全文|点击查看)[^()（）]{0,40}[)）][…\.。]*"
)
_BOILERPLATE_LINES = re.compile(
    r"(?:展开全文|收起全文|点击展开|查看原文|返回顶部|\[打印本页\]|\[关闭窗口\])"
)
_TONE = "āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜńňǹḿ"
# A pinyin gloss right after a CJK character: 設(shè), 訪(fǎng), 访(fang3). We require a tone
# mark or a tone digit so that ordinary bracketed Latin text ("微信(WeChat)") is kept.
_PINYIN_GLOSS = re.compile(
    rf"(?<=[\u3400-\u9fff])\((?=[a-zü{_TONE}]*[{_TONE}1-5])[a-zü{_TONE}]{{1,7}}[1-5]?\)"
)
_WHITESPACE = re.compile(r"\s+")


@lru_cache(maxsize=1)
def _converter():  # type: ignore[no-untyped-def]
    import opencc  # imported lazily: the C++ dictionaries take a moment to load

    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Convert traditional Chinese characters to simplified (OpenCC ``t2s``)."""
    return _converter().convert(text) if text else text


def _nfkc(text: str) -> str:
    """``unicodedata.normalize("NFKC", text)``, four times faster on petitions.

    Petitions are NFKC already except for full-width ASCII (，：（）) and U+3000, whose NFKC
    form is exactly the ASCII character and a space: fold those with NumPy, and run the
    real NFKC only if something else still needs it (the result is the same either way).
    """
    if unicodedata.is_normalized("NFKC", text):
        return text
    # surrogatepass: a lone surrogate (broken input) survives the round trip, as in NFKC.
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).copy()
    cps[(cps >= 0xFF01) & (cps <= 0xFF5E)] -= 0xFEE0
    cps[cps == 0x3000] = 0x20
    text = cps.tobytes().decode("utf-32-le", "surrogatepass")
    if unicodedata.is_normalized("NFKC", text):
        return text
    return unicodedata.normalize("NFKC", text)


def _decode_excel(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return " " if unicodedata.category(char).startswith("C") else char


def normalize(text: str | None) -> str:
    """Return petition ``text`` cleaned for classification.

    Decodes Excel ``_xHHHH_`` escapes and HTML entities, removes HTML tags, web boilerplate
    and pinyin glosses, applies NFKC (full-width → half-width), converts traditional to
    simplified Chinese and collapses whitespace. Digits and punctuation are kept because
    they carry meaning (dates, 5人, 12336).
    """
    if not text:
        return ""
    if "_x" in text:
        text = _EXCEL_ESCAPE.sub(_decode_excel, text)
    if "&" in text:
        text = html.unescape(text)
    if "<" in text:
        text = _HTML_BREAK.sub(" ", text)
        text = _HTML_TAG.sub("", text)
    text = _nfkc(text)
    if "(" in text:
        text = _BOILERPLATE.sub("", text)
        text = _PINYIN_GLOSS.sub("", text)
    text = _BOILERPLATE_LINES.sub("", text)
    text = to_simplified(text)
    return _WHITESPACE.sub(" ", text).strip()
