"""Starting, reading, listing and cancelling process instances."""
from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import policy
from service.auth import Principal
from service.db.models import LOOKUP, HumanTask, ProcessDefinition, ProcessInstance, WaitingEvent
from service.db.prepared import Prepared
from service.engine import forms
from service.errors import Conflict, InvalidInput, NotFound
from service.schemas import (
    AuditEventOut,
    HistoryOut,
    ProcessInstanceOut,
    ProcessInstancePage,
)
from service.services import definitions, outbox
from service.services.audit import AuditTrail, load_events, verify_events
from service.services.common import (
    check_form,
    check_variables,
    china_today,
    decode_cursor,
    encode_cursor,
    instance_out,
    where_given,
)
from service.services.context import AppContext
from service.services.store import Stored, apply, committed, open_tasks_of

ACTIVE = "running"


def start(ctx: AppContext, principal: Principal, process_key: str, business_key: str | None,
          variables: dict[str, Any], idem: Any = None, version: int | None = None) -> ProcessInstanceOut:
    """Start the latest version of a process, or the given version."""
    # the latest version is one statement (with the running duplicate): a plain connection, no ORM session
    with ctx.read_connection() if version is None else ctx.read() as session:
        if version is None:  # with the running instance that has the business key, if any
            definition: Any = _LATEST_FOR_START.execute(session, {"k": process_key, "b": business_key}).first()
            if definition is None:
                raise NotFound(f"no process definition with key '{process_key}'")
            running = definition.running
        else:
            definition = definitions.version(cast(Session, session), process_key, version)  # ctx.read()'s
            running = None if business_key is None else _RUNNING_WITH_KEY.execute(
                session, {"k": process_key, "b": business_key}).scalar()
        policy.require_starter(principal, process_key, definition.candidate_starter_groups,
                               definition.candidate_starter_users)
        if definition.start_form is not None:
            fields = [forms.FormField.from_dict(f) for f in definition.start_form]
            clean = check_form(fields, variables, "the start variables do not fit the start form",
                               china_today(ctx.clock.now()))
        else:
            clean = check_variables(variables)
        if running is not None:
            _refuse_running_duplicate(session, principal, process_key, business_key, running)
        definition_id, definition_version = definition.id, definition.version
        initiator = ctx.model(session, definition_id).initiator
        if initiator:
            # camunda:initiator: the service sets it to the authenticated user, as Camunda does
            if initiator in variables:
                raise InvalidInput("the start variables do not fit", {
                    initiator: "is set by the service to the user who starts the instance"})
            clean = {**clean, initiator: principal.user}
        files = ctx.model_files(session, definition_id)
    instance_id = str(uuid.uuid4())
    result, token = ctx.run_engine("start", definition_id, files, instance_id=instance_id, variables=clean)
    now = ctx.clock.now()
    with ctx.write() as session:
        instance = ProcessInstance(
            id=instance_id, definition_id=definition_id, process_key=process_key,
            definition_version=definition_version,
            business_key=business_key, status=ACTIVE, state_json="", variables={}, version=0,
            started_by=principal.user, started_at=now, updated_at=now,
        )
        audit = AuditTrail(session, instance.id, None)
        audit.append(now, principal.user, "instance.started",
                     data={"process_key": process_key, "version": definition_version,
                           "business_key": business_key, "variables": clean})
        outbox.enqueue(session, "instance.started", now, instance.id,
                       {"process_instance_id": instance.id, "process_key": process_key, "business_key": business_key,
                        "version": definition_version, "started_by": principal.user, "variables": clean})
        stored = Stored()
        try:
            apply(ctx, session, instance, result, token, principal.user, audit, is_new=True, stored=stored)
        except IntegrityError as e:
            if not _business_key_taken(e):
                raise  # another constraint: answered as any other conflict the database reports, not as this one
            # another start took the business key meanwhile; the whole transaction is rolled back
            raise Conflict(f"a running '{process_key}' instance with business key '{business_key}' exists") from None
        # the answer from what was just written (a new instance's tasks and waits), not read back
        out = instance_out(instance, stored.open_tasks, stored.waiting, ctx.messages(session, definition_id))
        if idem is not None:
            idem.store(session, 201, out)
    committed(ctx, instance, result, token)
    return out


