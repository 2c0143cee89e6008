"""Timer and due-date arithmetic: what an expression returns becomes one bounded instant."""
from __future__ import annotations

import datetime as dt
import time

import pytest

from service.engine.calendar import BusinessCalendar
from service.engine.scripting import ScriptError, make_script_engine
from service.engine.timers import TimingError, due_at, parse_cycle, parse_duration

START = dt.datetime(2026, 1, 31, 2, 0, tzinfo=dt.UTC)  # 31 January, 10:00 China time


@pytest.mark.parametrize("value,expected", [
    ("P15D", dt.datetime(2026, 2, 15, 2, 0, tzinfo=dt.UTC)),
    ("P1M", dt.datetime(2026, 2, 28, 2, 0, tzinfo=dt.UTC)),  # a calendar month: the end of February
    ("PT2H", dt.datetime(2026, 1, 31, 4, 0, tzinfo=dt.UTC)),
    ("P100Y", dt.datetime(2126, 1, 31, 2, 0, tzinfo=dt.UTC)),
    (dt.date(2026, 3, 16), dt.datetime(2026, 3, 16, 16, 0, tzinfo=dt.UTC)),  # a deadline day: its end, China time
    ("2026-03-16T09:00:00+08:00", dt.datetime(2026, 3, 16, 1, 0, tzinfo=dt.UTC)),
    ("2026-03-16T09:00:00", dt.datetime(2026, 3, 16, 1, 0, tzinfo=dt.UTC)),  # no offset: China time
    ("2026-12-31T24:00:00+08:00", dt.datetime(2026, 12, 31, 15, 59, 59, 999999, tzinfo=dt.UTC)),
    (dt.timedelta(days=1), dt.datetime(2026, 2, 1, 2, 0, tzinfo=dt.UTC)),
])
def test_due_at(value: object, expected: dt.datetime) -> None:
    assert due_at(value, START) == expected


@pytest.mark.parametrize("value", ["P101Y", "P1201M", "P36700D", "P99999999Y", "P999999999999D", "PT999999999H",
                                   "2127-01-01T00:00:00+08:00", dt.date(1900, 1, 1), dt.timedelta(days=40000),
                                   "-P1D", "P1.5M", "tomorrow", 42, None,
                                   dt.datetime(2026, 3, 1, 0, 0)])
def test_due_at_refuses_what_is_not_a_bounded_instant(value: object) -> None:
    started = time.monotonic()
    with pytest.raises(TimingError):
        due_at(value, START)
    assert time.monotonic() - started < 0.1


def test_working_days_count_from_the_day_after_the_start() -> None:
    calendar = BusinessCalendar()
    friday = dt.datetime(2025, 9, 26, 2, 0, tzinfo=dt.UTC)  # 1–8 Oct holidays; 28 Sep and 11 Oct worked
    assert due_at("P10D", friday, workdays=True, calendar=calendar) == dt.datetime(2025, 10, 16, 16, 0, tzinfo=dt.UTC)
    with pytest.raises(TimingError):
        due_at("P1M", friday, workdays=True, calendar=calendar)
    with pytest.raises(TimingError):
        due_at("P99999D", friday, workdays=True, calendar=calendar)


def test_duration_bound_is_checked_before_any_arithmetic() -> None:
    assert parse_duration("P100Y").years == 100
    with pytest.raises(TimingError):
        parse_duration("P" + "9" * 40 + "Y")


@pytest.mark.parametrize("text,cycles,first", [
    ("R3/P1D", 3, START + dt.timedelta(days=1)),
    ("R2/2026-03-01T00:00:00+08:00/P1M", 2, dt.datetime(2026, 2, 28, 16, 0, tzinfo=dt.UTC)),
])
def test_cycles(text: str, cycles: int, first: dt.datetime) -> None:
    got = parse_cycle(text, START)
    assert got[0] == cycles and got[1] == first


@pytest.mark.parametrize("text", ["R3/PT1S", "R99999/P1D", "R3/P200Y", "P1D", "R3/2200-01-01T00:00:00Z/P1D", "R/P1Y",
                                  "R/PT1M", "R2/9999-12-31T23:00:00-12:00/P1D",
                                  "R²/P1D", "R٣/P1D", "R" + "9" * 5000 + "/P1D"])  # digits to str.isdigit, not to int()
def test_cycles_refused(text: str) -> None:
    with pytest.raises(TimingError):
        parse_cycle(text, START)


def _eval(expression: str, **data: object) -> object:
    engine = make_script_engine(1.0, BusinessCalendar())
    return engine.environment.evaluate(expression, dict(data))


def test_date_functions() -> None:
    assert _eval("days_after(d, 15)", d=dt.date(2026, 9, 1)) == dt.date(2026, 9, 16)
    assert _eval("months_after(d, 24)", d=dt.date(2024, 2, 29)) == dt.date(2026, 2, 28)
    assert _eval("months_after('2026-01-31', 1)") == dt.date(2026, 2, 28)
    # Friday 26 September 2025: the 10th working day after it is Thursday 16 October (National Day, 调休)
    assert _eval("workdays_after(d, 10)", d=dt.date(2025, 9, 26)) == dt.date(2025, 10, 16)
    assert _eval("workdays_after(d, 0)", d=dt.date(2025, 9, 26)) == dt.date(2025, 9, 26)
    for bad in ("days_after(d, 99999999)", "months_after(d, 1201)", "workdays_after(d, -1)", "days_after('x', 1)",
                "days_after(d, 1.5)"):
        with pytest.raises(ScriptError):
            _eval(bad, d=dt.date(2026, 1, 1))


@pytest.mark.parametrize("decisions,outcome", [
    (("pass", "pass"), "pass"), (("pass", "revise"), "revise"), (("revise", "reject"), "reject"),
    (("reject", "pass", "pass"), "reject"), (("pass",), "pass"), ((["revise", "pass"],), "revise"),
])
def test_join_decisions(decisions: tuple[object, ...], outcome: str) -> None:
    assert _eval("join_decisions(*d)", d=list(decisions)) == outcome


@pytest.mark.parametrize("decisions", [(), ("pass", None), ("approve",)])
def test_join_decisions_refuses_what_is_not_a_decision(decisions: tuple[object, ...]) -> None:
    with pytest.raises(ScriptError):
        _eval("join_decisions(*d)", d=list(decisions))
