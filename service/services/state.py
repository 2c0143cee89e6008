"""An instance's engine state in SQL: a small header on the instance row and one row per task.

A request rewrites the header, the tasks that are running or waiting (their data may change in place), and
the tasks whose state or children changed since they were stored; finished tasks are otherwise left alone.
So the cost of storing a request's change does not grow with the instance's history.
"""
from __future__ import annotations

import json
from typing import Any

from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from service.db.models import InstanceTask, ProcessInstance
from service.engine.runtime import ProcessModel, Runtime
from service.engine.serializer import dump_header, dump_state, dump_task, iter_tasks

_STORED = "_govflow_stored_rows"  # on the workflow object: task id -> (fingerprint, seq) as stored
_TABLE: Table = InstanceTask.__table__  # type: ignore[assignment]  # plain (Core) statements: executemany without the ORM's per-row work
_LIVE = TaskState.READY | TaskState.WAITING | TaskState.STARTED


def _fingerprint(task: Any) -> tuple[Any, ...] | None:
    """What identifies a stored task as unchanged; None for live tasks, which are always rewritten."""
    if task.has_state(_LIVE):
        return None
    # internal data (an event's fired flag) may be reset on tasks that are not running
    internal = repr(task.internal_data) if task.internal_data else ""
    return task.state, task.last_state_change, tuple(task._children), internal


def read(session: Session, instance: ProcessInstance, model: ProcessModel, runtime: Runtime) -> BpmnWorkflow:
    rows = session.execute(
        select(InstanceTask.workflow_id, InstanceTask.task_id, InstanceTask.body, InstanceTask.seq)
        .where(InstanceTask.instance_id == instance.id).order_by(InstanceTask.seq)
    ).all()
    workflow = runtime.load_parts(model, instance.state_json, [(r[0], r[1], r[2]) for r in rows])
    seqs = {r[1]: r[3] for r in rows}
    setattr(workflow, _STORED, {
        str(task.id): (_fingerprint(task), seqs[str(task.id)])
        for _, task in iter_tasks(workflow) if str(task.id) in seqs
    })
    return workflow


def header(workflow: BpmnWorkflow) -> str:
    return dump_header(workflow)


def write(session: Session, instance_id: str, workflow: BpmnWorkflow) -> int:
    """Store the task rows the request changed (the instance row, with the header, is written by the caller,
    under its optimistic lock). Returns how many rows were written."""
    stored: dict[str, tuple[Any, int]] = getattr(workflow, _STORED, None) or {}
    next_seq = max((seq for _, seq in stored.values()), default=-1) + 1
    current: dict[str, tuple[Any, int]] = {}
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    tasks = iter_tasks(workflow)
    # a task is stored as its changes against its parent's data: it is rewritten when it changed itself,
    # and when its parent changed (a running parent's data may change in place)
    changed: dict[Any, bool] = {}
    for _, task in tasks:
        before = stored.get(str(task.id))
        fingerprint = _fingerprint(task)
        changed[task.id] = before is None or fingerprint is None or fingerprint != before[0]
        current[str(task.id)] = (fingerprint, before[1] if before is not None else -1)
    for key, task in tasks:
        task_id = str(task.id)
        fingerprint, seq = current[task_id]
        if seq < 0:
            current[task_id] = (fingerprint, next_seq)
            inserts.append({"instance_id": instance_id, "task_id": task_id, "workflow_id": key, "seq": next_seq,
                            "body": dump_task(task)})
            next_seq += 1
        elif changed[task.id] or (task._parent is not None and changed.get(task._parent, True)):
            updates.append({"b_instance": instance_id, "b_task": task_id, "body": dump_task(task)})
    gone = [task_id for task_id in stored if task_id not in current]
    if gone:
        session.execute(delete(InstanceTask).where(InstanceTask.instance_id == instance_id,
                                                   InstanceTask.task_id.in_(gone)))
    if inserts:
        session.execute(insert(_TABLE), inserts)
    if updates:
        session.execute(update(_TABLE).where(_TABLE.c.instance_id == bindparam("b_instance"),
                                             _TABLE.c.task_id == bindparam("b_task"))
                        .values(body=bindparam("body")), updates)
    setattr(workflow, _STORED, current)
    return len(inserts) + len(updates) + len(gone)


def verify(session: Session, instance: ProcessInstance, model: ProcessModel, runtime: Runtime,
           workflow: BpmnWorkflow) -> None:
    """Restore what was just stored and compare it with the workflow in memory (a test-suite setting)."""
    session.flush()
    restored = read(session, instance, model, runtime)
    got, want = json.loads(dump_state(restored)), json.loads(dump_state(workflow))
    if got != want:
        raise AssertionError(f"stored state of instance {instance.id} does not restore to the workflow: "
                             f"{_differences(got, want)}")


def _differences(got: Any, want: Any, path: str = "") -> list[str]:
    if isinstance(got, dict) and isinstance(want, dict):
        found: list[str] = []
        for key in sorted(set(got) | set(want)):
            if got.get(key) != want.get(key):
                found += _differences(got.get(key), want.get(key), f"{path}/{key}")
        return found[:10]
    return [f"{path}: {got!r:.200} != {want!r:.200}"]
