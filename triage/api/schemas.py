"""Request and response bodies of the HTTP API (pydantic v2)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
)

#: Intake channels (来信 letter, 来访 visit, 网上 online, 热线 hotline).
Channel = Literal["来信", "来访", "网上", "热线"]

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
EARLIEST_DATE = date(1980, 1, 1)
LATEST_DATE = date(2100, 12, 31)


def _clean_text(value: Any) -> Any:
    # Lone surrogates (legal in JSON "\ud800", not in UTF-8) and NUL bytes would fail deep in
    # the tokenizer or the database; replace them, before pydantic's own str check sees them.
    if not isinstance(value, str):
        return value  # pydantic reports the wrong type
    if "\x00" in value:
        value = value.replace("\x00", " ")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


def _iso_date_string(value: Any) -> Any:
    # JSON has no date type: only "YYYY-MM-DD" is a date here (pydantic alone would also take
    # numbers as Unix timestamps).
    if isinstance(value, str) and not _ISO_DATE.fullmatch(value):
        raise ValueError("must be a date as YYYY-MM-DD")
    if not isinstance(value, (str, date)):
        raise ValueError("must be a date as YYYY-MM-DD")
    return value


def _date_in_range(value: date) -> date:
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise ValueError(f"must be between {EARLIEST_DATE} and {LATEST_DATE}")
    return value


CleanStr = Annotated[str, BeforeValidator(_clean_text)]
PetitionText = Annotated[str, BeforeValidator(_clean_text), AfterValidator(_not_blank)]
ReceivedDate = Annotated[date, BeforeValidator(_iso_date_string), AfterValidator(_date_in_range)]

_TEXT_EXAMPLE = (
    "我们是C2县白鹤岭镇马鬃岭村村民，2019年村里土地被征收用于修建物流园，至今征地补偿款"
    "还有一半没有发到农户手里，镇里说钱已经拨到村委会，村委会说没收到。请求县自然资源局"
    "核查补偿款去向，尽快足额发放。"
)


class PetitionIn(BaseModel):
    """One petition to classify."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "text": _TEXT_EXAMPLE,
                    "title": "征地补偿款迟迟不到位",
                    "received_at": "2026-11-21",
                    "channel": "来信",
                    "region": "C2县",
                }
            ]
        }
    )

    text: PetitionText = Field(
        min_length=1,
        description="The petition text (letter, visit record, hotline note or online message); "
        "not only whitespace, at most TRIAGE_MAX_TEXT_LENGTH characters (else 413).",
    )
    title: CleanStr | None = Field(default=None, description="Title or subject, if any.")
    received_at: ReceivedDate | None = Field(
        default=None,
        description="Date of receipt (YYYY-MM-DD); deadlines count from it. Today if omitted.",
    )
    channel: Channel | None = Field(default=None, description="来信, 来访, 网上 or 热线.")
    region: CleanStr | None = Field(default=None, max_length=200, description="Place of origin.")
    store: StrictBool = Field(
        default=True,
        description="false: a preview (live suggestions while typing): nothing is stored, "
        "the text does not join the repeat index, case_id is null.",
    )


class BatchItemIn(PetitionIn):
    """A batch item: like a petition, but a missing or empty text fails only this item."""

    text: CleanStr | None = Field(default=None, description="The petition text.")  # type: ignore[assignment]


class BatchIn(BaseModel):
    """Petitions to classify in one request."""

    items: list[BatchItemIn] = Field(description="Up to TRIAGE_MAX_BATCH_SIZE petitions.")


class Candidate(BaseModel):
    label: str
    name: str | None = None
    probability: float


class FlagOut(BaseModel):
    id: str = Field(description="collective, escalation, extreme or repeat.")
    name: str | None = None
    evidence: list[str] = Field(default_factory=list, description="The words that raised it.")


class DeadlinesOut(BaseModel):
    received_at: date
    acknowledge_by: date
    resolve_by: date
    extended_resolve_by: date
    review_request_days: int


