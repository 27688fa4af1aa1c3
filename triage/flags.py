"""Risk flags (集体访, 越级/进京赴省, 过激言行) and the priority derived from them.

The lexicons and thresholds live in the routing table (``flags:`` and ``priority:``); this module
only applies them. ``repeat`` is not detected here: the pipeline adds it from the repeat index.
Input is normalised text (``triage.normalize.normalize(title + "。" + text)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from triage.routing import CollectiveConfig, RoutingTable

__all__ = ["Flag", "PeopleCount", "count_people", "detect_flags", "parse_number", "priority"]

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


class PeopleCount(NamedTuple):
    """A number of people read from the text: "二十多户村民" → ``(20, "二十多户村民", 2)``."""

    number: int
    words: str
    points: int | None  # None: raises 集体访 on its own; else the points of a hint


def count_people(text: str, config: CollectiveConfig, minimum: int = 0) -> list[PeopleCount]:
    """Counts of petitioners in ``text`` (``PeopleCount(number, words, points)``).

    The first count rule whose context matches a number decides its points. Counts below
    ``minimum`` are skipped early (most numerals are the 一 of 一直, 一些…).
    """
    counts: list[PeopleCount] = []
    # One scan for numerals that a rule may accept (not 2019年, 5万元), then anchored checks of
    # what surrounds each: much faster than a regex per rule that tries every position.
    for number in config.numbers.finditer(text):
        token = number.group()
        if len(token) == 1 and _SINGLE.get(token, 10) < minimum:
            continue  # the 一 of 一个人, 三户… cannot reach the minimum
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
            counts.append(PeopleCount(value, prefix + token + after.group().strip(), rule.points))
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
    evidence += [c.words for c in counts if c.points is None and c.words not in evidence]
    if evidence:
        return tuple(evidence[:4])
    # No decisive evidence: add up the points of the hints. A count that may be of bystanders
    # ("小区1000多户") scores once, with its rule's points.
    total = 0
    found: list[tuple[int, str]] = []
    scored = [(c.points, c.words) for c in counts if c.points is not None]
    if scored:
        total, words = max(scored, key=lambda item: item[0])
        if total > 0:
            found.append((total, words))
    # Evidence for first, strongest first, stopping as soon as the flag is certain (even if every
    # hint against were to match) or out of reach; evidence against is only looked at when the
    # flag would otherwise be raised.
    gain, loss = config.gain, config.loss
    for hint in config.hints:
        if hint.points > 0:
            if total + loss >= config.min_points or total + gain < config.min_points:
                continue
            gain -= hint.ceiling
        else:
            if total < config.min_points or total + loss >= config.min_points:
                break
            loss -= hint.ceiling
        points, hit = hint.score(text)
        total += points
        if points > 0 and hit is not None:
            found.append((points, hit))
    if total < config.min_points:
        return ()
    found.sort(key=lambda item: -item[0])
    return tuple(dict.fromkeys(hit for _, hit in found))[:4]


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
