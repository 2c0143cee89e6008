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
from service.db.prepared import Prepared
from service.engine.forms import to_json_value

GENESIS = "0" * 64
_TABLE: Table = AuditEvent.__table__  # type: ignore[assignment]
_INSTANCES: Table = ProcessInstance.__table__  # type: ignore[assignment]
_COLUMNS = ("instance_id", "seq", "at", "actor", "action", "task_id", "element_id", "data", "prev_hash", "hash")
# prepared statements (service/db/prepared.py): every column given, so a request's events are one executemany
_HEAD = Prepared(select(_TABLE.c.seq, _TABLE.c.hash).where(_TABLE.c.instance_id == bindparam("i"))
                 .order_by(_TABLE.c.seq.desc()).limit(1))
_ANCHOR = Prepared(update(_INSTANCES).where(
    _INSTANCES.c.id == bindparam("i"),
    or_(_INSTANCES.c.audit_seq.is_(None), _INSTANCES.c.audit_seq < bindparam("s")),
).values(audit_seq=bindparam("s"), audit_head=bindparam("h")))
_INSERT = Prepared(insert(_TABLE), keys=_COLUMNS)
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
    transaction commits (or when `flush` is called).

    An event's seq and hash follow from the chain's head (the newest event's seq and hash). A request that reads
    or updates the instance row learns the head from it (`found_head`: the anchor `flush` writes with the events,
    so the two are committed together); until then appended events wait unchained, and a trail whose head is
    still unknown when written (an instance whose events predate the anchor) reads it from audit_event."""

    def __init__(self, session: Session, instance_id: str, last: Any, *, known: bool = True) -> None:
        self.session = session
        self.instance_id = instance_id
        self.known = known
        self.seq = last.seq if last else 0
        self.prev_hash = last.hash if last else GENESIS
        self.pending: list[AuditEvent] = []
        # the seq the instance row's anchor was set to by a statement of the request's own (apply's INSERT or
        # UPDATE of the instance): flush writes no anchor while it is the newest event's
        self.anchored: int | None = None
        session.info.setdefault(_PENDING, []).append(self)

    @classmethod
    def for_instance(cls, session: Session, instance_id: str,
                     head: tuple[int | None, str | None] = (None, None)) -> AuditTrail:
        """The instance's trail in this transaction. `head`: the instance row's (audit_seq, audit_head) if the
        request read the row; otherwise the head is learnt later (AuditTrail.found_head, or on writing)."""
        for trail in session.info.get(_PENDING, []):
            if trail.instance_id == instance_id:
                trail.found_head(*head)
                return trail  # events appended in this transaction and not written yet: go on from them
        trail = cls(session, instance_id, None, known=False)
        trail.found_head(*head)
        return trail

    def found_head(self, seq: int | None, digest: str | None) -> None:
        """The head as the instance row records it (NULL before the first event written since migration 0006):
        the events appended so far are chained from it. A head already known (from events this transaction
        appended or wrote) stays."""
        if self.known or seq is None or digest is None:
            return
        self.seq, self.prev_hash, self.known = seq, digest, True
        waiting, self.pending = self.pending, []
        for event_row in waiting:
            self._chain(event_row)

    def head(self) -> tuple[int, str] | None:
        """The head after the appended events, for the instance's own statement to record as its anchor; None
        when the head is not known yet or no event waits to be written."""
        return (self.seq, self.prev_hash) if self.known and self.pending else None

    def assume_head(self, seq: int | None, digest: str | None) -> tuple[int, str] | None:
        """Chain the appended events from the head the request read before its write transaction, for an UPDATE
        that records the anchor only where the row still has that head (`forget_head` if it had another). The
        head after them, or None when this trail takes its head from the row (already known, nothing appended,
        or no anchor read)."""
        if self.known or not self.pending or seq is None or digest is None:
            return None
        self.found_head(seq, digest)
        return self.seq, self.prev_hash

    def forget_head(self) -> None:
        """The head assumed was not the row's: the events wait for the head again (found_head chains them)."""
        self.known = False

    def _chain(self, event_row: AuditEvent) -> None:
        self.seq += 1
        event_row.seq = self.seq
        event_row.prev_hash = self.prev_hash
        event_row.hash = _digest(self.prev_hash, self.instance_id, self.seq, event_row.at, event_row.actor,
                                 event_row.action, event_row.task_id, event_row.element_id, event_row.data)
        self.prev_hash = event_row.hash
        self.pending.append(event_row)

    def append(self, at: datetime, actor: str, action: str, *, task_id: str | None = None,
               element_id: str | None = None, data: dict[str, Any] | None = None) -> AuditEvent:
        """The event, with its seq and hash once the head is known (at the latest when it is written)."""
        at = at.replace(microsecond=at.microsecond)
        event_row = AuditEvent(instance_id=self.instance_id, at=at, actor=actor, action=action, task_id=task_id,
                               element_id=element_id, data=to_json_value(data or {}))
        if self.known:
            self._chain(event_row)
        else:
            self.pending.append(event_row)
        return event_row

    def flush(self, ids: bool = False) -> None:
        """Write the appended events (one statement) and the anchor; with `ids`, the events' ids are set on them.
        The anchor goes first: it takes the instance row's lock, so a concurrent writer of the same instance
        (one that updates the row, or writes its own anchor) waits for this transaction instead of deadlocking
        with it on the events' unique (instance_id, seq); a duplicate seq is still refused by that key. An anchor
        the instance's INSERT or UPDATE already recorded (`anchored`) is not written again: that statement took the
        lock."""
        if not self.pending:
            return
        if not self.known:
            last = _HEAD.execute(self.session, {"i": self.instance_id}).first()
            self.found_head(*(last if last else (0, GENESIS)))
        last_event = self.pending[-1]
        if self.anchored != last_event.seq:
            _ANCHOR.execute(self.session, {"i": self.instance_id, "s": last_event.seq, "h": last_event.hash})
        rows = [{c: getattr(e, c) for c in _COLUMNS} for e in self.pending]
        if ids:
            written = self.session.execute(_INSERT_RETURNING, rows).scalars().all()
            for event_row, ident in zip(self.pending, written, strict=True):
                event_row.id = ident
        else:
            _INSERT.execute(self.session, rows)
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
