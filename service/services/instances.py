"""Starting, reading, listing and cancelling process instances."""
from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import policy
from service.auth import Principal
from service.db.models import HumanTask, ProcessInstance, WaitingEvent
from service.engine import forms
from service.engine.runtime import EngineError
from service.errors import Conflict, InvalidInput, NotFound, ProcessError
from service.schemas import (
    AuditEventOut,
    HistoryOut,
    ProcessInstanceOut,
    ProcessInstancePage,
)
from service.services import definitions, outbox
from service.services.audit import AuditTrail, load_events, verify_events
from service.services.common import (
    check_variables,
    decode_cursor,
    encode_cursor,
    instance_out,
    where_given,
)
from service.services.context import AppContext
from service.services.store import save

ACTIVE = "running"


def start(ctx: AppContext, session: Session, principal: Principal, process_key: str, business_key: str | None,
          variables: dict[str, Any]) -> ProcessInstanceOut:
    definition = definitions.latest(session, process_key)
    policy.require_starter(principal, process_key, definition.candidate_starter_groups,
                           definition.candidate_starter_users)
    if definition.start_form is not None:
        fields = [forms.FormField.from_dict(f) for f in definition.start_form]
        clean, errors = forms.validate(fields, variables)
        if errors:
            raise InvalidInput("the start variables do not fit the start form", errors)
    else:
        clean = check_variables(variables)
    if business_key is not None:
        running = session.scalar(select(ProcessInstance.id).where(
            ProcessInstance.process_key == process_key, ProcessInstance.business_key == business_key,
            ProcessInstance.status == ACTIVE))
        if running:
            raise Conflict(f"a running '{process_key}' instance with business key '{business_key}' exists",
                           process_instance_id=running)
    model = ctx.model(session, definition.id)
    try:
        workflow = ctx.runtime.start(model, clean)
    except EngineError as e:
        raise ProcessError(str(e), element_id=e.element_id) from None
    now = ctx.clock.now()
    instance = ProcessInstance(
        id=str(uuid.uuid4()), definition_id=definition.id, process_key=process_key,
        definition_version=definition.version, business_key=business_key, status=ACTIVE, state_json="",
        variables={}, version=0, started_by=principal.user, started_at=now, updated_at=now,
    )
    audit = AuditTrail(session, instance.id, None)
    audit.append(now, principal.user, "instance.started",
                 data={"process_key": process_key, "version": definition.version, "business_key": business_key,
                       "variables": clean})
    outbox.enqueue(session, "instance.started", now, instance.id,
                   {"process_instance_id": instance.id, "process_key": process_key, "business_key": business_key,
                    "version": definition.version, "started_by": principal.user, "variables": clean})
    try:
        with session.begin_nested():
            save(ctx, session, instance, workflow, principal.user, audit, is_new=True)
    except IntegrityError:
        raise Conflict(f"a running '{process_key}' instance with business key '{business_key}' exists") from None
    return read(ctx, session, principal, instance.id)


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
    row = load_row(session, principal, instance_id)
    tasks = list(session.scalars(select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.status == "open")
                                 .order_by(HumanTask.created_at, HumanTask.id)))
    waiting = list(session.scalars(select(WaitingEvent).where(WaitingEvent.instance_id == row.id)))
    return instance_out(row, tasks, waiting)


def list_instances(session: Session, principal: Principal, *, process_key: str | None, status: str | None,
                   business_key: str | None, limit: int, cursor: str | None) -> ProcessInstancePage:
    query = where_given(select(ProcessInstance), (ProcessInstance.process_key, process_key),
                        (ProcessInstance.status, status), (ProcessInstance.business_key, business_key))
    query = query.where(policy.visible_instances(principal))
    if cursor:
        at, ident = decode_cursor(cursor)
        query = query.where(or_(ProcessInstance.started_at < at,
                                (ProcessInstance.started_at == at) & (ProcessInstance.id < str(ident))))
    rows = list(session.scalars(query.order_by(ProcessInstance.started_at.desc(), ProcessInstance.id.desc())
                                .limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].started_at, rows[limit - 1].id) if len(rows) > limit else None
    return ProcessInstancePage(items=[instance_out(r) for r in rows[:limit]], next_cursor=next_cursor)


def history(session: Session, principal: Principal, instance_id: str, verify: bool) -> HistoryOut:
    row = load_row(session, principal, instance_id)
    events = load_events(session, row.id)
    out = HistoryOut(
        process_instance_id=row.id,
        events=[AuditEventOut(id=e.id, seq=e.seq, at=e.at, actor=e.actor, action=e.action, task_id=e.task_id,
                              element_id=e.element_id, data=e.data, hash=e.hash) for e in events],
    )
    if verify:
        result = verify_events(row.id, events)
        out.verified, out.first_bad_event_id, out.reason = result.verified, result.first_bad_event_id, result.reason
    return out


def cancel(ctx: AppContext, session: Session, principal: Principal, instance_id: str,
           reason: str) -> ProcessInstanceOut:
    policy.require_admin(principal, "cancel process instances")
    row = load_row(session, principal, instance_id)
    if row.status != ACTIVE:
        raise Conflict(f"the process instance is {row.status}, not running")
    model = ctx.model(session, row.definition_id)
    workflow = ctx.workflow(row, model)
    ctx.runtime.cancel(workflow)
    now = ctx.clock.now()
    audit = AuditTrail.for_instance(session, row.id)
    audit.append(now, principal.user, "instance.cancelled", data={"reason": reason})
    row.cancel_reason = reason
    save(ctx, session, row, workflow, principal.user, audit, is_new=False, closing_status="cancelled")
    outbox.enqueue(session, "instance.cancelled", now, row.id,
                   {"process_instance_id": row.id, "process_key": row.process_key, "business_key": row.business_key,
                    "reason": reason, "cancelled_by": principal.user})
    return read(ctx, session, principal, row.id)
