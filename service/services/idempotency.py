"""Safe retries: the first response to a POST carrying an Idempotency-Key is stored in the same
transaction as the change and replayed for a retry with the same key and body."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db.models import IdempotencyRecord
from service.errors import Conflict, InvalidInput

MAX_KEY_LENGTH = 200


def fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                           default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Replay:
    status_code: int
    body: str


def lookup(session: Session, principal: str, key: str, method: str, path: str, request_hash: str,
           now: datetime) -> Replay | None:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput("the Idempotency-Key header is not valid",
                           {"Idempotency-Key": f"1 to {MAX_KEY_LENGTH} characters"})
    session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.principal == principal,
                                                    IdempotencyRecord.key == key,
                                                    IdempotencyRecord.expires_at <= now))
    row = session.scalars(select(IdempotencyRecord).where(IdempotencyRecord.principal == principal,
                                                          IdempotencyRecord.key == key)).first()
    if row is None:
        return None
    if row.request_hash != request_hash or row.method != method or row.path != path:
        raise InvalidInput("the Idempotency-Key was used with a different request",
                           {"Idempotency-Key": "reused with a different body or endpoint"})
    return Replay(row.status_code, row.response_body)


def record(session: Session, principal: str, key: str, method: str, path: str, request_hash: str,
           status_code: int, body: str, now: datetime, ttl: timedelta) -> None:
    try:
        with session.begin_nested():
            session.add(IdempotencyRecord(principal=principal, key=key, method=method, path=path,
                                          request_hash=request_hash, status_code=status_code, response_body=body,
                                          created_at=now, expires_at=now + ttl))
    except IntegrityError:
        raise Conflict("a request with this Idempotency-Key is being processed; retry shortly") from None


def purge_expired(session: Session, now: datetime) -> int:
    result = session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= now))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
