"""The restricted script engine: every condition, script, DMN cell and timer expression runs here.

Expressions are compiled with RestrictedPython (no imports, no names or attributes starting with an
underscore), run with a small set of safe builtins and no modules, and bounded in time and size:
a step that runs longer than the limit is stopped, and powers, repetition and ranges are capped.
"""
from __future__ import annotations

import ast
import contextvars
import copy
import datetime as _dt
import functools
import math
import sys
import time
from decimal import Decimal
from typing import Any

from dateutil.relativedelta import relativedelta
from RestrictedPython import compile_restricted_eval, compile_restricted_exec, safe_builtins
from RestrictedPython.Eval import default_guarded_getitem, default_guarded_getiter
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safer_getattr,
)
from RestrictedPython.transformer import RestrictingNodeTransformer
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment

from service.engine.calendar import CHINA
from service.engine.timeline import current_now

MAX_SEQUENCE = 100_000
MAX_POWER_BITS = 4096


class ScriptError(Exception):
    """A diagram's expression or script is not allowed or did not finish."""


class StepTimeout(ScriptError):
    pass


def _safe_pow(base: Any, exponent: Any) -> Any:
    big = isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and base not in (0, 1, -1)
    if big and exponent * max(1, abs(base).bit_length()) > MAX_POWER_BITS:
        raise ScriptError("power too large")
    return base**exponent


def _safe_mult(left: Any, right: Any) -> Any:
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, (str, bytes, list, tuple)) and isinstance(count, int) and len(seq) * count > MAX_SEQUENCE:
            raise ScriptError("sequence too large")
    return left * right


def _safe_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_SEQUENCE:
        raise ScriptError("range too large")
    return r


def _inplacevar(op: str, x: Any, y: Any) -> Any:
    if op == "+=":
        return x + y
    if op == "-=":
        return x - y
    if op == "*=":
        return _safe_mult(x, y)
    if op == "/=":
        return x / y
    if op == "//=":
        return x // y
    if op == "%=":
        return x % y
    if op == "**=":
        return _safe_pow(x, y)
    raise ScriptError(f"operator {op} is not allowed")


class _Transformer(RestrictingNodeTransformer):
    """RestrictedPython's checks, plus: no imports at all, and `**`/`*` through size guards."""

    def visit_Import(self, node: ast.AST) -> ast.AST:
        self.error(node, "import statements are not allowed")
        return node

    visit_ImportFrom = visit_Import

    def visit_Try(self, node: ast.AST) -> ast.AST:
        # a script that could catch errors could also catch the stop of its own time limit
        self.error(node, "try/except is not allowed: a failing step stops with its error")
        return node

    visit_TryStar = visit_Try

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        node = self.node_contents_visit(node)
        if isinstance(node.op, ast.Pow):
            name = "_pow_"
        elif isinstance(node.op, ast.Mult):
            name = "_mult_"
        else:
            return node
        call = ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=[node.left, node.right], keywords=[])
        return ast.fix_missing_locations(ast.copy_location(call, node))


def _now() -> _dt.datetime:
    """Now, China time, from the service's clock (tests and replays see their own time)."""
    return current_now().astimezone(CHINA)


def _today() -> _dt.date:
    moment = _now()
    return _dt.date(moment.year, moment.month, moment.day)


MAX_MONTHS = 1200  # 100 years: dates further away are modelling mistakes, and cost time to compute
MAX_DAYS = 36_600


def _whole(n: Any, limit: int, what: str) -> int:
    if not isinstance(n, int) or isinstance(n, bool):
        raise ScriptError(f"{what} must be a whole number, not {n!r}")
    if abs(n) > limit:
        raise ScriptError(f"{what} {n} is out of range (at most {limit})")
    return n


def _add_months(day: Any, months: int) -> Any:
    """A date (or date-time) some calendar months later; the 31st becomes the month's last day."""
    if not isinstance(day, _dt.date) or not isinstance(months, int) or isinstance(months, bool):
        raise TypeError("add_months(date, whole number of months)")
    n = _whole(months, MAX_MONTHS, "months")
    return _date_arithmetic("add_months", lambda: day + relativedelta(months=n))


