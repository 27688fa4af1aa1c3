"""Routing table (taxonomy, override rules, flag lexicons, deadlines) and the routing decision.

The table is data (``triage/data/routing.yaml`` by default, or a county's own file): this module
loads and validates it once, precompiles every regex, and decides where a petition goes.

``decide`` runs the override rules in their ``order``; the first rule that fires wins and sends
the petition to its route's department. When no rule fires the model's issue type decides.
Rules look at normalised text (``triage.normalize.normalize(title + "。" + text)``).

Validation errors name the file and line (``routing.yaml:42: ...``) because a county clerk edits
this file by hand and needs to find the mistake.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from triage.errors import ConfigError

if sys.version_info >= (3, 11):
    from re import _parser as _sre_parser  # type: ignore[attr-defined]  # for literal gates
else:  # pragma: no cover
    import sre_parse as _sre_parser

__all__ = [
    "DISPOSITIONS",
    "FLAG_IDS",
    "NO_ROUTE",
    "NUMERAL_CHARS",
    "PRIORITY_LEVELS",
    "CollectiveConfig",
    "CountRule",
    "CueSet",
    "DeadlineConfig",
    "FlagConfig",
    "Hint",
    "IssueType",
    "NearPair",
    "OverrideRule",
    "PriorityRule",
    "Route",
    "RouteDecision",
    "RoutingConfigError",
    "RoutingTable",
    "UnknownIssueTypeError",
    "decide",
    "first_chars",
    "literal_gate",
    "load_table",
    "parse_table",
]

DISPOSITIONS = ("受理", "转送", "告知")
FLAG_IDS = ("collective", "escalation", "extreme", "repeat")
PRIORITY_LEVELS = ("urgent", "high", "normal")
NO_ROUTE = "none"
_DEFAULT_RESOURCE = "routing.yaml"
#: Characters of the numerals that count people: Arabic digits and 零一二两…十百千万, 几/数.
NUMERAL_CHARS = "0-9零〇一二两三四五六七八九十百千万几数"

# Sentence and clause boundaries after normalisation (NFKC turns ，！？；： into ASCII).
_SENTENCE_END = "。!?;"
_CLAUSE_END = "。!?;,"
_SENTENCE_BREAK = re.compile(f"[{re.escape(_SENTENCE_END)}]")
# "{name}" in a pattern refers to a lexicon; no regex quantifier looks like this.
_LEXICON_REF = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


class RoutingConfigError(ConfigError):
    """The routing table is invalid; ``path`` and ``line`` locate the mistake."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = f"{path or 'routing table'}:{line}: " if line else f"{path or 'routing table'}: "
        super().__init__(where + message)


def _shorten(hit: str, width: int = 24) -> str:
    """Keep evidence readable: long pattern hits keep their two ends."""
    return hit if len(hit) <= width else f"{hit[: width // 2 - 1]}…{hit[-(width // 2) :]}"


class UnknownIssueTypeError(ConfigError):
    """A label is not an issue type of the routing table (model and table disagree)."""


# --------------------------------------------------------------------------------------------
# YAML loading with line numbers and duplicate-key detection
# --------------------------------------------------------------------------------------------


class _Map(dict):  # type: ignore[type-arg]
    """A YAML mapping that remembers where it and each of its keys start (1-based lines)."""

    line: int = 0
    lines: dict[Any, int]


class _Seq(list):  # type: ignore[type-arg]
    """A YAML sequence that remembers the line of each item."""

    line: int = 0
    lines: list[int]


class _Loader(yaml.SafeLoader):
    """SafeLoader that tracks lines and rejects duplicate keys (PyYAML silently keeps the last)."""

    source: str = "routing table"


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)  # resolves "<<" merge keys first
    result = _Map()
    result.line = node.start_mark.line + 1
    result.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise RoutingConfigError(
                "a mapping key must be a plain value", loader.source, line
            ) from None
        if key in result:
            raise RoutingConfigError(
                f"duplicate key {key!r} (first defined on line {result.lines[key]})",
                loader.source,
                line,
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = line
    return result


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    result = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)


def _parse_yaml(text: str, source: str) -> Any:
    loader = _Loader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise RoutingConfigError(f"YAML syntax error: {problem}", source, line) from None
    except yaml.YAMLError as exc:
        raise RoutingConfigError(f"YAML error: {exc}", source) from None
    finally:
        loader.dispose()


# --------------------------------------------------------------------------------------------
# Public data model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssueType:
    """An issue type (事项类别) and the department that handles it by default."""

    id: str
    name: str
    department: str
    disposition: str  # 受理 / 转送 / 告知
    meaning: str = ""


@dataclass(frozen=True)
class Route:
    """A routing outcome that overrides the issue type's department (``none``: no override)."""

    id: str
    name: str
    department: str
    disposition: str


@dataclass(frozen=True)
class RouteDecision:
    """Where a petition goes and why (``reason`` is Chinese, for the clerk)."""

    route: str  # none | agri | forestry | litigation | discipline (or a county's own route)
    department: str
    disposition: str  # 受理 | 转送 | 告知
    reason: str
    rule: str | None  # id of the override rule that fired; None when the model label decided
    evidence: tuple[str, ...]  # the words that made the rule fire


# --------------------------------------------------------------------------------------------
# Literal gates: most patterns cannot match most texts, and ``str.__contains__`` is much faster
# than a regex scan that tries every position. A gate is a few literal strings of which every
# match of the pattern contains at least one; when none is in the text the regex is skipped.
# --------------------------------------------------------------------------------------------

Gate = tuple[str, ...] | None
_GATE_MAX_WORDS = 12  # more alternatives than this cost more to test than the scan they save
_GATE_MIN_CHARS = 2  # a single common character ("们", "在") is in nearly every text


_PRODUCT_MAX = 64  # literal strings tracked while reading consecutive literal parts


