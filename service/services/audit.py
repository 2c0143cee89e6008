"""The audit trail: append-only and hash-chained per instance, so an edit, deletion or reordering
of any event is detectable."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, event, insert, or_, select, update
from sqlalchemy.orm import Session

from service.db.models import AuditEvent, ProcessInstance
from service.engine.forms import to_json_value

GENESIS = "0" * 64
_HEAD = select(AuditEvent.seq, AuditEvent.hash).where(AuditEvent.instance_id == bindparam("i")) \
    .order_by(AuditEvent.seq.desc()).limit(1)
_ANCHOR = update(ProcessInstance).where(
    ProcessInstance.id == bindparam("i"),
    or_(ProcessInstance.audit_seq.is_(None), ProcessInstance.audit_seq < bindparam("s")),
).values(audit_seq=bindparam("s"), audit_head=bindparam("h")).execution_options(synchronize_session=False)
_COLUMNS = ("instance_id", "seq", "at", "actor", "action", "task_id", "element_id", "data", "prev_hash", "hash")
_TABLE: Table = AuditEvent.__table__  # type: ignore[assignment]
# plain (Core) statements, built once: every column given, so a request's events are one executemany
_INSERT = insert(_TABLE)
_INSERT_RETURNING = insert(_TABLE).returning(_TABLE.c.id, sort_by_parameter_order=True)


def _digest(prev_hash: str, instance_id: str, seq: int, at: datetime, actor: str, action: str,
            task_id: str | None, element_id: str | None, data: dict[str, Any]) -> str:
    body = json.dumps(
        [instance_id, seq, at.isoformat(timespec="microseconds"), actor, action, task_id, element_id, data],
        sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str,
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


_PENDING = "govflow_audit_trails"


def _write_pending(session: Session) -> None:
    for trail in session.info.pop(_PENDING, []):
        trail.flush()


def _forget_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def install(session_factory: Any) -> None:
    """Events appended in a transaction are written (in one statement per instance) before it commits."""
    event.listen(session_factory, "before_commit", _write_pending)
    event.listen(session_factory, "after_rollback", _forget_pending)


class AuditTrail:
    """Appends events for one instance within the current transaction; they are written together before the
    transaction commits (or when `flush` is called)."""

    def __init__(self, session: Session, instance_id: str, last: Any) -> None:
        self.session = session
        self.instance_id = instance_id
        self.seq = last.seq if last else 0
        self.prev_hash = last.hash if last else GENESIS
        self.pending: list[AuditEvent] = []
        session.info.setdefault(_PENDING, []).append(self)

    @classmethod
    def for_instance(cls, session: Session, instance_id: str) -> AuditTrail:
        for trail in session.info.get(_PENDING, []):
            if trail.instance_id == instance_id:
                return trail  # events appended in this transaction and not written yet: go on from them
        last = session.execute(_HEAD, {"i": instance_id}).first()
        return cls(session, instance_id, last)

    def append(self, at: datetime, actor: str, action: str, *, task_id: str | None = None,
               element_id: str | None = None, data: dict[str, Any] | None = None) -> AuditEvent:
        self.seq += 1
        clean = to_json_value(data or {})
        at = at.replace(microsecond=at.microsecond)
        digest = _digest(self.prev_hash, self.instance_id, self.seq, at, actor, action, task_id, element_id, clean)
        event = AuditEvent(instance_id=self.instance_id, seq=self.seq, at=at, actor=actor, action=action,
                           task_id=task_id, element_id=element_id, data=clean, prev_hash=self.prev_hash,
                           hash=digest)
        self.pending.append(event)
        self.prev_hash = digest
        return event

    def flush(self, ids: bool = False) -> None:
        """Write the appended events (one statement); with `ids`, their ids are set on them."""
        if not self.pending:
            return
        rows = [{c: getattr(e, c) for c in _COLUMNS} for e in self.pending]
        if ids:
            written = self.session.execute(_INSERT_RETURNING, rows).scalars().all()
            for event_row, ident in zip(self.pending, written, strict=True):
                event_row.id = ident
        else:
            self.session.execute(_INSERT, rows)
        last = self.pending[-1]
        self.session.execute(_ANCHOR, {"i": self.instance_id, "s": last.seq, "h": last.hash})
        self.pending = []


@dataclass
class Verification:
    verified: bool
    first_bad_event_id: int | None = None
    reason: str | None = None


def verify_events(instance_id: str, events: list[AuditEvent], anchor: tuple[int | None, str | None] = (None, None)
                  ) -> Verification:
    """Check the chain link by link, and that it ends at the head the instance recorded (anchor: seq, hash)."""
    prev = GENESIS
    for expected_seq, e in enumerate(events, start=1):
        if e.seq != expected_seq:
            return Verification(False, e.id, f"sequence gap or reorder at seq {e.seq} (expected {expected_seq})")
        if e.prev_hash != prev:
            return Verification(False, e.id, "link to the previous event is broken")
        digest = _digest(prev, instance_id, e.seq, e.at, e.actor, e.action, e.task_id, e.element_id, e.data)
        if digest != e.hash:
            return Verification(False, e.id, "event content does not match its hash")
        prev = e.hash
    anchor_seq, anchor_hash = anchor
    if anchor_seq is not None:
        last_seq = events[-1].seq if events else 0
        if last_seq != anchor_seq or prev != anchor_hash:
            return Verification(False, events[-1].id if events else None,
                                f"the chain ends at event {last_seq} but the instance recorded events up to "
                                f"{anchor_seq}: events were removed or replaced")
    return Verification(True)


def load_events(session: Session, instance_id: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.instance_id == instance_id)
                                .order_by(AuditEvent.seq, AuditEvent.id)))
