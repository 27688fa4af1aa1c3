"""Deadlines of 《信访工作条例》 (``triage.deadlines``): calendar days from the routing table."""

from __future__ import annotations

from datetime import date, datetime
from importlib import resources

import pytest

from triage.deadlines import Deadlines, compute_deadlines
from triage.routing import RoutingTable, load_table, parse_table

DEFAULT_TEXT = resources.files("triage.data").joinpath("routing.yaml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def table() -> RoutingTable:
    return load_table()


def test_default_limits(table: RoutingTable) -> None:
    result = compute_deadlines(date(2026, 11, 21), table)
    assert result == Deadlines(
        received_at=date(2026, 11, 21),
        acknowledge_by=date(2026, 12, 6),
        resolve_by=date(2027, 1, 20),
        extended_resolve_by=date(2027, 2, 19),
        review_request_days=30,
    )
    assert result.to_dict() == {
        "received_at": "2026-11-21",
        "acknowledge_by": "2026-12-06",
        "resolve_by": "2027-01-20",
        "extended_resolve_by": "2027-02-19",
        "review_request_days": 30,
    }


def test_resolve_counts_from_acceptance(table: RoutingTable) -> None:
    result = compute_deadlines(date(2026, 3, 1), table, accepted_at=date(2026, 3, 10))
    assert result.acknowledge_by == date(2026, 3, 16)  # still from receipt
    assert result.resolve_by == date(2026, 5, 9)
    assert result.extended_resolve_by == date(2026, 6, 8)


@pytest.mark.parametrize(
    ("received", "acknowledge_by", "resolve_by"),
    [
        (date(2026, 1, 31), date(2026, 2, 15), date(2026, 4, 1)),  # month end
        (date(2026, 12, 20), date(2027, 1, 4), date(2027, 2, 18)),  # year end
        (date(2024, 2, 14), date(2024, 2, 29), date(2024, 4, 14)),  # leap day exists
        (date(2023, 2, 14), date(2023, 3, 1), date(2023, 4, 15)),  # no leap day
        (date(2024, 12, 31), date(2025, 1, 15), date(2025, 3, 1)),
    ],
)
def test_calendar_days(
    table: RoutingTable, received: date, acknowledge_by: date, resolve_by: date
) -> None:
    result = compute_deadlines(received, table)
    assert result.acknowledge_by == acknowledge_by
    assert result.resolve_by == resolve_by
    assert (result.extended_resolve_by - result.resolve_by).days == 30


def test_weekends_and_holidays_are_counted(table: RoutingTable) -> None:
    # 2026-09-26 is a Saturday; 15 calendar days later is a Sunday in the National Day break:
    # the 条例 counts 日 as calendar days and the limit is not moved.
    result = compute_deadlines(date(2026, 9, 26), table)
    assert result.acknowledge_by == date(2026, 10, 11)


def test_datetime_is_reduced_to_its_date(table: RoutingTable) -> None:
    result = compute_deadlines(datetime(2026, 11, 21, 23, 59), table)
    assert result.received_at == date(2026, 11, 21)
    assert type(result.acknowledge_by) is date
    assert result.to_dict()["acknowledge_by"] == "2026-12-06"


def test_limits_come_from_the_table() -> None:
    text = DEFAULT_TEXT.replace("acknowledge_days: 15", "acknowledge_days: 10")
    text = text.replace("resolve_days: 60", "resolve_days: 45")
    text = text.replace("review_request_days: 30", "review_request_days: 15")
    county = parse_table(text)
    result = compute_deadlines(date(2026, 1, 1), county)
    assert result.acknowledge_by == date(2026, 1, 11)
    assert result.resolve_by == date(2026, 2, 15)
    assert result.extended_resolve_by == date(2026, 3, 17)
    assert result.review_request_days == 15


def test_bad_limit_names_the_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from triage.routing import RoutingConfigError

    text = DEFAULT_TEXT.replace("resolve_days: 60", "resolve_days: sixty")
    path = tmp_path / "t.yaml"
    path.write_text(text, encoding="utf-8")
    line = text[: text.index("resolve_days: sixty")].count("\n") + 1
    with pytest.raises(RoutingConfigError, match=rf"t\.yaml:{line}: resolve_days"):
        load_table(path)
