"""The human side: inboxes, claiming, completing user tasks with form data."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    Table,
    and_,
    bindparam,
    exists,
    false,
    func,
    or_,
    select,
    tuple_,
    union,
    update,
)
from sqlalchemy.orm import Session

from service import policy
from service.auth import Principal
from service.db.models import LOOKUP, AuditEvent, HumanTask, ProcessInstance, TaskCandidate
from service.db.prepared import Prepared
from service.engine import forms
from service.engine.forms import to_json_value
from service.errors import ConcurrentChange, Conflict, InvalidInput, NotFound
from service.schemas import (
    CommentOut,
    CompletionOut,
    FormFieldOut,
    TaskDetail,
    TaskPage,
    TaskRecord,
    TaskRecordPage,
    TaskSummary,
)
from service.services import outbox
from service.services.audit import AuditTrail
from service.services.common import (
    check_form,
    check_variables,
    china_today,
    decode_cursor,
    encode_cursor,
    is_given,
    record_fields,
    task_record,
    task_summary,
    where_given,
)
from service.services.context import AppContext
from service.services.store import Stored, apply, committed, task_claimed, tasks_closed
from service.text import storable_problem

TASK_STATUSES = ("open", "completed", "cancelled")


TASK_SORTS = ("created", "due", "name", "name_ci", "id", "assignee", "instance", "element")


_T: Table = HumanTask.__table__  # type: ignore[assignment]
_I: Table = ProcessInstance.__table__  # type: ignore[assignment]
_C: Table = TaskCandidate.__table__  # type: ignore[assignment]
# the candidate rows a list is read from (_offered_page), named apart from those its filters ask about
_R: Any = _C.alias("offered")
# the reads and writes of claim, complete and a task's detail, prepared (service/db/prepared.py) on the tables: rows,
# not ORM objects (an ORM load costs about twice the statement, and SQLAlchemy's execution of a Core one as much)
_TASK_ROW = Prepared(select(_T).where(_T.c.id == bindparam("i", type_=LOOKUP)))
_DONE_ROWS = Prepared(select(_T).where(_T.c.instance_id == bindparam("i"), _T.c.status == "completed")
                      .order_by(_T.c.completed_at.desc(), _T.c.id.desc()).limit(bindparam("n")))
_INSTANCE_HEAD_LOCKED = Prepared(select(_I.c.variables, _I.c.audit_seq, _I.c.audit_head)
                                 .where(_I.c.id == bindparam("i")).with_for_update())
_INSTANCE_VARIABLES = Prepared(select(_I.c.variables).where(_I.c.id == bindparam("i")))
# what a completion reads, in one statement: the task; its instance, every column but its engine state (the header;
# written, never read, here), labelled i_<column>; and whether another task of the instance is open
_OTHER: Any = _T.alias("other")
_FOR_COMPLETION = Prepared(
    select(_T, *[c.label(f"i_{c.name}") for c in _I.c if c.name != "state_json"],
           exists(select(_OTHER.c.id).where(_OTHER.c.instance_id == _T.c.instance_id, _OTHER.c.status == "open",
                                            _OTHER.c.id != _T.c.id)).label("others_open"))
    .select_from(_T.outerjoin(_I, _I.c.id == _T.c.instance_id)).where(_T.c.id == bindparam("i", type_=LOOKUP)))
# a completion takes the task (open, and unclaimed or claimed by the completer) and records what was submitted
_COMPLETE = Prepared(
    update(_T).where(_T.c.id == bindparam("b_id", type_=LOOKUP), _T.c.status == "open",
                     or_(_T.c.assignee.is_(None), _T.c.assignee == bindparam("b_user")))
    .values({c: bindparam(c) for c in ("status", "completed_at", "completed_by", "assignee", "submitted", "outputs",
                                        "comment")})
)
# claim and release: the task changes hands only from the holder the request saw
_CLAIM = Prepared(update(_T).where(_T.c.id == bindparam("b_id", type_=LOOKUP), _T.c.assignee.is_(None),
                                   _T.c.status == "open")
                  .values(assignee=bindparam("user")))
_RELEASE = Prepared(update(_T).where(_T.c.id == bindparam("b_id", type_=LOOKUP), _T.c.assignee == bindparam("previous"),
                                     _T.c.status == "open").values(assignee=None))


def _status(status: str | None) -> str:
    """A task list's status filter: open unless given, one of TASK_STATUSES."""
    status = status or "open"
    if status not in TASK_STATUSES:
        raise InvalidInput("unknown task status", {"status": f"must be one of {', '.join(TASK_STATUSES)}"})
    return status