def _date_arithmetic(function: str, compute: Any) -> _dt.date:
    try:
        return compute()  # type: ignore[no-any-return]
    except (OverflowError, ValueError):
        raise ScriptError(f"{function}: the result lies outside the calendar") from None


def _as_date(day: Any, function: str) -> _dt.date:
    if isinstance(day, _dt.datetime):
        if day.tzinfo is None:
            raise ScriptError(f"{function}: the date-time {day} has no time zone")
        return day.astimezone(CHINA).date()
    if isinstance(day, _dt.date):
        return day
    if isinstance(day, str):
        try:
            return _dt.date.fromisoformat(day)
        except ValueError:
            pass
    raise ScriptError(f"{function} needs a date (YYYY-MM-DD), not {day!r}")


def _days_after(day: Any, days: int) -> _dt.date:
    """The date `days` calendar days after `day`."""
    start, n = _as_date(day, "days_after"), _whole(days, MAX_DAYS, "days")
    return _date_arithmetic("days_after", lambda: start + _dt.timedelta(days=n))


def _months_after(day: Any, months: int) -> _dt.date:
    """The date `months` calendar months after `day` (31 January + 1 month is the last day of February)."""
    start, n = _as_date(day, "months_after"), _whole(months, MAX_MONTHS, "months")
    return _date_arithmetic("months_after", lambda: start + relativedelta(months=n))


_DECISION_ORDER = ("reject", "revise", "pass")


def _join_decisions(*decisions: Any) -> str:
    """The outcome of reviews that bind together: any reject → reject, else any revise → revise, else pass."""
    if len(decisions) == 1 and isinstance(decisions[0], (list, tuple)):
        decisions = tuple(decisions[0])
    if not decisions:
        raise ScriptError("join_decisions needs at least one decision")
    for d in decisions:
        if d not in _DECISION_ORDER:
            raise ScriptError(f"join_decisions: {d!r} is not one of pass, revise, reject")
    return next(outcome for outcome in _DECISION_ORDER if outcome in decisions)


_MACHINE_CLOCK = {"today", "now", "utcnow", "fromtimestamp", "utcfromtimestamp"}


def _getattr(obj: Any, name: str, default: Any = None) -> Any:
    if name in _MACHINE_CLOCK and obj in (_dt.date, _dt.datetime):
        raise ScriptError(f"{obj.__name__}.{name}() reads the machine's clock: use today() or now()")
    return safer_getattr(obj, name, default)


_BUILTINS: dict[str, Any] = dict(safe_builtins)
_BUILTINS.update(
    {
        "min": min, "max": max, "sum": sum, "any": any, "all": all, "sorted": sorted, "enumerate": enumerate,
        "zip": zip, "list": list, "dict": dict, "set": set, "tuple": tuple, "reversed": reversed,
        "range": _safe_range, "map": map, "filter": filter, "round": round, "abs": abs, "len": len,
    }
)
_BUILTINS.pop("__import__", None)
_BUILTINS["pow"] = lambda base, exponent, modulo=None: (
    _safe_pow(base, exponent) if modulo is None else pow(base, exponent, modulo))

_GLOBALS: dict[str, Any] = {
    "__builtins__": _BUILTINS,
    "_getattr_": _getattr,
    "_getitem_": default_guarded_getitem,
    "_getiter_": default_guarded_getiter,
    "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
    "_unpack_sequence_": guarded_unpack_sequence,
    "_write_": full_write_guard,
    "_inplacevar_": _inplacevar,
    "_pow_": _safe_pow,
    "_apply_": lambda function, *args, **kwargs: function(*args, **kwargs),  # f(*args) in diagram code
    "_mult_": _safe_mult,
    "Decimal": Decimal,
    "date": _dt.date,
    "datetime": _dt.datetime,
    "timedelta": _dt.timedelta,
    "floor": math.floor,
    "ceil": math.ceil,
    "today": _today,
    "now": _now,
    "add_months": _add_months,
    "days_after": _days_after,
    "months_after": _months_after,
    "join_decisions": _join_decisions,
}


# the working-day counts an expression made while a timer was armed (service/engine/timers.py): a timer at
# workdays_after(…) is counted again from them when the calendar learns a new year's holidays
WORKDAY_COUNTS: contextvars.ContextVar[list[tuple[_dt.datetime, int]] | None] = contextvars.ContextVar(
    "workday_counts", default=None)


