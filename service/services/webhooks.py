"""Webhooks: subscriptions, the fan-out of outbox events into deliveries, and signed delivery with
retries (at-least-once; the event id is stable across retries so receivers can de-duplicate)."""
from __future__ import annotations

import hashlib
import hmac
import json
import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import policy
from service.auth import Principal
from service.db.models import OutboxEvent, WebhookDelivery, WebhookSubscription
from service.errors import Conflict, InvalidInput, NotFound
from service.services.common import decode_numbered_cursor, encode_cursor
from service.services.outbox import EVENT_TYPES
from service.services.targets import Allowance, TargetRefused, check_url


def _require_admin(principal: Principal) -> None:
    policy.require_admin(principal, "manage webhooks")


def subscription_out(row: WebhookSubscription) -> dict[str, Any]:
    return {"id": row.id, "url": row.url, "events": row.events, "created_by": row.created_by,
            "created_at": row.created_at}


def create(session: Session, principal: Principal, now: datetime, url: str, events: list[str],
           secret: str, allowance: Allowance | None = None) -> dict[str, Any]:
    _require_admin(principal)
    errors: dict[str, str] = {}
    try:
        check_url(url, allowance or Allowance())
    except TargetRefused as e:
        errors["url"] = str(e)
    unknown = [e for e in events if e not in EVENT_TYPES and e != "*"]
    if not events or unknown:
        errors["events"] = f"must be a non-empty list of: {', '.join(EVENT_TYPES)} (or *)"
    if len(secret) < 16:
        errors["secret"] = "must have at least 16 characters"
    if errors:
        raise InvalidInput("the subscription is not valid", errors)
    row = WebhookSubscription(id=str(uuid.uuid4()), url=url, events=sorted(set(events)), secret=secret,
                              created_by=principal.user, created_at=now)
    session.add(row)
    session.flush()
    return subscription_out(row)


def list_subscriptions(session: Session, principal: Principal) -> list[dict[str, Any]]:
    _require_admin(principal)
    rows = session.scalars(select(WebhookSubscription).where(WebhookSubscription.deleted_at.is_(None))
                           .order_by(WebhookSubscription.created_at))
    return [subscription_out(r) for r in rows]


def delete(session: Session, principal: Principal, now: datetime, subscription_id: str) -> None:
    _require_admin(principal)
    # compared, not looked up by primary key: an id longer than the column is no subscription's (404)
    row = session.scalar(select(WebhookSubscription).where(WebhookSubscription.id == subscription_id))
    if row is None or row.deleted_at is not None:
        raise NotFound(f"no webhook subscription '{subscription_id}'")
    row.deleted_at = now
    for d in session.scalars(select(WebhookDelivery).where(WebhookDelivery.subscription_id == row.id,
                                                           WebhookDelivery.status == "pending")):
        d.status, d.last_error = "failed", "subscription deleted"


def delivery_out(row: WebhookDelivery) -> dict[str, Any]:
    return {"id": row.id, "subscription_id": row.subscription_id, "event_id": row.event_id,
            "event_type": row.event_type, "status": row.status, "attempts": row.attempts,
            "next_attempt_at": row.next_attempt_at, "last_error": row.last_error,
            "last_status_code": row.last_status_code, "created_at": row.created_at,
            "delivered_at": row.delivered_at}


DELIVERY_STATUSES = ("pending", "delivered", "failed")


def list_deliveries(session: Session, principal: Principal, status: str | None, limit: int,
                    cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Deliveries, the newest first, at most `limit`, after the cursor's; and the cursor of the next page, None on
    the last. With a status, one range of (status, id)."""
    _require_admin(principal)
    if status and status not in DELIVERY_STATUSES:  # a misspelt status is an error, not an empty list
        raise InvalidInput("unknown delivery status", {"status": f"must be one of {', '.join(DELIVERY_STATUSES)}"})
    query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit + 1)
    if status:
        query = query.where(WebhookDelivery.status == status)
    if cursor:
        ident = decode_numbered_cursor(cursor, "deliveries")[1]
        query = query.where(WebhookDelivery.id < ident)
    rows = list(session.scalars(query))
    last = rows[limit - 1] if len(rows) > limit else None
    next_cursor = encode_cursor(last.created_at, last.id, of="deliveries") if last is not None else None
    return [delivery_out(r) for r in rows[:limit]], next_cursor


def retry(session: Session, principal: Principal, now: datetime, delivery_id: int) -> dict[str, Any]:
    _require_admin(principal)
    row = session.get(WebhookDelivery, delivery_id)
    if row is None:
        raise NotFound(f"no delivery {delivery_id}")
    if row.status == "delivered":
        raise Conflict("the delivery has already been delivered")
    subscription = session.get(WebhookSubscription, row.subscription_id)
    if subscription is None or subscription.deleted_at is not None:
        raise Conflict("the subscription has been deleted")
    row.status, row.next_attempt_at, row.lease_until, row.attempts = "pending", now, None, 0
    return delivery_out(row)


# ---- the background side ----------------------------------------------------------------------------
def dispatch(session: Session, now: datetime, batch: int = 500) -> int:
    """Turn undispatched outbox events into one delivery per matching subscription."""
    events = list(session.scalars(select(OutboxEvent).where(OutboxEvent.dispatched.is_(False))
                                  .order_by(OutboxEvent.id).limit(batch).with_for_update(skip_locked=True)))
    if not events:
        return 0
    subscriptions = list(session.scalars(select(WebhookSubscription)
                                         .where(WebhookSubscription.deleted_at.is_(None))))
    for event in events:
        body = json.dumps(event.payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        for sub in subscriptions:
            if sub.created_at > event.occurred_at:
                continue  # a subscription hears what happens after it was made
            if "*" in sub.events or event.type in sub.events:
                session.add(WebhookDelivery(subscription_id=sub.id, event_id=event.event_id, event_type=event.type,
                                            body=body, status="pending", attempts=0, next_attempt_at=now,
                                            created_at=now))
        event.dispatched = True
    return len(events)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def backoff(attempts: int, base: float, cap: float) -> timedelta:
    """Exponential back-off with full jitter."""
    ceiling = min(cap, base * (2 ** max(0, attempts - 1)))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))
