"""Risk flags (集体访, 越级/进京赴省, 过激言行) and the priority derived from them.

The lexicons and thresholds live in the routing table (``flags:`` and ``priority:``); this module
only applies them. ``repeat`` is not detected here: the pipeline adds it from the repeat index.
Input is normalised text (``triage.normalize.normalize(title + "。" + text)``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from triage.routing import CollectiveConfig, RoutingTable

__all__ = ["Flag", "count_people", "detect_flags", "parse_number", "priority"]

_DIGITS = {
    "零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4,
    "五": 5, "六": 6, "七": 7, "八": 8, "九": 9,
    # 几/数 ("几十户", "数十名") are vague; 2 is the smallest reading, so a count built on them
    # is a lower bound and never overstates the group.
    "几": 2, "数": 2,
}  # fmt: skip
_UNITS = {"十": 10, "百": 100, "千": 1000}
_SINGLE = {**_DIGITS, **{str(d): d for d in range(10)}, **_UNITS, "万": 10_000}
_CLAUSE_END = "。!?;,"
# A run of Arabic or Chinese numerals; 上/近/约 ("上百名") need no reading: 百 is the number.
_NUMERAL = re.compile("[0-9零〇一二两三四五六七八九十百千万几数]+")


@dataclass(frozen=True)
class Flag:
    """A raised flag with the words that raised it."""

    id: str  # collective | escalation | extreme | repeat
    name: str
    evidence: tuple[str, ...]


def parse_number(token: str) -> int | None:
    """Read an Arabic or Chinese numeral: "30" → 30, "二十" → 20, "上百" → 100, "数十" → 20.

    Prefixes 上/近/约 are dropped ("上百" means about a hundred). Runs of digits such as "三四十"
    ("thirty or forty") keep the first, smaller digit. Returns None when nothing is numeric.
    """
    token = token.lstrip("上近约")
    if not token:
        return None
    if token.isdigit():
        return int(token)
    total = section = 0
    digit: int | None = None
    seen = False
    for char in token:
        if char in _DIGITS:
            if not digit:  # keep the first digit of "三四十"; "一百零五" replaces the 零
                digit = _DIGITS[char]
            seen = True
        elif char in _UNITS:
            section += (1 if digit is None else digit) * _UNITS[char]
            digit = None
            seen = True
        elif char == "万":
            total += (section + (digit or 0) or 1) * 10_000
            section, digit = 0, None
            seen = True
        elif char.isdigit():
            return None  # mixed "3十" is not a number we understand
    if not seen:
        return None
    return total + section + (digit or 0)


def count_people(
    text: str, config: CollectiveConfig, minimum: int = 0
) -> list[tuple[int, str, bool]]:
    """Counts of petitioners in ``text`` as ``(number, words, alone)``.

    "二十多户村民" → ``(20, "二十多户村民", rule.alone)``. Counts below ``minimum`` are skipped
    early (most numerals are the 一 of 一直, 一些…).
    """
    counts: list[tuple[int, str, bool]] = []
    # One scan for numerals, then anchored checks of what surrounds each: much faster than a
    # regex per rule that tries a numeral at every position.
    for number in _NUMERAL.finditer(text):
        token = number.group()
        if len(token) == 1 and _SINGLE.get(token, 10) < minimum:
            continue  # the 一 of 一直, 一些… cannot reach the minimum
        start, end = number.span()
        for rule in config.counts:
            after = rule.after.match(text, end)
            if after is None:
                continue
            if rule.before is not None and not rule.before.search(text, max(0, start - 8), start):
                continue
            value = parse_number(token)
            if value is None or value < minimum or _guarded(text, start, config):
                break
            prefix = text[start - 1] if start and text[start - 1] in "上近约" else ""
            counts.append((value, prefix + token + after.group().strip(), rule.alone))
            break
    return counts


def _guarded(text: str, start: int, config: CollectiveConfig) -> bool:
    """True when the clause right before a number says it is not a count of petitioners."""
    if config.count_guard is None:
        return False
    before = text[max(0, start - config.guard_window) : start]
    cut = max(before.rfind(ch) for ch in _CLAUSE_END)
    if cut >= 0:
        before = before[cut + 1 :]
    guard = config.count_guard
    return bool(before) and guard is not None and guard.search(before) is not None


def _collective(text: str, config: CollectiveConfig) -> tuple[str, ...]:
    evidence = config.cues.find(text, limit=4)
    counts = count_people(text, config, config.min_people)
    evidence += [words for _, words, alone in counts if alone and words not in evidence]
    if not evidence:
        # Weak hints: counts that may be bystanders ("小区1000多户") and group-ish wording; a
        # small group ("我们两个老人", "我和我老婆") cancels them.
        weak = [words for _, words, alone in counts if not alone][:1]
        if config.weak:
            weak += config.weak.find(text, limit=4)
        small = config.small_group is not None and config.small_group.search(text)
        if len(weak) >= config.min_weak and not small:
            evidence = weak
    return tuple(evidence[:4])


def detect_flags(text: str, table: RoutingTable) -> list[Flag]:
    """Flags raised by normalised ``text``: collective, escalation, extreme (in that order)."""
    flags: list[Flag] = []
    evidence = _collective(text, table.collective)
    if evidence:
        flags.append(Flag("collective", table.collective.name, evidence))
    for flag_id in ("escalation", "extreme"):
        config = table.flags[flag_id]
        hits = config.cues.find(text, limit=4)
        if hits:
            flags.append(Flag(flag_id, config.name, tuple(hits)))
    return flags


def priority(flag_ids: Iterable[str | Flag], table: RoutingTable) -> str:
    """``urgent`` / ``high`` / ``normal`` from the table's priority rules (first match wins)."""
    ids = {item.id if isinstance(item, Flag) else item for item in flag_ids}
    for rule in table.priority_rules:
        if ids & rule.any_of:
            return rule.level
    return table.default_priority
