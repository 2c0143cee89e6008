"""Safe retries: a POST carrying an Idempotency-Key reserves the key before its work starts; the first response
is stored in the same transaction as the change and replayed for a retry with the same key and body. A retry that
arrives while the first request still runs waits for its answer instead of doing the work again."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db.models import IdempotencyRecord
from service.errors import Conflict, InvalidInput

MAX_KEY_LENGTH = 200
RESERVED, DONE = "reserved", "done"


def fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                           default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Replay:
    status_code: int
    body: str


@dataclass
class Reservation:
    record_id: int


def check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput("the Idempotency-Key header is not valid",
                           {"Idempotency-Key": f"1 to {MAX_KEY_LENGTH} printable characters"})


def reserve(ctx: Any, principal: str, key: str, method: str, path: str, request_hash: str,
            wait_seconds: float = 30.0) -> Replay | Reservation:
    """Reserve the key for this request, or return the stored answer of the first request with it. While another
    request holds the key, wait (polling) for its answer."""
    check_key(key)
    give_up = time.monotonic() + wait_seconds
    pause = 0.02
    while True:
        now = ctx.clock.now()
        lease = timedelta(seconds=ctx.settings.engine_command_time_limit_seconds * 3 + 30)
        ttl = timedelta(hours=ctx.settings.idempotency_ttl_hours)
        with ctx.write() as session:
            session.execute(delete(IdempotencyRecord).where(
                IdempotencyRecord.principal == principal, IdempotencyRecord.key == key,
                IdempotencyRecord.state == DONE, IdempotencyRecord.expires_at <= now))
            row = session.scalars(select(IdempotencyRecord).where(IdempotencyRecord.principal == principal,
                                                                  IdempotencyRecord.key == key)).first()
            if row is None:
                record: IdempotencyRecord | None = IdempotencyRecord(
                    principal=principal, key=key, method=method, path=path, request_hash=request_hash, status_code=0,
                    response_body="", created_at=now, expires_at=now + ttl, state=RESERVED, lease_until=now + lease)
                try:
                    with session.begin_nested():
                        session.add(record)
                except IntegrityError:
                    record = None  # a concurrent request reserved it first: look again
                if record is not None:
                    return Reservation(record.id)
            else:
                if row.request_hash != request_hash or row.method != method or row.path != path:
                    raise InvalidInput("the Idempotency-Key was used with a different request",
                                       {"Idempotency-Key": "reused with a different body or endpoint"})
                if row.state == DONE:
                    return Replay(row.status_code, row.response_body)
                if row.lease_until is not None and row.lease_until < now:
                    # the request that reserved it died without an answer: this one takes it over
                    row.lease_until = now + lease
                    return Reservation(row.id)
        if time.monotonic() > give_up:
            raise Conflict("a request with this Idempotency-Key is still being processed; retry shortly")
        time.sleep(pause)
        pause = min(0.25, pause * 1.5)


def store(session: Session, reservation: Reservation, status_code: int, body: str) -> None:
    """Keep the answer, in the transaction of the change it reports."""
    session.execute(update(IdempotencyRecord).where(IdempotencyRecord.id == reservation.record_id)
                    .values(state=DONE, status_code=status_code, response_body=body, lease_until=None))


def release(ctx: Any, reservation: Reservation) -> None:
    """The request failed: forget the key, so that a retry does the work."""
    with ctx.write() as session:
        session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == reservation.record_id,
                                                        IdempotencyRecord.state == RESERVED))


def purge_expired(session: Session, now: datetime) -> int:
    result = session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= now,
                                                             IdempotencyRecord.state == DONE))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
