"""Masking of personal numbers (身份证号, phone numbers, bank cards) for storage and logs."""

from __future__ import annotations

import re

__all__ = ["mask_personal_data"]

# 18-digit resident ID (last char may be X), not part of a longer digit run.
_ID_CARD = re.compile(r"(?<!\d)(\d{6})(\d{8})(\d{3}[\dXx])(?!\d)")
# Mainland mobile numbers, optionally +86 / 86 prefixed, optionally split by spaces or dashes.
_MOBILE = re.compile(r"(?<!\d)((?:\+?86[- ]?)?1[3-9]\d)[- ]?(\d{4})[- ]?(\d{4})(?!\d)")
# Landlines like 0731-88889999 or 010-12345678.
_LANDLINE = re.compile(r"(?<!\d)(0\d{2,3})-(\d{7,8})(?!\d)")
# Bank cards: 16-19 digits, possibly in groups of four.
_BANK_CARD = re.compile(r"(?<!\d)\d{4}(?:[ -]?\d{4}){2}[ -]?\d{4,7}(?!\d)")
# Every pattern above contains seven digits with at most one space or dash among them.
_CANDIDATE = re.compile(r"\d{3}[- ]?\d{4}")


def mask_personal_data(text: str) -> str:
    """Return ``text`` with ID-card, phone and bank-card numbers masked, keeping a few digits.

    >>> mask_personal_data("电话13912345678，身份证430102199001011234")
    '电话139****5678，身份证430102********1234'
    """
    if not text or not _CANDIDATE.search(text):  # one C-speed scan spares the four below
        return text
    # Order matters: mask the shorter, more specific patterns first so that a phone number
    # followed by a date can never be read as one bank-card number.
    text = _ID_CARD.sub(lambda m: m.group(1) + "*" * 8 + m.group(3)[-4:], text)
    text = _LANDLINE.sub(lambda m: m.group(1) + "-****" + m.group(2)[-2:], text)
    text = _MOBILE.sub(lambda m: m.group(1) + "****" + m.group(3), text)
    return _BANK_CARD.sub(_mask_card, text)


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return digits[:4] + "*" * (len(digits) - 8) + digits[-4:]