def _literals(item: tuple[Any, Any]) -> set[str] | None:
    """The strings one parsed regex item can match when it is purely literal ("法院", "[砍打]",
    "(?:命|了)"); None otherwise."""
    op, av = item
    name = str(op)
    if name == "LITERAL":
        return {chr(av)}
    if name == "IN":
        if all(str(kind) == "LITERAL" for kind, _ in av):
            return {chr(code) for _, code in av}
        return None
    if name == "SUBPATTERN":
        return _sequence_literals(av[-1])
    if name == "BRANCH":
        union: set[str] = set()
        for alternative in av[1]:
            words = _sequence_literals(alternative)
            if words is None:
                return None
            union |= words
        return union
    return None


def _sequence_literals(items: Any) -> set[str] | None:
    words: set[str] = {""}
    for item in items:
        part = _literals(item)
        if part is None or len(words) * len(part) > _PRODUCT_MAX:
            return None
        words = {a + b for a in words for b in part}
    return words


def _required(items: Any) -> list[frozenset[str]]:
    """Literal sets of which each must be met (one of its strings) by any match of ``items``.

    ``items`` is a parsed regex (``re._parser``). Consecutive literal parts are multiplied out
    ("(?:砍|打)死" → 砍死, 打死). Unknown constructs add nothing, so the result is always safe,
    merely less selective.
    """
    found: list[frozenset[str]] = []
    windows: list[set[str]] = []  # what the literal parts read so far spell, from each start
    for item in items:
        part = _literals(item)
        if part is not None:
            windows = [
                {a + b for a in words for b in part}
                for words in windows
                if len(words) * len(part) <= _PRODUCT_MAX
            ] + [part]
            found += [frozenset(words) for words in windows]
            continue
        windows = []
        op, av = item
        name = str(op)
        if name == "SUBPATTERN":
            found += _required(av[-1])
        elif name == "BRANCH":
            union: set[str] = set()
            for alternative in av[1]:
                best = _best(_required(alternative))
                if best is None:
                    break
                union |= best
            else:
                found.append(frozenset(union))
        elif name in {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"} and av[0] >= 1:
            found += _required(av[2])
    return found


def _best(sets: list[frozenset[str]]) -> frozenset[str] | None:
    """The cheapest usable set: fewest strings (each is a scan of the text), then longest."""
    usable = [
        words
        for words in sets
        if len(words) <= _GATE_MAX_WORDS and min(map(len, words)) >= _GATE_MIN_CHARS
    ]
    if not usable:
        return None
    return max(usable, key=lambda words: (-len(words), min(map(len, words))))


def literal_gate(pattern: re.Pattern[str]) -> Gate:
    """Strings of which every match of ``pattern`` contains one; None when none are useful."""
    if pattern.flags & re.IGNORECASE:
        return None
    try:
        best = _best(_required(_sre_parser.parse(pattern.pattern, pattern.flags)))
    except Exception:  # a gate is an optimisation: never fail because of it
        return None
    if best is None:
        return None
    # A string that contains another is redundant: "仲裁委员会" contains "仲裁委".
    words = sorted(best, key=len)
    kept = [w for i, w in enumerate(words) if not any(v in w for v in words[:i])]
    return tuple(kept)


# Characters ``\s`` matches in a str pattern (those for which str.isspace() is true).
_SPACES = frozenset(
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
    + "".join(chr(code) for code in range(0x2000, 0x200B))
)


def _starts(items: Any) -> tuple[set[str], bool] | None:
    """The characters a match of parsed regex ``items`` can start with, and whether it can be
    empty; None when that is not known (a wildcard, a negated class…)."""
    chars: set[str] = set()
    for op, av in items:
        name = str(op)
        if name in {"AT", "ASSERT", "ASSERT_NOT"}:
            continue  # zero width
        if name == "LITERAL":
            return chars | {chr(av)}, False
        if name == "IN":
            for kind, value in av:
                if str(kind) == "LITERAL":
                    chars.add(chr(value))
                elif str(kind) == "CATEGORY" and str(value) == "CATEGORY_SPACE":
                    chars |= _SPACES
                else:
                    return None
            return chars, False
        if name == "SUBPATTERN":
            inner = _starts(av[-1])
        elif name == "BRANCH":
            inner = (set(), False)
            for alternative in av[1]:
                alt = _starts(alternative)
                if alt is None:
                    return None
                inner = (inner[0] | alt[0], inner[1] or alt[1])
        elif name in {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"}:
            inner = _starts(av[2])
            if inner is not None and av[0] == 0:
                inner = (inner[0], True)
        else:
            return None
        if inner is None:
            return None
        chars |= inner[0]
        if not inner[1]:
            return chars, False
    return chars, True


def first_chars(pattern: str) -> frozenset[str] | None:
    """Characters every non-empty match of ``pattern`` starts with (None: unknown or any)."""
    try:
        found = _starts(_sre_parser.parse(pattern))
    except Exception:  # an optimisation: never fail because of it
        return None
    if found is None or found[1]:
        return None  # unknown, or the pattern can match the empty string
    return frozenset(found[0])


def _open(gate: Gate, text: str) -> bool:
    if gate is None:
        return True
    for word in gate:  # noqa: SIM110 - a plain loop: any() over a generator costs more here
        if word in text:
            return True
    return False


@dataclass(frozen=True)
class NearPair:
    """Two word groups that must occur in one sentence at most ``within`` characters apart."""

    a: re.Pattern[str]
    b: re.Pattern[str]
    within: int
    gates: tuple[Gate, Gate] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "gates", (literal_gate(self.a), literal_gate(self.b)))


@dataclass(frozen=True)
class CueSet:
    """Compiled cue words/patterns with guards against negated or hypothetical mentions.

    A match is dropped when ``negation`` matches within ``window`` characters before it in the
    same clause ("我不想起诉"), or when ``exclude`` matches the sentence around it.
    ``near`` pairs fire when their two word groups occur in one sentence within N characters.
    ``head`` limits the search to the first N characters (the title and opening lines), ``tail``
    to the last N (a signature).
    """

    # The words as one alternation plus one regex per pattern: Python's re scans a single
    # literal alternation fast, but a big alternation mixing patterns loses its first-character
    # optimisation and becomes several times slower than the patterns run one by one.
    patterns: tuple[re.Pattern[str], ...] = ()
    near: tuple[NearPair, ...] = ()
    negation: re.Pattern[str] | None = None
    window: int = 8
    exclude: re.Pattern[str] | None = None
    head: int | None = None
    tail: int | None = None
    gates: tuple[Gate, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "gates", tuple(literal_gate(p) for p in self.patterns))

    def __bool__(self) -> bool:
        return bool(self.patterns) or bool(self.near)

    def find(self, text: str, limit: int = 8) -> list[str]:
        """Return the distinct surviving hits in order of appearance (at most ``limit``)."""
        text = self._part(text)
        spans: list[tuple[int, int, str]] = []
        for pattern, gate in zip(self.patterns, self.gates, strict=True):
            if gate is not None:
                for word in gate:  # plain loops: generators cost more than they save here
                    if word in text:
                        break
                else:
                    continue
            for m in pattern.finditer(text):
                spans.append((m.start(), -m.end(), m.group()))
        if not spans and not self.near:
            return []
        if len(spans) > 1:
            spans.sort()  # by position, longest first at a position
        found: list[str] = []
        last_end = -1
        for start, neg_end, hit in spans:
            if start < last_end and -neg_end <= last_end:
                continue  # inside a longer hit already kept (承包地 within 土地承包经营权…)
            if hit not in found and self._keep(text, start, -neg_end):
                found.append(_shorten(hit))
                last_end = -neg_end
                if len(found) >= limit:
                    return found
        for near in self.near:
            for hit in self._near_hits(text, near):
                if hit not in found:
                    found.append(hit)
                    if len(found) >= limit:
                        return found
        return found

    def first(self, text: str) -> str | None:
        """The first surviving hit found (patterns in order, then near pairs), or None: cheaper
        than :meth:`find` when only presence matters."""
        text = self._part(text)
        guarded = self.negation is not None or self.exclude is not None
        for pattern, gate in zip(self.patterns, self.gates, strict=True):
            if gate is not None:
                for word in gate:
                    if word in text:
                        break
                else:
                    continue
            if not guarded:
                match = pattern.search(text)
                if match is not None:
                    return _shorten(match.group())
                continue
            for match in pattern.finditer(text):
                if self._keep(text, match.start(), match.end()):
                    return _shorten(match.group())
        for near in self.near:
            for hit in self._near_hits(text, near):
                return hit
        return None

    def count(self, text: str, enough: int) -> tuple[int, str | None]:
        """How many hits survive (counting stops at ``enough``) and the first of them."""
        text = self._part(text)
        seen = 0
        first: str | None = None
        for pattern, gate in zip(self.patterns, self.gates, strict=True):
            if not _open(gate, text):
                continue
            for match in pattern.finditer(text):
                if self._keep(text, match.start(), match.end()):
                    seen += 1
                    first = first or match.group()
                    if seen >= enough:
                        return seen, first
        for near in self.near:
            for hit in self._near_hits(text, near):
                seen += 1
                first = first or hit
                if seen >= enough:
                    return seen, first
        return seen, first

    def _part(self, text: str) -> str:
        if self.head is not None:
            text = text[: self.head]
        if self.tail is not None:
            text = text[-self.tail :]
        return text

    def _near_hits(self, text: str, near: NearPair) -> list[str]:
        # Two linear scans and a pairing of the (few) hits: much faster than one regex with a
        # lazy gap between two long alternations, which backtracks on every candidate.
        if not (_open(near.gates[0], text) and _open(near.gates[1], text)):
            return []
        firsts = [m for m in near.a.finditer(text) if self._keep(text, m.start(), m.end())]
        if not firsts:
            return []
        seconds = [m for m in near.b.finditer(text) if self._keep(text, m.start(), m.end())]
        hits: list[str] = []
        for a in firsts:
            for b in seconds:
                left, right = (a, b) if a.start() <= b.start() else (b, a)
                gap = right.start() - left.end()
                if gap < 0 or gap > near.within:
                    continue
                if not _SENTENCE_BREAK.search(text, left.end(), right.start()):
                    hits.append(f"{left.group()}…{right.group()}")
        return hits

    def _keep(self, text: str, start: int, end: int) -> bool:
        if self.negation is not None:
            lo = max(0, start - self.window)
            before = text[lo:start]
            cut = max(before.rfind(ch) for ch in _CLAUSE_END)
            if cut >= 0:
                before = before[cut + 1 :]
            if before and self.negation.search(before):
                return False
        if self.exclude is not None:
            s_lo = max(text.rfind(ch, 0, start) for ch in _SENTENCE_END) + 1
            ends = [i for i in (text.find(ch, end) for ch in _SENTENCE_END) if i >= 0]
            # The sentence's own terminator is included so that "[?]" can exclude questions.
            s_hi = min(ends) + 1 if ends else len(text)
            if self.exclude.search(text, s_lo, s_hi):
                return False
        return True


@dataclass(frozen=True)
class OverrideRule:
    """A routing rule from the table: when it fires, ``route`` replaces the issue type's route."""

    id: str
    route: str
    order: int
    name: str
    cues: CueSet
    weak: CueSet = field(default_factory=CueSet)
    min_weak: int = 2
    require: CueSet = field(default_factory=CueSet)
    only_for: frozenset[str] = frozenset()
    not_for: frozenset[str] = frozenset()

    def match(self, text: str, label: str | None = None) -> tuple[str, ...]:
        """Return the evidence when the rule fires on ``text``, else an empty tuple."""
        if label is not None and (
            (self.only_for and label not in self.only_for) or label in self.not_for
        ):
            return ()
        hits = self.cues.find(text) if self.cues else []
        if not hits and self.weak:
            weak = self.weak.find(text)
            if len(weak) >= self.min_weak:
                hits = weak
        if not hits:
            return ()
        if self.require:
            extra = self.require.find(text, limit=2)
            if not extra:
                return ()
            hits += [word for word in extra if word not in hits]
        return tuple(hits[:5])


@dataclass(frozen=True)
class FlagConfig:
    """Lexicon-based flag (escalation, extreme): fires when any cue survives its guards."""

    id: str
    name: str
    cues: CueSet = field(default_factory=CueSet)


@dataclass(frozen=True)
class CountRule:
    """A number counts petitioners when ``after`` matches right after it (and ``before``, if
    set, right before it): "二十多户村民" → after ``多户村民``; "我们5人" → before ``我们``.

    ``points`` None: the count alone raises the flag ("我们5人"). A number: the count is only a
    hint worth that many points ("小区1000多户" may count bystanders, not writers).
    """

    after: re.Pattern[str]
    before: re.Pattern[str] | None = None
    points: int | None = None

    @property
    def alone(self) -> bool:
        """True when the count raises the flag on its own."""
        return self.points is None


@dataclass(frozen=True)
class Hint:
    """Scored evidence of the 集体访 detector: ``points`` (negative: evidence against) when
    ``cues`` survive at least ``times`` times ("我们" three times).

    ``per_hit``: every different hit scores (up to four), the behaviour of the older
    ``weak`` hints that a table may still use.
    """

    points: int
    cues: CueSet
    times: int = 1
    per_hit: bool = False

    def score(self, text: str) -> tuple[int, str | None]:
        """Points earned on ``text`` and the first surviving hit (None when none)."""
        if self.per_hit:
            hits = self.cues.find(text, limit=4)
            return self.points * len(hits), (hits[0] if hits else None)
        if self.times == 1:
            hit = self.cues.first(text)
            return (self.points, hit) if hit is not None else (0, None)
        seen, first = self.cues.count(text, self.times)
        return (self.points, first) if seen >= self.times else (0, None)

    ceiling: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The most this hint can add (a positive hint) or take away (a negative one).
        object.__setattr__(self, "ceiling", self.points * (4 if self.per_hit else 1))


@dataclass(frozen=True)
class CollectiveConfig:
    """Settings of the 集体访 detector (see ``triage.flags``).

    ``cues`` and counts without points raise the flag on their own; otherwise the points of the
    ``hints`` and of the counts with points are added and the flag is raised at ``min_points``.
    """

    name: str
    min_people: int
    cues: CueSet  # group words that mean "many petitioners" on their own (联名, 集体上访)
    counts: tuple[CountRule, ...]  # what must surround a number for it to count petitioners
    count_guard: re.Pattern[str] | None  # context that means the count is not of petitioners
    guard_window: int
    hints: tuple[Hint, ...] = ()  # for, then against; strongest first (see ``triage.flags``)
    min_points: int = 2
    # Runs of numerals followed by a character that some count rule accepts: one C-level scan
    # skips the years, dates and sums of money that make up most numbers in a letter.
    numbers: re.Pattern[str] = field(init=False, repr=False, compare=False)
    # The most all hints for and all hints against can add (for stopping early).
    gain: int = field(init=False, repr=False, compare=False)
    loss: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "gain", sum(h.ceiling for h in self.hints if h.points > 0))
        object.__setattr__(self, "loss", sum(h.ceiling for h in self.hints if h.points < 0))
        digits = f"[{NUMERAL_CHARS}]+"
        union = "|".join(f"(?:{rule.after.pattern})" for rule in self.counts)
        follow = first_chars(union) if union else None
        if follow and not any(re.fullmatch(f"[{NUMERAL_CHARS}]", char) for char in follow):
            # Greedy and followed by a non-numeral: only whole runs can match.
            chars = "".join(re.escape(char) for char in sorted(follow))
            digits += f"(?=[{chars}])"
        object.__setattr__(self, "numbers", re.compile(digits))


