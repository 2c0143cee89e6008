"""The human side: inboxes, claiming, completing user tasks with form data."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import exists, or_, select, update
from sqlalchemy.orm import Session

from service import policy
from service.auth import Principal
from service.db.models import HumanTask, ProcessInstance, TaskCandidate
from service.engine import forms
from service.engine.parser import FORM_KEY
from service.engine.runtime import EngineError
from service.errors import Conflict, InvalidInput, NotFound, ProcessError
from service.schemas import CompletionOut, FormFieldOut, TaskDetail, TaskPage
from service.services import outbox
from service.services.audit import AuditTrail
from service.services.common import (
    check_variables,
    decode_cursor,
    encode_cursor,
    task_summary,
    where_given,
)
from service.services.context import AppContext
from service.services.store import save

TASK_STATUSES = ("open", "completed", "cancelled")


def list_tasks(session: Session, principal: Principal, *, candidate_group: str | None, assignee: str | None,
               process_key: str | None, business_key: str | None, process_instance_id: str | None,
               status: str | None, due_before: datetime | None, overdue: bool | None, now: datetime,
               limit: int, cursor: str | None) -> TaskPage:
    status = status or "open"
    if status not in TASK_STATUSES:
        raise InvalidInput("unknown task status", {"status": f"must be one of {', '.join(TASK_STATUSES)}"})
    query = select(HumanTask).where(HumanTask.status == status)
    if candidate_group:
        query = query.where(exists(select(TaskCandidate.task_id).where(
            TaskCandidate.task_id == HumanTask.id, TaskCandidate.kind == "group",
            TaskCandidate.value == candidate_group)))
    query = where_given(query, (HumanTask.assignee, assignee), (HumanTask.process_key, process_key),
                        (HumanTask.business_key, business_key), (HumanTask.instance_id, process_instance_id))
    if due_before:
        query = query.where(HumanTask.due_at.is_not(None), HumanTask.due_at < due_before)
    if overdue is True:
        query = query.where(HumanTask.due_at.is_not(None), HumanTask.due_at < now)
    elif overdue is False:
        query = query.where(or_(HumanTask.due_at.is_(None), HumanTask.due_at >= now))
    query = query.where(policy.visible_tasks(principal))
    if cursor:
        at, ident = decode_cursor(cursor)
        query = query.where(or_(HumanTask.created_at > at, (HumanTask.created_at == at) & (HumanTask.id > str(ident))))
    rows = list(session.scalars(query.order_by(HumanTask.created_at, HumanTask.id).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return TaskPage(items=[task_summary(r) for r in rows[:limit]], next_cursor=next_cursor)


def _load(session: Session, principal: Principal, task_id: str) -> HumanTask:
    row = session.get(HumanTask, task_id)
    if row is None:
        raise NotFound(f"no task '{task_id}'")
    if not policy.may_see_task(principal, row):
        policy.require_task_worker(principal, row)  # names the groups the task is offered to
    return row


def _form(ctx: AppContext, session: Session, row: HumanTask) -> list[forms.FormField]:
    model = ctx.model(session, row.definition_id)
    spec = model.element(row.element_id)
    raw = ((getattr(spec, "extensions", None) or {}).get(FORM_KEY)) if spec is not None else None
    return [forms.FormField.from_dict(f) for f in raw or []]


def get(ctx: AppContext, session: Session, principal: Principal, task_id: str) -> TaskDetail:
    row = _load(session, principal, task_id)
    fields = _form(ctx, session, row)
    instance = session.get(ProcessInstance, row.instance_id)
    return TaskDetail(
        **task_summary(row).model_dump(), documentation=row.documentation, lane=row.lane, form_key=row.form_key,
        form=[FormFieldOut(**f) for f in forms.schema_for_api(fields)],
        variables=instance.variables if instance is not None else {},
    )


def claim(ctx: AppContext, session: Session, principal: Principal, task_id: str) -> TaskDetail:
    row = _load(session, principal, task_id)
    if row.status != "open":
        raise Conflict(f"the task is {row.status}")
    policy.require_task_worker(principal, row)
    if row.assignee == principal.user:
        return get(ctx, session, principal, task_id)
    if row.assignee is not None:
        raise Conflict(f"the task is claimed by {row.assignee}", assignee=row.assignee)
    result = session.execute(update(HumanTask).where(HumanTask.id == row.id, HumanTask.assignee.is_(None),
                                                     HumanTask.status == "open")
                             .values(assignee=principal.user).execution_options(synchronize_session=False))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("the task was claimed by someone else")
    row.assignee = principal.user
    now = ctx.clock.now()
    AuditTrail.for_instance(session, row.instance_id).append(now, principal.user, "task.claimed", task_id=row.id,
                                                             element_id=row.element_id)
    return get(ctx, session, principal, task_id)


def unclaim(ctx: AppContext, session: Session, principal: Principal, task_id: str) -> TaskDetail:
    row = _load(session, principal, task_id)
    if row.status != "open":
        raise Conflict(f"the task is {row.status}")
    if row.assignee is None:
        return get(ctx, session, principal, task_id)
    if not policy.may_release_task(principal, row):
        raise Conflict(f"the task is claimed by {row.assignee}", assignee=row.assignee)
    previous = row.assignee
    row.assignee = None
    now = ctx.clock.now()
    AuditTrail.for_instance(session, row.instance_id).append(now, principal.user, "task.unclaimed", task_id=row.id,
                                                             element_id=row.element_id,
                                                             data={"previous_assignee": previous})
    return get(ctx, session, principal, task_id)


def complete(ctx: AppContext, session: Session, principal: Principal, task_id: str,
             variables: dict[str, Any]) -> CompletionOut:
    row = _load(session, principal, task_id)
    if row.status != "open":
        raise Conflict(f"the task is already {row.status}")
    policy.require_task_worker(principal, row)
    if row.assignee is not None and row.assignee != principal.user:
        raise Conflict(f"the task is claimed by {row.assignee}", assignee=row.assignee)
    fields = _form(ctx, session, row)
    if fields:
        clean, errors = forms.validate(fields, variables)
        if errors:
            raise InvalidInput("the submitted data does not fit the task's form", errors)
    else:
        clean = check_variables(variables)
    instance = session.get(ProcessInstance, row.instance_id)
    if instance is None or instance.status != "running":
        raise Conflict("the process instance is not running")
    model = ctx.model(session, instance.definition_id)
    workflow = ctx.workflow(instance, model)
    task = ctx.runtime.find_ready_user_task(workflow, row.id)
    if task is None:
        raise Conflict("the task is no longer open")
    try:
        ctx.runtime.complete(workflow, task, clean)
    except EngineError as e:
        raise ProcessError(str(e), element_id=e.element_id) from None
    now = ctx.clock.now()
    row.status, row.completed_at, row.completed_by = "completed", now, principal.user
    if row.assignee is None:
        row.assignee = principal.user
    audit = AuditTrail.for_instance(session, instance.id)
    audit.append(now, principal.user, "task.completed", task_id=row.id, element_id=row.element_id,
                 data={"variables": clean})
    outbox.enqueue(session, "task.completed", now, instance.id,
                   {"process_instance_id": instance.id, "process_key": instance.process_key,
                    "business_key": instance.business_key, "task_id": row.id, "element_id": row.element_id,
                    "name": row.name, "completed_by": principal.user, "variables": clean})
    session.flush()
    snap = save(ctx, session, instance, workflow, principal.user, audit, is_new=False)
    next_rows = list(session.scalars(select(HumanTask).where(HumanTask.instance_id == instance.id,
                                                             HumanTask.status == "open")
                                     .order_by(HumanTask.created_at, HumanTask.id)))
    return CompletionOut(process_instance_id=instance.id, status=instance.status, end_event=snap.end_event,
                         next_tasks=[task_summary(r) for r in next_rows])
