"""Supervision (督办、通报): open and overdue tasks per department (candidate group), and projects with overdue
tasks. Every query is limited by the access policy: a principal counts only the tasks and instances it sees."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from service import policy
from service.auth import Principal
from service.db.models import HumanTask, ProcessInstance, TaskCandidate
from service.errors import InvalidInput
from service.schemas import ProcessInstanceOut, TaskSummary
from service.services.common import task_summary, where_given
from service.services.context import AppContext
from service.services.instances import standing

NO_GROUP = ""  # tasks offered to named people only
SOON = timedelta(days=3)


@dataclass
class DepartmentLoad:
    group: str
    open: int = 0
    overdue: int = 0
    due_soon: int = 0
    earliest_due: datetime | None = None
    oldest_overdue: datetime | None = None
    processes: set[str] = field(default_factory=set)  # the process keys of its tasks


@dataclass
class Supervision:
    now: datetime
    departments: list[DepartmentLoad] = field(default_factory=list)
    overdue: list[tuple[str, TaskSummary]] = field(default_factory=list)  # (group, task), most overdue first
    due_soon: list[tuple[str, TaskSummary]] = field(default_factory=list)  # (group, task), soonest first


def supervision(session: Session, principal: Principal, now: datetime, process_key: str | None = None,
                limit: int = 500) -> Supervision:
    """Open tasks the principal sees, per candidate group: how many, how many overdue or due within three days,
    the nearest deadline; and the overdue tasks themselves (the basis of a 通报)."""
    query = where_given(select(HumanTask).where(HumanTask.status == "open", policy.visible_tasks(principal)),
                        (HumanTask.process_key, process_key))
    rows = list(session.scalars(query.order_by(HumanTask.due_at, HumanTask.created_at, HumanTask.id).limit(limit)))
    groups: dict[str, list[str]] = {}
    if rows:
        for task_id, value in session.execute(select(TaskCandidate.task_id, TaskCandidate.value).where(
                TaskCandidate.task_id.in_([r.id for r in rows]), TaskCandidate.kind == "group")):
            groups.setdefault(task_id, []).append(value)
    loads: dict[str, DepartmentLoad] = {}
    out = Supervision(now=now)
    for row in rows:
        summary = task_summary(row)
        for group in sorted(groups.get(row.id) or [NO_GROUP]):
            load = loads.setdefault(group, DepartmentLoad(group))
            load.open += 1
            load.processes.add(row.process_key)
            if row.due_at is None:
                continue
            if load.earliest_due is None or row.due_at < load.earliest_due:
                load.earliest_due = row.due_at
            if row.due_at < now:
                load.overdue += 1
                if load.oldest_overdue is None or row.due_at < load.oldest_overdue:
                    load.oldest_overdue = row.due_at
                out.overdue.append((group, summary))
            elif row.due_at < now + SOON:
                load.due_soon += 1
                out.due_soon.append((group, summary))
    out.departments = sorted(loads.values(), key=lambda d: (-d.overdue, -d.open, d.group))
    out.overdue.sort(key=lambda item: (item[1].due_at or now, item[0]))
    out.due_soon.sort(key=lambda item: (item[1].due_at or now, item[0]))
    return out


def _overdue_task(now: datetime) -> object:
    return exists(select(HumanTask.id).where(HumanTask.instance_id == ProcessInstance.id, HumanTask.status == "open",
                                             HumanTask.due_at.is_not(None), HumanTask.due_at < now))


def list_projects(ctx: AppContext, session: Session, principal: Principal, *, now: datetime,
                  process_key: str | None = None, status: str | None = None, business_key: str | None = None,
                  overdue: bool = False, limit: int = 50, offset: int = 0) -> tuple[list[ProcessInstanceOut], bool]:
    """Instances the principal sees, newest first, filtered as the API's list is, and by having an overdue open
    task. Returns the page and whether there are more."""
    if offset < 0 or not 1 <= limit <= 200:
        raise InvalidInput("the page is out of range", {"offset": "must be 0 or more", "limit": "1 to 200"})
    query = where_given(select(ProcessInstance), (ProcessInstance.process_key, process_key),
                        (ProcessInstance.status, status), (ProcessInstance.business_key, business_key))
    query = query.where(policy.visible_instances(principal))
    if overdue:
        query = query.where(_overdue_task(now))  # type: ignore[arg-type]
    rows = list(session.scalars(query.order_by(ProcessInstance.started_at.desc(), ProcessInstance.id.desc())
                                .offset(offset).limit(limit + 1)))
    more = len(rows) > limit
    return standing(ctx, session, rows[:limit]), more
