"""Events for subscribers (webhooks), written in the same transaction as the change."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import event, insert
from sqlalchemy.orm import Session

from service.db.models import OutboxEvent
from service.db.prepared import Prepared
from service.engine.forms import to_json_value

EVENT_TYPES = (
    "instance.started",
    "task.created",
    "task.completed",
    "instance.completed",
    "instance.cancelled",
    "message.correlated",
    "timer.fired",
    "instance.migrated",
    "task.sent_back",
    "task.withdrawn",
    "instance.modified",
)


_PENDING = "govflow_outbox"
# a prepared executemany (service/db/prepared.py): every row has every column
_INSERT = Prepared(insert(OutboxEvent.__table__),  # type: ignore[arg-type]
                   keys=("event_id", "type", "instance_id", "occurred_at", "payload", "dispatched"))


def _write_pending(session: Session) -> None:
    rows = session.info.pop(_PENDING, None)
    if rows:
        _INSERT.execute(session, rows)


def _forget_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def install(session_factory: Any) -> None:
    """Events enqueued in a transaction are written (one multi-row INSERT) before it commits."""
    event.listen(session_factory, "before_commit", _write_pending)
    event.listen(session_factory, "after_rollback", _forget_pending)


def enqueue(session: Session, event_type: str, at: datetime, instance_id: str | None, data: dict[str, Any]) -> str:
    """Record an event for subscribers, in the transaction of the change it reports."""
    event_id = str(uuid.uuid4())
    session.info.setdefault(_PENDING, []).append({
        "event_id": event_id, "type": event_type, "instance_id": instance_id, "occurred_at": at,
        "payload": {"id": event_id, "type": event_type, "occurred_at": at.isoformat(), "data": to_json_value(data)},
        "dispatched": False,
    })
    return event_id
