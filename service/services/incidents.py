"""Incidents: what failed and can be tried again — today, timers whose firing failed (the scheduler records the
error and backs off; a failed step of a request is refused and leaves nothing behind, so it is no incident)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import literal_column, select, tuple_, update
from sqlalchemy.orm import Session

from service import policy
from service.auth import Principal
from service.db.models import ProcessInstance, WaitingEvent
from service.errors import DomainError, NotFound
from service.schemas import IncidentOut, ProcessInstanceOut
from service.services import timers
from service.services.common import decode_numbered_cursor, encode_cursor
from service.services.context import AppContext
from service.text import storable_text


def _out(row: WaitingEvent) -> IncidentOut:
    return IncidentOut(id=row.id, kind=row.kind, process_instance_id=row.instance_id, process_key=row.process_key,
                       business_key=row.business_key, element_id=row.element_id, name=row.name, due_at=row.due_at,
                       attempts=row.attempts or 0, last_error=row.last_error, next_retry_at=row.lease_until)


def list_incidents(session: Session, principal: Principal, *, process_key: str | None,
                   process_instance_id: str | None, limit: int,
                   cursor: str | None = None) -> tuple[list[IncidentOut], str | None]:
    """The incidents the most overdue first (due date, then id), at most `limit`, after the cursor's; and the
    cursor of the next page, None on the last. A failed timer always has a due date (one without is never fired)."""
    policy.require_admin(principal, "list incidents")
    # the failed timers, with ix_waiting_event_incident's condition (models.INCIDENT) written with its value in the
    # statement, so that the list is a range of that index: a database uses a partial index only for a query whose
    # condition implies the index's, which a bound parameter does not show
    query = (select(WaitingEvent).join(ProcessInstance, ProcessInstance.id == WaitingEvent.instance_id)
             .where(WaitingEvent.kind == "timer", WaitingEvent.attempts > literal_column("0"),
                    ProcessInstance.status == "running"))
    if process_key:
        query = query.where(WaitingEvent.process_key == process_key)
    if process_instance_id:
        query = query.where(WaitingEvent.instance_id == process_instance_id)
    if cursor:
        at, ident = decode_numbered_cursor(cursor, "incidents")
        query = query.where(tuple_(WaitingEvent.due_at, WaitingEvent.id) > tuple_(at, ident))
    rows = list(session.scalars(query.order_by(WaitingEvent.due_at, WaitingEvent.id).limit(limit + 1)))
    last = rows[limit - 1] if len(rows) > limit else None
    next_cursor = None
    if last is not None and last.due_at is not None:
        next_cursor = encode_cursor(last.due_at, last.id, of="incidents")
    return [_out(r) for r in rows[:limit]], next_cursor


def _incident(session: Session, incident_id: int) -> WaitingEvent:
    row = session.get(WaitingEvent, incident_id)
    if row is None or row.kind != "timer" or not row.attempts:
        raise NotFound(f"no incident {incident_id}")
    return row


def retry(ctx: AppContext, principal: Principal, incident_id: int) -> ProcessInstanceOut:
    """Fire the failed timer again now. If it fails again, the incident keeps the new error (and the request
    answers with it); if it fires, the incident is gone."""
    policy.require_admin(principal, "retry incidents")
    with ctx.read() as session:
        row = _incident(session, incident_id)
        instance_id, element_id = row.instance_id, row.element_id
    try:
        out = timers.fire_now(ctx, principal, instance_id, element_id)
    except DomainError as e:
        _record_failure(ctx, instance_id, element_id, e.detail, ctx.clock.now())
        raise
    with ctx.write() as session:  # a timer that fires and waits again (a cycle) starts afresh
        session.execute(update(WaitingEvent).where(WaitingEvent.instance_id == instance_id,
                                                   WaitingEvent.element_id == element_id)
                        .values(attempts=0, last_error=None, lease_until=None)
                        .execution_options(synchronize_session=False))
    return out


def _record_failure(ctx: AppContext, instance_id: str, element_id: str, error: str, now: datetime) -> None:
    with ctx.write() as session:
        for w in session.scalars(select(WaitingEvent).where(WaitingEvent.instance_id == instance_id,
                                                            WaitingEvent.kind == "timer",
                                                            WaitingEvent.element_id == element_id)):
            w.attempts = (w.attempts or 0) + 1
            w.last_error = storable_text(error, 2000)
