"""Working days in mainland China."""
from __future__ import annotations

import datetime as dt

from service.engine.calendar import CHINA, BusinessCalendar, YearArrangement

CAL = BusinessCalendar()


def at(y: int, m: int, d: int, h: int = 10) -> dt.datetime:
    return dt.datetime(y, m, d, h, tzinfo=CHINA)


def test_national_day_and_adjusted_weekends() -> None:
    # 2025: 1–8 Oct off; Sun 28 Sep and Sat 11 Oct are working days
    assert CAL.is_workday(dt.date(2025, 9, 28)) and CAL.is_workday(dt.date(2025, 10, 11))
    assert not CAL.is_workday(dt.date(2025, 10, 3)) and not CAL.is_workday(dt.date(2025, 10, 12))
    end = CAL.add_working_days(at(2025, 9, 26), 10)
    assert end.astimezone(CHINA) == dt.datetime(2025, 10, 17, 0, 0, tzinfo=CHINA)


def test_ordinary_weeks_and_the_start_day_not_counted() -> None:
    # Monday 2 March 2026 + 5 working days = end of Monday 9 March
    assert CAL.add_working_days(at(2026, 3, 2), 5).astimezone(CHINA).date() == dt.date(2026, 3, 10)
    # started on a Saturday: counting begins Monday
    assert CAL.add_working_days(at(2026, 3, 7), 1).astimezone(CHINA).date() == dt.date(2026, 3, 10)


def test_unknown_years_fall_back_to_rule_based_holidays_and_are_provisional() -> None:
    assert not CAL.is_known(2027)
    assert not CAL.is_workday(dt.date(2027, 10, 1))  # National Day from the rules
    due = CAL.add_working_days(at(2026, 12, 28), 5)
    assert CAL.is_provisional(due)
    assert not CAL.is_provisional(CAL.add_working_days(at(2026, 3, 2), 5))


def test_a_configured_arrangement_wins() -> None:
    cal = CAL.with_year(2027, YearArrangement.from_json(2027, {"holidays": ["2027-03-01"],
                                                               "workdays": ["2027-03-06"]}))
    assert cal.is_known(2027)
    assert not cal.is_workday(dt.date(2027, 3, 1)) and cal.is_workday(dt.date(2027, 3, 6))
    assert not cal.is_provisional(cal.add_working_days(at(2027, 2, 26), 3))
