"""The whole triage of a petition: model → routing → flags → deadlines → similar cases.

:class:`Triage` holds the loaded model, the routing table and (optionally) the repeat index,
and is what the CLI, the bulk runner and the API call. It is safe to share between threads:
classification reads only immutable state.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from triage.deadlines import Deadlines, compute_deadlines
from triage.errors import InputError, TextTooLongError, TriageError
from triage.features import prepare_text
from triage.flags import Flag, detect_flags, priority
from triage.registry import LoadedModel, load_model
from triage.repeat import RepeatIndex, canonical
from triage.routing import RoutingTable, decide, load_table

if TYPE_CHECKING:
    from triage.store import CaseRecord

__all__ = [
    "Candidate",
    "PetitionInput",
    "SimilarCase",
    "Triage",
    "TriageResult",
    "check_text",
    "index_cases",
    "index_text",
    "repeat_form",
    "repeat_form_key",
    "repeat_index_from_store",
]

_CJK = re.compile(r"[\u3400-\u9fff]")


@dataclass(frozen=True)
class PetitionInput:
    """One petition to classify."""

    text: str
    title: str = ""
    received_at: date | None = None
    channel: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class Candidate:
    """An issue type the model considers, with its calibrated probability."""

    label: str
    name: str
    probability: float


@dataclass(frozen=True)
class SimilarCase:
    """An earlier case that looks like the same matter."""

    case_id: str
    similarity: float


@dataclass(frozen=True)
class TriageResult:
    """Everything triage says about one petition (see ``docs/architecture.md``)."""

    label: str
    label_name: str
    confidence: float
    candidates: tuple[Candidate, ...]
    needs_review: bool
    department: str
    route: str
    disposition: str
    reason: str
    flags: tuple[Flag, ...]
    priority: str
    deadlines: Deadlines
    similar_cases: tuple[SimilarCase, ...] = field(default_factory=tuple)
    model_version: str = ""

    @property
    def flag_ids(self) -> list[str]:
        """Ids of the raised flags, in order."""
        return [f.id for f in self.flags]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (dates as ISO strings)."""
        # Written out: dataclasses.asdict deep-copies every value and took 0.15 ms, a tenth
        # of the whole classification.
        d = self.deadlines
        return {
            "label": self.label,
            "label_name": self.label_name,
            "confidence": self.confidence,
            "candidates": [
                {"label": c.label, "name": c.name, "probability": c.probability}
                for c in self.candidates
            ],
            "needs_review": self.needs_review,
            "department": self.department,
            "route": self.route,
            "disposition": self.disposition,
            "reason": self.reason,
            "flags": [
                {"id": f.id, "name": f.name, "evidence": list(f.evidence)} for f in self.flags
            ],
            "priority": self.priority,
            "deadlines": {
                "received_at": d.received_at.isoformat(),
                "acknowledge_by": d.acknowledge_by.isoformat(),
                "resolve_by": d.resolve_by.isoformat(),
                "extended_resolve_by": d.extended_resolve_by.isoformat(),
                "review_request_days": d.review_request_days,
            },
            "similar_cases": [
                {"case_id": s.case_id, "similarity": s.similarity} for s in self.similar_cases
            ],
            "model_version": self.model_version,
        }


def check_text(text: object, title: object = "", max_length: int | None = None) -> None:
    """Raise :class:`InputError` when a petition cannot be classified, saying why."""
    if text is None or (isinstance(text, float) and text != text):  # None or NaN from pandas
        raise InputError("text is empty")
    if not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}")
    if not text.strip() and not (isinstance(title, str) and title.strip()):
        raise InputError("text is empty")
    if max_length is not None and len(text) > max_length:
        raise TextTooLongError(
            f"text has {len(text):,} characters, more than the {max_length:,} allowed; "
            "split it or raise the limit (TRIAGE_MAX_TEXT_LENGTH)"
        )
    sample = f"{title if isinstance(title, str) else ''}{text[:5000]}"
    if not _CJK.search(sample):
        raise InputError("text contains no Chinese characters; triage reads Chinese petitions")


def index_text(title: str, text: str) -> str:
    """A stored case as the repeat index takes it: the form the pipeline queries with."""
    return prepare_text(text, title)


def repeat_form(title: str, text: str, index: RepeatIndex | None = None) -> str:
    """What the repeat index keeps of a case: the canonical form of its :func:`index_text`
    (the one a recent query of ``index`` computed, if any)."""
    prepared = index_text(title, text)
    return index.canonical_of(prepared) if index is not None else canonical(prepared)


def index_cases(
    index: RepeatIndex,
    cases: Iterable[CaseRecord],
    text_of: Callable[[str, str], str] = index_text,
) -> None:
    """Index stored cases: by the repeat form stored with each (:class:`CaseForm`, read with
    the current key) where there is one, else by ``text_of(title, text)``."""
    forms: list[tuple[str, str]] = []
    texts: list[tuple[str, str]] = []
    for case in cases:
        if case.canonical is not None:
            forms.append((case.id, case.canonical))
        else:
            texts.append((case.id, text_of(case.title, case.text)))
    if forms:
        index.add_canonical_many(forms)
    if texts:
        index.add_many(texts)


