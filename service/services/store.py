"""Writes an advanced workflow back: state with optimistic locking, and — in the same transaction —
the projections (open human tasks, waiting timers and messages), audit events and outbox events."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Table, bindparam, delete, insert, inspect, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from service.db.models import HumanTask, ProcessInstance, TaskCandidate, WaitingEvent
from service.db.prepared import Prepared
from service.engine.runtime import Snapshot
from service.engine.sandbox import EngineFailure, EngineResult
from service.errors import ConcurrentChange
from service.services import outbox
from service.services import state as state_rows
from service.services.audit import AuditTrail
from service.services.context import AppContext

# the statements of every request, built once on the tables and prepared (service/db/prepared.py: building an ORM
# statement costs more than running it on SQLite, and so does SQLAlchemy's execution of a Core one)
_INSTANCES: Table = ProcessInstance.__table__  # type: ignore[assignment]
_TASKS: Table = HumanTask.__table__  # type: ignore[assignment]
_WAITING_T: Table = WaitingEvent.__table__  # type: ignore[assignment]
# the instance's status and ended_at are indexed (the instance list, the ended index, the running business key's
# uniqueness): they are SET only when they change. SQLite rewrites the entries of every index with a column in the
# SET list, changed or not (three index updates on every step of a running instance, a fifth of the UPDATE's time)
_RUNNING_ON = ("state_json", "state_token", "variables", "end_event", "version", "updated_at", "cancel_reason",
               "waiting_count")
_MOVING_ON = (*_RUNNING_ON, "status", "ended_at")


def _update_instance(columns: tuple[str, ...], anchored: bool) -> Prepared:
    where = [_INSTANCES.c.id == bindparam("b_id"), _INSTANCES.c.version == bindparam("b_version")]
    if anchored:
        # the UPDATE when the request knows every event of the change and has chained them from the head it read:
        # the anchor recorded with the state, where the row still has that head (a claim or a comment since moved
        # it: no row, and the UPDATE below follows)
        where += [_INSTANCES.c.audit_seq == bindparam("b_audit_seq"),
                  _INSTANCES.c.audit_head == bindparam("b_audit_head")]
        return Prepared(update(_INSTANCES).where(*where)
                        .values({c: bindparam(c) for c in (*columns, "audit_seq", "audit_head")}))
    # the audit chain's head as committed with the row, read under the row's lock: the request's events follow it
    return Prepared(update(_INSTANCES).where(*where).values({c: bindparam(c) for c in columns})
                    .returning(_INSTANCES.c.audit_seq, _INSTANCES.c.audit_head))


# by whether the status or ended_at change, then whether the UPDATE records the audit anchor
_UPDATE_INSTANCE = {(moving, anchored): _update_instance(_MOVING_ON if moving else _RUNNING_ON, anchored)
                    for moving in (False, True) for anchored in (False, True)}
_INSTANCE_COLUMNS = [(a.key, a.columns[0].name) for a in inspect(ProcessInstance).column_attrs]  # attribute, column
_INSERT_INSTANCE = Prepared(insert(_INSTANCES), keys=[column for _, column in _INSTANCE_COLUMNS])
_OPEN_TASKS = Prepared(select(_TASKS).where(_TASKS.c.instance_id == bindparam("i"), _TASKS.c.status == "open"))
_TASK_COLUMNS = ("id", "instance_id", "definition_id", "process_key", "business_key", "element_id", "name",
                 "documentation", "lane", "candidate_groups", "candidate_users", "assignee", "form_key", "status",
                 "created_at", "due_at", "due_provisional")
_INSERT_TASKS = Prepared(insert(_TASKS), keys=_TASK_COLUMNS)
_CANDIDATES: Table = TaskCandidate.__table__  # type: ignore[assignment]
_INSERT_CANDIDATES = Prepared(insert(_CANDIDATES),
                              keys=("task_id", "kind", "value", "status", "created_at", "due_at", "claimed"))
# a task's candidate rows keep its status, whether it is claimed and its due date (the inboxes read them there): every
# statement that closes a task, claims or releases one or sets its due date again is followed by one of these for
# the same tasks


def _candidates_set(**values: Any) -> Prepared:
    """An UPDATE of a task's candidate rows (the task bound as b_task)."""
    return Prepared(update(_CANDIDATES).where(_CANDIDATES.c.task_id == bindparam("b_task")).values(**values))


_CANDIDATES_STATUS = _candidates_set(status=bindparam("status"))
_CANDIDATES_STATUS_CLAIMED = _candidates_set(status=bindparam("status"), claimed=True)
_CANDIDATES_DUE = _candidates_set(due_at=bindparam("due_at"))
_CANDIDATES_CLAIMED = _candidates_set(claimed=bindparam("claimed"))
_WAITING_COLUMNS = ("instance_id", "process_key", "business_key", "kind", "name", "element_id", "spiff_task_id",
                    "due_at", "calendar", "provisional", "attempts")
