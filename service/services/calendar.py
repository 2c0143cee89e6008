"""When a year's official holiday arrangement arrives, pending working-day deadlines computed
from rule-based holidays are recomputed."""
from __future__ import annotations

import logging
from uuid import UUID

from sqlalchemy import or_, select

from service.db.models import HumanTask, ProcessInstance, WaitingEvent
from service.db.session import is_sqlite
from service.services.audit import AuditTrail
from service.services.context import AppContext
from service.services.store import save

log = logging.getLogger("govflow.calendar")


def recompute_provisional(ctx: AppContext) -> int:
    """Recompute every provisional due date; returns how many instances changed."""
    with ctx.session_factory() as session:
        timers = select(WaitingEvent.instance_id).where(WaitingEvent.provisional.is_(True))
        tasks = select(HumanTask.instance_id).where(HumanTask.status == "open", HumanTask.due_provisional.is_(True))
        ids = sorted(set(session.scalars(timers)) | set(session.scalars(tasks)))
    changed = 0
    for instance_id in ids:
        with ctx.session_factory() as session, session.begin():
            query = select(ProcessInstance).where(ProcessInstance.id == instance_id,
                                                  ProcessInstance.status == "running")
            if not is_sqlite(ctx.engine):
                query = query.with_for_update()
            instance = session.scalars(query).first()
            if instance is None:
                continue
            model = ctx.model(session, instance.definition_id)
            workflow = ctx.workflow(instance, model)
            timers_changed = ctx.runtime.recompute_calendar_timers(workflow)
            audit = AuditTrail.for_instance(session, instance.id)
            moved: dict[str, str | None] = {}
            rows = session.scalars(select(HumanTask).where(
                HumanTask.instance_id == instance.id, HumanTask.status == "open",
                or_(HumanTask.due_provisional.is_(True), HumanTask.due_at.is_not(None))))
            for row in rows:
                if not row.due_provisional:
                    continue
                task = workflow.get_task_from_id(UUID(row.id))
                due, provisional = ctx.runtime.task_due(task, row.created_at)
                if due != row.due_at or provisional != row.due_provisional:
                    row.due_at, row.due_provisional = due, provisional
                    moved[row.id] = due.isoformat() if due else None
            if not timers_changed and not moved and not _provisional_flags_stale(ctx, session, instance.id):
                continue
            audit.append(ctx.clock.now(), "system", "calendar.recomputed", data={"tasks": moved})
            save(ctx, session, instance, workflow, "system", audit, is_new=False)
            changed += 1
    if changed:
        log.info("recomputed working-day deadlines of %d instances", changed)
    return changed


def _provisional_flags_stale(ctx: AppContext, session: object, instance_id: str) -> bool:
    """A timer whose date did not move may still stop being provisional."""
    from sqlalchemy.orm import Session

    assert isinstance(session, Session)
    for w in session.scalars(select(WaitingEvent).where(WaitingEvent.instance_id == instance_id,
                                                        WaitingEvent.provisional.is_(True))):
        if w.due_at is not None and not ctx.calendar.is_provisional(w.due_at):
            return True
    return False