class SimilarCase(BaseModel):
    """An earlier case that reads like this one, with how it was handled."""

    case_id: str
    similarity: float
    received_at: date | None = None
    created_at: datetime | None = None
    snippet: str | None = Field(default=None, description="First words of the stored text.")
    label: str | None = None
    department: str | None = None
    disposition: str | None = None


class ClassificationOut(BaseModel):
    """The triage of one petition (``TriageResult.to_dict()`` plus the stored case's id)."""

    # New fields the pipeline adds pass through instead of being silently dropped.
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    case_id: str | None = Field(
        description="Id of the stored case (send it back with feedback); null for a preview."
    )
    label: str = Field(description="Issue type id (see /v1/taxonomy).")
    label_name: str | None = None
    confidence: float
    candidates: list[Candidate] = Field(default_factory=list, description="Top-3 issue types.")
    needs_review: bool = False
    department: str | None = None
    route: str | None = Field(
        default=None, description="none, agri, forestry, litigation, discipline."
    )
    disposition: str | None = Field(default=None, description="受理, 转送 or 告知.")
    reason: str | None = None
    flags: list[FlagOut] = Field(default_factory=list)
    priority: str | None = Field(default=None, description="urgent, high or normal.")
    deadlines: DeadlinesOut | None = None
    similar_cases: list[SimilarCase] = Field(default_factory=list)
    model_version: str | None = None


class ErrorOut(BaseModel):
    """Every error answer: the error type and a readable message."""

    error: str = Field(description="Error type, e.g. TextTooLongError, ValidationError.")
    detail: str = Field(description="What went wrong and how to fix it.")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Per-field problems (validation errors only)."
    )


class BatchItemError(BaseModel):
    error: str
    detail: str
    status: int = Field(description="The HTTP status this item would have had on its own.")


class BatchItemOut(BaseModel):
    index: int = Field(description="Position of the item in the request.")
    status: Literal["ok", "error"]
    result: ClassificationOut | None = None
    error: BatchItemError | None = None


class BatchOut(BaseModel):
    results: list[BatchItemOut]
    ok: int
    errors: int
    model_version: str | None = None


class FeedbackIn(BaseModel):
    """A clerk's correction of a classified case."""

    case_id: CleanStr = Field(min_length=1, max_length=64)
    label: CleanStr = Field(min_length=1, max_length=100, description="The right issue type id.")
    department: CleanStr | None = Field(
        default=None, max_length=200, description="The right department, if it differs."
    )


class FeedbackOut(BaseModel):
    id: int
    case_id: str
    label: str
    department: str | None = None


class LabelOut(BaseModel):
    id: str
    name: str | None = None


class ModelOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    version: str
    labels: list[LabelOut]
    metrics: dict[str, Any] = Field(default_factory=dict, description="Cross-validated metrics.")
    trained_at: str | None = None
    path: str | None = None
    loaded_at: datetime


class ReloadOut(BaseModel):
    previous_version: str | None
    version: str
    changed: bool
    loaded_at: datetime


class HealthOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    status: Literal["ok", "unavailable"]
    model_loaded: bool
    model_version: str | None = None
    database: bool
    detail: str | None = None


class IssueTypeOut(BaseModel):
    id: str
    name: str
    department: str
    disposition: str


class RouteOut(BaseModel):
    id: str = Field(description="none, agri, forestry, litigation, discipline.")
    name: str
    department: str = Field(description="Empty for none: the issue type's department handles it.")
    disposition: str


class TaxonomyOut(BaseModel):
    issue_types: list[IssueTypeOut]
    departments: list[str] = Field(description="Every department, for the page's pick list.")
    routes: list[RouteOut] = Field(default_factory=list, description="Override routes.")
    flags: list[LabelOut] = Field(default_factory=list, description="Flag ids and names.")
    channels: list[str]