@dataclass(frozen=True)
class PriorityRule:
    """``level`` applies when any of ``any_of`` flags is present (rules checked in order)."""

    level: str
    any_of: frozenset[str]


@dataclass(frozen=True)
class DeadlineConfig:
    """Time limits of 《信访工作条例》 in calendar days."""

    acknowledge_days: int = 15
    resolve_days: int = 60
    extension_days: int = 30
    review_request_days: int = 30


@dataclass(frozen=True)
class RoutingTable:
    """The loaded, validated routing table."""

    issue_types: dict[str, IssueType]
    routes: dict[str, Route]
    overrides: tuple[OverrideRule, ...]  # sorted by ``order``
    flags: dict[str, FlagConfig]
    collective: CollectiveConfig
    priority_rules: tuple[PriorityRule, ...]
    default_priority: str
    deadlines: DeadlineConfig
    fallback_issue_type: str
    source: str = "routing.yaml"

    def issue_type(self, label: str | None) -> IssueType:
        """The issue type for ``label``; None or "" means the model abstained (fallback type)."""
        if not label:
            return self.issue_types[self.fallback_issue_type]
        try:
            return self.issue_types[label]
        except KeyError:
            raise UnknownIssueTypeError(
                f"label {label!r} is not an issue type of {self.source} "
                f"(known: {', '.join(self.issue_types)}); retrain the model or add the type"
            ) from None

    def check_labels(self, labels: Iterable[str]) -> None:
        """Raise :class:`UnknownIssueTypeError` if any model label is missing from the table."""
        missing = [label for label in labels if label not in self.issue_types]
        if missing:
            raise UnknownIssueTypeError(
                f"model labels not in routing table {self.source}: {', '.join(missing)}"
            )


