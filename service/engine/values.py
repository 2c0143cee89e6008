"""What a process variable may hold: JSON-like values of bounded size and depth, which store and restore
unchanged. Checked where values enter — the REST API, messages, what diagram scripts leave behind.

A dict key `typename` is refused at any depth: the engine's serializer would rebuild such a dict as an
object of that type on the next load (a `Decimal` that is not a number poisons the instance for good).
"""
from __future__ import annotations

import datetime as _dt
import math
from decimal import Decimal
from typing import Any

MAX_DEPTH = 32
MAX_BYTES = 1_000_000  # approximate size of all the variables checked at once
MAX_INT = 2**63 - 1
MAX_DECIMAL_DIGITS = 40
RESERVED_KEY = "typename"
_SCALARS = (str, bool, int, float, Decimal, type(None))
_PYTHON_ONLY = (_dt.datetime, _dt.date, _dt.time, _dt.timedelta)


def problems(variables: dict[str, Any], *, python_values: bool = False, limit: int = 10) -> dict[str, str]:
    """{path: reason} for every value that may not be stored (at most `limit`); empty when all is well.
    With python_values, dates, date-times and durations (what forms and scripts produce) are allowed too."""
    found: dict[str, str] = {}
    size = 0
    stack: list[tuple[str, Any, int]] = [(str(k), v, 1) for k, v in reversed(list(variables.items()))]
    for key in variables:
        if not isinstance(key, str):
            found[repr(key)] = "a variable name must be a text"
    while stack and len(found) < limit:
        path, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            found[path] = f"is nested deeper than {MAX_DEPTH} levels"
            continue
        if isinstance(value, str):
            size += len(value) + 2
            if not _encodable(value):
                found[path] = "contains a character that is not valid Unicode (a lone surrogate)"
            elif "\x00" in value:
                found[path] = "contains a NUL character"
        elif isinstance(value, bool) or value is None:
            size += 4
        elif isinstance(value, int):
            size += 8
            if abs(value) > MAX_INT:
                found[path] = "is an integer beyond 64 bits; send large numbers as text"
        elif isinstance(value, float):
            size += 8
            if not math.isfinite(value) or (value and not 1e-30 <= abs(value) <= 1e30):
                found[path] = "is not a finite number (NaN and infinity cannot be stored)"
        elif isinstance(value, Decimal):
            size += 8
            if not value.is_finite() or len(value.as_tuple().digits) > MAX_DECIMAL_DIGITS \
                    or (value and abs(value.adjusted()) > 30):
                found[path] = f"is not a finite number of at most {MAX_DECIMAL_DIGITS} digits (within 10^±30)"
        elif python_values and isinstance(value, _PYTHON_ONLY):
            size += 16
            if isinstance(value, _dt.timedelta) and abs(value) > _dt.timedelta(days=36_600):
                found[path] = "is a duration longer than 100 years"
        elif isinstance(value, dict):
            size += 2
            for k, v in value.items():
                if not isinstance(k, str):
                    found[f"{path}.{k!r}"] = "an object key must be a text"
                    continue
                if k == RESERVED_KEY:
                    found[f"{path}.{k}"] = f"'{RESERVED_KEY}' is a reserved name"
                    continue
                if not _encodable(k):
                    found[path] = "has a key that is not valid Unicode (a lone surrogate)"
                    continue
                size += len(k) + 3
                stack.append((f"{path}.{k}", v, depth + 1))
        elif isinstance(value, (list, tuple)):
            size += 2
            for i, v in enumerate(value):
                stack.append((f"{path}[{i}]", v, depth + 1))
        else:
            found[path] = f"is a {type(value).__name__}, which cannot be stored (use text, numbers, true/false, " \
                          "lists and objects)"
        if size > MAX_BYTES:
            found[path] = f"the values are larger than {MAX_BYTES // 1000} kB"
            break
    return found


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