_I: Table = ProcessInstance.__table__  # type: ignore[assignment]
_D: Table = ProcessDefinition.__table__  # type: ignore[assignment]
_RUNNING_WITH_KEY = Prepared(select(_I.c.id).where(
    _I.c.process_key == bindparam("k", type_=LOOKUP), _I.c.business_key == bindparam("b", type_=LOOKUP),
    _I.c.status == ACTIVE))
# what a start needs of the latest version, and the id of the running instance with the business key (NULL without
# one, or without a key): one statement. The duplicate is refused early, before the engine runs; the unique index
# refuses one that starts meanwhile
_LATEST_FOR_START = Prepared(
    select(_D.c.id, _D.c.version, _D.c.start_form, _D.c.candidate_starter_groups, _D.c.candidate_starter_users,
           _RUNNING_WITH_KEY.statement.limit(1).scalar_subquery().label("running"))  # type: ignore[attr-defined]
    .where(_D.c.key == bindparam("k", type_=LOOKUP)).order_by(_D.c.version.desc()).limit(1))


def _business_key_taken(error: IntegrityError) -> bool:
    """Whether an INSERT failed on the unique index of the running instances' business keys (PostgreSQL names the
    index in its message, SQLite the index's columns)."""
    message = str(error.orig)
    return ("uq_process_instance_active_business_key" in message
            or "process_instance.process_key, process_instance.business_key" in message)


def _refuse_running_duplicate(session: Session | Connection, principal: Principal, process_key: str,
                              business_key: str | None, running: str) -> None:
    # its id only for a caller who may see it: the key's existence cannot be hidden, the instance can
    visible = session.scalar(select(ProcessInstance.id).where(ProcessInstance.id == running,
                                                              policy.visible_instances(principal)))
    raise Conflict(f"a running '{process_key}' instance with business key '{business_key}' exists",
                   process_instance_id=visible)


def load_row(session: Session, principal: Principal, instance_id: str, *, for_update: bool = False) -> ProcessInstance:
    try:
        uuid.UUID(instance_id)
    except ValueError:
        raise NotFound(f"no process instance '{instance_id}'") from None
    query = select(ProcessInstance).where(ProcessInstance.id == instance_id, policy.visible_instances(principal))
    row = session.scalars(query).first()
    if row is None:
        raise NotFound(f"no process instance '{instance_id}'")
    return row


def read(ctx: AppContext, session: Session, principal: Principal, instance_id: str) -> ProcessInstanceOut:
    return read_in(ctx, session, principal, instance_id)


def read_in(ctx: AppContext, session: Session, principal: Principal, instance_id: str) -> ProcessInstanceOut:
    """The instance view, read in whatever transaction the caller holds."""
    row = load_row(session, principal, instance_id)
    tasks = open_tasks_of(session, [row.id])
    waiting = list(session.scalars(select(WaitingEvent).where(WaitingEvent.instance_id == row.id)))
    return instance_out(row, tasks, waiting, ctx.messages(session, row.definition_id))


INSTANCE_STATUSES = ("running", "completed", "cancelled")


def instance_query(principal: Principal, process_key: str | None, status: str | None,
                   business_key: str | None) -> Any:
    """The instances the principal sees, with the lists' equality filters (the API's list, the console's)."""
    if status and status not in INSTANCE_STATUSES:  # a misspelt status is an error, not an empty list
        raise InvalidInput("unknown instance status", {"status": f"must be one of {', '.join(INSTANCE_STATUSES)}"})
    query = where_given(select(ProcessInstance), (ProcessInstance.process_key, process_key),
                        (ProcessInstance.status, status), (ProcessInstance.business_key, business_key))
    query = query.where(policy.visible_instances(principal))
    return query


def count_instances(session: Session, principal: Principal, *, process_key: str | None = None,
                    status: str | None = None, business_key: str | None = None) -> int:
    """How many instances list_instances finds with the same filters."""
    query = instance_query(principal, process_key, status, business_key)
    return int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)