_INSERT_WAITING = Prepared(insert(_WAITING_T), keys=_WAITING_COLUMNS)
_WAITING = Prepared(select(_WAITING_T.c.id, _WAITING_T.c.kind, _WAITING_T.c.spiff_task_id, _WAITING_T.c.element_id,
                           _WAITING_T.c.due_at, _WAITING_T.c.provisional)
                    .where(_WAITING_T.c.instance_id == bindparam("i")))


def tasks_closed(session: Session, task_ids: list[str], status: str, *, claimed: bool = False) -> None:
    """The candidate rows of tasks just closed (completed or cancelled) take their task's new status; `claimed`:
    the statement that closed them gave them an assignee (a completion by someone who had not claimed the task)."""
    if task_ids:
        statement = _CANDIDATES_STATUS_CLAIMED if claimed else _CANDIDATES_STATUS
        statement.execute(session, [{"b_task": task_id, "status": status} for task_id in task_ids])


def tasks_due_moved(session: Session, due_dates: dict[str, datetime | None]) -> None:
    """The candidate rows of open tasks whose due date was set again (a calendar's new arrangement, a migration to
    another version) take the new date."""
    if due_dates:
        _CANDIDATES_DUE.execute(session, [{"b_task": task_id, "due_at": due} for task_id, due in due_dates.items()])


def task_claimed(session: Session, task_id: str, claimed: bool) -> None:
    """The candidate rows of a task just claimed (or released) say so."""
    _CANDIDATES_CLAIMED.execute(session, {"b_task": task_id, "claimed": claimed})


def open_tasks_of(session: Session, instance_ids: list[str]) -> list[HumanTask]:
    """The open human tasks of some instances, oldest first. Sorted here, not by the database: with an ORDER BY,
    SQLite reads them through the (status, created_at) index — every open task of every instance — instead of
    the instance's own few (tests/api/test_query_plans.py)."""
    rows = session.scalars(select(HumanTask).where(HumanTask.instance_id.in_(instance_ids), HumanTask.status == "open"))
    return sorted(rows, key=lambda t: (t.created_at, t.id))


@dataclass
class Stored:
    """What apply wrote, for the request's answer without reading it back: the instance's open human tasks
    (oldest first) and, for a new instance, what it waits for (task and waiting rows as attribute objects)."""
    open_tasks: list[Any] = field(default_factory=list)
    waiting: list[Any] = field(default_factory=list)