def _calendar_functions(calendar: Any) -> dict[str, Any]:
    def workdays_after(day: Any, days: int) -> _dt.date:
        """The date of the Nth working day after `day` (the start day not counted; 调休 workdays count)."""
        start = _as_date(day, "workdays_after")
        n = _whole(days, MAX_DAYS, "days")
        if n < 0:
            raise ScriptError("workdays_after counts forward: days must not be negative")
        def compute() -> _dt.date:
            moment = _dt.datetime.combine(start, _dt.time(12), CHINA)
            end = calendar.add_working_days(moment, n)  # 24:00 at the end of that day
            counts = WORKDAY_COUNTS.get()
            if counts is not None:
                counts.append((moment, n))
            return (end.astimezone(CHINA) - _dt.timedelta(seconds=1)).date()

        return _date_arithmetic("workdays_after", compute)

    return {"workdays_after": workdays_after}


@functools.lru_cache(maxsize=8192)
def compile_expression(source: str, mode: str) -> Any:
    """Compile once per distinct source text; raise SyntaxError naming every problem."""
    compiler = compile_restricted_eval if mode == "eval" else compile_restricted_exec
    try:
        result = compiler(source, policy=_Transformer)
    except (RecursionError, MemoryError):
        raise SyntaxError("the expression is nested too deeply; split it into steps") from None
    if result.errors:
        raise SyntaxError("; ".join(result.errors))
    return result.code


class _Deadline:
    """A per-thread trace hook that stops a script once its time is up (scripts are short; the
    hook is installed only while one runs)."""

    def __init__(self, seconds: float) -> None:
        self.until = time.monotonic() + seconds

    def __call__(self, frame: Any, event: str, arg: Any) -> Any:
        if time.monotonic() > self.until:
            raise StepTimeout("script step exceeded its time limit")
        return self


class RestrictedEnvironment(TaskDataEnvironment):
    def __init__(self, time_limit: float = 1.0, calendar: Any = None) -> None:
        scope = dict(_GLOBALS)
        if calendar is not None:
            scope.update(_calendar_functions(calendar))
        super().__init__(scope)
        self.time_limit = time_limit
        self.calendar = calendar

    def _run(self, code: Any, scope: dict[str, Any], mode: str) -> Any:
        previous = sys.gettrace()
        sys.settrace(_Deadline(self.time_limit))
        try:
            if mode == "eval":
                return eval(code, scope)
            exec(code, scope)
            return True
        finally:
            sys.settrace(previous)

    def evaluate(self, expression: str, context: dict[str, Any], external_context: dict[str, Any] | None = None) -> Any:
        code = compile_expression(expression, "eval")
        scope = copy.copy(self.globals)
        scope.update(external_context or {})
        scope.update(context)
        return self._run(code, scope, "eval")

    def execute(self, script: str, context: dict[str, Any], external_context: dict[str, Any] | None = None) -> bool:
        code = compile_expression(script, "exec")
        self.check_for_overwrite(context, external_context or {})
        context.update(copy.copy(self.globals))
        context.update(external_context or {})
        try:
            self._run(code, context, "exec")
        finally:
            self._remove_globals_and_functions_from_context(context, external_context)
        return True


class GovflowScriptEngine(PythonScriptEngine):
    """Reports the element whose code runs (so a step stopped from outside can be named)."""

    progress: Any = None

    def _report(self, task: Any) -> None:
        if self.progress is not None:
            element = getattr(getattr(task, "task_spec", None), "bpmn_id", None)
            if element:
                self.progress(element)

    def evaluate(self, task: Any, expression: Any, external_context: Any = None) -> Any:
        self._report(task)
        return super().evaluate(task, expression, external_context)

    def execute(self, task: Any, script: Any, external_context: Any = None) -> Any:
        self._report(task)
        return super().execute(task, script, external_context)


def make_script_engine(time_limit: float = 1.0, calendar: Any = None) -> GovflowScriptEngine:
    if calendar is None:
        from service.engine.calendar import BusinessCalendar

        calendar = BusinessCalendar()
    return GovflowScriptEngine(environment=RestrictedEnvironment(time_limit, calendar))
