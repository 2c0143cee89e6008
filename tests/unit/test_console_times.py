"""Times on the console are China's (UTC+8). A deadline is worded in China calendar days: 今日到期 is a deadline on
today's date in China, not one within 24 hours; a deadline at 24:00 (00:00 of the next day) belongs to the day it
ends, as cn_due shows it. A moment in a project's data (a date-time with its offset) is shown in China time."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.console.view import cn_due, due_state

CN = timedelta(hours=8)


def china(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC) - CN


@pytest.mark.parametrize("now,due,text,cls", [
    ("2026-03-02 23:00", "2026-03-03 10:00", "剩 1 天", "soon"),  # tomorrow in China, 11 hours away
    ("2026-03-02 09:00", "2026-03-02 23:59", "今日到期", "soon"),
    ("2026-03-02 09:00", "2026-03-03 00:00", "今日到期", "soon"),  # 2026-03-02 24:00
    ("2026-03-02 23:59", "2026-03-03 00:01", "剩 1 天", "soon"),
    ("2026-03-02 09:00", "2026-03-04 12:00", "剩 2 天", "soon"),
    ("2026-03-02 09:00", "2026-03-05 08:00", "剩 3 天", "ok"),
    ("2026-03-02 09:00", "2026-03-02 08:59", "已逾期", "overdue"),  # earlier today
    ("2026-03-03 00:30", "2026-03-02 23:00", "已逾期 1 天", "overdue"),  # yesterday in China, 90 minutes ago
    ("2026-03-05 09:00", "2026-03-02 10:00", "已逾期 3 天", "overdue"),
])
def test_deadlines_in_china_calendar_days(now: str, due: str, text: str, cls: str) -> None:
    state = due_state(china(due), china(now))
    assert state is not None and (state["text"], state["cls"]) == (text, cls)


def test_the_day_of_a_deadline_at_24_00_is_the_day_it_shows() -> None:
    assert cn_due(china("2026-03-03 00:00")) == "2026-03-02 24:00"
    state = due_state(china("2026-03-03 00:00"), china("2026-03-02 23:59:59"))
    assert state is not None and state["text"] == "今日到期"
    assert due_state(None, china("2026-03-02 09:00")) is None


@pytest.mark.parametrize("value,shown", [
    ("2026-03-05T23:30:00+00:00", "2026-03-06 07:30"),  # a Camunda Date variable, sent in UTC
    ("2026-03-05T23:30:00.000+0000", "2026-03-06 07:30"),
    ("2026-03-05T23:30:00Z", "2026-03-06 07:30"),
    ("2026-03-06T07:30:00+08:00", "2026-03-06 07:30"),
    ("2026-03-05", "2026-03-05"),  # a date is shown as written
    ("2026-13-05T23:30:00Z", "2026-13-05T23:30:00Z"),  # not a moment after all
    ("批复于2026-03-05T23:30:00Z", "批复于2026-03-05T23:30:00Z"),
])
def test_a_moment_in_the_projects_data_is_shown_in_china_time(value: str, shown: str) -> None:
    from service.console.view import show

    assert show(value, "signed_at") == shown


def test_a_moment_at_the_calendars_edge_is_shown_as_written() -> None:
    from service.console.view import show

    for edge in ("9999-12-31T23:00:00Z", "0001-01-01T00:00:00+09:00"):  # "no end date", "no start date"
        assert show(edge, "valid_until") == edge