def _task_query(principal: Principal, *, candidate_group: str | None, assignee: str | None,
                process_key: str | None, business_key: str | None, process_instance_id: str | None,
                status: str | None, due_before: datetime | None, overdue: bool | None, now: datetime,
                candidate_groups: Iterable[str] | None = None, candidate_user: str | None = None,
                candidate_user_groups: Iterable[str] = (), unassigned: bool = False, element_id: str | None = None,
                due_after: datetime | None = None, task_id: str | None = None,
                from_ranges: bool = False) -> Select[Any]:
    """The list's filters on human_task. from_ranges: the list is read from the candidate rows its first candidate
    filter names (_offered_ranges), which then is not asked again of each task."""
    status = _status(status)
    candidate_groups = None if candidate_groups is None else sorted(set(candidate_groups))
    candidate_user_groups = sorted(set(candidate_user_groups))
    query = select(_T).where(HumanTask.status == status)  # rows, not ORM objects: a page is only read
    first = _first_candidate_filter(candidate_group, candidate_groups, candidate_user)
    if candidate_group and not (from_ranges and first == "candidate_group"):
        query = query.where(exists(select(TaskCandidate.task_id).where(
            TaskCandidate.task_id == HumanTask.id, TaskCandidate.kind == "group",
            TaskCandidate.value == candidate_group)))
    if candidate_groups is not None and not (from_ranges and first == "candidate_groups"):
        query = query.where(exists(select(TaskCandidate.task_id).where(
            TaskCandidate.task_id == HumanTask.id, TaskCandidate.kind == "group",
            TaskCandidate.value.in_(candidate_groups))))
    if candidate_user and not (from_ranges and first == "candidate_user"):
        # offered to the user by name, or to one of the groups the caller knows the user to be in
        query = query.where(exists(select(TaskCandidate.task_id).where(
            TaskCandidate.task_id == HumanTask.id,
            or_((TaskCandidate.kind == "user") & (TaskCandidate.value == candidate_user),
                (TaskCandidate.kind == "group") & TaskCandidate.value.in_(candidate_user_groups)))))
    query = where_given(query, (HumanTask.assignee, assignee), (HumanTask.process_key, process_key),
                        (HumanTask.business_key, business_key), (HumanTask.instance_id, process_instance_id),
                        (HumanTask.element_id, element_id), (HumanTask.id, task_id))
    if unassigned:
        query = query.where(HumanTask.assignee.is_(None))
    if due_before:
        query = query.where(HumanTask.due_at.is_not(None), HumanTask.due_at < due_before)
    if due_after:
        query = query.where(HumanTask.due_at.is_not(None), HumanTask.due_at > due_after)
    if overdue is True:
        query = query.where(HumanTask.due_at.is_not(None), HumanTask.due_at < now)
    elif overdue is False:
        query = query.where(or_(HumanTask.due_at.is_(None), HumanTask.due_at >= now))
    if not policy.filter_shows_only_visible_tasks(
            principal, candidate_group=candidate_group, candidate_groups=candidate_groups,
            candidate_user=candidate_user, candidate_user_groups=candidate_user_groups, assignee=assignee):
        query = query.where(policy.visible_tasks(principal))
    return query


def _is_common_inbox(principal: Principal, *, candidate_group: str | None, assignee: str | None,
                     due_before: datetime | None, overdue: bool | None, candidate_groups: Iterable[str] | None = None,
                     candidate_user: str | None = None, unassigned: bool = False, due_after: datetime | None = None,
                     sort_by: str = "created", descending: bool = False, offset: int = 0,
                     task_id: str | None = None) -> bool:
    """Whether a task list is the common inbox (_inbox_page): the caller's own group or tasks, equality filters
    only, creation order, paged by cursor."""
    return (candidate_groups is None and not candidate_user and not unassigned and due_before is None
            and task_id is None
            and due_after is None and overdue is None and sort_by == "created" and not descending and not offset
            and policy.filter_shows_only_visible_tasks(principal, candidate_group=candidate_group, assignee=assignee))


def _equals(assignee: str | None, process_key: str | None, business_key: str | None,
            process_instance_id: str | None, element_id: str | None = None) -> dict[str, str | None]:
    """The common inbox's equality filters, by column."""
    return {"assignee": assignee, "process_key": process_key, "business_key": business_key,
            "instance_id": process_instance_id, "element_id": element_id}


def inbox(ctx: AppContext, principal: Principal, *, candidate_group: str | None, assignee: str | None,
          process_key: str | None, business_key: str | None, process_instance_id: str | None, status: str | None,
          due_before: datetime | None, overdue: bool | None, limit: int, cursor: str | None) -> TaskPage:
    """GET /tasks: the common inbox read on a plain connection (one prepared statement), any other in a read
    transaction through list_tasks."""
    if _is_common_inbox(principal, candidate_group=candidate_group, assignee=assignee, due_before=due_before,
                        overdue=overdue):
        with ctx.read_connection() as connection:
            return _inbox_page(connection, status, candidate_group,
                               _equals(assignee, process_key, business_key, process_instance_id), limit, cursor)
    with ctx.read() as session:
        return list_tasks(session, principal, candidate_group=candidate_group, assignee=assignee,
                          process_key=process_key, business_key=business_key,
                          process_instance_id=process_instance_id, status=status, due_before=due_before,
                          overdue=overdue, now=ctx.clock.now(), limit=limit, cursor=cursor)