def list_instances(ctx: AppContext, session: Session, principal: Principal, *, process_key: str | None,
                   status: str | None, business_key: str | None, limit: int,
                   cursor: str | None, offset: int = 0) -> ProcessInstancePage:
    """Newest first; pages by cursor, or by offset (then without a next cursor)."""
    query = instance_query(principal, process_key, status, business_key)
    if offset:
        if cursor:
            raise InvalidInput("give a cursor or an offset, not both", {"cursor": "not with offset"})
        query = query.offset(offset)
    if cursor:
        at, ident = decode_cursor(cursor)
        query = query.where(tuple_(ProcessInstance.started_at, ProcessInstance.id) < tuple_(at, str(ident)))
    rows = list(session.scalars(query.order_by(ProcessInstance.started_at.desc(), ProcessInstance.id.desc())
                                .limit(limit + 1)))
    next_cursor = (encode_cursor(rows[limit - 1].started_at, rows[limit - 1].id)
                   if len(rows) > limit and not offset else None)
    return ProcessInstancePage(items=standing(ctx, session, rows[:limit]), next_cursor=next_cursor)


def standing(ctx: AppContext, session: Session, rows: list[ProcessInstance]) -> list[ProcessInstanceOut]:
    """A page of instances with where each stands (open tasks, what it waits for), for the whole page in two
    queries, not one per instance."""
    ids = [r.id for r in rows]
    open_tasks: dict[str, list[HumanTask]] = {i: [] for i in ids}
    waiting: dict[str, list[WaitingEvent]] = {i: [] for i in ids}
    if ids:
        for t in open_tasks_of(session, ids):
            open_tasks[t.instance_id].append(t)
        for w in session.scalars(select(WaitingEvent).where(WaitingEvent.instance_id.in_(ids))):
            waiting[w.instance_id].append(w)
    models = {d: ctx.messages(session, d) for d in {r.definition_id for r in rows}}
    return [instance_out(r, open_tasks[r.id], waiting[r.id], models[r.definition_id]) for r in rows]


def history(session: Session, principal: Principal, instance_id: str, verify: bool) -> HistoryOut:
    row = load_row(session, principal, instance_id)
    events = load_events(session, row.id)
    out = HistoryOut(
        process_instance_id=row.id,
        events=[AuditEventOut(id=e.id, seq=e.seq, at=e.at, actor=e.actor, action=e.action, task_id=e.task_id,
                              element_id=e.element_id, data=e.data, hash=e.hash) for e in events],
    )
    if verify:
        result = verify_events(row.id, events, (row.audit_seq, row.audit_head))
        out.verified, out.first_bad_event_id, out.reason = result.verified, result.first_bad_event_id, result.reason
    return out


def cancel(ctx: AppContext, principal: Principal, instance_id: str, reason: str,
           idem: Any = None) -> ProcessInstanceOut:
    policy.require_admin(principal, "cancel process instances")
    with ctx.read() as session:
        row = load_row(session, principal, instance_id)
        if row.status != ACTIVE:
            raise Conflict(f"the process instance is {row.status}, not running")
        files = ctx.model_files(session, row.definition_id)
    result, token = ctx.run_engine("cancel", row.definition_id, files, instance=(row.id, row.state_token))
    now = ctx.clock.now()
    with ctx.write() as session:
        audit = AuditTrail.for_instance(session, row.id)
        audit.append(now, principal.user, "instance.cancelled", data={"reason": reason})
        row.cancel_reason = reason
        apply(ctx, session, row, result, token, principal.user, audit, is_new=False, closing_status="cancelled")
        outbox.enqueue(session, "instance.cancelled", now, row.id,
                       {"process_instance_id": row.id, "process_key": row.process_key,
                        "business_key": row.business_key, "reason": reason, "cancelled_by": principal.user})
        out = read_in(ctx, session, principal, row.id)
        if idem is not None:
            idem.store(session, 200, out)
    committed(ctx, row, result, token)
    return out
