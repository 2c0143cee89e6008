"""The restricted script engine: every condition, script, DMN cell and timer expression runs here.

Expressions are compiled with RestrictedPython (no imports, no names or attributes starting with an
underscore), run with a small set of safe builtins and no modules, and bounded in time and size:
a step that runs longer than the limit is stopped, and powers, repetition and ranges are capped.
"""
from __future__ import annotations

import ast
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


def _add_months(day: Any, months: int) -> Any:
    """A date (or date-time) some calendar months later; the 31st becomes the month's last day."""
    if not isinstance(day, _dt.date) or not isinstance(months, int) or isinstance(months, bool):
        raise TypeError("add_months(date, whole number of months)")
    return day + relativedelta(months=months)


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
}


@functools.lru_cache(maxsize=8192)
def compile_expression(source: str, mode: str) -> Any:
    """Compile once per distinct source text; raise SyntaxError naming every problem."""
    compiler = compile_restricted_eval if mode == "eval" else compile_restricted_exec
    result = compiler(source, policy=_Transformer)
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
    def __init__(self, time_limit: float = 1.0) -> None:
        super().__init__(dict(_GLOBALS))
        self.time_limit = time_limit

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


def make_script_engine(time_limit: float = 1.0) -> PythonScriptEngine:
    return PythonScriptEngine(environment=RestrictedEnvironment(time_limit))
