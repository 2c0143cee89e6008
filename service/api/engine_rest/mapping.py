"""Camunda 7 REST shapes: typed variables, dates, ids and error bodies, mapped to and from govflow's values."""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from service.engine.calendar import CHINA
from service.engine.forms import DECIMAL_TEXT
from service.engine.values import problems
from service.errors import (
    ConcurrentChange,
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    InvalidModel,
    NotFound,
    Unauthorized,
)
from service.text import ascii_number

ENGINE_VERSION = "7.24.0"
PARSE_ERROR_PREFIX = "ENGINE-09005 Could not parse BPMN process."


# ---- errors ------------------------------------------------------------------------------------------
class CamundaError(Exception):
    """An error answered with Camunda's body {"type", "message"} (and "code" for engine exceptions)."""

    def __init__(self, status: int, type_: str, message: str, code: int | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.code, self.extra = status, type_, message, code, extra

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            out["code"] = self.code
        out.update(self.extra)
        return out


def invalid_request(message: str) -> CamundaError:
    return CamundaError(400, "InvalidRequestException", message)


def not_found(message: str) -> CamundaError:
    return CamundaError(404, "InvalidRequestException", message)


def _field_errors(exc: DomainError) -> str:
    errors = exc.extra.get("errors") or {}
    if not errors:
        return exc.detail
    return exc.detail + ": " + "; ".join(f"{k}: {v}" for k, v in errors.items())


def from_domain(exc: DomainError, *, not_found_status: int = 404, not_found_type: str = "InvalidRequestException",
                conflict_type: str = "ProcessEngineException") -> CamundaError:
    """A govflow domain error as the status and body a Camunda 7 client expects."""
    if isinstance(exc, Unauthorized):
        return CamundaError(401, "AuthenticationException", exc.detail)
    if isinstance(exc, Forbidden):
        return CamundaError(403, "AuthorizationException", exc.detail, userId=None, missingAuthorizations=[])
    if isinstance(exc, NotFound):
        return CamundaError(not_found_status, not_found_type, exc.detail)
    if isinstance(exc, ConcurrentChange):
        return CamundaError(409, "OptimisticLockingException", exc.detail, code=1)
    if isinstance(exc, Conflict):
        kind = "TaskAlreadyClaimedException" if "assignee" in exc.extra else conflict_type
        return CamundaError(409, kind, exc.detail, code=0)
    if isinstance(exc, InvalidModel):
        return parse_error(exc)
    if isinstance(exc, InvalidInput):
        return invalid_request(_field_errors(exc))
    # a process that cannot advance with the given input (a script or condition failed): nothing was changed
    return CamundaError(400, "ProcessEngineException", exc.detail, code=0)


def parse_error(exc: InvalidModel) -> CamundaError:
    """ENGINE-09005, which Camunda Modeler recognises as "could not parse the diagram" and shows in its log."""
    file = exc.extra.get("file")
    element_id = exc.extra.get("element_id")
    line = exc.extra.get("line")
    reason = exc.detail
    if file and reason.startswith(f"{file}: "):
        reason = reason[len(file) + 2:]
    text = f"{element_id}: {reason}" if element_id else reason
    where = " | ".join(p for p in (file, f"line {line}" if line else None) if p)
    message = f"{PARSE_ERROR_PREFIX} Errors: \n* {text}" + (f" | {where}" if where else "")
    problem = {"message": text, "line": line or 0, "column": 0, "mainElementId": element_id,
               "elementIds": [element_id] if element_id else []}
    return CamundaError(400, "ParseException", message, code=0,
                        details={file or "deployment": {"errors": [problem], "warnings": []}})


# ---- dates: Camunda's default format yyyy-MM-dd'T'HH:mm:ss.SSSZ, in China time -------------------------
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CAMUNDA_OFFSET = re.compile(r"([+-]\d{2})(\d{2})$")


def format_date(value: datetime | None) -> str | None:
    if value is None:
        return None
    local = value.astimezone(CHINA)
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}" + local.strftime("%z")


