"""Messages from OA systems: correlated to the one instance waiting for them."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import policy
from service.auth import Principal
from service.db.models import HumanTask, ProcessInstance, WaitingEvent
from service.engine.runtime import EngineError
from service.errors import Conflict, InvalidInput, NotFound, ProcessError
from service.schemas import MessageOut
from service.services import outbox
from service.services.audit import AuditTrail
from service.services.common import check_variables, task_summary, where_given
from service.services.context import AppContext
from service.services.store import save


def correlate(ctx: AppContext, session: Session, principal: Principal, *, name: str, business_key: str | None,
              process_key: str | None, process_instance_id: str | None, variables: dict[str, Any]) -> MessageOut:
    if not business_key and not process_instance_id:
        raise InvalidInput("a message needs a business_key or a process_instance_id",
                           {"business_key": "give this or process_instance_id"})
    clean = check_variables(variables)
    query = (select(WaitingEvent.instance_id).distinct()
             .join(ProcessInstance, ProcessInstance.id == WaitingEvent.instance_id)
             .where(WaitingEvent.kind == "message", WaitingEvent.name == name, ProcessInstance.status == "running"))
    query = where_given(query, (WaitingEvent.instance_id, process_instance_id),
                        (WaitingEvent.business_key, business_key), (WaitingEvent.process_key, process_key))
    query = query.where(policy.message_targets(principal))
    matches = list(session.scalars(query.limit(2)))
    if not matches:
        raise NotFound(f"no process instance that {principal.user} may see is waiting for message '{name}'"
                       + (f" with business key '{business_key}'" if business_key else "")
                       + " (a system sees the instances of the processes its API key is granted: --processes)")
    if len(matches) > 1:
        raise Conflict(f"more than one process instance waits for message '{name}'; give process_key or "
                       "process_instance_id")
    instance = session.get(ProcessInstance, matches[0])
    assert instance is not None
    model = ctx.model(session, instance.definition_id)
    workflow = ctx.workflow(instance, model)
    catching = ctx.runtime.waiting_message_elements(workflow, name)
    if not catching:
        raise Conflict("the process instance changed; try again")
    try:
        ctx.runtime.deliver_message(workflow, name, clean)
    except EngineError as e:
        raise ProcessError(str(e), element_id=e.element_id) from None
    now = ctx.clock.now()
    audit = AuditTrail.for_instance(session, instance.id)
    element_ids = sorted({t.task_spec.bpmn_id for t in catching})
    audit.append(now, principal.user, "message.correlated", element_id=element_ids[0],
                 data={"name": name, "variables": clean})
    outbox.enqueue(session, "message.correlated", now, instance.id,
                   {"process_instance_id": instance.id, "process_key": instance.process_key,
                    "business_key": instance.business_key, "name": name, "element_id": element_ids[0],
                    "sent_by": principal.user, "variables": clean})
    snap = save(ctx, session, instance, workflow, principal.user, audit, is_new=False)
    rows = list(session.scalars(select(HumanTask).where(HumanTask.instance_id == instance.id,
                                                        HumanTask.status == "open")
                                .order_by(HumanTask.created_at, HumanTask.id)))
    return MessageOut(process_instance_id=instance.id, status=instance.status, end_event=snap.end_event,
                      next_tasks=[task_summary(r) for r in rows])
