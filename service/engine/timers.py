"""Timer and due-date arithmetic with bounds: what a diagram's timer or due-date expression returns becomes
one instant, computed without loops whose length the expression controls.

- a duration (`P15D`, `P3M`) counts from the start (calendar months as a calendar counts them: 31 January
  + 1 month is the last day of February); with `calendar=cn_workdays` a duration of whole days counts
  working days and falls due at 24:00 China time at the end of the last one;
- a `date` is a deadline day: due at its end, 24:00 China time;
- an aware `datetime` is that instant; an ISO text without an offset is read in China time;
- nothing may lie more than 100 years away (SpiffWorkflow's own duration arithmetic loops once per month).
"""
from __future__ import annotations

import ast
import datetime as _dt
import re
from typing import Any

from dateutil.relativedelta import relativedelta
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    CycleTimerEventDefinition,
    DurationTimerEventDefinition,
    TimeDateEventDefinition,
)

from service.engine.calendar import CHINA
from service.engine.scripting import WORKDAY_COUNTS
from service.engine.timeline import current_now
from service.text import ascii_number

MAX_YEARS = 100
_MAX_SPAN = _dt.timedelta(days=366 * MAX_YEARS)
MAX_CYCLES = 10_000
MIN_CYCLE = _dt.timedelta(minutes=1)
CALENDAR_PROPERTY = "calendar"
WORKDAY_CALENDAR = "cn_workdays"
_DURATION = re.compile(
    r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)


class TimingError(ValueError):
    """A timer or due date that cannot be computed (not a date or duration, or out of range)."""


def parse_duration(text: str) -> relativedelta:
    """An ISO 8601 duration as a relativedelta, refused beyond 100 years (checked before any arithmetic)."""
    m = _DURATION.match(text.strip().upper())
    if not m:
        raise TimingError(f"{text!r} is not an ISO 8601 duration (e.g. P15D, P3M, PT2H)")
    years, months, weeks, days, hours, minutes = (int(g) if g else 0 for g in m.groups()[:6])
    seconds = float(m.group(7)) if m.group(7) else 0.0
    approx_days = years * 366 + months * 31 + weeks * 7 + days + (hours + (minutes + seconds / 60) / 60) / 24
    if approx_days > 366 * MAX_YEARS:
        raise TimingError(f"the duration {text!r} is longer than {MAX_YEARS} years")
    whole = int(seconds)
    return relativedelta(years=years, months=months, weeks=weeks, days=days, hours=hours, minutes=minutes,
                         seconds=whole, microseconds=round((seconds - whole) * 1_000_000))


def whole_days(text: str) -> int | None:
    m = re.fullmatch(r"P(\d+)D", text.strip().upper())
    return int(m.group(1)) if m else None


def end_of_day(day: _dt.date) -> _dt.datetime:
    """24:00 China time at the end of `day`, in UTC."""
    return _dt.datetime.combine(day + _dt.timedelta(days=1), _dt.time(0), CHINA).astimezone(_dt.UTC)


def _instant(text: str) -> _dt.datetime:
    try:
        moment = _dt.datetime.fromisoformat(text.strip().replace("T24:00:00", "T23:59:59.999999"))
    except ValueError:
        raise TimingError(f"{text!r} is not an ISO 8601 date, date-time or duration") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CHINA)
    return moment.astimezone(_dt.UTC)


def due_at(value: Any, start: _dt.datetime, *, workdays: bool = False, calendar: Any = None) -> _dt.datetime:
    """The instant a timer or due date falls due, from what its expression returned."""
    try:
        return _due_at(value, start, workdays=workdays, calendar=calendar)
    except (OverflowError, ValueError) as e:
        if isinstance(e, TimingError):
            raise
        raise TimingError(f"{value!r} lies outside the calendar") from None


def _due_at(value: Any, start: _dt.datetime, *, workdays: bool, calendar: Any) -> _dt.datetime:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            raise TimingError(f"the date-time {value.isoformat()} has no time zone; write one (+08:00)")
        due = value.astimezone(_dt.UTC)
    elif isinstance(value, _dt.date):
        due = end_of_day(value)
    elif isinstance(value, _dt.timedelta):
        if abs(value) > _MAX_SPAN:
            raise TimingError(f"the duration {value} is longer than {MAX_YEARS} years")
        due = start + value
    elif isinstance(value, str):
        text = value.strip()
        if text.upper().startswith("P"):
            if workdays:
                days = whole_days(text)
                if days is None:
                    raise TimingError(f"a {WORKDAY_CALENDAR} deadline needs whole days (e.g. P10D), got {text!r}")
                if days > 366 * MAX_YEARS:
                    raise TimingError(f"the duration {text!r} is longer than {MAX_YEARS} years")
                if calendar is None:
                    raise TimingError("no working-day calendar is configured")
                return calendar.add_working_days(start, days)  # type: ignore[no-any-return]
            due = start + parse_duration(text)
        else:
            due = _instant(text)
    else:
        raise TimingError(f"expected a date, a date-time or an ISO 8601 text, got {type(value).__name__} {value!r}")
    if abs(due - start) > _MAX_SPAN:
        raise TimingError(f"{due.isoformat()} is more than {MAX_YEARS} years away")
    return due


def parse_cycle(text: str, start: _dt.datetime) -> tuple[int, _dt.datetime, _dt.timedelta]:
    """R[n]/[start/]duration → (cycles, first due, period); -1 cycles means unbounded."""
    parts = text.strip().upper().split("/")
    if len(parts) not in (2, 3) or not parts[0].startswith("R"):
        raise TimingError(f"{text!r} is not an ISO 8601 repeating interval (e.g. R3/P1D)")
    cycles = ascii_number(parts[0][1:], 9)
    if cycles is None or cycles > MAX_CYCLES:
        raise TimingError(f"{text!r}: give the number of repetitions, at most {MAX_CYCLES} (e.g. R12/P1M)")
    try:
        return _cycle(text, parts, cycles, start)
    except (OverflowError, ValueError) as e:
        if isinstance(e, TimingError):
            raise
        raise TimingError(f"{text!r} lies outside the calendar") from None


