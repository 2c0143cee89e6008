"""An instance's engine state in SQL: a small header on the instance row and one row per engine task.

The engine worker sends back which task rows changed (service/engine/worker.py); a request writes only
those, so the cost of storing a change does not grow with the instance's history.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from service.db.models import InstanceTask, ProcessInstance
from service.db.prepared import Prepared
from service.engine.sandbox import EngineResult

_TABLE: Table = InstanceTask.__table__  # type: ignore[assignment]
# prepared executemany statements (service/db/prepared.py)
_INSERT = Prepared(insert(_TABLE), keys=("instance_id", "workflow_id", "task_id", "seq", "body"))
_UPDATE = Prepared(update(_TABLE).where(_TABLE.c.instance_id == bindparam("b_instance"),
                                        _TABLE.c.task_id == bindparam("b_task")).values(body=bindparam("body")))


def load(session: Session, instance_id: str) -> dict[str, Any]:
    """The stored state, as the engine worker restores it."""
    header = session.scalar(select(ProcessInstance.state_json).where(ProcessInstance.id == instance_id))
    rows = session.execute(
        select(InstanceTask.workflow_id, InstanceTask.task_id, InstanceTask.seq, InstanceTask.body)
        .where(InstanceTask.instance_id == instance_id).order_by(InstanceTask.seq)
    ).all()
    return {"header": header or "", "rows": [list(r) for r in rows]}


def write(session: Session, instance_id: str, result: EngineResult) -> int:
    """Store the task rows the command changed (the header goes on the instance row, under its optimistic lock).
    Returns how many rows were written."""
    if result.deletes:
        session.execute(delete(_TABLE).where(_TABLE.c.instance_id == instance_id, _TABLE.c.task_id.in_(result.deletes)))
    if result.inserts:
        _INSERT.execute(session, [
            {"instance_id": instance_id, "workflow_id": w, "task_id": t, "seq": seq, "body": body}
            for w, t, seq, body in result.inserts])
    if result.updates:
        _UPDATE.execute(session, [{"b_instance": instance_id, "b_task": t, "body": body} for t, body in result.updates])
    return len(result.inserts) + len(result.updates) + len(result.deletes)
