"""Working days in mainland China: weekends and public holidays off, adjusted working weekends (调休) on.

Years whose official arrangement is known come from the chinese-calendar package, or from an
operator's configuration (the State Council publishes each year's in late autumn). Later years fall
back to the holidays package's rule-based Chinese holidays without 调休; dates computed from those
are *provisional* and are recomputed when the year's arrangement is configured.
"""
from __future__ import annotations

import datetime as _dt
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import chinese_calendar
import holidays

CHINA = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class YearArrangement:
    holidays: frozenset[_dt.date] = field(default_factory=frozenset)
    workdays: frozenset[_dt.date] = field(default_factory=frozenset)

    @classmethod
    def from_json(cls, year: int, d: dict[str, Any]) -> YearArrangement:
        hol = frozenset(_dt.date.fromisoformat(x) for x in d.get("holidays", []))
        work = frozenset(_dt.date.fromisoformat(x) for x in d.get("workdays", []))
        for day in hol | work:
            if day.year != year:
                raise ValueError(f"{day} is not in {year}")
        if hol & work:
            raise ValueError(f"days listed both as holiday and workday: {sorted(hol & work)}")
        return cls(hol, work)


class BusinessCalendar:
    def __init__(self, arrangements: dict[int, YearArrangement] | None = None) -> None:
        self.arrangements = dict(arrangements or {})

    @classmethod
    def from_file(cls, path: Path | None) -> BusinessCalendar:
        if path is None or not path.exists():
            return cls()
        raw = json.loads(path.read_text(encoding="utf-8"))
        return cls({int(y): YearArrangement.from_json(int(y), d) for y, d in raw.items()})

    def with_year(self, year: int, arrangement: YearArrangement) -> BusinessCalendar:
        return BusinessCalendar({**self.arrangements, year: arrangement})

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def _package_knows(year: int) -> bool:
        try:
            chinese_calendar.is_workday(_dt.date(year, 1, 1))
            return True
        except NotImplementedError:
            return False

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def _rule_based(year: int) -> frozenset[_dt.date]:
        return frozenset(holidays.China(years=year).keys())

    def warm(self, years: Any) -> None:
        """Build the holiday tables of these years now (the first use of a year costs tenths of a second)."""
        for year in years:
            if not self._package_knows(year):
                self._rule_based(year)

    def is_known(self, year: int) -> bool:
        return year in self.arrangements or self._package_knows(year)

    def is_workday(self, day: _dt.date) -> bool:
        arrangement = self.arrangements.get(day.year)
        if arrangement is not None:
            if day in arrangement.workdays:
                return True
            return day.weekday() < 5 and day not in arrangement.holidays
        if self._package_knows(day.year):
            return bool(chinese_calendar.is_workday(day))
        return day.weekday() < 5 and day not in self._rule_based(day.year)

    def add_working_days(self, start: _dt.datetime, days: int) -> _dt.datetime:
        """The end (24:00 China time) of the Nth working day after the day of `start`.

        The start day itself is not counted (民法典 第二百零一条).
        """
        day = start.astimezone(CHINA).date()
        counted = 0
        while counted < days:
            day += _dt.timedelta(days=1)
            if self.is_workday(day):
                counted += 1
        end = _dt.datetime.combine(day + _dt.timedelta(days=1), _dt.time(0), CHINA)
        return end.astimezone(_dt.UTC)

    def is_provisional(self, due: _dt.datetime, start: _dt.datetime | None = None) -> bool:
        last = (due.astimezone(CHINA) - _dt.timedelta(seconds=1)).date()
        first = start.astimezone(CHINA).date() if start else last
        return any(not self.is_known(y) for y in range(first.year, last.year + 1))