# --------------------------------------------------------------------------------------------
# Decision
# --------------------------------------------------------------------------------------------


def decide(
    table: RoutingTable, text: str, label: str | None, confidence: float | None = None
) -> RouteDecision:
    """Route normalised ``text`` whose model label is ``label`` (None: the model abstained).

    Override rules run in ``order``; the first that fires decides. Otherwise the issue type's
    default department handles it. Raises :class:`UnknownIssueTypeError` for a label that the
    table does not know.
    """
    issue = table.issue_type(label)
    for rule in table.overrides:
        evidence = rule.match(text, issue.id)
        if evidence:
            route = table.routes[rule.route]
            words = "、".join(f"“{word}”" for word in evidence)
            return RouteDecision(
                route=route.id,
                department=route.department,
                disposition=route.disposition,
                reason=f"规则“{rule.id}”（{rule.name}）：命中{words}",
                rule=rule.id,
                evidence=evidence,
            )
    score = f"({confidence:.2f})" if confidence is not None else ""
    if not label:
        reason = f"模型无法确定事项类别{score}，按“{issue.name}”由{issue.department}人工分办"
    else:
        reason = f"模型判定为“{issue.name}”{score}"
    return RouteDecision(
        route=NO_ROUTE,
        department=issue.department,
        disposition=issue.disposition,
        reason=reason,
        rule=None,
        evidence=(),
    )


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------