def format_day(value: date) -> str:
    """A calendar day as a Camunda Date: its midnight in China time."""
    return format_date(datetime.combine(value, time(0), CHINA)) or ""


def parse_datetime(text: str) -> datetime:
    """Camunda's date format (2026-03-02T09:00:00.000+0800), ISO 8601 with an offset or Z, or a bare
    date-time read in China time; raises ValueError."""
    raw = text.strip()
    # an unencoded "+" in a query string arrives as a space: 2026-03-02T09:00:00.000 0800
    raw = re.sub(r"(\d) (\d{2}:?\d{2})$", r"\1+\2", raw)
    if raw.endswith("Z"):
        raw = raw[:-1] + "+00:00"
    raw = _CAMUNDA_OFFSET.sub(r"\1:\2", raw) if "T" in raw else raw
    value = datetime.fromisoformat(raw)
    return value if value.tzinfo is not None else value.replace(tzinfo=CHINA)


def query_date(name: str, text: str | None) -> datetime | None:
    if text is None or text == "":
        return None
    try:
        return parse_datetime(text)
    except ValueError:
        raise invalid_request(f"Cannot set query parameter '{name}' to value '{text}': "
                              "expected a date such as 2026-03-02T09:00:00.000+0800") from None


def duration_ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return int((end - start) / timedelta(milliseconds=1))


# ---- typed variables ---------------------------------------------------------------------------------
_INT_RANGES = {"Short": 2**15, "Integer": 2**31, "Long": 2**63}


def _type_error(name: str, type_: str, value: Any, why: str) -> CamundaError:
    shown = json.dumps(value, ensure_ascii=False, default=str)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return invalid_request(f"Cannot convert value '{shown}' of type '{type_}' for variable '{name}': {why}")


def _integer(name: str, type_: str, value: Any) -> int:
    if isinstance(value, bool):
        raise _type_error(name, type_, value, "not an integer")
    if isinstance(value, int):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (
            isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value)):
        number = int(value)
    else:
        raise _type_error(name, type_, value, "not an integer")
    bound = _INT_RANGES[type_]
    if not -bound <= number < bound:
        raise _type_error(name, type_, value, f"out of the range of a {type_}")
    return number


def _decimal(name: str, value: Any) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise _type_error(name, "Double", value, "not a number")
    if isinstance(value, str) and not DECIMAL_TEXT.fullmatch(value.strip()):  # ASCII digits, not ١٢٣
        raise _type_error(name, "Double", value, "not a number")
    try:
        # a float's shortest repr is what the client wrote: 49.99 stays exactly 49.99
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        raise _type_error(name, "Double", value, "not a number") from None
    if isinstance(value, (list, dict)) or not number.is_finite():
        raise _type_error(name, "Double", value, "not a finite number")
    return number


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _type_error(name, "Boolean", value, "not true or false")


def _date(name: str, value: Any) -> date | datetime:
    if not isinstance(value, str):
        raise _type_error(name, "Date", value, "a Date is a text such as 2026-03-02T09:00:00.000+0800")
    text = value.strip()
    try:
        if _DATE_ONLY.match(text):
            return date.fromisoformat(text)
        moment = parse_datetime(text)
    except ValueError:
        raise _type_error(name, "Date", value, "a Date is a text such as 2026-03-02T09:00:00.000+0800") from None
    # midnight at the sender's offset is a calendar day (a date field of a form), as Camunda clients send days
    if moment.timetz().replace(tzinfo=None) == time(0):
        return moment.date()
    return moment


def _json(name: str, value: Any, type_: str = "Json") -> Any:
    if isinstance(value, str):
        try:
            return _exact(json.loads(value))
        except ValueError:
            raise _type_error(name, type_, value, "not valid JSON") from None
    if value is None or isinstance(value, (dict, list)):
        return _exact(value)
    raise _type_error(name, type_, value, "a Json value is a JSON text")


