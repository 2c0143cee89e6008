"""Firing timers: due ones from the scheduler, and a chosen one on an administrator's request."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from service import metrics, policy
from service.auth import Principal
from service.db.models import ProcessInstance, WaitingEvent
from service.errors import Conflict, NotFound
from service.schemas import ProcessInstanceOut
from service.services import instances, outbox
from service.services.audit import AuditTrail
from service.services.context import AppContext
from service.services.store import apply, committed


def _record(session: Session, instance: ProcessInstance, timer: WaitingEvent, actor: str, audit: AuditTrail,
            now: datetime, forced: bool, fired_by: str | None = None) -> None:
    data: dict[str, object] = {"name": timer.name, "due_at": timer.due_at.isoformat() if timer.due_at else None,
                               "forced": forced}
    if fired_by:
        data["fired_by"] = fired_by
    audit.append(now, actor, "timer.fired", element_id=timer.element_id, data=data)
    metrics.TIMERS_FIRED.inc()
    outbox.enqueue(session, "timer.fired", now, instance.id,
                   {"process_instance_id": instance.id, "process_key": instance.process_key,
                    "business_key": instance.business_key, "element_id": timer.element_id, **data})


def _due_and_free(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """Timers that fell due and that no scheduler holds (no lease, or an expired one)."""
    return (WaitingEvent.kind == "timer", WaitingEvent.due_at < now,
            (WaitingEvent.lease_until.is_(None)) | (WaitingEvent.lease_until < now))


@dataclass
class Claim:
    """The instances whose due timers one scheduler leased in one go, and until when."""

    instance_ids: list[str]
    lease_until: datetime


def claim_due(ctx: AppContext, limit: int) -> Claim:
    """Lease the due timers of the instances with the earliest due timers (at most `limit` timers' worth), so
    that schedulers share the due list instead of each working through all of it: the rows another scheduler is
    claiming at this moment are skipped (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite serialises writes and runs
    one scheduler at a time). Each leased instance is then fired with fire_due(..., leased=True)."""
    now = ctx.clock.now()
    until = now + timedelta(seconds=ctx.settings.timer_lease_seconds)
    with ctx.write() as session:
        rows = session.execute(select(WaitingEvent.instance_id).where(*_due_and_free(now))
                               .order_by(WaitingEvent.due_at, WaitingEvent.id).limit(limit)
                               .with_for_update(skip_locked=True)).all()
        instance_ids = list(dict.fromkeys(row.instance_id for row in rows))
        if instance_ids:
            # the instances' other due timers too (one engine step fires them all), unless another scheduler is
            # claiming them right now: waiting for its row locks could deadlock with it
            theirs = (select(WaitingEvent.id).where(WaitingEvent.instance_id.in_(instance_ids), *_due_and_free(now))
                      .with_for_update(skip_locked=True))
            session.execute(update(WaitingEvent).where(WaitingEvent.id.in_(theirs)).values(lease_until=until)
                            .execution_options(synchronize_session=False))
    return Claim(instance_ids, until)


def release(ctx: AppContext, claim: Claim, instance_ids: list[str]) -> None:
    """Give back the leases of claimed instances that were not fired (the scheduler is stopping)."""
    if not instance_ids:
        return
    with ctx.write() as session:
        session.execute(update(WaitingEvent).where(WaitingEvent.instance_id.in_(instance_ids),
                                                   WaitingEvent.lease_until == claim.lease_until)
                        .values(lease_until=None).execution_options(synchronize_session=False))


def fire_due(ctx: AppContext, instance_id: str, fired_by: str = "scheduler", leased: bool = False) -> list[str] | None:
    """Fire the timers of one instance that fell due (the scheduler's work). The instance's due timers are
    leased first (one conditional UPDATE; or already, by claim_due: leased=True), so that no other scheduler
    fires them meanwhile; the engine runs outside any write transaction; the result is stored under the
    instance's optimistic lock. None when there was nothing to do."""
    now = ctx.clock.now()
    lease = timedelta(seconds=ctx.settings.timer_lease_seconds)
    with ctx.write() as session:
        if not leased:
            claimed = session.execute(
                update(WaitingEvent).where(WaitingEvent.instance_id == instance_id, *_due_and_free(now))
                .values(lease_until=now + lease).execution_options(synchronize_session=False))
            if not claimed.rowcount:  # type: ignore[attr-defined]
                return None
        instance = session.scalars(select(ProcessInstance).where(ProcessInstance.id == instance_id,
                                                                 ProcessInstance.status == "running")).first()
        if instance is None:
            return None
        before = list(session.scalars(select(WaitingEvent).where(WaitingEvent.instance_id == instance_id)))
        if leased and not any(w.kind == "timer" and w.due_at is not None and w.due_at < now for w in before):
            return None  # a request moved the timers since they were claimed
        files = ctx.model_files(session, instance.definition_id)
    try:
        result, token = ctx.run_engine("fire_due", instance.definition_id, files,
                                       instance=(instance.id, instance.state_token))
        with ctx.write() as session:
            audit = AuditTrail.for_instance(session, instance.id)
            fired = [w for w in before if w.kind == "timer" and w.due_at is not None and w.due_at < now]
            for w in fired:
                _record(session, instance, w, "scheduler", audit, now, forced=False, fired_by=fired_by)
            apply(ctx, session, instance, result, token, "scheduler", audit, is_new=False)
            # timers that did not fire (or fired and wait again) are free for the next round
            session.execute(update(WaitingEvent).where(WaitingEvent.instance_id == instance.id)
                            .values(lease_until=None).execution_options(synchronize_session=False))
    except Exception:
        _unlease(ctx, instance_id)
        raise
    committed(ctx, instance, result, token)
    return [w.element_id for w in fired]


def _unlease(ctx: AppContext, instance_id: str) -> None:
    with ctx.write() as session:
        session.execute(update(WaitingEvent).where(WaitingEvent.instance_id == instance_id)
                        .values(lease_until=None).execution_options(synchronize_session=False))


def fire_now(ctx: AppContext, principal: Principal, instance_id: str, element_id: str) -> ProcessInstanceOut:
    policy.require_admin(principal, "fire timers")
    with ctx.read() as session:
        instance = instances.load_row(session, principal, instance_id)
        if instance.status != "running":
            raise Conflict(f"the process instance is {instance.status}")
        before = list(session.scalars(select(WaitingEvent).where(WaitingEvent.instance_id == instance.id,
                                                                 WaitingEvent.kind == "timer",
                                                                 WaitingEvent.element_id == element_id)))
        if not before:
            raise NotFound(f"the instance does not wait on a timer '{element_id}'")
        files = ctx.model_files(session, instance.definition_id)
    result, token = ctx.run_engine("fire_now", instance.definition_id, files,
                                   instance=(instance.id, instance.state_token), element_id=element_id)
    now = ctx.clock.now()
    with ctx.write() as session:
        audit = AuditTrail.for_instance(session, instance.id)
        for w in before:
            _record(session, instance, w, principal.user, audit, now, forced=True)
        apply(ctx, session, instance, result, token, principal.user, audit, is_new=False)
        out = instances.read_in(ctx, session, principal, instance.id)
    committed(ctx, instance, result, token)
    return out