#: Raise when a change to normalisation or the canonical form escapes the probes below.
_FORM_VERSION = 1
#: Texts that take every step of :func:`repeat_form`: Excel escapes, HTML, full-width forms,
#: web boilerplate, pinyin glosses, traditional characters, number formats, masked numbers.
_FORM_PROBES = (
    ("關於違法佔地的舉報", "村委會在耕地上建設(shè)廠房_x000D_\n已有三個月，無人處理。"),
    ("", "<p>２０２４年３月１，２００亩地被征收&amp;补偿</p>（省略120字，正式会员可完整阅读）"),
    ("", "电话138****5678，身份证110101********123X，〇二三年第0012号，展开全文"),
)


@lru_cache(maxsize=1)
def repeat_form_key() -> str:
    """Names the code behind :func:`repeat_form`, for forms stored beside cases.

    A digest of the probes' forms, so that a release whose normalisation or canonical form
    gives other forms gets another key, and forms stored by older code are computed again
    instead of trusted (:class:`triage.store.CaseForm`).
    """
    digest = hashlib.blake2b(digest_size=8)
    for title, text in _FORM_PROBES:
        digest.update(repeat_form(title, text).encode("utf-8") + b"\x00")
    return f"{_FORM_VERSION}-{digest.hexdigest()}"


def repeat_index_from_store(url: str) -> RepeatIndex:
    """A repeat index over every case in the store at SQLAlchemy ``url`` (the history)."""
    from triage.store import Store

    store = Store(url)
    index = RepeatIndex()
    index_cases(index, store.iter_cases(form_key=repeat_form_key()))
    store.close()
    return index


class Triage:
    """A loaded model plus routing table (plus repeat index): the classify entry point."""

    def __init__(
        self,
        model: LoadedModel,
        table: RoutingTable,
        repeat_index: RepeatIndex | None = None,
        max_similar: int = 5,
    ) -> None:
        table.check_labels(str(c) for c in model.estimator.classes_)
        self.model = model
        self.table = table
        self.repeat_index = repeat_index
        self.max_similar = max_similar

    @classmethod
    def load(
        cls,
        model: str | Path | None = None,
        routing: str | Path | None = None,
        repeat_index: RepeatIndex | None = None,
        models_dir: str | Path | None = None,
        max_similar: int = 5,
    ) -> Triage:
        """Load a model (default: the registry's current) and routing table (default: packaged)."""
        return cls(load_model(model, models_dir), load_table(routing), repeat_index, max_similar)

    @property
    def version(self) -> str:
        """Version of the loaded model."""
        return self.model.version

    @property
    def labels(self) -> list[str]:
        """Issue type ids the model can predict."""
        return [str(c) for c in self.model.estimator.classes_]

    def classify(
        self,
        text: str,
        title: str = "",
        received_at: date | None = None,
        channel: str | None = None,
        region: str | None = None,
        max_length: int | None = None,
    ) -> TriageResult:
        """Triage one petition; raises :class:`InputError` for text that cannot be read."""
        item = PetitionInput(text, title or "", received_at, channel, region)
        result = self.classify_many([item], max_length=max_length)[0]
        if isinstance(result, TriageError):
            raise result
        return result

    def classify_many(
        self,
        items: Sequence[PetitionInput | str],
        max_length: int | None = None,
        find_similar: bool = True,
    ) -> list[TriageResult | TriageError]:
        """Triage many petitions in one vectorised model call.

        Returns one entry per item, in order: a :class:`TriageResult`, or the
        :class:`TriageError` that says why that item could not be classified.
        """
        petitions = [PetitionInput(i) if isinstance(i, str) else i for i in items]
        out: list[TriageResult | TriageError | None] = [None] * len(petitions)
        ok_idx, docs = [], []
        est = self.model.estimator
        for i, p in enumerate(petitions):
            try:
                check_text(p.text, p.title, max_length)
            except TriageError as exc:
                out[i] = exc
                continue
            ok_idx.append(i)
            docs.append(prepare_text(p.text, p.title or "", max_chars=est.max_chars))
        if docs:
            proba = est.predict_proba_analyzed(est.analyze_prepared(docs))
            for i, doc, pred in zip(ok_idx, docs, est.explain(proba), strict=True):
                out[i] = self._finish(petitions[i], doc, pred, find_similar)
        return out  # type: ignore[return-value]

    def _finish(self, p: PetitionInput, doc: str, pred: Any, find_similar: bool) -> TriageResult:
        table = self.table
        names = table.issue_types
        decision = decide(table, doc, None if pred.needs_review else pred.label, pred.confidence)
        flags = list(detect_flags(doc, table))
        similar: tuple[SimilarCase, ...] = ()
        if find_similar and self.repeat_index is not None and self.max_similar:
            hits = self.repeat_index.query(doc, k=self.max_similar)
            similar = tuple(SimilarCase(cid, round(float(s), 4)) for cid, s in hits)
            if similar:
                repeat_name = table.flags["repeat"].name if "repeat" in table.flags else "重复信访"
                flags.append(Flag("repeat", repeat_name, tuple(s.case_id for s in similar[:3])))
        return TriageResult(
            label=pred.label,
            label_name=names[pred.label].name,
            confidence=round(pred.confidence, 4),
            candidates=tuple(
                Candidate(lbl, names[lbl].name, round(prob, 4)) for lbl, prob in pred.candidates
            ),
            needs_review=pred.needs_review,
            department=decision.department,
            route=decision.route,
            disposition=decision.disposition,
            reason=decision.reason,
            flags=tuple(flags),
            priority=priority(flags, table),
            deadlines=compute_deadlines(p.received_at or date.today(), table),
            similar_cases=similar,
            model_version=self.version,
        )
