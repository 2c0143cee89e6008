"""Helpers shared by use cases: variable checks, cursors, row → response mapping."""
from __future__ import annotations

import base64
import json
import re
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Select

from service.db.models import HumanTask, ProcessInstance, WaitingEvent
from service.engine.calendar import CHINA
from service.engine.contracts import MessageContract
from service.engine.forms import RESERVED_NAMES, FormField, from_json_value, schema_for_api, validate
from service.engine.values import problems
from service.errors import InvalidInput
from service.policy import is_candidate  # noqa: F401 - the rule lives in the policy; kept importable here
from service.schemas import (
    FormFieldOut,
    ProcessInstanceOut,
    ReturnedOut,
    SupersededOut,
    TaskRecord,
    TaskSummary,
    WaitingOut,
)

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def check_variables(variables: dict[str, Any]) -> dict[str, Any]:
    """Variables without a form: names must be usable in expressions, values storable (JSON-like, bounded,
    no `typename` key at any depth); fractions become decimals."""
    errors = {k: "must start with a letter and contain only letters, digits and _"
              for k in variables if not _NAME.match(k)}
    errors.update({k: "is a reserved name" for k in variables if k in RESERVED_NAMES})
    errors.update(problems(variables, python_values=True))
    if errors:
        raise InvalidInput("some variables cannot be accepted", errors)
    return {k: from_json_value(v) for k, v in variables.items()}


def china_today(now: datetime) -> date:
    return now.astimezone(CHINA).date()


def check_form(fields: list[FormField], variables: dict[str, Any], message: str,
               today: date | None = None) -> dict[str, Any]:
    """Submitted values against a form; each bad field is named."""
    errors = problems(variables, python_values=True)  # dates may come typed (the Camunda REST API)
    if not errors:
        clean, errors = validate(fields, variables, today=today)
        errors.update(problems(clean, python_values=True))
    if errors:
        raise InvalidInput(message, errors)
    return clean


def where_given(query: Select[Any], *filters: tuple[Any, Any]) -> Select[Any]:
    """Add `column == value` for each filter whose value was given."""
    for column, value in filters:
        if is_given(value):
            query = query.where(column == value)
    return query


def is_given(value: Any) -> bool:
    """A list filter's value was given: not left out, not empty."""
    return value is not None and value != ""


def encode_cursor(at: datetime, ident: str | int, of: str | None = None) -> str:
    """A list's cursor: the last row's time and id; a list whose ids are numbers names itself (`of`), so its
    cursor is not taken by another such list."""
    raw = json.dumps([at.isoformat(), ident] if of is None else [at.isoformat(), ident, of]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, Any]:
    """A cursor's time, in UTC whatever offset it was made with (SQLite compares stored times as UTC text), and its
    id."""
    try:
        at, ident = _cursor_parts(cursor)
        return _cursor_time(at), _cursor_id(ident)
    except Exception:
        raise _bad_cursor() from None


def decode_numbered_cursor(cursor: str, of: str) -> tuple[datetime, int]:
    """The time and id of a cursor that `encode_cursor(…, of=of)` made: refused if another list made it."""
    try:
        at, ident, made_by = _cursor_parts(cursor)
        number = _cursor_id(ident)
        if made_by != of or not isinstance(number, int):
            raise ValueError("a cursor of another list")
        return _cursor_time(at), number
    except Exception:
        raise _bad_cursor() from None


def _cursor_parts(cursor: str) -> Any:
    """What encode_cursor wrote (its padding left off): a JSON list, unchecked."""
    return json.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))


def _cursor_time(at: Any) -> datetime:
    moment = datetime.fromisoformat(at)
    if moment.tzinfo is None:
        raise ValueError("not a cursor of this API")
    return moment.astimezone(UTC)  # one that falls off the calendar in UTC is not one this API made


def _cursor_id(ident: Any) -> str | int:
    # a number fits a 64-bit id column (a larger one failed in the database, differently on each)
    if isinstance(ident, bool) or not isinstance(ident, (str, int)) or \
            isinstance(ident, int) and not -2**63 <= ident < 2**63:
        raise ValueError("not a cursor of this API")
    return ident


def _bad_cursor() -> InvalidInput:
    return InvalidInput("the cursor is not valid", {"cursor": "not a cursor returned by this API"})


def task_summary(row: HumanTask) -> TaskSummary:
    return TaskSummary(**_summary_fields(row))


def _summary_fields(row: HumanTask) -> dict[str, Any]:
    return dict(
        id=row.id, name=row.name, element_id=row.element_id, process_instance_id=row.instance_id,
        process_key=row.process_key, business_key=row.business_key, candidate_groups=row.candidate_groups,
        candidate_users=row.candidate_users, assignee=row.assignee, status=row.status, created_at=row.created_at,
        due_at=row.due_at, due_provisional=row.due_provisional, completed_at=row.completed_at,
        completed_by=row.completed_by, definition_id=row.definition_id,
    )


def task_record(row: HumanTask) -> TaskRecord:
    return TaskRecord(**record_fields(row))


def record_fields(row: HumanTask) -> dict[str, Any]:
    """A task's fields as a TaskRecord (or a model built on it) takes them: validated once, by that model."""
    reopened = row.reopened or {}
    returned = ReturnedOut(**{k: v for k, v in reopened.items() if k != "kind"}) if reopened else None
    return dict(**_summary_fields(row), lane=row.lane, submitted=row.submitted, outputs=row.outputs,
                comment=row.comment,
                sent_back=returned if reopened.get("kind") == "sent_back" else None,
                withdrawn=returned if reopened.get("kind") == "withdrawn" else None,
                superseded=SupersededOut(**row.superseded) if row.superseded else None)


def payload_out(fields: list[FormField] | None) -> list[FormFieldOut] | None:
    return None if fields is None else [FormFieldOut(**f) for f in schema_for_api(fields)]


def instance_out(row: ProcessInstance, tasks: list[HumanTask] | None = None,
                 waiting: list[WaitingEvent] | None = None,
                 messages: dict[str, MessageContract] | None = None) -> ProcessInstanceOut:
    return ProcessInstanceOut(
        id=row.id, process_key=row.process_key, definition_version=row.definition_version,
        business_key=row.business_key, status=row.status, end_event=row.end_event, variables=row.variables,
        started_by=row.started_by, started_at=row.started_at, updated_at=row.updated_at, ended_at=row.ended_at,
        cancel_reason=row.cancel_reason,
        open_tasks=[task_summary(t) for t in tasks or []],
        waiting_for=[
            WaitingOut(kind=w.kind, name=w.name, element_id=w.element_id, due_at=w.due_at, calendar=w.calendar,
                       provisional=w.provisional, failed_attempts=w.attempts or 0, last_error=w.last_error,
                       payload=payload_out(messages[w.name].fields) if w.kind == "message" and messages
                       and w.name in messages else None)
            for w in sorted(waiting or [], key=lambda w: (w.kind, w.due_at is None, w.due_at or row.started_at))
        ],
    )
