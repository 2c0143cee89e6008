"""When a year's official holiday arrangement arrives, pending working-day deadlines computed
from rule-based holidays are recomputed."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select

from service.db.models import HumanTask, ProcessInstance, WaitingEvent
from service.errors import Conflict, ProcessError
from service.services.audit import AuditTrail
from service.services.context import AppContext
from service.services.store import apply, committed, tasks_due_moved

log = logging.getLogger("govflow.calendar")


def recompute_provisional(ctx: AppContext) -> int:
    """Recompute every provisional due date; returns how many instances changed."""
    with ctx.read() as session:
        timers = select(WaitingEvent.instance_id).where(WaitingEvent.provisional.is_(True))
        tasks = select(HumanTask.instance_id).where(HumanTask.status == "open", HumanTask.due_provisional.is_(True))
        ids = sorted(set(session.scalars(timers)) | set(session.scalars(tasks)))
    changed = 0
    for instance_id in ids:
        try:
            changed += _recompute(ctx, instance_id)
        except (Conflict, ProcessError) as e:
            log.warning("could not recompute the deadlines of instance %s: %s", instance_id, e.detail)
        except Exception:  # one instance that cannot be recomputed does not keep the others (or the start) back
            log.exception("could not recompute the deadlines of instance %s", instance_id)
    if changed:
        log.info("recomputed working-day deadlines of %d instances", changed)
    return changed


def _recompute(ctx: AppContext, instance_id: str) -> int:
    with ctx.read() as session:
        instance = session.scalars(select(ProcessInstance).where(ProcessInstance.id == instance_id,
                                                                 ProcessInstance.status == "running")).first()
        if instance is None:
            return 0
        provisional = [(r.id, r.created_at) for r in session.scalars(select(HumanTask).where(
            HumanTask.instance_id == instance.id, HumanTask.status == "open", HumanTask.due_provisional.is_(True)))]
        stale_flags = _provisional_flags_stale(ctx, session, instance.id)
        files = ctx.model_files(session, instance.definition_id)
    result, token = ctx.run_engine("recompute_calendar", instance.definition_id, files,
                                   instance=(instance.id, instance.state_token), tasks=provisional)
    dues: dict[str, list[Any]] = result.extra.get("task_dues", {})
    with ctx.write() as session:
        moved: dict[str, str | None] = {}
        due_dates: dict[str, datetime | None] = {}
        for row in session.scalars(select(HumanTask).where(HumanTask.id.in_(list(dues)),
                                                           HumanTask.status == "open")):
            due_text, still_provisional = dues[row.id]
            due = datetime.fromisoformat(due_text) if due_text else None
            if due != row.due_at or still_provisional != row.due_provisional:
                if due != row.due_at:
                    due_dates[row.id] = due
                row.due_at, row.due_provisional = due, still_provisional
                moved[row.id] = due_text
        tasks_due_moved(session, due_dates)
        if not result.extra.get("timers_changed") and not moved and not stale_flags:
            return 0
        audit = AuditTrail.for_instance(session, instance.id)
        audit.append(ctx.clock.now(), "system", "calendar.recomputed", data={"tasks": moved})
        apply(ctx, session, instance, result, token, "system", audit, is_new=False)
    committed(ctx, instance, result, token)
    return 1


def _provisional_flags_stale(ctx: AppContext, session: object, instance_id: str) -> bool:
    """A timer whose date did not move may still stop being provisional."""
    from sqlalchemy.orm import Session

    assert isinstance(session, Session)
    for w in session.scalars(select(WaitingEvent).where(WaitingEvent.instance_id == instance_id,
                                                        WaitingEvent.provisional.is_(True))):
        if w.due_at is not None and not ctx.calendar.is_provisional(w.due_at):
            return True
    return False
