"""Writes an advanced workflow back: state with optimistic locking, and — in the same transaction —
the projections (open human tasks, waiting timers and messages), audit events and outbox events."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from service.db.models import HumanTask, ProcessInstance, TaskCandidate, WaitingEvent
from service.engine.forms import to_json_value
from service.engine.runtime import Snapshot
from service.errors import Conflict
from service.services import outbox
from service.services import state as state_rows
from service.services.audit import AuditTrail
from service.services.context import AppContext


@dataclass
class Change:
    """What the request did, for the audit trail and subscribers."""

    actor: str
    completed_task_id: str | None = None
    completed_task_data: dict[str, Any] | None = None


def save(ctx: AppContext, session: Session, instance: ProcessInstance, workflow: Any, actor: str,
         audit: AuditTrail, *, is_new: bool, closing_status: str | None = None) -> Snapshot:
    now = ctx.clock.now()
    snap = ctx.runtime.snapshot(workflow, now)
    state = state_rows.header(workflow)
    status = closing_status or snap.status
    variables = to_json_value(snap.variables)
    ended_at = now if status in ("completed", "cancelled") else None
    if is_new:
        instance.state_json = state
        instance.status = status
        instance.variables = variables
        instance.end_event = snap.end_event
        instance.version = 1
        instance.updated_at = now
        instance.ended_at = ended_at
        session.add(instance)
        session.flush()
    else:
        result = session.execute(
            update(ProcessInstance)
            .where(ProcessInstance.id == instance.id, ProcessInstance.version == instance.version)
            .values(state_json=state, status=status, variables=variables, end_event=snap.end_event,
                    version=instance.version + 1, updated_at=now, ended_at=ended_at,
                    cancel_reason=instance.cancel_reason)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict("the process instance was changed by another request; reload and try again")
        # bring the loaded row up to date without making the ORM write it a second time
        for name, value in (("version", instance.version + 1), ("status", status), ("variables", variables),
                            ("end_event", snap.end_event), ("updated_at", now), ("ended_at", ended_at),
                            ("state_json", state), ("cancel_reason", instance.cancel_reason)):
            set_committed_value(instance, name, value)

    state_rows.write(session, instance.id, workflow)
    if ctx.settings.verify_state_storage:
        state_rows.verify(session, instance, ctx.model(session, instance.definition_id), ctx.runtime, workflow)
    if status == "running":
        ctx.keep_after_commit(session, instance.id, instance.version, workflow)
    _sync_tasks(session, instance, snap, now, audit)
    _sync_waiting(ctx, session, instance, snap)
    if status == "completed" and closing_status is None:
        audit.append(now, actor, "instance.completed", element_id=snap.end_event,
                     data={"end_event": snap.end_event})
        outbox.enqueue(session, "instance.completed", now, instance.id,
                       {**_instance_ref(instance), "end_event": snap.end_event, "variables": variables})
    return snap


def _instance_ref(instance: ProcessInstance) -> dict[str, Any]:
    return {"process_instance_id": instance.id, "process_key": instance.process_key,
            "business_key": instance.business_key}


def _sync_tasks(session: Session, instance: ProcessInstance, snap: Snapshot, now: datetime, audit: AuditTrail) -> None:
    open_rows = {
        row.id: row
        for row in session.scalars(
            select(HumanTask).where(HumanTask.instance_id == instance.id, HumanTask.status == "open")
        )
    }
    current = {t.id: t for t in snap.open_tasks}
    for task_id, row in open_rows.items():
        if task_id not in current:
            row.status = "cancelled"
            row.completed_at = now
            audit.append(now, "system", "task.cancelled", task_id=row.id, element_id=row.element_id)
    for task_id, t in current.items():
        if task_id in open_rows:
            continue
        session.add(
            HumanTask(
                id=t.id, instance_id=instance.id, definition_id=instance.definition_id,
                process_key=instance.process_key, business_key=instance.business_key, element_id=t.element_id,
                name=t.name, documentation=t.documentation, lane=t.lane, candidate_groups=t.candidate_groups,
                candidate_users=t.candidate_users, assignee=t.assignee, form_key=t.form_key, status="open",
                created_at=now, due_at=t.due_at, due_provisional=t.due_provisional,
            )
        )
        session.flush()
        for g in t.candidate_groups:
            session.add(TaskCandidate(task_id=t.id, kind="group", value=g))
        for u in t.candidate_users:
            session.add(TaskCandidate(task_id=t.id, kind="user", value=u))
        data = {"name": t.name, "candidate_groups": t.candidate_groups, "candidate_users": t.candidate_users,
                "assignee": t.assignee, "due_at": t.due_at.isoformat() if t.due_at else None}
        audit.append(now, "system", "task.created", task_id=t.id, element_id=t.element_id, data=data)
        outbox.enqueue(session, "task.created", now, instance.id,
                       {**_instance_ref(instance), "task_id": t.id, "element_id": t.element_id, **data})


def _sync_waiting(ctx: AppContext, session: Session, instance: ProcessInstance, snap: Snapshot) -> None:
    existing = {
        (w.kind, w.spiff_task_id, w.element_id): w
        for w in session.scalars(select(WaitingEvent).where(WaitingEvent.instance_id == instance.id))
    }
    wanted = {(w.kind, w.spiff_task_id, w.element_id): w for w in snap.waiting}
    stale = [row.id for k, row in existing.items() if k not in wanted]
    if stale:
        session.execute(delete(WaitingEvent).where(WaitingEvent.id.in_(stale)))
    for k, w in wanted.items():
        row = existing.get(k)
        if w.kind == "timer" and w.due_at is not None and (row is None or row.due_at != w.due_at):
            ctx.timer_written(session, w.due_at)
        if row is None:
            session.add(WaitingEvent(
                instance_id=instance.id, process_key=instance.process_key, business_key=instance.business_key,
                kind=w.kind, name=w.name, element_id=w.element_id, spiff_task_id=w.spiff_task_id, due_at=w.due_at,
                calendar=w.calendar, provisional=w.provisional, attempts=0,
            ))
        elif row.due_at != w.due_at or row.provisional != w.provisional:
            row.due_at, row.provisional, row.lease_until = w.due_at, w.provisional, None
