"""Firing timers: due ones from the scheduler, and a chosen one on an administrator's request."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import metrics, policy
from service.auth import Principal
from service.db.models import ProcessInstance, WaitingEvent
from service.engine.runtime import EngineError
from service.errors import Conflict, NotFound, ProcessError
from service.schemas import ProcessInstanceOut
from service.services import instances, outbox
from service.services.audit import AuditTrail
from service.services.context import AppContext
from service.services.store import save


def _record(session: Session, instance: ProcessInstance, timer: WaitingEvent, actor: str, audit: AuditTrail,
            now: datetime, forced: bool, fired_by: str | None = None) -> None:
    data: dict[str, object] = {"name": timer.name, "due_at": timer.due_at.isoformat() if timer.due_at else None,
                               "forced": forced}
    if fired_by:
        data["fired_by"] = fired_by
    audit.append(now, actor, "timer.fired", element_id=timer.element_id, data=data)
    metrics.TIMERS_FIRED.inc()
    outbox.enqueue(session, "timer.fired", now, instance.id,
                   {"process_instance_id": instance.id, "process_key": instance.process_key,
                    "business_key": instance.business_key, "element_id": timer.element_id, **data})


def fire_due(ctx: AppContext, session: Session, instance: ProcessInstance,
             fired_by: str = "scheduler") -> list[str]:
    """Advance one instance whose timers fell due (called by the scheduler, in its own transaction)."""
    before = list(session.scalars(select(WaitingEvent).where(WaitingEvent.instance_id == instance.id)))
    model = ctx.model(session, instance.definition_id)
    workflow = ctx.workflow(instance, model)
    now = ctx.clock.now()
    ctx.runtime.fire_due_timers(workflow)
    audit = AuditTrail.for_instance(session, instance.id)
    fired = [w for w in before if w.kind == "timer" and w.due_at is not None and w.due_at < now]
    for w in fired:
        _record(session, instance, w, "scheduler", audit, now, forced=False, fired_by=fired_by)
    save(ctx, session, instance, workflow, "scheduler", audit, is_new=False)
    return [w.element_id for w in fired]


def fire_now(ctx: AppContext, session: Session, principal: Principal, instance_id: str,
             element_id: str) -> ProcessInstanceOut:
    policy.require_admin(principal, "fire timers")
    instance = instances.load_row(session, principal, instance_id)
    if instance.status != "running":
        raise Conflict(f"the process instance is {instance.status}")
    before = list(session.scalars(select(WaitingEvent).where(WaitingEvent.instance_id == instance.id,
                                                             WaitingEvent.kind == "timer",
                                                             WaitingEvent.element_id == element_id)))
    if not before:
        raise NotFound(f"the instance does not wait on a timer '{element_id}'")
    model = ctx.model(session, instance.definition_id)
    workflow = ctx.workflow(instance, model)
    if not ctx.runtime.make_timer_due(workflow, element_id):
        raise Conflict("the timer is no longer waiting")
    try:
        ctx.runtime.fire_due_timers(workflow)
    except EngineError as e:
        raise ProcessError(str(e), element_id=e.element_id) from None
    now = ctx.clock.now()
    audit = AuditTrail.for_instance(session, instance.id)
    for w in before:
        _record(session, instance, w, principal.user, audit, now, forced=True)
    save(ctx, session, instance, workflow, principal.user, audit, is_new=False)
    return instances.read(ctx, session, principal, instance.id)