def _cycle(text: str, parts: list[str], cycles: int, start: _dt.datetime) -> tuple[int, _dt.datetime, _dt.timedelta]:
    if len(parts) == 3:
        first = _instant(parts[1])
        period = parse_duration(parts[2])
        first_due = first
    else:
        period = parse_duration(parts[1])
        first_due = start + period
    length = (start + period) - start
    if length < MIN_CYCLE:
        raise TimingError(f"{text!r}: a repetition must be at least a minute apart")
    if abs(first_due - start) > _MAX_SPAN:
        raise TimingError(f"{text!r}: the first repetition is more than {MAX_YEARS} years away")
    return cycles, first_due, length


def _fail(my_task: Any, error: Exception) -> WorkflowTaskException:
    return WorkflowTaskException(f"timer: {error}", task=my_task)


def _arm(definition: Any, my_task: Any) -> str:
    """Evaluate the timer's expression once, when the timer is armed, and keep the due instant."""
    start = current_now()
    ext = getattr(my_task.task_spec, "extensions", None) or {}
    workdays = ext.get(CALENDAR_PROPERTY) == WORKDAY_CALENDAR
    engine = my_task.workflow.script_engine
    counts: list[tuple[_dt.datetime, int]] = []
    token = WORKDAY_COUNTS.set(counts)
    try:
        value = engine.evaluate(my_task, definition.expression)
    finally:
        WORKDAY_COUNTS.reset(token)
    calendar = getattr(engine.environment, "calendar", None)
    try:
        due = due_at(value, start, workdays=workdays, calendar=calendar)
    except TimingError as e:
        raise _fail(my_task, e) from None
    if workdays and isinstance(value, str) and value.strip().upper().startswith("P"):
        my_task.internal_data["govflow_start"] = start.isoformat()
        my_task.internal_data["govflow_workdays"] = whole_days(value)
    elif calendar is not None and len(counts) == 1 and _one_count(definition.expression) \
            and calendar.add_working_days(*counts[0]) == due:
        # a date the expression is a count of working days (workdays_after(signed_on, 10)): kept as that count, so
        # the timer moves with its task's due date when a new year's holidays are added (Runtime.recompute_…);
        # an expression that does more with the count (min(workdays_after(…), …)) keeps the date it gave
        my_task.internal_data["govflow_start"] = counts[0][0].isoformat()
        my_task.internal_data["govflow_workdays"] = counts[0][1]
    # when it was armed: a migration to a version whose timer differs computes the new due time from here
    my_task.internal_data["govflow_armed_at"] = start.isoformat()
    my_task._set_internal_data(event_value=due.isoformat())
    return due.isoformat()


def _one_count(expression: str) -> bool:
    """The expression is one call of workdays_after and nothing more."""
    try:
        node = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError:
        return False
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "workdays_after"


class _Fires:
    def has_fired(self, my_task: Any) -> bool:
        value = my_task._get_internal_data("event_value")
        if value is None:
            value = _arm(self, my_task)
        if _dt.datetime.fromisoformat(value) < current_now():
            my_task._set_internal_data(event_fired=True)
        return bool(my_task._get_internal_data("event_fired", False))


class GovflowTimeDateEventDefinition(_Fires, TimeDateEventDefinition):
    """A timer at a date or date-time (`timeDate`)."""


class GovflowDurationTimerEventDefinition(_Fires, DurationTimerEventDefinition):
    """A timer after a duration (`timeDuration`), in working days where the element says so."""


class GovflowCycleTimerEventDefinition(CycleTimerEventDefinition):
    """A repeating timer (`timeCycle`), with bounded repetitions and period."""

    def cycle_complete(self, my_task: Any) -> bool:
        value = my_task._get_internal_data("event_value")
        if value is None:
            expression = my_task.workflow.script_engine.evaluate(my_task, self.expression)
            if not isinstance(expression, str):
                raise _fail(my_task, TimingError(f"a cycle is an ISO 8601 text, got {expression!r}"))
            try:
                cycles, first, period = parse_cycle(expression, current_now())
            except TimingError as e:
                raise _fail(my_task, e) from None
            value = {"cycles": cycles, "next": first.isoformat(), "duration": period.total_seconds()}
            my_task.internal_data["govflow_armed_at"] = current_now().isoformat()
        ready = False
        if value["cycles"] != 0:
            upcoming = _dt.datetime.fromisoformat(value["next"])
            if upcoming < current_now():
                value["next"] = (upcoming + _dt.timedelta(seconds=value["duration"])).isoformat()
                value["cycles"] -= 1
                ready = True
        else:
            my_task.internal_data.pop("event_value", None)
            my_task.internal_data["event_fired"] = True
        my_task._set_internal_data(event_value=value)
        return ready


GOVFLOW_TIMERS = {
    TimeDateEventDefinition: GovflowTimeDateEventDefinition,
    DurationTimerEventDefinition: GovflowDurationTimerEventDefinition,
    CycleTimerEventDefinition: GovflowCycleTimerEventDefinition,
}


def govflow_timer(definition: Any) -> Any:
    """The bounded version of a timer definition SpiffWorkflow's parser made."""
    cls = GOVFLOW_TIMERS.get(type(definition))
    if cls is None:
        return definition
    return cls(definition.name, definition.expression, description=definition.description)