def _exact(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not finite")
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _exact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_exact(v) for v in value]
    return value


def _untyped(name: str, value: Any) -> Any:
    """No type given: the JSON value decides, as Camunda infers it from the value."""
    if isinstance(value, float):
        return _decimal(name, value)
    if isinstance(value, (dict, list)):
        return _exact(value)
    return value


def variable_value(name: str, dto: Any) -> Any:
    """One Camunda variable {"value", "type", "valueInfo"} as a govflow value; 400 when the value does not fit."""
    if not isinstance(dto, Mapping):
        raise invalid_request(f"variable '{name}' must be an object {{\"value\": …, \"type\": …}}")
    value = dto.get("value")
    type_ = dto.get("type")
    if type_ is None or type_ == "":
        return _untyped(name, value)
    if not isinstance(type_, str):
        raise invalid_request(f"variable '{name}': the type must be a text")
    kind = type_[:1].upper() + type_[1:]
    if value is None and kind != "Object":
        return None
    if kind == "String":
        if not isinstance(value, str):
            raise _type_error(name, kind, value, "not a text")
        return value
    if kind in _INT_RANGES:
        return _integer(name, kind, value)
    if kind in ("Double", "Number"):
        return _decimal(name, value)
    if kind == "Boolean":
        return _boolean(name, value)
    if kind == "Date":
        return _date(name, value)
    if kind == "Json":
        return _json(name, value)
    if kind == "Null":
        return None
    if kind == "Object":
        info = dto.get("valueInfo") or {}
        if isinstance(info, Mapping) and info.get("serializationDataFormat") == "application/json":
            return _json(name, value, "Object")
        raise invalid_request(f"variable '{name}': Object values are supported only as "
                              "serializationDataFormat application/json; send a Json variable instead")
    raise invalid_request(f"Unsupported value type '{type_}' of variable '{name}'; supported: String, Long, "
                          "Integer, Short, Double, Boolean, Date, Json, Null")


def variables_in(variables: Any) -> dict[str, Any]:
    """A Camunda variables map as govflow values."""
    if variables is None:
        return {}
    if not isinstance(variables, Mapping):
        raise invalid_request("variables must be an object mapping names to {\"value\", \"type\"}")
    try:
        values = {str(name): variable_value(str(name), dto) for name, dto in variables.items()}
    except (RecursionError, ValueError, OverflowError) as e:
        if isinstance(e, CamundaError):
            raise
        raise invalid_request(f"a variable's value cannot be read: {type(e).__name__}") from None
    found = problems(values, python_values=True)  # what /api/v1 refuses is refused here too
    if found:
        path, reason = next(iter(found.items()))
        raise invalid_request(f"variable {path} {reason}")
    return values


FIELD_TYPES = {"string": "String", "enum": "String", "long": "Long", "decimal": "Double", "boolean": "Boolean",
               "date": "Date", "documents": "Json"}


def typed(value: Any, field_type: str | None = None) -> dict[str, Any]:
    """A govflow value as a Camunda typed value; a form field's type decides where one is known."""
    kind = FIELD_TYPES.get(field_type or "")
    if value is None:
        return {"type": kind or "Null", "value": None, "valueInfo": {}}
    if kind == "Date" and isinstance(value, str) and _DATE_ONLY.match(value):
        return {"type": "Date", "value": format_day(date.fromisoformat(value)), "valueInfo": {}}
    if isinstance(value, bool):
        return {"type": "Boolean", "value": value, "valueInfo": {}}
    if kind == "Double" and isinstance(value, (int, float, Decimal)):
        return {"type": "Double", "value": float(value), "valueInfo": {}}
    if isinstance(value, int):
        return {"type": "Long", "value": value, "valueInfo": {}}
    if isinstance(value, (float, Decimal)):
        number = float(value)
        if kind == "Long" and number.is_integer():
            return {"type": "Long", "value": int(number), "valueInfo": {}}
        return {"type": "Double", "value": number, "valueInfo": {}}
    if isinstance(value, datetime):
        return {"type": "Date", "value": format_date(value), "valueInfo": {}}
    if isinstance(value, date):
        return {"type": "Date", "value": format_day(value), "valueInfo": {}}
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
        return {"type": "Json", "value": text, "valueInfo": {}}
    if kind == "Double" and isinstance(value, str):
        try:
            return {"type": "Double", "value": float(Decimal(value)), "valueInfo": {}}
        except InvalidOperation:
            pass
    return {"type": "String", "value": str(value), "valueInfo": {}}


