"""Events for subscribers (webhooks), written in the same transaction as the change."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from service.db.models import OutboxEvent
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


def enqueue(session: Session, event_type: str, at: datetime, instance_id: str | None, data: dict[str, Any]) -> str:
    event_id = str(uuid.uuid4())
    session.add(
        OutboxEvent(
            event_id=event_id,
            type=event_type,
            instance_id=instance_id,
            occurred_at=at,
            payload={"id": event_id, "type": event_type, "occurred_at": at.isoformat(), "data": to_json_value(data)},
            dispatched=False,
        )
    )
    return event_id