def load_table(path: str | Path | None = None) -> RoutingTable:
    """Load and validate a routing table; ``None`` loads the packaged default (cached)."""
    if path is None:
        return _default_table()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RoutingConfigError("file not found", str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RoutingConfigError(f"cannot read the file: {exc}", str(path)) from None
    return parse_table(text, str(path))


@lru_cache(maxsize=1)
def _default_table() -> RoutingTable:
    text = resources.files("triage.data").joinpath(_DEFAULT_RESOURCE).read_text(encoding="utf-8")
    return parse_table(text, f"triage/data/{_DEFAULT_RESOURCE}")


def parse_table(text: str, source: str = "routing table") -> RoutingTable:
    """Parse and validate the YAML ``text`` of a routing table (``source`` names it in errors)."""
    data = _parse_yaml(text, source)
    return _Builder(source).build(data)


_TOP_KEYS = {
    "version",
    "lexicons",
    "fallback_issue_type",
    "issue_types",
    "routes",
    "overrides",
    "flags",
    "priority",
    "deadlines",
}
_ISSUE_KEYS = {"name", "meaning", "department", "disposition"}
_ROUTE_KEYS = {"name", "department", "disposition"}
_CUE_KEYS = {"words", "patterns", "near", "negation", "window", "exclude", "head", "tail"}
_RULE_KEYS = {
    "id",
    "name",
    "route",
    "order",
    "description",
    "cues",
    "weak",
    "min_weak",
    "require",
    "only_for",
    "not_for",
}


class _Builder:
    """Turns the parsed YAML into a :class:`RoutingTable`, raising line-numbered errors."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lexicons: dict[str, str] = {}  # name → regex alternation, for {name} in patterns

    # -- helpers ------------------------------------------------------------------------------

    def fail(self, message: str, line: int | None) -> RoutingConfigError:
        return RoutingConfigError(message, self.source, line or None)

    def mapping(self, value: Any, what: str, line: int | None) -> _Map:
        if not isinstance(value, _Map):
            raise self.fail(f"{what} must be a mapping (key: value lines)", line)
        return value

    def sequence(self, value: Any, what: str, line: int | None) -> _Seq:
        if not isinstance(value, _Seq):
            raise self.fail(f"{what} must be a list (lines starting with '- ')", line)
        return value

    def check_keys(self, node: _Map, allowed: set[str], what: str) -> None:
        for key in node:
            if key not in allowed:
                raise self.fail(
                    f"unknown field {key!r} in {what} (allowed: {', '.join(sorted(allowed))})",
                    node.lines.get(key, node.line),
                )

    def text(self, node: _Map, key: str, what: str, required: bool = True) -> str:
        value = node.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise self.fail(f"{what} has no {key}", node.lines.get(key, node.line))
            return ""
        if not isinstance(value, str):
            raise self.fail(f"{key} of {what} must be text", node.lines.get(key, node.line))
        return value.strip()

    def integer(self, node: _Map, key: str, what: str, default: int, minimum: int = 0) -> int:
        value = node.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(
                f"{key} of {what} must be a whole number >= {minimum}",
                node.lines.get(key, node.line),
            )
        return value

    def disposition(self, node: _Map, what: str) -> str:
        value = self.text(node, "disposition", what)
        if value not in DISPOSITIONS:
            raise self.fail(
                f"disposition of {what} must be one of {'/'.join(DISPOSITIONS)}, not {value!r}",
                node.lines.get("disposition", node.line),
            )
        return value

    def regex(self, pattern: Any, line: int, what: str) -> str:
        if not isinstance(pattern, str) or not pattern:
            raise self.fail(f"{what}: a pattern must be non-empty text", line)
        pattern = self.expand(pattern, line, what)
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            message = f"{what}: bad regular expression {pattern!r}: {exc.msg}"
            raise self.fail(message, line) from None
        if compiled.search(""):
            raise self.fail(f"{what}: pattern {pattern!r} matches empty text", line)
        return pattern

    def expand(self, pattern: str, line: int, what: str) -> str:
        """Replace ``{name}`` with the alternation of lexicon ``name`` (unknown names fail)."""

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.lexicons:
                known = ", ".join(self.lexicons) or "none defined"
                raise self.fail(f"{what}: unknown lexicon {{{name}}} (known: {known})", line)
            return self.lexicons[name]

        return _LEXICON_REF.sub(sub, pattern)

    def build_lexicons(self, root: _Map) -> None:
        if "lexicons" not in root:
            return
        node = self.mapping(root["lexicons"], "lexicons", root.lines["lexicons"])
        for name, value in node.items():
            line = node.lines[name]
            if not isinstance(name, str) or not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                raise self.fail(f"lexicon name {name!r}: use lower-case letters, digits, _", line)
            words = self.sequence(value, f"lexicon {name!r}", line)
            items = [str(word) for word in words if str(word)]
            if not items:
                raise self.fail(f"lexicon {name!r} is empty", line)
            escaped = sorted((re.escape(word) for word in items), key=len, reverse=True)
            self.lexicons[name] = "(?:" + "|".join(escaped) + ")"

    def cue_patterns(self, node: _Map, what: str) -> list[re.Pattern[str]]:
        """Compile ``words`` (literal, into one alternation) and ``patterns`` (one regex each)."""
        compiled: list[re.Pattern[str]] = []
        if "words" in node:
            words = self.sequence(node["words"], f"words of {what}", node.lines["words"])
            literal: list[str] = []
            for word, line in zip(words, words.lines, strict=True):
                if not isinstance(word, (str, int)) or str(word) == "":
                    raise self.fail(f"{what}: a word must be non-empty text", line)
                literal.append(re.escape(str(word)))
            if literal:
                # Longer words first so that evidence shows the fullest word (承包地流转 > 承包地).
                compiled.append(re.compile("|".join(sorted(literal, key=len, reverse=True))))
        if "patterns" in node:
            pats = self.sequence(node["patterns"], f"patterns of {what}", node.lines["patterns"])
            for pattern, line in zip(pats, pats.lines, strict=True):
                compiled.append(re.compile(self.regex(pattern, line, what)))
        return compiled

    def cue_set(self, value: Any, what: str, line: int) -> CueSet:
        node = self.mapping(value, what, line)
        self.check_keys(node, _CUE_KEYS, what)
        patterns = self.cue_patterns(node, what)
        near: list[NearPair] = []
        if "near" in node:
            pairs = self.sequence(node["near"], f"near of {what}", node.lines["near"])
            for pair, pline in zip(pairs, pairs.lines, strict=True):
                pair = self.mapping(pair, f"near item of {what}", pline)
                self.check_keys(pair, {"a", "b", "within"}, f"near item of {what}")
                a = self.near_side(pair, "a", what)
                b = self.near_side(pair, "b", what)
                within = self.integer(pair, "within", f"near item of {what}", 20, 1)
                near.append(NearPair(re.compile(a), re.compile(b), within))
        negation = exclude = None
        if "negation" in node:
            negation = self.joined(node, "negation", what)
        if "exclude" in node:
            exclude = self.joined(node, "exclude", what)
        head = node.get("head")
        if head is not None:
            head = self.integer(node, "head", what, 0, 1)
        tail = node.get("tail")
        if tail is not None:
            tail = self.integer(node, "tail", what, 0, 1)
        return CueSet(
            patterns=tuple(patterns),
            near=tuple(near),
            negation=re.compile(negation) if negation else None,
            window=self.integer(node, "window", what, 8, 1),
            exclude=re.compile(exclude) if exclude else None,
            head=head,
            tail=tail,
        )

    def near_side(self, pair: _Map, key: str, what: str) -> str:
        value = pair.get(key)
        line = pair.lines.get(key, pair.line)
        if isinstance(value, _Seq):
            parts = [re.escape(str(w)) for w in value if str(w)]
            if not parts:
                raise self.fail(f"near.{key} of {what} is empty", line)
            return "|".join(sorted(parts, key=len, reverse=True))
        return self.regex(value, line, f"near.{key} of {what}")

    def joined(self, node: _Map, key: str, what: str) -> str:
        """A guard given as a regex string or as a list of literal words."""
        value = node[key]
        line = node.lines[key]
        if isinstance(value, _Seq):
            words = [str(w) for w in value if str(w)]
            if not words:
                raise self.fail(f"{key} of {what} is empty", line)
            return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
        return self.regex(value, line, f"{key} of {what}")

    def issue_ids(
        self, node: _Map, key: str, what: str, known: Mapping[str, Any]
    ) -> frozenset[str]:
        if key not in node:
            return frozenset()
        ids = self.sequence(node[key], f"{key} of {what}", node.lines[key])
        for item, line in zip(ids, ids.lines, strict=True):
            if item not in known:
                raise self.fail(
                    f"unknown issue type {item!r} in {key} of {what} (known: {', '.join(known)})",
                    line,
                )
        return frozenset(ids)

    # -- sections -----------------------------------------------------------------------------

    def build(self, data: Any) -> RoutingTable:
        root = self.mapping(data, "the routing table", 1)
        self.check_keys(root, _TOP_KEYS, "the routing table")
        for key in ("issue_types", "routes", "overrides", "flags", "priority", "deadlines"):
            if key not in root:
                raise self.fail(f"missing section {key!r}", root.line)
        self.build_lexicons(root)
        issue_types = self.build_issue_types(root)
        fallback = root.get("fallback_issue_type", "other")
        if fallback not in issue_types:
            raise self.fail(
                f"unknown issue type {fallback!r} in fallback_issue_type",
                root.lines.get("fallback_issue_type", root.line),
            )
        routes = self.build_routes(root)
        overrides = self.build_overrides(root, routes, issue_types)
        flags, collective = self.build_flags(root)
        priority_rules, default_priority = self.build_priority(root, flags)
        return RoutingTable(
            issue_types=issue_types,
            routes=routes,
            overrides=overrides,
            flags=flags,
            collective=collective,
            priority_rules=priority_rules,
            default_priority=default_priority,
            deadlines=self.build_deadlines(root),
            fallback_issue_type=fallback,
            source=self.source,
        )

    def build_issue_types(self, root: _Map) -> dict[str, IssueType]:
        node = self.mapping(root["issue_types"], "issue_types", root.lines["issue_types"])
        if not node:
            raise self.fail("issue_types is empty", node.line)
        result: dict[str, IssueType] = {}
        for type_id, value in node.items():
            what = f"issue type {type_id!r}"
            if not isinstance(type_id, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", type_id):
                raise self.fail(
                    f"issue type id {type_id!r} must be lower-case letters, digits and _",
                    node.lines[type_id],
                )
            item = self.mapping(value, what, node.lines[type_id])
            self.check_keys(item, _ISSUE_KEYS, what)
            result[type_id] = IssueType(
                id=type_id,
                name=self.text(item, "name", what),
                department=self.text(item, "department", what),
                disposition=self.disposition(item, what),
                meaning=self.text(item, "meaning", what, required=False),
            )
        return result

    def build_routes(self, root: _Map) -> dict[str, Route]:
        node = self.mapping(root["routes"], "routes", root.lines["routes"])
        if NO_ROUTE not in node:
            raise self.fail(f"routes must define {NO_ROUTE!r} (no override)", node.line)
        result: dict[str, Route] = {}
        for route_id, value in node.items():
            what = f"route {route_id!r}"
            item = self.mapping(value, what, node.lines[route_id])
            self.check_keys(item, _ROUTE_KEYS, what)
            if route_id == NO_ROUTE:
                # "none" keeps the issue type's department, so it needs none of its own.
                result[route_id] = Route(route_id, self.text(item, "name", what), "", "")
                continue
            result[route_id] = Route(
                id=route_id,
                name=self.text(item, "name", what),
                department=self.text(item, "department", what),
                disposition=self.disposition(item, what),
            )
        return result

    def build_overrides(
        self, root: _Map, routes: dict[str, Route], issue_types: dict[str, IssueType]
    ) -> tuple[OverrideRule, ...]:
        items = self.sequence(root["overrides"], "overrides", root.lines["overrides"])
        rules: list[OverrideRule] = []
        seen: dict[str, int] = {}
        orders: dict[int, str] = {}
        for value, line in zip(items, items.lines, strict=True):
            node = self.mapping(value, "an override rule", line)
            rule_id = self.text(node, "id", "an override rule")
            what = f"override rule {rule_id!r}"
            if rule_id in seen:
                raise self.fail(
                    f"duplicate override rule id {rule_id!r} (first on line {seen[rule_id]})",
                    node.lines["id"],
                )
            seen[rule_id] = node.lines["id"]
            self.check_keys(node, _RULE_KEYS, what)
            route = self.text(node, "route", what)
            if route not in routes or route == NO_ROUTE:
                known = ", ".join(r for r in routes if r != NO_ROUTE)
                raise self.fail(
                    f"unknown route {route!r} in {what} (known: {known})", node.lines["route"]
                )
            if "order" not in node:
                raise self.fail(f"{what} has no order (rules run by ascending order)", node.line)
            order = self.integer(node, "order", what, 0)
            if order in orders:
                raise self.fail(
                    f"{what} has the same order {order} as rule {orders[order]!r}; "
                    "precedence must be unambiguous",
                    node.lines["order"],
                )
            orders[order] = rule_id
            if "cues" not in node and "weak" not in node:
                raise self.fail(f"{what} has neither cues nor weak cues", node.line)
            cues, weak, require = (
                self.cue_set(node[key], f"{key} of {what}", node.lines[key])
                if key in node
                else CueSet()
                for key in ("cues", "weak", "require")
            )
            rules.append(
                OverrideRule(
                    id=rule_id,
                    route=route,
                    order=order,
                    name=self.text(node, "name", what, required=False) or routes[route].name,
                    cues=cues,
                    weak=weak,
                    min_weak=self.integer(node, "min_weak", what, 2, 1),
                    require=require,
                    only_for=self.issue_ids(node, "only_for", what, issue_types),
                    not_for=self.issue_ids(node, "not_for", what, issue_types),
                )
            )
        rules.sort(key=lambda rule: rule.order)
        return tuple(rules)

    def build_flags(self, root: _Map) -> tuple[dict[str, FlagConfig], CollectiveConfig]:
        node = self.mapping(root["flags"], "flags", root.lines["flags"])
        for flag_id in node:
            if flag_id not in FLAG_IDS:
                raise self.fail(
                    f"unknown flag {flag_id!r} (known: {', '.join(FLAG_IDS)})", node.lines[flag_id]
                )
        for flag_id in FLAG_IDS:
            if flag_id not in node:
                raise self.fail(f"flags must define {flag_id!r}", node.line)
        flags: dict[str, FlagConfig] = {}
        collective: CollectiveConfig | None = None
        for flag_id, value in node.items():
            what = f"flag {flag_id!r}"
            item = self.mapping(value, what, node.lines[flag_id])
            name = self.text(item, "name", what)
            if flag_id == "collective":
                collective = self.build_collective(item, name, what)
                flags[flag_id] = FlagConfig(flag_id, name, collective.cues)
            elif flag_id == "repeat":
                self.check_keys(item, {"name"}, what)  # repeat comes from the repeat index
                flags[flag_id] = FlagConfig(flag_id, name)
            else:
                self.check_keys(item, {"name", "cues"}, what)
                if "cues" not in item:
                    raise self.fail(f"{what} has no cues", item.line)
                cues = self.cue_set(item["cues"], f"cues of {what}", item.lines["cues"])
                flags[flag_id] = FlagConfig(flag_id, name, cues)
        assert collective is not None
        return flags, collective

    def build_collective(self, item: _Map, name: str, what: str) -> CollectiveConfig:
        allowed = {
            "name", "min_people", "cues", "count", "count_guard", "guard_window", "hints",
            "min_points",
            # The first version of the table: weak hints worth a point each, min_weak of them,
            # and small_group cancelling them. Still read, as the same hints.
            "weak", "min_weak", "small_group",
        }  # fmt: skip
        self.check_keys(item, allowed, what)
        for key in ("cues", "count"):
            if key not in item:
                raise self.fail(f"{what} has no {key}", item.line)
        if "min_points" in item and "min_weak" in item:
            raise self.fail(
                f"{what}: min_weak is the old name of min_points; keep only min_points",
                item.lines["min_weak"],
            )
        counts = self.sequence(item["count"], f"count of {what}", item.lines["count"])
        compiled = [
            self.count_rule(value, line, what)
            for value, line in zip(counts, counts.lines, strict=True)
        ]
        hints: list[Hint] = []
        if "hints" in item:
            seq = self.sequence(item["hints"], f"hints of {what}", item.lines["hints"])
            hints += [
                self.hint(value, line, what) for value, line in zip(seq, seq.lines, strict=True)
            ]
        if "weak" in item:
            weak = self.cue_set(item["weak"], f"weak of {what}", item.lines["weak"])
            hints.append(Hint(points=1, cues=weak, per_hit=True))
        small = item.get("small_group")
        if small:
            pattern = re.compile(self.regex(small, item.lines["small_group"], what))
            # Fewer than five people: cancels every hint, as it always did.
            hints.append(Hint(points=-1000, cues=CueSet(patterns=(pattern,))))
        # Evidence for before evidence against, strongest first: detection stops as soon as the
        # outcome is certain (``triage.flags``).
        hints.sort(key=lambda hint: (hint.points < 0, -abs(hint.ceiling)))
        guard = item.get("count_guard")
        min_key = "min_weak" if "min_weak" in item else "min_points"
        return CollectiveConfig(
            name=name,
            min_people=self.integer(item, "min_people", what, 5, 2),
            cues=self.cue_set(item["cues"], f"cues of {what}", item.lines["cues"]),
            counts=tuple(compiled),
            count_guard=re.compile(self.regex(guard, item.lines["count_guard"], what))
            if guard
            else None,
            guard_window=self.integer(item, "guard_window", what, 6, 0),
            hints=tuple(hints),
            min_points=self.integer(item, min_key, what, 2, 1),
        )

    def count_rule(self, value: Any, line: int, what: str) -> CountRule:
        rule = self.mapping(value, f"a count rule of {what}", line)
        self.check_keys(rule, {"before", "after", "alone", "points"}, f"a count rule of {what}")
        if "after" not in rule:
            raise self.fail(f"a count rule of {what} needs 'after' (what follows the number)", line)
        points: int | None = None
        if "points" in rule:
            if "alone" in rule:
                raise self.fail(
                    "a count rule has either points (a hint) or alone, not both",
                    rule.lines["alone"],
                )
            points = self.points(rule, f"a count rule of {what}", line)
        elif "alone" in rule:
            alone = rule["alone"]
            if not isinstance(alone, bool):
                raise self.fail("alone must be true or false", rule.lines["alone"])
            points = None if alone else 1  # the old weak count: one point
        after = self.regex(rule["after"], rule.lines["after"], f"count of {what}")
        before = None
        if "before" in rule:
            before = self.regex(rule["before"], rule.lines["before"], f"count of {what}")
        return CountRule(
            after=re.compile(after),
            # \Z: "before" must end exactly where the number starts.
            before=re.compile(f"(?:{before})\\Z") if before else None,
            points=points,
        )

    def points(self, node: _Map, what: str, line: int) -> int:
        value = node.get("points")
        if isinstance(value, bool) or not isinstance(value, int) or value == 0:
            raise self.fail(
                f"points of {what} must be a whole number other than 0 (negative: evidence "
                "against)",
                node.lines.get("points", line),
            )
        return value

    def hint(self, value: Any, line: int, what: str) -> Hint:
        node = self.mapping(value, f"a hint of {what}", line)
        where = f"a hint of {what}"
        self.check_keys(node, _CUE_KEYS | {"points", "times"}, where)
        if "points" not in node:
            raise self.fail(f"{where} has no points", line)
        cue_keys = {key: node[key] for key in node if key in _CUE_KEYS}
        if not cue_keys.get("words") and not cue_keys.get("patterns") and not cue_keys.get("near"):
            raise self.fail(f"{where} has no words, patterns or near", line)
        cues = _Map(cue_keys)
        cues.line = node.line
        cues.lines = {key: node.lines[key] for key in cue_keys}
        return Hint(
            points=self.points(node, where, line),
            cues=self.cue_set(cues, where, line),
            times=self.integer(node, "times", where, 1, 1),
        )

    def build_priority(
        self, root: _Map, flags: dict[str, FlagConfig]
    ) -> tuple[tuple[PriorityRule, ...], str]:
        node = self.mapping(root["priority"], "priority", root.lines["priority"])
        self.check_keys(node, {"rules", "default"}, "priority")
        default = self.text(node, "default", "priority")
        if default not in PRIORITY_LEVELS:
            raise self.fail(
                f"priority default must be one of {', '.join(PRIORITY_LEVELS)}",
                node.lines["default"],
            )
        line = node.lines.get("rules", node.line)
        items = self.sequence(node.get("rules"), "priority rules", line)
        rules: list[PriorityRule] = []
        for value, line in zip(items, items.lines, strict=True):
            rule = self.mapping(value, "a priority rule", line)
            self.check_keys(rule, {"level", "any_of"}, "a priority rule")
            level = self.text(rule, "level", "a priority rule")
            if level not in PRIORITY_LEVELS:
                raise self.fail(
                    f"priority level {level!r} must be one of {', '.join(PRIORITY_LEVELS)}",
                    rule.lines["level"],
                )
            ids = self.sequence(rule.get("any_of"), "any_of", rule.lines.get("any_of", line))
            for flag_id, fline in zip(ids, ids.lines, strict=True):
                if flag_id not in flags:
                    raise self.fail(f"unknown flag {flag_id!r} in priority rule", fline)
            rules.append(PriorityRule(level, frozenset(ids)))
        return tuple(rules), default

    def build_deadlines(self, root: _Map) -> DeadlineConfig:
        node = self.mapping(root["deadlines"], "deadlines", root.lines["deadlines"])
        keys = ("acknowledge_days", "resolve_days", "extension_days", "review_request_days")
        self.check_keys(node, set(keys), "deadlines")
        defaults = DeadlineConfig()
        values = {key: self.integer(node, key, "deadlines", getattr(defaults, key)) for key in keys}
        return DeadlineConfig(**values)