def apply(ctx: AppContext, session: Session, instance: ProcessInstance, result: EngineResult, token: str,
          actor: str, audit: AuditTrail, *, is_new: bool, closing_status: str | None = None,
          stored: Stored | None = None, open_tasks: list[Any] | None = None) -> Snapshot:
    """Store what an engine command did, in the request's write transaction: the state (under the instance's
    optimistic lock: a concurrent change makes this a 409 and nothing is written), then the projections. An
    existing instance may be given as its columns read as a row (a completion does): what is written is set on it.
    `open_tasks`: the instance's open task rows as this transaction has them, if the request knows them for the
    version it read (they are read otherwise)."""
    now = ctx.clock.now()
    snap = result.snapshot
    wanted = {(w.kind, w.spiff_task_id, w.element_id): w for w in snap.waiting}
    # how many waits the instance had: waiting_count is written with the waiting rows, and was read with the version
    # the UPDATE below checks, so it counts the rows there are
    waited = 0 if is_new else instance.waiting_count
    status = closing_status or snap.status
    variables = snap.variables
    ended_at = now if status in ("completed", "cancelled") else None
    end_event = snap.end_event if status == "completed" else None
    # the open tasks before, when known (none for a new instance): the change's events are then appended before
    # the instance is written, so its INSERT or UPDATE records the audit chain's head as well
    before = [] if is_new else open_tasks
    completing = status == "completed" and closing_status is None
    changes = None if before is None else _task_changes(snap, before)
    if changes is not None:
        _events(session, instance, changes, now, actor, audit, completing, end_event, variables)
    if is_new:
        instance.state_json = result.header
        instance.state_token = token
        instance.status = status
        instance.variables = variables
        instance.end_event = end_event
        instance.version = 1
        instance.updated_at = now
        instance.ended_at = ended_at
        instance.waiting_count = len(wanted)
        anchor = audit.head() if changes is not None else None
        if anchor is not None:
            instance.audit_seq, instance.audit_head = anchor
        # one prepared INSERT of every column (NULL for what was not set: no column but waiting_count, set above,
        # has a default), not the ORM's unit of work; the object stays as the answer's source
        _INSERT_INSTANCE.execute(session, {column: instance.__dict__.get(key) for key, column in _INSTANCE_COLUMNS})
        if anchor is not None:
            audit.anchored = anchor[0]
    else:
        values = {
            "b_id": instance.id, "b_version": instance.version, "state_json": result.header, "state_token": token,
            "status": status, "variables": variables, "end_event": end_event, "version": instance.version + 1,
            "updated_at": now, "ended_at": ended_at, "cancel_reason": instance.cancel_reason,
            "waiting_count": len(wanted)}
        moving = status != instance.status or ended_at != instance.ended_at
        anchor = audit.assume_head(instance.audit_seq, instance.audit_head) if changes is not None else None
        if anchor is not None and _UPDATE_INSTANCE[moving, True].execute(session, {
                **values, "b_audit_seq": instance.audit_seq, "b_audit_head": instance.audit_head,
                "audit_seq": anchor[0], "audit_head": anchor[1]}).rowcount == 1:
            audit.anchored = anchor[0]
        else:
            if anchor is not None:
                audit.forget_head()
            head = _UPDATE_INSTANCE[moving, False].execute(session, values).first()
            if head is None:
                raise ConcurrentChange("the process instance was changed by another request; reload and try again")
            audit.found_head(head.audit_seq, head.audit_head)
        for name, value in (("version", instance.version + 1), ("status", status), ("variables", variables),
                            ("end_event", end_event), ("updated_at", now), ("ended_at", ended_at),
                            ("state_json", result.header), ("state_token", token),
                            ("cancel_reason", instance.cancel_reason), ("waiting_count", len(wanted))):
            if isinstance(instance, ProcessInstance):
                set_committed_value(instance, name, value)
            else:  # the instance's columns as read (a completion reads them as a row)
                setattr(instance, name, value)
    state_rows.write(session, instance.id, result)
    if ctx.settings.verify_state_storage:
        _verify(ctx, session, instance, result, token)
    if changes is None:  # read under the instance's lock, taken by the UPDATE
        changes = _task_changes(snap, _OPEN_TASKS.execute(session, {"i": instance.id}).all())
        _events(session, instance, changes, now, actor, audit, completing, end_event, variables)
    open_now = _write_tasks(session, instance, changes, now)
    waiting = _sync_waiting(ctx, session, instance, wanted, waited > 0, is_new)
    if stored is not None:
        stored.open_tasks, stored.waiting = open_now, waiting
    return snap


def committed(ctx: AppContext, instance: ProcessInstance, result: EngineResult, token: str) -> None:
    """After the commit: the engine worker that ran the command holds the workflow under the stored token."""
    ctx.pool.committed(instance.id, token if instance.status == "running" else None, result.worker)


def _verify(ctx: AppContext, session: Session, instance: ProcessInstance, result: EngineResult, token: str) -> None:
    """Restore what was just stored and compare it with the workflow the worker holds (a test-suite setting)."""
    if instance.status != "running":
        return
    session.flush()
    stored = state_rows.load(session, instance.id)
    files = ctx.model_files(session, instance.definition_id)
    command = {"op": "verify", "now": ctx.clock.now(), "instance": {"id": instance.id, "token": token},
               "model": {"id": instance.definition_id, "hash": files["hash"], "key": files["key"]},
               "stored": stored}
    try:
        ctx.pool.run(command, model_files=lambda: files, worker=result.worker)
    except EngineFailure as e:
        raise AssertionError(f"instance {instance.id}: {e.message}") from None


def _instance_ref(instance: ProcessInstance) -> dict[str, Any]:
    return {"process_instance_id": instance.id, "process_key": instance.process_key,
            "business_key": instance.business_key}


@dataclass
class _TaskChanges:
    """How the open human tasks change: the rows no longer open (as (id, element_id)), the rows still open, and
    the engine's new tasks."""
    gone: list[tuple[str, str]]
    kept: list[Any]
    new: list[Any]


def _task_changes(snap: Snapshot, open_rows: list[Any]) -> _TaskChanges:
    """The open human tasks as the engine now has them, against the open rows before."""
    current = {t.id: t for t in snap.open_tasks}
    known = {r.id for r in open_rows}
    return _TaskChanges(gone=[(r.id, r.element_id) for r in open_rows if r.id not in current],
                        kept=[r for r in open_rows if r.id in current],
                        new=[t for task_id, t in current.items() if task_id not in known])


