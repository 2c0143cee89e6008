"""Moving running instances to another version of their process definition (Camunda's instance migration).

A dry run asks the engine worker to migrate each instance without keeping the result, and reports whether it
can move and why not. A real run moves each instance in its own transaction: the engine state, the instance's
definition, the open tasks (element, name, form, candidates, due date) and what it waits for, with an audit
event (`instance.migrated`) and a webhook event. An instance that cannot move is left untouched and listed.
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update

from service import policy
from service.auth import Principal
from service.db.models import HumanTask, ProcessDefinition, ProcessInstance, TaskCandidate
from service.engine.sandbox import EngineFailure, EngineResult
from service.errors import Conflict, DomainError, InvalidInput
from service.schemas import (
    MigrationChangeOut,
    MigrationIn,
    MigrationInstanceOut,
    MigrationOut,
    MigrationReasonOut,
    TimerChangeOut,
)
from service.services import definitions, outbox
from service.services.audit import AuditTrail
from service.services.context import AppContext, engine_error
from service.services.store import apply, committed, tasks_due_moved


def migrate(ctx: AppContext, principal: Principal, request: MigrationIn) -> MigrationOut:
    policy.require_admin(principal, "migrate process instances")
    key = request.process_key
    with ctx.read() as session:
        source = definitions.version(session, key, request.from_version)
        target = definitions.version(session, key, request.to_version)
        if source.id == target.id:
            raise InvalidInput("the instances are on that version already", {"to_version": "same as from_version"})
        source_model, target_model = ctx.model(session, source.id), ctx.model(session, target.id)
        errors: dict[str, str] = {}
        for old, new in request.mapping.items():
            if source_model.element(old) is None:
                errors[f"mapping.{old}"] = f"version {source.version} has no element '{old}'"
            if target_model.element(new) is None:
                errors[f"mapping.{old}"] = f"version {target.version} has no element '{new}'"
        if errors:
            raise InvalidInput("the mapping names elements that do not exist", errors)
        if request.all_instances:
            candidates = list(session.scalars(
                select(ProcessInstance.id).where(ProcessInstance.definition_id == source.id,
                                                 ProcessInstance.status == "running")
                .order_by(ProcessInstance.started_at, ProcessInstance.id)))
        else:
            candidates = list(dict.fromkeys(request.instance_ids or []))
        source_ref = _ref(source, ctx.model_files(session, source.id))
        target_files = ctx.model_files(session, target.id)
    results = [_one(ctx, principal, instance_id, source, target, source_ref, target_files, request)
               for instance_id in candidates]
    moved = sum(1 for r in results if r.migrated)
    return MigrationOut(process_key=key, from_version=source.version, to_version=target.version,
                        dry_run=request.dry_run, migrated=moved,
                        not_migrated=sum(1 for r in results if not r.can_move), instances=results)


def _ref(definition: ProcessDefinition, files: dict[str, Any]) -> dict[str, Any]:
    return {"id": definition.id, "hash": files["hash"], "key": files["key"], "version": definition.version,
            "files": files}


def _refused(instance_id: str, business_key: str | None, reasons: dict[str, str]) -> MigrationInstanceOut:
    return MigrationInstanceOut(process_instance_id=instance_id, business_key=business_key, can_move=False,
                                reasons=[MigrationReasonOut(element_id=k, reason=v) for k, v in reasons.items()])


def _one(ctx: AppContext, principal: Principal, instance_id: str, source: ProcessDefinition,
         target: ProcessDefinition, source_ref: dict[str, Any], target_files: dict[str, Any],
         request: MigrationIn) -> MigrationInstanceOut:
    try:
        uuid.UUID(instance_id)
    except ValueError:
        return _refused(instance_id, None, {"process_instance_id": "not a process instance id"})
    with ctx.read() as session:
        row = session.get(ProcessInstance, instance_id)
        if row is None or row.process_key != source.key:
            return _refused(instance_id, None, {"process_instance_id": f"no '{source.key}' instance with this id"})
        if row.status != "running":
            return _refused(row.id, row.business_key, {"status": f"the instance is {row.status}"})
        if row.definition_id != source.id:
            return _refused(row.id, row.business_key,
                            {"definition_version": f"the instance is on version {row.definition_version}, "
                                                   f"not {source.version}"})
        created = {t.id: t.created_at for t in session.scalars(
            select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.status == "open"))}
    try:
        result, token = _run(ctx, row, source_ref, target, target_files, request, created)
    except EngineFailure as e:
        if e.kind in ("conflict", "invalid") and e.errors:
            return _refused(row.id, row.business_key, e.errors)
        return _refused(row.id, row.business_key, {e.element_id or "engine": _message(e)})
    if isinstance(result, dict):  # a dry run
        return _report(row, result.get("extra") or {}, migrated=False)
    try:
        _store(ctx, principal, row, source, target, result, token, request)
    except DomainError as e:
        reason = e.detail if not isinstance(e, Conflict) else "the instance changed meanwhile; run the migration again"
        return _refused(row.id, row.business_key, {"process_instance_id": reason})
    return _report(row, result.extra, migrated=True)


def _message(e: EngineFailure) -> str:
    error = engine_error(e)
    return getattr(error, "detail", None) or str(error)


def _run(ctx: AppContext, row: ProcessInstance, source_ref: dict[str, Any], target: ProcessDefinition,
         target_files: dict[str, Any], request: MigrationIn,
         created: dict[str, datetime]) -> tuple[EngineResult | dict[str, Any], str]:
    """The engine command (as AppContext.run_engine builds it, with the target version beside the source)."""
    new_token = uuid.uuid4().hex
    command: dict[str, Any] = {
        "op": "migrate", "now": ctx.clock.now(), "new_token": new_token,
        "model": {k: source_ref[k] for k in ("id", "hash", "key")},
        "instance": {"id": row.id, "token": row.state_token},
        "target": {"id": target.id, "hash": target_files["hash"], "key": target_files["key"],
                   "version": target.version},
        "target_files": target_files, "mapping": dict(request.mapping), "dry_run": request.dry_run,
        "task_created": created,
    }

    def load_state() -> dict[str, Any]:
        from service.services import state

        with ctx.read() as session:
            return state.load(session, row.id)

    result = ctx.pool.run(command, model_files=lambda: source_ref["files"], load_state=load_state)
    return result, new_token


def _report(row: ProcessInstance, extra: dict[str, Any], migrated: bool) -> MigrationInstanceOut:
    return MigrationInstanceOut(
        process_instance_id=row.id, business_key=row.business_key, can_move=True, migrated=migrated,
        changes=[MigrationChangeOut(**{k: c[k] for k in ("element_id", "new_element_id", "kind", "changed")})
                 for c in extra.get("changes", [])],
        recomputed_timers=[TimerChangeOut(element_id=t["element_id"], due_at_before=t["due_at_before"],
                                          due_at=t["due_at"]) for t in extra.get("recomputed_timers", [])],
        armed=list(extra.get("armed", [])), history_removed=int(extra.get("history_removed", 0)))


def _store(ctx: AppContext, principal: Principal, row: ProcessInstance, source: ProcessDefinition,
           target: ProcessDefinition, result: EngineResult, token: str, request: MigrationIn) -> None:
    now = ctx.clock.now()
    extra = result.extra
    with ctx.write() as session:
        audit = AuditTrail.for_instance(session, row.id)
        applied = {k: v for k, v in request.mapping.items()
                   if any(c["element_id"] == k for c in extra.get("changes", []))}
        data = {"from_version": source.version, "to_version": target.version, "from_definition_id": source.id,
                "to_definition_id": target.id, "mapping": applied,
                "changes": [{k: c[k] for k in ("element_id", "new_element_id", "changed")}
                            for c in extra.get("changes", [])],
                "recomputed_timers": [{k: t[k] for k in ("element_id", "due_at_before", "due_at")}
                                      for t in extra.get("recomputed_timers", [])],
                "armed": extra.get("armed", [])}
        audit.append(now, principal.user, "instance.migrated", data=data)
        row.definition_id = target.id  # tasks the migration opens belong to the new version
        apply(ctx, session, row, result, token, principal.user, audit, is_new=False)
        session.execute(update(ProcessInstance).where(ProcessInstance.id == row.id)
                        .values(definition_id=target.id, definition_version=target.version)
                        .execution_options(synchronize_session=False))
        _follow_open_tasks(session, row, target, result, now)
        outbox.enqueue(session, "instance.migrated", now, row.id, {
            "process_instance_id": row.id, "process_key": row.process_key, "business_key": row.business_key,
            "migrated_by": principal.user, **data})
    row.definition_version = target.version
    committed(ctx, row, result, token)


def _follow_open_tasks(session: Any, row: ProcessInstance, target: ProcessDefinition, result: EngineResult,
                       now: datetime) -> None:
    """The open tasks that moved with the instance take what the new version says of their step."""
    dues = result.extra.get("task_dues") or {}
    current = {t.id: t for t in result.snapshot.open_tasks}
    for task in session.scalars(select(HumanTask).where(HumanTask.instance_id == row.id,
                                                        HumanTask.status == "open")):
        t = current.get(task.id)
        if t is None or task.definition_id == target.id:
            continue
        task.definition_id = target.id
        task.element_id, task.name, task.documentation, task.lane = t.element_id, t.name, t.documentation, t.lane
        task.form_key = t.form_key
        if task.id in dues:
            due, provisional = dues[task.id]
            task.due_at = datetime.fromisoformat(due) if due else None
            task.due_provisional = bool(provisional)
            tasks_due_moved(session, {task.id: task.due_at})
        if task.candidate_groups != t.candidate_groups or task.candidate_users != t.candidate_users:
            task.candidate_groups, task.candidate_users = t.candidate_groups, t.candidate_users
            session.execute(delete(TaskCandidate).where(TaskCandidate.task_id == task.id))
            session.flush()
            for kind, values in (("group", t.candidate_groups), ("user", t.candidate_users)):
                for value in values:
                    session.add(TaskCandidate(task_id=task.id, kind=kind, value=value, status=task.status,
                                              created_at=task.created_at, due_at=task.due_at,
                                              claimed=task.assignee is not None))
