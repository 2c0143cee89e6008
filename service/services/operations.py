"""Operating running instances: a reviewer sends a task back to an earlier step (驳回/退回), a user takes back a
task they completed (撤回), an administrator moves tokens (instance modification) or sets variables. Each follows
the three phases of a state change (read and check; the engine, in a worker; store under the optimistic lock)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from service import policy
from service.auth import Principal
from service.db.models import AuditEvent, HumanTask, ProcessInstance
from service.engine.operations import send_back_targets
from service.errors import Conflict, InvalidInput
from service.schemas import ProcessInstanceOut, ReturnOut
from service.services import instances, outbox
from service.services.audit import AuditTrail
from service.services.common import check_variables, task_summary
from service.services.context import AppContext
from service.services.store import apply, committed, open_tasks_of, task_claimed, tasks_closed
from service.services.tasks import _load as load_task


def _ref(instance: ProcessInstance) -> dict[str, Any]:
    return {"process_instance_id": instance.id, "process_key": instance.process_key,
            "business_key": instance.business_key}


def _running(session: Session, instance_id: str) -> ProcessInstance:
    instance = session.get(ProcessInstance, instance_id)
    if instance is None or instance.status != "running":
        raise Conflict("the process instance is not running")
    return instance


def _open_rows(session: Session, instance_id: str) -> list[HumanTask]:
    return open_tasks_of(session, [instance_id])


def _reopened(session: Session, instance_id: str, element_id: str, before: set[str]) -> HumanTask:
    """The task the operation opened at `element_id` (a new open task of that step)."""
    session.flush()
    for row in _open_rows(session, instance_id):
        if row.id not in before and row.element_id == element_id:
            return row
    raise RuntimeError(f"the engine opened no task at '{element_id}'")


def _return_out(session: Session, instance: ProcessInstance, task: HumanTask, cancelled: list[str]) -> ReturnOut:
    return ReturnOut(process_instance_id=instance.id, status=instance.status, task=task_summary(task),
                     cancelled_task_ids=cancelled,
                     open_tasks=[task_summary(r) for r in _open_rows(session, instance.id)])


def _when(moment: datetime) -> str:
    return moment.isoformat()


# ---- send back (驳回/退回) ------------------------------------------------------------------------------------

def send_back(ctx: AppContext, principal: Principal, task_id: str, to_element_id: str, comment: str,
              idem: Any = None) -> ReturnOut:
    comment = comment.strip()
    if not comment:
        raise InvalidInput("say why the task is sent back", {"comment": "must not be empty"})
    with ctx.read() as session:
        row = load_task(session, principal, task_id)
        if row.status != "open":
            raise Conflict(f"the task is {row.status}")
        policy.require_task_worker(principal, row)
        if row.assignee is not None and row.assignee != principal.user:
            raise Conflict(f"the task is claimed by {row.assignee}", assignee=row.assignee)
        instance = _running(session, row.instance_id)
        specs = ctx.model(session, row.definition_id).element_specs(row.element_id)
        allowed = next((t for t in map(send_back_targets, specs) if t), [])
        if to_element_id not in allowed:
            detail = (f"task '{row.name}' can be sent back to {', '.join(allowed)}" if allowed
                      else f"the diagram lets task '{row.name}' ({row.element_id}) send back to no step")
            raise InvalidInput(detail, {"to_element_id": f"not a send-back target of {row.element_id}"},
                               allowed=allowed)
        target = ctx.model(session, instance.definition_id).element(to_element_id)
        target_name = getattr(target, "bpmn_name", None) or to_element_id
        open_before = {r.id for r in _open_rows(session, instance.id)}
        files = ctx.model_files(session, instance.definition_id)
    result, token = ctx.run_engine("send_back", instance.definition_id, files,
                                   instance=(instance.id, instance.state_token), task_id=row.id,
                                   to_element_id=to_element_id)
    now = ctx.clock.now()
    with ctx.write() as session:
        taken = session.execute(
            update(HumanTask).where(HumanTask.id == row.id, HumanTask.status == "open",
                                    or_(HumanTask.assignee.is_(None), HumanTask.assignee == principal.user))
            .values(status="cancelled", completed_at=now).execution_options(synchronize_session=False))
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict("the task was completed or claimed by someone else")
        tasks_closed(session, [row.id], "cancelled")
        audit = AuditTrail.for_instance(session, instance.id)
        audit.append(now, principal.user, "task.sent_back", task_id=row.id, element_id=row.element_id,
                     data={"to_element_id": to_element_id, "comment": comment})
        apply(ctx, session, instance, result, token, principal.user, audit, is_new=False)
        new = _reopened(session, instance.id, to_element_id, open_before)
        new.reopened = {"kind": "sent_back", "by": principal.user, "at": _when(now), "comment": comment,
                        "from_task_id": row.id, "from_element_id": row.element_id, "from_name": row.name}
        session.execute(update(HumanTask).where(HumanTask.id == row.id).values(superseded={
            "kind": "sent_back", "by": principal.user, "at": _when(now), "comment": comment, "task_id": new.id,
            "element_id": to_element_id}).execution_options(synchronize_session=False))
        cancelled = sorted({row.id} | (open_before - {r.id for r in _open_rows(session, instance.id)}))
        outbox.enqueue(session, "task.sent_back", now, instance.id, {
            **_ref(instance), "task_id": row.id, "element_id": row.element_id, "name": row.name,
            "to_element_id": to_element_id, "to_name": target_name, "new_task_id": new.id,
            "sent_back_by": principal.user, "comment": comment, "cancelled_task_ids": cancelled})
        out = _return_out(session, instance, new, cancelled)
        if idem is not None:
            idem.store(session, 200, out)
    committed(ctx, instance, result, token)
    return out


# ---- withdraw (撤回) ----------------------------------------------------------------------------------------

def withdraw(ctx: AppContext, principal: Principal, task_id: str, comment: str | None = None,
             idem: Any = None) -> ReturnOut:
    comment = comment.strip() if comment and comment.strip() else None
    with ctx.read() as session:
        row = load_task(session, principal, task_id)
        policy.require_withdrawer(principal, row)
        if row.status != "completed":
            raise Conflict(f"the task is {row.status}; only a completed task can be withdrawn")
        if row.superseded:
            raise Conflict(f"the task was already {row.superseded.get('kind', 'taken back').replace('_', ' ')}")
        instance = _running(session, row.instance_id)
        open_before = {r.id for r in _open_rows(session, instance.id)}
        files = ctx.model_files(session, instance.definition_id)
    result, token = ctx.run_engine("withdraw", instance.definition_id, files,
                                   instance=(instance.id, instance.state_token), task_id=row.id)
    cancelled_spiff = set(result.extra.get("cancelled") or [])
    now = ctx.clock.now()
    with ctx.write() as session:
        next_rows = list(session.scalars(select(HumanTask).where(HumanTask.id.in_(sorted(cancelled_spiff)))))
        for r in next_rows:
            if r.status != "open":
                raise Conflict(f"the next step '{r.name}' has {r.status}", task_id=r.id)
            if r.assignee is not None:
                raise Conflict(f"the next step '{r.name}' has been claimed by {r.assignee}", task_id=r.id,
                               assignee=r.assignee)
        ids = [r.id for r in next_rows]
        if ids:
            # a claim released again still counts: the next department has taken the work up once
            taken = session.execute(select(AuditEvent.actor, AuditEvent.task_id).where(
                AuditEvent.instance_id == instance.id, AuditEvent.action == "task.claimed",
                AuditEvent.task_id.in_(ids)).limit(1)).first()
            if taken is not None:
                name = next(r.name for r in next_rows if r.id == taken.task_id)
                raise Conflict(f"the next step '{name}' was claimed by {taken.actor} (and released since)",
                               task_id=taken.task_id, assignee=taken.actor)
            # under the rows' locks: a claim that comes now waits for this transaction, then finds them cancelled
            done = session.execute(
                update(HumanTask).where(HumanTask.id.in_(ids), HumanTask.status == "open",
                                        HumanTask.assignee.is_(None))
                .values(status="cancelled", completed_at=now).execution_options(synchronize_session=False))
            if done.rowcount != len(ids):  # type: ignore[attr-defined]
                raise Conflict("the next step was claimed meanwhile")
            tasks_closed(session, ids, "cancelled")
        audit = AuditTrail.for_instance(session, instance.id)
        for r in next_rows:
            audit.append(now, principal.user, "task.cancelled", task_id=r.id, element_id=r.element_id,
                         data={"withdrawn_task_id": row.id})
        apply(ctx, session, instance, result, token, principal.user, audit, is_new=False)
        new = _reopened(session, instance.id, row.element_id, open_before)
        new.reopened = {"kind": "withdrawn", "by": principal.user, "at": _when(now), "comment": comment,
                        "from_task_id": row.id, "from_element_id": row.element_id, "from_name": row.name}
        new.assignee = principal.user
        task_claimed(session, new.id, True)
        audit.append(now, principal.user, "task.withdrawn", task_id=row.id, element_id=row.element_id,
                     data={"new_task_id": new.id, "cancelled_task_ids": ids, "comment": comment})
        audit.append(now, principal.user, "task.claimed", task_id=new.id, element_id=new.element_id)
        session.execute(update(HumanTask).where(HumanTask.id == row.id).values(superseded={
            "kind": "withdrawn", "by": principal.user, "at": _when(now), "comment": comment, "task_id": new.id,
            "element_id": row.element_id}).execution_options(synchronize_session=False))
        outbox.enqueue(session, "task.withdrawn", now, instance.id, {
            **_ref(instance), "task_id": row.id, "element_id": row.element_id, "name": row.name,
            "new_task_id": new.id, "withdrawn_by": principal.user, "comment": comment, "cancelled_task_ids": ids})
        out = _return_out(session, instance, new, ids)
        if idem is not None:
            idem.store(session, 200, out)
    committed(ctx, instance, result, token)
    return out


# ---- repair: move tokens, set variables ----------------------------------------------------------------------

def modify(ctx: AppContext, principal: Principal, instance_id: str, instructions: list[dict[str, Any]],
           reason: str, idem: Any = None) -> ProcessInstanceOut:
    """Cancel and start tokens, in the order given (Camunda's process instance modification)."""
    policy.require_admin(principal, "modify process instances")
    reason = _reason(reason)
    with ctx.read() as session:
        row = instances.load_row(session, principal, instance_id)
        if row.status != "running":
            raise Conflict(f"the process instance is {row.status}, not running")
        model = ctx.model(session, row.definition_id)
        for number, instruction in enumerate(instructions):
            element = instruction.get("element_id")
            if element and model.element(element) is None:
                raise InvalidInput(f"version {row.definition_version} of '{row.process_key}' has no element "
                                   f"'{element}'", {f"instructions[{number}].element_id": "no such element"})
        files = ctx.model_files(session, row.definition_id)
    clean = [{k: v for k, v in i.items() if v is not None} for i in instructions]
    result, token = ctx.run_engine("modify", row.definition_id, files, instance=(row.id, row.state_token),
                                   instructions=clean)
    now = ctx.clock.now()
    with ctx.write() as session:
        audit = AuditTrail.for_instance(session, row.id)
        data = {"reason": reason, "instructions": clean, "started": result.extra.get("started", [])}
        audit.append(now, principal.user, "instance.modified", data=data)
        apply(ctx, session, row, result, token, principal.user, audit, is_new=False)
        outbox.enqueue(session, "instance.modified", now, row.id,
                       {**_ref(row), "modified_by": principal.user, **data})
        out = instances.read_in(ctx, session, principal, row.id)
        if idem is not None:
            idem.store(session, 200, out)
    committed(ctx, row, result, token)
    return out


def set_variables(ctx: AppContext, principal: Principal, instance_id: str, variables: dict[str, Any],
                  reason: str, idem: Any = None) -> ProcessInstanceOut:
    policy.require_admin(principal, "set the variables of process instances")
    reason = _reason(reason)
    clean = check_variables(variables)
    with ctx.read() as session:
        row = instances.load_row(session, principal, instance_id)
        if row.status != "running":
            raise Conflict(f"the process instance is {row.status}, not running")
        before = {k: row.variables.get(k) for k in clean if k in (row.variables or {})}
        files = ctx.model_files(session, row.definition_id)
    result, token = ctx.run_engine("set_variables", row.definition_id, files, instance=(row.id, row.state_token),
                                   variables=clean)
    now = ctx.clock.now()
    with ctx.write() as session:
        audit = AuditTrail.for_instance(session, row.id)
        audit.append(now, principal.user, "instance.variables_set",
                     data={"reason": reason, "variables": clean, "previous": before})
        apply(ctx, session, row, result, token, principal.user, audit, is_new=False)
        outbox.enqueue(session, "instance.modified", now, row.id,
                       {**_ref(row), "modified_by": principal.user, "reason": reason, "variables": clean})
        out = instances.read_in(ctx, session, principal, row.id)
        if idem is not None:
            idem.store(session, 200, out)
    committed(ctx, row, result, token)
    return out


def _reason(reason: str) -> str:
    text = reason.strip() if isinstance(reason, str) else ""
    if not text:
        raise InvalidInput("a repair needs a reason", {"reason": "must not be empty"})
    return text
