"""Supervision (督办、通报): open and overdue tasks per department (candidate group), and projects with overdue
tasks. Every query is limited by the access policy: a principal counts only the tasks and instances it sees."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CTE, ColumnElement, FromClause, Select, and_, case, exists, func, select, tuple_, union
from sqlalchemy.orm import Session, aliased

from service import policy
from service.auth import Principal
from service.db.models import HumanTask, ProcessInstance, TaskCandidate
from service.errors import InvalidInput
from service.schemas import ProcessInstanceOut, TaskSummary
from service.services.common import decode_cursor, encode_cursor, task_summary
from service.services.context import AppContext
from service.services.instances import instance_query, standing
from service.text import storable_problem

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
    limit: int = 500  # tasks listed at most in each of the two lists (the counts are of every task)
    overdue_more: bool = False  # more overdue tasks than listed
    due_soon_more: bool = False
    overdue_tasks: int = 0  # how many tasks are overdue, and due soon (a task offered to two groups is one task)
    due_soon_tasks: int = 0


def supervision(session: Session, principal: Principal, now: datetime, process_key: str | None = None,
                limit: int = 500) -> Supervision:
    """Open tasks the principal sees, per candidate group: how many, how many overdue or due within three days,
    the nearest deadline; and the overdue and soon-due tasks themselves (the basis of a 通报), the `limit` most
    urgent of each.

    The counts are the database's, over every open task, not over a page of them; the lists are read by due date
    from (status, due_at, created_at, id), so tasks without a deadline neither push them out (SQLite puts NULL
    first in an ascending order, PostgreSQL last) nor are read at all."""
    shown = [HumanTask.status == "open", policy.visible_tasks(principal)]
    if process_key:
        shown.append(HumanTask.process_key == process_key)
    overdue = and_(HumanTask.due_at.is_not(None), HumanTask.due_at < now)
    soon = and_(HumanTask.due_at >= now, HumanTask.due_at < now + SOON)
    # the counts read the open tasks the principal sees: an administrator's are every open task; anyone else's are
    # read from what it is offered, claims and is granted (_seen_open_tasks), not by testing every open task
    counted_rows, counted_where = _counted_tasks(principal, process_key)
    group = aliased(TaskCandidate)
    counted = (select(group.value, HumanTask.process_key, func.count(), func.count(case((overdue, 1))),
                      func.count(case((soon, 1))), func.min(HumanTask.due_at),
                      func.min(case((overdue, HumanTask.due_at))))
               .select_from(counted_rows)
               .outerjoin(group, and_(group.task_id == HumanTask.id, group.kind == "group"))
               .where(*counted_where).group_by(group.value, HumanTask.process_key))
    loads: dict[str, DepartmentLoad] = {}
    for value, key, n_open, n_overdue, n_soon, earliest, oldest_overdue in session.execute(counted):
        load = loads.setdefault(value or NO_GROUP, DepartmentLoad(value or NO_GROUP))
        load.open += n_open
        load.overdue += n_overdue
        load.due_soon += n_soon
        load.processes.add(key)
        load.earliest_due = _earliest(load.earliest_due, earliest)
        load.oldest_overdue = _earliest(load.oldest_overdue, oldest_overdue)
    out = Supervision(now=now, limit=limit)
    out.departments = sorted(loads.values(), key=lambda d: (-d.overdue, -d.open, d.group))
    # each list one range of human_task (status, due_at, created_at, id), read in its order: the most urgent first,
    # the oldest first among tasks due at the same moment, with no sort
    order = (HumanTask.due_at, HumanTask.created_at, HumanTask.id)
    late = list(session.scalars(select(HumanTask).where(*shown, overdue).order_by(*order).limit(limit + 1)))
    near = list(session.scalars(select(HumanTask).where(*shown, soon).order_by(*order).limit(limit + 1)))
    out.overdue_more, out.due_soon_more = len(late) > limit, len(near) > limit
    late, near = late[:limit], near[:limit]
    out.overdue_tasks, out.due_soon_tasks = len(late), len(near)
    if out.overdue_more or out.due_soon_more:
        out.overdue_tasks, out.due_soon_tasks = session.execute(
            select(func.count(case((overdue, 1))), func.count(case((soon, 1)))).select_from(counted_rows)
            .where(*counted_where)).one()
    groups: dict[str, list[str]] = {}
    ids = [r.id for r in (*late, *near)]
    if ids:
        for task_id, value in session.execute(select(TaskCandidate.task_id, TaskCandidate.value).where(
                TaskCandidate.task_id.in_(ids), TaskCandidate.kind == "group")):
            groups.setdefault(task_id, []).append(value)
    for rows, listed in ((late, out.overdue), (near, out.due_soon)):
        for row in rows:
            summary = task_summary(row)
            listed.extend((g, summary) for g in sorted(groups.get(row.id) or [NO_GROUP]))
        listed.sort(key=lambda item: (item[1].due_at or now, item[0]))
    return out


def _counted_tasks(principal: Principal, process_key: str | None) -> tuple[FromClause, list[ColumnElement[bool]]]:
    """What the counts read: the open human_task rows the principal sees (of the process, when given), as a FROM
    clause and its conditions."""
    where = [HumanTask.status == "open"]
    if process_key:
        where.append(HumanTask.process_key == process_key)
    if principal.is_admin:
        return HumanTask.__table__, where
    seen = _seen_open_tasks(principal, process_key)
    return seen.join(HumanTask, HumanTask.id == seen.c.id), where


def _seen_open_tasks(principal: Principal, process_key: str | None) -> CTE:
    """The ids of the open tasks a principal other than an administrator sees (policy.visible_tasks), each once,
    read from where they are named: the open task_candidate rows of its groups and of its name
    (ix_task_candidate_inbox (kind, value, status, created_at, task_id)), its claims (ix_human_task_assignee_created)
    and the tasks of the processes granted to it. So a department member's counts cost the open tasks offered to
    it, not every open task with the policy's EXISTS lookups on each, nor the tasks its groups closed before
    (tests/api/test_supervision_scope.py checks these are the policy's tasks).

    The policy's one other way to see a task, having completed it, adds no open task: completed_by is written
    only with status 'completed' (tasks.py's _COMPLETE); a task sent back or withdrawn is opened again as a new
    row, without it."""
    def open_of(*condition: ColumnElement[bool]) -> Select[Any]:
        return select(HumanTask.id).where(*condition, HumanTask.status == "open",
                                          *([HumanTask.process_key == process_key] if process_key else []))

    def offered(kind: str, values: ColumnElement[bool]) -> Select[Any]:
        # the open ones only: the candidate rows keep their task's status
        return select(TaskCandidate.task_id.label("id")).where(TaskCandidate.kind == kind, values,
                                                               TaskCandidate.status == "open")

    if process_key and process_key in principal.processes:
        return open_of().cte("seen")  # the whole process is granted
    ways = [offered("user", TaskCandidate.value == principal.user), open_of(HumanTask.assignee == principal.user)]
    if principal.groups:
        ways.insert(0, offered("group", TaskCandidate.value.in_(sorted(principal.groups))))
    if principal.processes:
        ways.append(open_of(HumanTask.process_key.in_(sorted(principal.processes))))
    # UNION, not UNION ALL: a task offered to two of the principal's groups, or offered and claimed, is one task
    return union(*ways).cte("seen")


def _earliest(*dates: datetime | None) -> datetime | None:
    present = [d for d in dates if d is not None]
    return min(present) if present else None


def _overdue_task(now: datetime) -> object:
    return exists(select(HumanTask.id).where(HumanTask.instance_id == ProcessInstance.id, HumanTask.status == "open",
                                             HumanTask.due_at.is_not(None), HumanTask.due_at < now))


def list_projects(ctx: AppContext, session: Session, principal: Principal, *, now: datetime,
                  process_key: str | None = None, status: str | None = None, business_key: str | None = None,
                  overdue: bool = False, limit: int = 50, cursor: str | None = None
                  ) -> tuple[list[ProcessInstanceOut], str | None]:
    """Instances the principal sees, newest first, filtered as the API's list is, and by having an overdue open
    task. Paged as the API's list is, by the cursor of the last row of the page before (a project started between
    two pages neither shows twice nor pushes one off), read backwards on the same indexes. Returns the page and
    the next page's cursor (None: no more)."""
    if not 1 <= limit <= 200:
        raise InvalidInput("the page is out of range", {"limit": "1 to 200"})
    query = instance_query(principal, process_key, status, business_key)
    if overdue:
        query = query.where(_overdue_task(now))  # type: ignore[arg-type]
    if cursor:
        at, ident = decode_cursor(cursor)
        # instance ids are texts: a number is another list's cursor; a text no statement takes (NUL, a lone
        # surrogate) would be refused only when bound, past the caller's handling of a bad cursor
        if not isinstance(ident, str) or storable_problem(ident, None) is not None:
            raise InvalidInput("the cursor is not valid", {"cursor": "not a cursor of the projects list"})
        query = query.where(tuple_(ProcessInstance.started_at, ProcessInstance.id) < tuple_(at, ident))
    rows = list(session.scalars(query.order_by(ProcessInstance.started_at.desc(), ProcessInstance.id.desc())
                                .limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].started_at, rows[limit - 1].id) if len(rows) > limit else None
    return standing(ctx, session, rows[:limit]), next_cursor