def _events(session: Session, instance: ProcessInstance, changes: _TaskChanges, now: datetime, actor: str,
            audit: AuditTrail, completing: bool, end_event: str | None, variables: dict[str, Any]) -> None:
    """The audit events of the tasks cancelled and created, the outbox events of those created, and, when the
    instance completes, both of its completion."""
    for task_id, element_id in changes.gone:
        audit.append(now, "system", "task.cancelled", task_id=task_id, element_id=element_id)
    for t in changes.new:
        data = {"name": t.name, "candidate_groups": t.candidate_groups, "candidate_users": t.candidate_users,
                "assignee": t.assignee, "due_at": t.due_at.isoformat() if t.due_at else None}
        audit.append(now, "system", "task.created", task_id=t.id, element_id=t.element_id, data=data)
        outbox.enqueue(session, "task.created", now, instance.id,
                       {**_instance_ref(instance), "task_id": t.id, "element_id": t.element_id, **data})
    if completing:
        audit.append(now, actor, "instance.completed", element_id=end_event, data={"end_event": end_event})
        outbox.enqueue(session, "instance.completed", now, instance.id,
                       {**_instance_ref(instance), "end_event": end_event, "variables": variables})


def _write_tasks(session: Session, instance: ProcessInstance, changes: _TaskChanges, now: datetime) -> list[Any]:
    """The task rows as the engine now has them: new ones inserted, vanished ones cancelled (plain multi-row
    statements: a request's cost is its statements). Returns the open task rows, oldest first."""
    if changes.gone:
        gone = [g[0] for g in changes.gone]
        session.execute(update(_TASKS).where(_TASKS.c.id.in_(gone)).values(status="cancelled", completed_at=now))
        tasks_closed(session, gone, "cancelled")
    kept = list(changes.kept)
    if changes.new:
        kept += _insert_tasks(session, instance, changes.new, now)
    return sorted(kept, key=lambda r: (r.created_at, r.id))


def _insert_tasks(session: Session, instance: ProcessInstance, new: list[Any], now: datetime) -> list[Any]:
    """New open tasks with their candidates; the rows written, as attribute objects."""
    rows = [{
        "id": t.id, "instance_id": instance.id, "definition_id": instance.definition_id,
        "process_key": instance.process_key, "business_key": instance.business_key, "element_id": t.element_id,
        "name": t.name, "documentation": t.documentation, "lane": t.lane, "candidate_groups": t.candidate_groups,
        "candidate_users": t.candidate_users, "assignee": t.assignee, "form_key": t.form_key, "status": "open",
        "created_at": now, "due_at": t.due_at, "due_provisional": t.due_provisional,
    } for t in new]
    _INSERT_TASKS.execute(session, rows)
    candidates = [{"task_id": t.id, "kind": kind, "value": value, "status": "open", "created_at": now,
                   "due_at": t.due_at, "claimed": t.assignee is not None} for t in new
                  for kind, values in (("group", t.candidate_groups), ("user", t.candidate_users)) for value in values]
    if candidates:
        _INSERT_CANDIDATES.execute(session, candidates)
    return [SimpleNamespace(**row, completed_at=None, completed_by=None) for row in rows]


def _sync_waiting(ctx: AppContext, session: Session, instance: ProcessInstance, wanted: dict[Any, Any],
                  waited: bool, is_new: bool) -> list[Any]:
    """The timers and messages the instance waits on, as the engine now has them: afterwards there is one row per
    wanted wait, as apply counted them. An instance that waited on nothing (a new one included) has no rows to
    read. Returns, for a new instance, the rows written."""
    existing: dict[Any, tuple[int, datetime | None, bool]] = {}
    stale: list[int] = []
    if waited:
        for ident, kind, spiff_task_id, element_id, due_at, provisional in _WAITING.execute(
                session, {"i": instance.id}).rows:
            key = (kind, spiff_task_id, element_id)
            if key in wanted and key not in existing:
                existing[key] = (ident, due_at, provisional)
            else:
                stale.append(ident)
    if stale:
        session.execute(delete(_WAITING_T).where(_WAITING_T.c.id.in_(stale)))
    added: list[dict[str, Any]] = []
    for k, w in wanted.items():
        row = existing.get(k)
        if w.kind == "timer" and w.due_at is not None and (row is None or row[1] != w.due_at):
            ctx.timer_written(session, w.due_at)
        if row is None:
            added.append({
                "instance_id": instance.id, "process_key": instance.process_key, "business_key": instance.business_key,
                "kind": w.kind, "name": w.name, "element_id": w.element_id, "spiff_task_id": w.spiff_task_id,
                "due_at": w.due_at, "calendar": w.calendar, "provisional": w.provisional, "attempts": 0,
            })
        elif row[1] != w.due_at or row[2] != w.provisional:
            session.execute(update(_WAITING_T).where(_WAITING_T.c.id == row[0])
                            .values(due_at=w.due_at, provisional=w.provisional, lease_until=None))
    if added:
        _INSERT_WAITING.execute(session, added)
    return [SimpleNamespace(**row, last_error=None) for row in added] if is_new else []