def list_tasks(session: Session, principal: Principal, *, candidate_group: str | None, assignee: str | None,
               process_key: str | None, business_key: str | None, process_instance_id: str | None,
               status: str | None, due_before: datetime | None, overdue: bool | None, now: datetime,
               limit: int, cursor: str | None, candidate_groups: Iterable[str] | None = None,
               candidate_user: str | None = None, candidate_user_groups: Iterable[str] = (),
               unassigned: bool = False, element_id: str | None = None, due_after: datetime | None = None,
               sort_by: str = "created", descending: bool = False, offset: int = 0,
               task_id: str | None = None, general: bool = False) -> TaskPage:
    """The inbox. A cursor pages in creation order; another order (`sort_by`) pages by `offset`. `general`: read
    from the tasks of the status even where candidate ranges would be read (_offered_ranges)."""
    if _is_common_inbox(principal, candidate_group=candidate_group, assignee=assignee, due_before=due_before,
                        overdue=overdue, candidate_groups=candidate_groups, candidate_user=candidate_user,
                        unassigned=unassigned, due_after=due_after, sort_by=sort_by, descending=descending,
                        offset=offset, task_id=task_id):
        return _inbox_page(session, status, candidate_group,
                           _equals(assignee, process_key, business_key, process_instance_id, element_id), limit,
                           cursor)
    # read from candidate ranges in creation order, or in due order for unclaimed tasks (ix_task_candidate_offered)
    ranges = None if general or not (sort_by == "created" or (sort_by == "due" and unassigned)) else _ranges_read(
        principal, candidate_group=candidate_group, candidate_groups=candidate_groups, candidate_user=candidate_user,
        candidate_user_groups=candidate_user_groups, assignee=assignee, business_key=business_key,
        process_instance_id=process_instance_id, task_id=task_id, due_before=due_before, due_after=due_after,
        overdue=overdue)
    query = _task_query(principal, candidate_group=candidate_group, assignee=assignee, process_key=process_key,
                        business_key=business_key, process_instance_id=process_instance_id, status=status,
                        due_before=due_before, overdue=overdue, now=now, candidate_groups=candidate_groups,
                        candidate_user=candidate_user, candidate_user_groups=candidate_user_groups,
                        unassigned=unassigned, element_id=element_id, due_after=due_after, task_id=task_id,
                        from_ranges=ranges is not None)
    if sort_by != "created" or descending or offset:
        if sort_by not in TASK_SORTS:
            raise InvalidInput("unknown sort order", {"sort_by": f"must be one of {', '.join(TASK_SORTS)}"})
        if cursor:
            raise InvalidInput("a cursor pages only in creation order", {"cursor": "not with sort_by or offset"})
        column = {"created": HumanTask.created_at, "due": HumanTask.due_at, "name": HumanTask.name,
                  "name_ci": func.lower(HumanTask.name),
                  "id": HumanTask.id, "assignee": HumanTask.assignee, "instance": HumanTask.instance_id,
                  "element": HumanTask.element_id}[sort_by]
        order: list[Any]
        if column is HumanTask.due_at or column is HumanTask.assignee:
            # no deadline, no assignee: after every value, and first in reverse, on both databases (SQLite puts
            # NULL first in an ascending order, PostgreSQL last); among equals, the oldest first
            order = [column.desc().nulls_first(), HumanTask.created_at.desc(), HumanTask.id.desc()] if descending \
                else [column.asc().nulls_last(), HumanTask.created_at, HumanTask.id]
        else:
            order = [column.desc(), HumanTask.id.desc()] if descending else [column, HumanTask.id]
        if ranges is None:
            rows: list[Any] = list(session.execute(query.order_by(*order).offset(max(offset, 0)).limit(limit)))
        else:
            rows = _offered_page(session, query, ranges, _status(status), unclaimed=unassigned,
                                 by_due=sort_by == "due", descending=descending, offset=max(offset, 0), limit=limit,
                                 after=None)
        return TaskPage(items=[task_summary(r) for r in rows], next_cursor=None)
    after = None
    if cursor:
        at, ident = decode_cursor(cursor)
        after = (at, str(ident))
    if ranges is not None:
        rows = _offered_page(session, query, ranges, _status(status), unclaimed=unassigned, by_due=False,
                             descending=False, offset=0, limit=limit + 1, after=after)
    else:
        if after is not None:
            query = query.where(tuple_(HumanTask.created_at, HumanTask.id) > tuple_(*after))
        rows = list(session.execute(query.order_by(HumanTask.created_at, HumanTask.id).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return TaskPage(items=[task_summary(r) for r in rows[:limit]], next_cursor=next_cursor)


# a candidate filter of more ranges than this is read by the general query (SQLite allows 500 terms in a UNION)
MAX_RANGES = 32


def _offered_ranges(candidate_group: str | None, candidate_groups: Iterable[str] | None, candidate_user: str | None,
                    candidate_user_groups: Iterable[str]) -> list[tuple[str, str]] | None:
    """The candidate rows a list's candidate filter names, as (kind, value): each one range of
    ix_task_candidate_inbox. The list is read from those of its first candidate filter (_first_candidate_filter);
    the others stay conditions on each task. None (the list is read from the tasks) without a candidate filter, or
    with more ranges than MAX_RANGES."""
    ranges: list[tuple[str, str]]
    if candidate_group:
        ranges = [("group", candidate_group)]
    elif candidate_groups is not None:
        ranges = [("group", g) for g in sorted(set(candidate_groups))]
    elif candidate_user:
        ranges = [("user", candidate_user)] + [("group", g) for g in sorted(set(candidate_user_groups))]
    else:
        return None
    return ranges if len(ranges) <= MAX_RANGES else None


def _ranges_read(principal: Principal, **filters: Any) -> list[tuple[str, str]] | None:
    """The candidate ranges a list by candidate is read from (_offered_ranges), where that pays (_from_ranges_pays);
    None: the list is read from the tasks."""
    if not _from_ranges_pays(principal, **filters):
        return None
    return _offered_ranges(filters["candidate_group"], filters["candidate_groups"], filters["candidate_user"],
                           filters["candidate_user_groups"])


def _first_candidate_filter(candidate_group: str | None, candidate_groups: Iterable[str] | None,
                            candidate_user: str | None) -> str | None:
    """The candidate filter a list by candidate is read from: candidate_group, else candidate_groups, else
    candidate_user (with the groups known to be that user's); None without one."""
    if candidate_group:
        return "candidate_group"
    if candidate_groups is not None:
        return "candidate_groups"
    return "candidate_user" if candidate_user else None


def _from_ranges_pays(principal: Principal, *, candidate_group: str | None, candidate_groups: Iterable[str] | None,
                      candidate_user: str | None, candidate_user_groups: Iterable[str], assignee: str | None,
                      business_key: str | None, process_instance_id: str | None, task_id: str | None,
                      due_before: datetime | None, due_after: datetime | None, overdue: bool | None) -> bool:
    """Whether a list by candidate is read from the candidate ranges its filter names: when it asks for the
    caller's own tasks (the access policy's condition follows from the filter: an inbox, as OA systems read it) and
    no filter has an index of its own that holds fewer rows — an assignee's, a project's (in the list's order), an
    instance's or a task's id (as _NARROW), or a range of due dates (ix_human_task_due_created). Else the list is the
    general query: a caller outside the groups sees few of their tasks, and a range would be read to its end to find
    them (measured: 169 against 23 ms on PostgreSQL for four groups of 100,000 open tasks); so would a range whose
    tasks a due-date filter rarely admits (100 against 3 ms)."""
    if any(is_given(v) for v in (assignee, business_key, process_instance_id, task_id)):
        return False
    if due_before is not None or due_after is not None or overdue is not None:
        return False
    # the filter the ranges are read from must admit only the caller's tasks
    first = _first_candidate_filter(candidate_group, candidate_groups, candidate_user)
    if first == "candidate_group":
        return policy.filter_shows_only_visible_tasks(principal, candidate_group=candidate_group)
    if first == "candidate_groups":
        return policy.filter_shows_only_visible_tasks(principal, candidate_groups=set(candidate_groups or ()))
    return policy.filter_shows_only_visible_tasks(principal, candidate_user=candidate_user,
                                                  candidate_user_groups=candidate_user_groups)


def _in_range(query: Select[Any], kind: str, value: str, status: str, unclaimed: bool) -> Select[Any]:
    """The query's tasks that have a candidate row in the range (the row keeps its task's status, and whether it is
    claimed: a list of unclaimed tasks reads only their part of the range, ix_task_candidate_unclaimed)."""
    on = [_R.c.task_id == _T.c.id, _R.c.kind == kind, _R.c.value == value, _R.c.status == status]
    if unclaimed:
        on.append(_R.c.claimed == false())
    return query.join(_R, and_(*on))


# the largest LIMIT both databases take (a signed 64-bit integer)
_LIMIT_MAX = 2**63 - 1


def _offered_page(session: Session, query: Select[Any], ranges: list[tuple[str, str]], status: str, *,
                  unclaimed: bool, by_due: bool, descending: bool, offset: int, limit: int,
                  after: tuple[datetime, str] | None) -> list[Any]:
    """A page of the query's tasks, read from the candidate ranges named by its candidate filter (_offered_ranges)
    rather than from every task of the status, in creation order or (by_due, for unclaimed tasks only) in due order:
    each range in its index's order, as far as the page reaches. In creation order a range is one part, read in
    ix_task_candidate_inbox or ix_task_candidate_unclaimed; in due order two, read in ix_task_candidate_offered:
    the tasks with a due date by it, then those without, by creation (the other way round when descending, as the
    general query orders them). One part is the page itself; several are merged in one statement, each cut to the
    page's end, a task offered in two ranges kept once, and the page's tasks held to the query's conditions again
    as they are read."""
    def ordered(*columns: Any) -> list[Any]:
        return [c.desc() for c in columns] if descending else list(columns)

    key = (_R.c.created_at, _R.c.task_id)
    parts: list[Select[Any]] = []
    for kind, value in ranges:
        branch = _in_range(query, kind, value, status, unclaimed)
        if after is not None:
            branch = branch.where(tuple_(*key) > tuple_(*after))
        if not by_due:
            parts.append(branch.order_by(*ordered(*key)))
            continue
        # the undated by due_at too (NULL in all of them): PostgreSQL then reads them in the index's order, which
        # `due_at IS NULL` alone does not give it (it passed over every dated task, or sorted)
        dated = branch.where(_R.c.due_at.is_not(None)).order_by(*ordered(_R.c.due_at, *key))
        undated = branch.where(_R.c.due_at.is_(None)).order_by(*ordered(_R.c.due_at, *key))
        parts += [undated, dated] if descending else [dated, undated]
    if not parts:
        return []
    if len(parts) == 1:
        return list(session.execute(parts[0].offset(offset).limit(limit)))
    reach = min(offset + limit, _LIMIT_MAX)
    # the task's own columns (equal to its rows' while they are in step): a task is kept once
    heads = [part.with_only_columns(_T.c.due_at, _T.c.created_at, _T.c.id).limit(reach).subquery()
             for part in parts]
    merged = union(*[select(h.c.due_at, h.c.created_at, h.c.id) for h in heads]).subquery()

    def page_order(t: Any) -> list[Any]:
        if not by_due:
            return ordered(t.c.created_at, t.c.id)
        # no due date last, and first when descending (list_tasks' order for "due", on both databases)
        return ([t.c.due_at.is_(None).desc(), t.c.due_at.desc(), t.c.created_at.desc(), t.c.id.desc()] if descending
                else [t.c.due_at.is_(None), t.c.due_at, t.c.created_at, t.c.id])

    page = select(merged.c.due_at, merged.c.created_at, merged.c.id).order_by(*page_order(merged)) \
        .offset(offset).limit(limit).subquery()
    return list(session.execute(query.join(page, page.c.id == _T.c.id).order_by(*page_order(page))))


_INBOX_PAGES: dict[tuple[bool, tuple[str, ...], bool], Prepared] = {}


# columns with an index of their own in the inbox's order (an assignee's, a project's) or of a few rows (an
# instance's): a group's inbox filtered by one of them reads that index, not the group's range
_NARROW = frozenset({"assignee", "business_key", "instance_id"})


def _inbox_statement(group: bool, given: tuple[str, ...], after: bool) -> Prepared:
    """An inbox page's statement for the filters given (a candidate group, column equalities, a cursor), with the
    values bound: the statement _task_query and list_tasks build for them, prepared once per combination.

    A group's inbox is read from the group's candidate rows, which keep the task's status and creation time: one
    range of ix_task_candidate_inbox (kind, value, status, created_at, task_id) in the inbox's order, each task then
    by its primary key. So a page costs its own rows, whatever the other groups have open."""
    if group and not _NARROW.intersection(given):
        # the task's own status too: a replica of the release before migration 0013, had it served after it, would
        # have left the rows of the tasks it closed marked open
        query = (select(_T).select_from(_C.join(_T, _T.c.id == _C.c.task_id))
                 .where(_C.c.kind == "group", _C.c.value == bindparam("group", type_=LOOKUP),
                        _C.c.status == bindparam("status"), _T.c.status == bindparam("status")))
        created_at, ident = _C.c.created_at, _C.c.task_id  # the order of the group's range
    else:
        query = select(_T).where(_T.c.status == bindparam("status"))
        if group:
            query = query.where(exists(select(_C.c.task_id).where(
                _C.c.task_id == _T.c.id, _C.c.kind == "group", _C.c.value == bindparam("group", type_=LOOKUP))))
        created_at, ident = _T.c.created_at, _T.c.id
    for name in given:
        query = query.where(_T.c[name] == bindparam(name, type_=LOOKUP))
    if after:
        query = query.where(tuple_(created_at, ident) > tuple_(bindparam("at", type_=created_at.type),
                                                               bindparam("after_id", type_=LOOKUP)))
    return Prepared(query.order_by(created_at, ident).limit(bindparam("n")))


def _inbox_page(reader: Session | Connection, status: str | None, candidate_group: str | None,
                equals: dict[str, str | None], limit: int, cursor: str | None) -> TaskPage:
    """The common inbox (a candidate group or the caller's own tasks, equality filters, creation order): a page that
    needs no visibility condition, read with a prepared statement in a session's transaction or on a connection."""
    values: dict[str, Any] = {"status": _status(status), "n": limit + 1}
    given = tuple(name for name, value in equals.items() if is_given(value))
    values.update((name, equals[name]) for name in given)
    if candidate_group:
        values["group"] = candidate_group
    if cursor:
        at, ident = decode_cursor(cursor)
        values["at"], values["after_id"] = at, str(ident)
    shape = (bool(candidate_group), given, bool(cursor))
    statement = _INBOX_PAGES.get(shape)
    if statement is None:
        statement = _INBOX_PAGES.setdefault(shape, _inbox_statement(*shape))
    rows: list[Any] = statement.execute(reader, values).all()
    next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return TaskPage(items=[task_summary(r) for r in rows[:limit]], next_cursor=next_cursor)


def count_tasks(session: Session, principal: Principal, *, now: datetime, candidate_group: str | None = None,
                assignee: str | None = None, process_key: str | None = None, business_key: str | None = None,
                process_instance_id: str | None = None, status: str | None = None,
                due_before: datetime | None = None, overdue: bool | None = None,
                candidate_groups: Iterable[str] | None = None, candidate_user: str | None = None,
                candidate_user_groups: Iterable[str] = (), unassigned: bool = False, element_id: str | None = None,
                due_after: datetime | None = None, task_id: str | None = None, general: bool = False) -> int:
    """How many tasks the same filters as list_tasks find (`general`: as list_tasks')."""
    ranges = None if general else _ranges_read(
        principal, candidate_group=candidate_group, candidate_groups=candidate_groups, candidate_user=candidate_user,
        candidate_user_groups=candidate_user_groups, assignee=assignee, business_key=business_key,
        process_instance_id=process_instance_id, task_id=task_id, due_before=due_before, due_after=due_after,
        overdue=overdue)
    query = _task_query(principal, candidate_group=candidate_group, assignee=assignee, process_key=process_key,
                        business_key=business_key, process_instance_id=process_instance_id, status=status,
                        due_before=due_before, overdue=overdue, now=now, candidate_groups=candidate_groups,
                        candidate_user=candidate_user, candidate_user_groups=candidate_user_groups,
                        unassigned=unassigned, element_id=element_id, due_after=due_after, task_id=task_id,
                        from_ranges=ranges is not None)
    if ranges is not None:  # the tasks of the ranges the candidate filter names, each counted once
        if not ranges:
            return 0
        status = _status(status)
        if sum([bool(candidate_group), candidate_groups is not None, bool(candidate_user)]) == 1 \
                and not is_given(process_key) and not is_given(element_id):
            # one candidate filter and no filter on the tasks' columns (the access policy follows from it, or the
            # ranges would not be read): nothing to ask of the tasks, counted in the candidate rows, which keep
            # their status and claim
            return _count_in_ranges(session, [((kind, value), _range_rows(kind, value, status, unassigned))
                                              for kind, value in ranges])
        named = [_in_range(query, kind, value, status, unassigned).with_only_columns(_T.c.id)
                 for kind, value in ranges]
        query = named[0] if len(named) == 1 else union(*named)  # type: ignore[assignment]
    return int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)


def _range_rows(kind: str, value: str, status: str, unclaimed: bool) -> Select[Any]:
    """The candidate rows of a range: of the tasks of a status offered to a group or a user (only the unclaimed)."""
    query = select(_R.c.task_id).where(_R.c.kind == kind, _R.c.value == value, _R.c.status == status)
    return query.where(_R.c.claimed == false()) if unclaimed else query


def most_urgent(session: Session, principal: Principal, *, offered: bool, process_key: str | None,
                only_overdue: bool, now: datetime, limit: int) -> tuple[list[TaskSummary], int]:
    """The open tasks claimed by the principal (offered=False), or offered to it by name or to one of its groups and
    claimed by no one (offered=True), the most urgent first (by due date, those without one after the rest, then
    the oldest first), at most `limit`; and how many there are (the console's inbox). The same tasks in the same
    order as list_tasks with sort_by="due", and the same total as count_tasks (tests/api/test_console_inbox_order.py,
    which also checks the plans).

    The general query reads every open task in due order until it has a page of the principal's, and every open
    task again to count them: at 100,000 open tasks, a department offered 1 % of them waited a quarter of a second.
    Here the tasks are read from where they are named. The claims: the principal's range of
    ix_human_task_assignee_created (a few rows), ordered here. The offered tasks: the candidate rows keep their
    task's due date and whether it is claimed, so the unclaimed open tasks of each of the principal's groups and of
    its name are ranges of ix_task_candidate_offered in the page's order (those with a due date, then those
    without); each range is read as far as the page reaches, the ranges are merged (a task offered twice kept
    once), and the page's rows read by id. The total is counted from the same ranges, without the tasks (with a
    process filter, joined to them): each range in its index, and, when several hold tasks, their union, so that a
    task offered twice is counted once; a page that is not full is its own total."""
    def wanted(r: Any) -> bool:
        return (r.status == "open" and (r.assignee is None if offered else r.assignee == principal.user)
                and (process_key is None or r.process_key == process_key)
                and (not only_overdue or (r.due_at is not None and r.due_at < now)))

    if offered:
        shown, total = _most_urgent_offered(session, principal, process_key, only_overdue, now, limit)
    else:
        claims = [r for r in session.execute(select(_T.c.id, _T.c.due_at, _T.c.created_at, _T.c.assignee,
                                                    _T.c.process_key, _T.c.status)
                                             .where(_T.c.assignee == principal.user, _T.c.status == "open"))
                  if wanted(r)]
        claims.sort(key=lambda r: (r.due_at is None, r.due_at or now, r.created_at, r.id))
        shown, total = [r.id for r in claims[:limit]], len(claims)
    rows: dict[str, Any] = {r.id: r for r in session.execute(select(_T).where(_T.c.id.in_(shown)))} if shown else {}
    # on PostgreSQL each statement reads what is committed when it starts: a task claimed or completed in between is
    # left out, not shown as what it no longer is (the page is one short, the total one high, until the next view)
    return [task_summary(rows[i]) for i in shown if i in rows and wanted(rows[i])], total


def _most_urgent_offered(session: Session, principal: Principal, process_key: str | None, only_overdue: bool,
                         now: datetime, limit: int) -> tuple[list[str], int]:
    """most_urgent's offered tasks: the page's ids and the total."""
    ranges = [("user", principal.user)] + [("group", g) for g in sorted(principal.groups)]
    # too many to merge; or, asked for one process, more than the name and one group: every range is then joined to
    # its tasks to be counted, and the ranges of several large groups cost more so than the general query (four
    # groups of 100,000 open tasks, PostgreSQL: 256 against 146 ms; one group: 43 against 163 ms)
    if len(ranges) > MAX_RANGES or (process_key is not None and len(ranges) > 2):
        if principal.user and session.get_bind().dialect.name != "sqlite":
            # PostgreSQL plans the general query with its statistics, and does better there than with the rows of
            # them all (34 groups at 100,000 open tasks: 37–43 against 58–162 ms). It ignores an empty user name:
            # such a principal is read as on SQLite
            common: dict[str, Any] = dict(
                candidate_group=None, business_key=None, process_instance_id=None, status="open", due_before=None,
                overdue=True if only_overdue else None, now=now, process_key=process_key, assignee=None,
                candidate_user=principal.user, candidate_user_groups=principal.groups, unassigned=True)
            page = [t.id for t in list_tasks(session, principal, **common, limit=limit + 1, cursor=None,
                                             sort_by="due", general=True).items]
            return page[:limit], (len(page) if len(page) <= limit
                                  else count_tasks(session, principal, **common, general=True))
        return _offered_all_at_once(session, principal, process_key, only_overdue, now, limit)

    def unclaimed(kind: str, value: str, dated: bool) -> Select[Any]:
        query = select(_R.c.task_id, _R.c.due_at, _R.c.created_at).where(
            _R.c.kind == kind, _R.c.value == value, _R.c.status == "open", _R.c.claimed == false(),
            _R.c.due_at.is_not(None) if dated else _R.c.due_at.is_(None))
        if only_overdue:
            query = query.where(_R.c.due_at < now)
        if process_key is not None:  # the task's process (the page's rows are checked again as they are read)
            query = query.join(_T, _T.c.id == _R.c.task_id).where(_T.c.process_key == process_key)
        return query

    parts = [(kind, value, dated) for kind, value in ranges for dated in ((True,) if only_overdue else (True, False))]
    # in the index's order, the undated by due_at too (see _offered_page)
    heads = [unclaimed(kind, value, dated).order_by(_R.c.due_at, _R.c.created_at, _R.c.task_id)
             .limit(max(limit, 1)).subquery() for kind, value, dated in parts]
    merged = union(*[select(h.c.task_id, h.c.due_at, h.c.created_at) for h in heads]).subquery()
    listed = list(session.scalars(
        select(merged.c.task_id)
        .order_by(merged.c.due_at.is_(None), merged.c.due_at, merged.c.created_at, merged.c.task_id)
        .limit(max(limit, 1))))
    shown = listed[:limit]
    if len(listed) < max(limit, 1):  # every range gave all it has: the page holds them all
        return shown, len(listed)
    return shown, _count_in_ranges(session, [((kind, value), unclaimed(kind, value, dated))
                                             for kind, value, dated in parts])


def _count_in_ranges(session: Session, parts: list[tuple[Any, Select[Any]]]) -> int:
    """How many tasks the parts of candidate ranges hold, each task once: parts of one range (the same key) hold
    different tasks, parts of two ranges may hold the same. Each part is counted in its index, in one statement;
    only when parts of several ranges hold tasks are those parts' tasks merged and counted."""
    if not parts:
        return 0
    counts = session.execute(select(*[select(func.count()).select_from(query.subquery()).scalar_subquery()
                                      for _, query in parts])).one()
    holding = [(key, query) for (key, query), n in zip(parts, counts, strict=True) if n]
    if len({key for key, _ in holding}) <= 1:
        return int(sum(counts))
    counted = union(*[query.with_only_columns(_R.c.task_id) for _, query in holding]).subquery()
    return int(session.scalar(select(func.count()).select_from(counted)) or 0)


def _offered_all_at_once(session: Session, principal: Principal, process_key: str | None, only_overdue: bool,
                         now: datetime, limit: int) -> tuple[list[str], int]:
    """The offered tasks of a principal whose ranges are not merged (_most_urgent_offered), on SQLite: its open
    candidate rows joined to their tasks by id, ordered, cut to the page and counted (`count(*) OVER ()`) in one
    statement."""
    named = [select(_C.c.task_id).where(_C.c.kind == "user", _C.c.value == principal.user, _C.c.status == "open"),
             select(_C.c.task_id).where(_C.c.kind == "group", _C.c.value.in_(sorted(principal.groups)),
                                        _C.c.status == "open")]
    found = union(*named).subquery()
    where = [_T.c.assignee.is_(None), _T.c.status == "open"]
    if process_key is not None:
        where.append(_T.c.process_key == process_key)
    if only_overdue:
        where += [_T.c.due_at.is_not(None), _T.c.due_at < now]
    order = (_T.c.due_at.is_(None), _T.c.due_at, _T.c.created_at, _T.c.id)
    listed = session.execute(select(_T.c.id, func.count().over().label("total"))
                             .select_from(found.join(_T, _T.c.id == found.c.task_id))
                             .where(*where).order_by(*order).limit(max(limit, 1))).all()
    return [r.id for r in listed[:limit]], int(listed[0].total if listed else 0)


def _load(session: Session | Connection, principal: Principal, task_id: str, statement: Prepared = _TASK_ROW
          ) -> Any:
    """The task as a row (its columns as attributes, read-only), if the principal may see it; `statement` may read
    more columns beside the task's."""
    row: Any = statement.execute(session, {"i": task_id}).first()
    if row is None:
        raise NotFound(f"no task '{task_id}'")
    if not policy.may_see_task(principal, row):
        policy.require_task_worker(principal, row)  # names the groups the task is offered to
    return row


def _form(ctx: AppContext, session: Session | Connection, row: Any) -> list[forms.FormField] | None:
    """The task's form; None when the task declares none (an empty form declares that it records nothing)."""
    made = ctx.model(session, row.definition_id).form(row.element_id)
    return None if made is None else made[0]


COMPLETED_SHOWN = 100


def get(ctx: AppContext, session: Session, principal: Principal, task_id: str) -> TaskDetail:
    """The task with its form and its instance's variables."""
    row = _load(session, principal, task_id)
    return _detail(ctx, session, row, _variables(session, row.instance_id))


def _variables(session: Session, instance_id: str) -> dict[str, Any] | None:
    return _INSTANCE_VARIABLES.execute(session, {"i": instance_id}).scalar()  # type: ignore[no-any-return]


def _detail(ctx: AppContext, session: Session, row: Any, variables: dict[str, Any] | None) -> TaskDetail:
    made = ctx.model(session, row.definition_id).form(row.element_id)
    done: list[Any] = _DONE_ROWS.execute(session, {"i": row.instance_id, "n": COMPLETED_SHOWN}).all()
    return TaskDetail(
        **record_fields(row), documentation=row.documentation, form_key=row.form_key,
        form=[FormFieldOut(**f) for f in made[1]] if made is not None else [],
        variables=variables if variables is not None else {},
        completed_tasks=[task_record(r) for r in reversed(done)],
    )


def _instance_and_trail(session: Session, instance_id: str) -> tuple[dict[str, Any] | None, AuditTrail]:
    """The variables of the task's instance, for the answer, and its audit trail, chained from the head the row
    records. The row is read under its lock (on SQLite the write transaction holds the database's, FOR UPDATE is
    left out): a writer of the instance that got there first is waited for and this request's events follow its
    events; one that comes later waits in turn. Writing the anchor would take the lock anyway."""
    found = _INSTANCE_HEAD_LOCKED.execute(session, {"i": instance_id}).first()
    variables, head = (found[0], (found[1], found[2])) if found is not None else (None, (None, None))
    return variables, AuditTrail.for_instance(session, instance_id, head)


def claim(ctx: AppContext, session: Session, principal: Principal, task_id: str) -> TaskDetail:
    row = _load(session, principal, task_id)
    if row.status != "open":
        raise Conflict(f"the task is {row.status}")
    policy.require_task_worker(principal, row)
    if row.assignee == principal.user:
        return _detail(ctx, session, row, _variables(session, row.instance_id))
    if row.assignee is not None:
        raise Conflict(f"the task is claimed by {row.assignee}", assignee=row.assignee)
    if _CLAIM.execute(session, {"b_id": row.id, "user": principal.user}).rowcount != 1:
        # claimed or ended by another request since it was read: answered as if read after it
        status, holder = session.execute(select(HumanTask.status, HumanTask.assignee)
                                         .where(HumanTask.id == row.id)).one()
        if status != "open":
            raise Conflict(f"the task is {status}")
        if holder is None:  # claimed and released again meanwhile
            raise ConcurrentChange("the task was claimed and released meanwhile; try again")
        if holder == principal.user:  # the caller's own claim got there first (a double click, a retry)
            row = _with(row, assignee=holder)
            return _detail(ctx, session, row, _variables(session, row.instance_id))
        raise Conflict(f"the task is claimed by {holder}", assignee=holder)
    task_claimed(session, row.id, True)
    row = _with(row, assignee=principal.user)
    now = ctx.clock.now()
    variables, trail = _instance_and_trail(session, row.instance_id)
    trail.append(now, principal.user, "task.claimed", task_id=row.id, element_id=row.element_id)
    return _detail(ctx, session, row, variables)


def _with(row: Any, **changes: Any) -> SimpleNamespace:
    """A row's columns as attributes that can be set, with the changes a statement made to them."""
    return SimpleNamespace(**{**row._mapping, **changes})


def unclaim(ctx: AppContext, session: Session, principal: Principal, task_id: str) -> TaskDetail:
    row = _load(session, principal, task_id)
    if row.status != "open":
        raise Conflict(f"the task is {row.status}")
    if row.assignee is None:
        return _detail(ctx, session, row, _variables(session, row.instance_id))
    if not policy.may_release_task(principal, row):
        raise Conflict(f"the task is claimed by {row.assignee}", assignee=row.assignee)
    previous = row.assignee
    if _RELEASE.execute(session, {"b_id": row.id, "previous": previous}).rowcount != 1:
        raise Conflict("the task was released, completed or claimed by someone else meanwhile")
    task_claimed(session, row.id, False)
    row = _with(row, assignee=None)
    now = ctx.clock.now()
    variables, trail = _instance_and_trail(session, row.instance_id)
    trail.append(now, principal.user, "task.unclaimed", task_id=row.id, element_id=row.element_id,
                 data={"previous_assignee": previous})
    return _detail(ctx, session, row, variables)


def complete(ctx: AppContext, principal: Principal, task_id: str, variables: dict[str, Any],
             comment: str | None = None, idem: Any = None) -> CompletionOut:
    # one statement (the definition's files are cached, and never change): a plain connection, no ORM session
    with ctx.read_connection() as session:
        row = _load(session, principal, task_id, _FOR_COMPLETION)
        if row.status != "open":
            raise Conflict(f"the task is already {row.status}")
        policy.require_task_worker(principal, row)
        if row.assignee is not None and row.assignee != principal.user:
            raise Conflict(f"the task is claimed by {row.assignee}", assignee=row.assignee)
        fields = _form(ctx, session, row)
        if fields is not None:
            clean = check_form(fields, variables, "the submitted data does not fit the task's form",
                               china_today(ctx.clock.now()))
        else:
            clean = check_variables(variables)
        if row.i_id is None or row.i_status != "running":
            raise Conflict("the process instance is not running")
        # its state is in the engine worker, or loaded there
        instance: Any = SimpleNamespace(**{k[2:]: v for k, v in row._mapping.items() if k.startswith("i_")})
        files = ctx.model_files(session, instance.definition_id)
    result, token = ctx.run_engine("complete", instance.definition_id, files,
                                   instance=(instance.id, instance.state_token), task_id=row.id, data=clean)
    written = result.extra.get("written", {})
    now = ctx.clock.now()
    comment = comment.strip() if comment and comment.strip() else None
    with ctx.write() as session:
        claimed = _COMPLETE.execute(session, {
            "b_id": row.id, "b_user": principal.user, "status": "completed", "completed_at": now,
            "completed_by": principal.user, "assignee": row.assignee or principal.user,
            "submitted": to_json_value(clean), "outputs": written, "comment": comment})
        if claimed.rowcount != 1:
            raise Conflict("the task was completed or claimed by someone else")
        tasks_closed(session, [row.id], "completed", claimed=True)  # the completer is its assignee now, if none was
        audit = AuditTrail.for_instance(session, instance.id)
        data: dict[str, Any] = {"variables": clean}
        if comment is not None:
            data["comment"] = comment
        audit.append(now, principal.user, "task.completed", task_id=row.id, element_id=row.element_id, data=data)
        outbox.enqueue(session, "task.completed", now, instance.id,
                       {"process_instance_id": instance.id, "process_key": instance.process_key,
                        "business_key": instance.business_key, "task_id": row.id, "element_id": row.element_id,
                        "name": row.name, "candidate_groups": row.candidate_groups, "completed_by": principal.user,
                        "variables": clean, "comment": comment})
        stored = Stored()
        # the task was the instance's only open one when read, and the set of open tasks changes only with the
        # instance's version, which apply's UPDATE checks: none is open now, none needs reading
        open_now: list[Any] | None = None if row.others_open else []
        snap = apply(ctx, session, instance, result, token, principal.user, audit, is_new=False, stored=stored,
                     open_tasks=open_now)
        out = CompletionOut(process_instance_id=instance.id, status=instance.status, end_event=snap.end_event,
                            next_tasks=[task_summary(r) for r in stored.open_tasks])
        if idem is not None:
            idem.store(session, 200, out)
    committed(ctx, instance, result, token)
    return out


def list_for_instance(session: Session, principal: Principal, instance_id: str, limit: int,
                      cursor: str | None) -> TaskRecordPage:
    """An instance's tasks, open and completed, oldest first, each with what was submitted on it."""
    from service.services.instances import load_row

    instance = load_row(session, principal, instance_id)
    query = select(_T).where(HumanTask.instance_id == instance.id)
    if cursor:
        at, ident = decode_cursor(cursor)
        query = query.where(tuple_(HumanTask.created_at, HumanTask.id) > tuple_(at, str(ident)))
    rows: list[Any] = list(session.execute(query.order_by(HumanTask.created_at, HumanTask.id).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return TaskRecordPage(items=[task_record(r) for r in rows[:limit]], next_cursor=next_cursor)


def completed_for_instance(session: Session, principal: Principal, instance_id: str,
                           limit: int) -> tuple[list[TaskRecord], int]:
    """An instance's completed tasks, the latest completion first, at most `limit`; and how many there are."""
    from service.services.instances import load_row

    instance = load_row(session, principal, instance_id)
    rows: list[Any] = list(session.execute(select(_T).where(
        HumanTask.instance_id == instance.id, HumanTask.status == "completed").order_by(
        HumanTask.completed_at.desc(), HumanTask.created_at.desc(), HumanTask.id.desc()).limit(limit)))
    return [task_record(r) for r in rows], len(rows) if len(rows) < limit else count_completed(session, instance.id)


def count_completed(session: Session, instance_id: str) -> int:
    """How many of an instance's tasks are completed (of a list of them cut at a limit)."""
    return int(session.scalar(select(func.count()).where(HumanTask.instance_id == instance_id,
                                                        HumanTask.status == "completed")) or 0)


COMMENT_ACTIONS = ("task.completed", "task.commented")


def _comment_out(event: AuditEvent, row: Any) -> CommentOut:
    kind = "completion" if event.action == "task.completed" else "comment"
    message = event.data.get("comment") if kind == "completion" else event.data.get("message")
    return CommentOut(id=str(event.id), task_id=row.id, process_instance_id=row.instance_id, user_id=event.actor,
                      time=event.at, message=str(message), kind=kind)


def add_comment(ctx: AppContext, session: Session, principal: Principal, task_id: str, message: str) -> CommentOut:
    """An opinion added to a task at any time (open or completed), kept in the instance's audit trail."""
    row = _load(session, principal, task_id)
    policy.require_commenter(principal, row)
    text = message.strip() if isinstance(message, str) else ""
    if not text:
        raise InvalidInput("a comment needs a message", {"message": "must not be empty"})
    problem = storable_problem(text, None)  # kept in the audit trail: what a completion's opinion may hold
    if problem is not None:
        raise InvalidInput("the comment cannot be kept", {"message": problem})
    trail = AuditTrail.for_instance(session, row.instance_id)
    event = trail.append(ctx.clock.now(), principal.user, "task.commented", task_id=row.id,
                         element_id=row.element_id, data={"message": text})
    trail.flush(ids=True)
    return _comment_out(event, row)


def comments(session: Session, principal: Principal, task_id: str) -> list[CommentOut]:
    """The task's comments, oldest first: the opinion given on completion and those added."""
    row = _load(session, principal, task_id)
    events = session.scalars(select(AuditEvent).where(
        AuditEvent.instance_id == row.instance_id, AuditEvent.task_id == row.id,
        AuditEvent.action.in_(COMMENT_ACTIONS)).order_by(AuditEvent.seq))
    return [_comment_out(e, row) for e in events
            if e.action == "task.commented" or (e.data or {}).get("comment")]
