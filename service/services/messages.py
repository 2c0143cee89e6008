"""Messages from OA systems: correlated to the one instance waiting for them."""
from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select

from service import policy
from service.auth import Principal
from service.db.models import ProcessInstance, WaitingEvent
from service.engine import forms
from service.engine.runtime import ProcessModel
from service.engine.values import problems
from service.errors import Conflict, InvalidInput, NotFound
from service.schemas import MessageOut
from service.services import outbox
from service.services.audit import AuditTrail
from service.services.common import check_variables, china_today, task_summary, where_given
from service.services.context import AppContext
from service.services.store import Stored, apply, committed


def check_payload(model: ProcessModel, name: str, variables: dict[str, Any],
                  today: date | None = None) -> dict[str, Any]:
    """A message's variables against the payload its process declares for it (any names, when none is declared)."""
    contract = model.messages.get(name)
    if contract is None or contract.fields is None:
        return check_variables(variables)
    errors = problems(variables, python_values=True)
    clean: dict[str, Any] = {}
    if not errors:
        clean, errors = forms.validate(contract.fields, variables, apply_defaults=False, today=today)
    if errors:
        errors = {k: ("is not a field of this message's payload" if v == "is not a field of this form" else v)
                  for k, v in errors.items()}
        raise InvalidInput(f"the variables do not fit the payload of message '{name}'", errors)
    return clean


def correlate(ctx: AppContext, principal: Principal, *, name: str, business_key: str | None,
              process_key: str | None, process_instance_id: str | None, variables: dict[str, Any],
              idem: Any = None) -> MessageOut:
    if not business_key and not process_instance_id:
        raise InvalidInput("a message needs a business_key or a process_instance_id",
                           {"business_key": "give this or process_instance_id"})
    with ctx.read() as session:
        query = (select(WaitingEvent.instance_id).distinct()
                 .join(ProcessInstance, ProcessInstance.id == WaitingEvent.instance_id)
                 .where(WaitingEvent.kind == "message", WaitingEvent.name == name,
                        ProcessInstance.status == "running"))
        query = where_given(query, (WaitingEvent.instance_id, process_instance_id),
                            (WaitingEvent.business_key, business_key), (WaitingEvent.process_key, process_key))
        query = query.where(policy.message_targets(principal))
        matches = list(session.scalars(query.limit(2)))
        if not matches:
            raise NotFound(f"no process instance that {principal.user} may report to is waiting for message '{name}'"
                           + (f" with business key '{business_key}'" if business_key else "")
                           + " (messages are sent by administrators and by the systems granted the process: "
                             "an API key created with --processes)")
        if len(matches) > 1:
            raise Conflict(f"more than one process instance waits for message '{name}'; give process_key or "
                           "process_instance_id")
        instance = session.get(ProcessInstance, matches[0])
        assert instance is not None
        clean = check_payload(ctx.model(session, instance.definition_id), name, variables,
                              china_today(ctx.clock.now()))
        files = ctx.model_files(session, instance.definition_id)
    result, token = ctx.run_engine("message", instance.definition_id, files,
                                   instance=(instance.id, instance.state_token), name=name, variables=clean)
    element_ids = result.extra.get("element_ids") or [None]
    now = ctx.clock.now()
    with ctx.write() as session:
        audit = AuditTrail.for_instance(session, instance.id)
        audit.append(now, principal.user, "message.correlated", element_id=element_ids[0],
                     data={"name": name, "variables": clean})
        outbox.enqueue(session, "message.correlated", now, instance.id,
                       {"process_instance_id": instance.id, "process_key": instance.process_key,
                        "business_key": instance.business_key, "name": name, "element_id": element_ids[0],
                        "sent_by": principal.user, "variables": clean})
        stored = Stored()
        snap = apply(ctx, session, instance, result, token, principal.user, audit, is_new=False, stored=stored)
        out = MessageOut(process_instance_id=instance.id, status=instance.status, end_event=snap.end_event,
                         next_tasks=[task_summary(r) for r in stored.open_tasks])
        if idem is not None:
            idem.store(session, 200, out)
    committed(ctx, instance, result, token)
    return out