def typed_variables(values: Mapping[str, Any], field_types: Mapping[str, str] | None = None) -> dict[str, Any]:
    types = field_types or {}
    return {name: typed(value, types.get(name)) for name, value in values.items()}


# ---- ids ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DefinitionRef:
    """A process definition id as a client sent it: govflow's number, or Camunda's key:version:deploymentId."""

    number: int | None = None
    key: str | None = None
    version: int | None = None
    deployment_id: str | None = None


def definition_id(key: str, version: int, deployment_id: int | str) -> str:
    return f"{key}:{version}:{deployment_id}"


def parse_definition_id(text: str) -> DefinitionRef:
    number = ascii_number(text, 9)  # what a database integer holds
    if number is not None:
        return DefinitionRef(number=number)
    parts = text.split(":")
    version = ascii_number(parts[1], 9) if len(parts) == 3 else None
    if version is not None and parts[0] and parts[2]:
        return DefinitionRef(key=parts[0], version=version, deployment_id=parts[2])
    raise not_found(f"No matching definition with id {text}")


# ---- query flags -------------------------------------------------------------------------------------
def flag(name: str, value: Any) -> bool:
    """A Camunda boolean query or form parameter; only `true` switches a filter on."""
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "false", ""):
        return text == "true"
    raise invalid_request(f"Cannot set parameter '{name}' to value '{value}': expected true or false")


def paging(first_result: int | None, max_results: int | None, cap: int) -> tuple[int, int]:
    if first_result is not None and not 0 <= first_result < 2**63:  # an offset the databases take
        raise invalid_request("firstResult must be from 0 to 9223372036854775807")
    if max_results is not None and max_results < 0:
        raise invalid_request("maxResults must not be negative")
    size = cap if max_results is None else min(max_results, cap)
    return first_result or 0, size


def sort_order(sort_by: str | None, sort_order: str | None, allowed: Mapping[str, str]) -> tuple[str | None, bool]:
    """Camunda's sortBy/sortOrder (both or neither) as (govflow sort key, descending)."""
    if sort_by is None and sort_order is None:
        return None, False
    if sort_by is None or sort_order is None:
        raise invalid_request("Only a single sorting parameter specified. sortBy and sortOrder required")
    if sort_by not in allowed:
        raise invalid_request(f"Cannot set query parameter 'sortBy' to value '{sort_by}'; "
                              f"supported: {', '.join(allowed)}")
    if sort_order not in ("asc", "desc"):
        raise invalid_request(f"Cannot set query parameter 'sortOrder' to value '{sort_order}'")
    return allowed[sort_by], sort_order == "desc"


def decisions_in(files: Mapping[str, bytes]) -> list[tuple[str, str | None, str]]:
    """The decisions (id, name, file) of the .dmn files of a deployment, after the deployment accepted them."""
    from lxml import etree

    found = []
    for name, content in sorted(files.items()):
        if not name.endswith(".dmn"):
            continue
        try:
            tree = etree.fromstring(content)
        except etree.XMLSyntaxError:
            continue
        found += [(d.get("id"), d.get("name"), name) for d in tree.iter("{*}decision") if d.get("id")]
    return found
