"""Time limits of 《信访工作条例》 for a petition, from the routing table's ``deadlines``.

The 条例 counts 日 as calendar days (自然日), so plain date arithmetic is right: weekends and
holidays are not skipped, and a limit ending on a holiday is not moved.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

from triage.routing import RoutingTable

__all__ = ["Deadlines", "compute_deadlines"]


@dataclass(frozen=True)
class Deadlines:
    """The dates a petition office must meet."""

    received_at: date
    acknowledge_by: date  # 受理告知: received + acknowledge_days
    resolve_by: date  # 办理: accepted (default: received) + resolve_days
    extended_resolve_by: date  # 延期后: resolve_by + extension_days
    review_request_days: int  # 复查/复核: days the petitioner has after the written reply

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with ISO dates."""
        return {k: v.isoformat() if isinstance(v, date) else v for k, v in asdict(self).items()}


def compute_deadlines(
    received_at: date, table: RoutingTable, accepted_at: date | None = None
) -> Deadlines:
    """Deadlines for a petition received on ``received_at`` (accepted on ``accepted_at``).

    Until the office records acceptance, the resolve limit counts from receipt, the earliest
    date it can run from, so the due date shown is never later than the real one.
    """
    limits = table.deadlines
    # A datetime is a date subclass; drop the time so that the dates serialise as dates.
    received_at = _as_date(received_at)
    accepted_at = _as_date(accepted_at) if accepted_at is not None else None
    start = accepted_at or received_at
    resolve_by = start + timedelta(days=limits.resolve_days)
    return Deadlines(
        received_at=received_at,
        acknowledge_by=received_at + timedelta(days=limits.acknowledge_days),
        resolve_by=resolve_by,
        extended_resolve_by=resolve_by + timedelta(days=limits.extension_days),
        review_request_days=limits.review_request_days,
    )


def _as_date(value: date) -> date:
    return value.date() if isinstance(value, datetime) else value
