"""A task list filtered by candidate (a group, several groups, a user and the groups known to be the user's: the
inbox an OA system written for Camunda reads with /engine-rest/task?candidateGroup=…) in creation order is read
from the candidate rows its filter names, not from every task of the status: it answers what the general query
answers, and reads only those rows."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.auth import Principal
from service.services import tasks as tasks_service
from tests.api.test_console_inbox_order import OTHERS, _candidate_reads, _human_task_reads, _ranges_sorted, general
from tests.api.test_query_plans import _engine_rest
from tests.api.test_supervision_scope import (
    GROUPS,
    NAMESAKES,
    NOW,
    PROCESSES,
    SCOPE,
    TWICE,
    USERS,
    Task,
    _rows,
    _store,
    plan_problems,
    principals,
    tasks,
)
from tests.api.test_supervision_scope import scope as scope  # noqa: F401 - the fixture, under its own name
from tests.support import Api, executed

group_names = st.sampled_from((*GROUPS, "e"))

# (candidate_group, candidate_groups, candidate_user, candidate_user_groups): one candidate filter or two
candidate_filters = st.tuples(st.none() | group_names, st.none() | st.lists(group_names, max_size=3),
                              st.none() | st.sampled_from(USERS), st.frozensets(group_names, max_size=3))


def test_a_list_read_from_candidate_ranges_answers_what_the_general_query_answers(scope: Api) -> None:
    """For random tasks, principals and filters: each page by offset (ascending and descending, in creation order
    and, unclaimed, in due order), every page by cursor, and the count are those of the general query (a task offered to several of the filter's groups, or to
    the user by name and by group, is listed and counted once)."""
    @settings(SCOPE, max_examples=300)
    @given(generated=st.lists(tasks, max_size=12), principal=principals, candidates=candidate_filters,
           status=st.sampled_from(("open", "open", "completed", "cancelled")), unassigned=st.booleans(),
           process_key=st.none() | st.sampled_from(PROCESSES), descending=st.booleans(),
           offset=st.sampled_from((0, 0, 1, 3)), limit=st.sampled_from((1, 2, 500)),
           sort_by=st.sampled_from(("created", "due")))
    @example(generated=TWICE, principal=Principal("u1", frozenset({"a", "b"})),
             candidates=(None, None, "u1", frozenset({"a", "b"})), status="open", unassigned=False, process_key=None,
             descending=False, offset=0, limit=1, sort_by="created")
    @example(generated=TWICE, principal=Principal("u1", frozenset({"a", "b"})),
             candidates=(None, ["a", "b", "a"], None, frozenset()), status="open", unassigned=False,
             process_key=None, descending=True, offset=0, limit=1, sort_by="created")
    @example(generated=NAMESAKES, principal=Principal("a", frozenset({"a"})),
             candidates=(None, None, "a", frozenset({"a"})), status="open", unassigned=True, process_key=None,
             descending=False, offset=0, limit=500, sort_by="created")
    # counted in the candidate rows alone (one candidate filter, the caller's own group): the claimed task is not
    @example(generated=TWICE, principal=Principal("u1", frozenset({"a", "b"})), candidates=("a", None, None, frozenset()),
             status="open", unassigned=True, process_key=None, descending=False, offset=0, limit=2, sort_by="created")
    # a page past the first of two ranges, one of which gives all of it: each range is read as far as the page's end
    @example(generated=[Task("open", "p1", frozenset({"a"}), frozenset(), None, None, None)] * 3
             + [Task("open", "p1", frozenset({"b"}), frozenset(), None, None, None)] * 3,
             principal=Principal("u1", frozenset({"a", "b"})), candidates=(None, ["a", "b"], None, frozenset()),
             status="open", unassigned=False, process_key=None, descending=False, offset=1, limit=2,
             sort_by="created")
    # the second candidate filter still applies to a list read from the first one's ranges
    @example(generated=TWICE, principal=Principal("u1", frozenset({"a", "b"})),
             candidates=("a", ["c"], None, frozenset()), status="open", unassigned=False, process_key=None,
             descending=False, offset=0, limit=500, sort_by="created")
    @example(generated=TWICE, principal=Principal("u1", frozenset({"a"})), candidates=(None, [], None, frozenset()),
             status="open", unassigned=False, process_key=None, descending=False, offset=0, limit=2, sort_by="created")
    # unclaimed tasks in due order (read in ix_task_candidate_offered), with and without due dates, both ways
    @example(generated=[Task("open", "p1", frozenset({"a"}), frozenset(), None, None, due)
                        for due in (None, timedelta(days=2), None, timedelta(days=1), -timedelta(days=1))]
             + [Task("open", "p1", frozenset({"b", "a"}), frozenset(), None, None, timedelta(days=1))],
             principal=Principal("u1", frozenset({"a", "b"})), candidates=(None, ["a", "b"], None, frozenset()),
             status="open", unassigned=True, process_key=None, descending=True, offset=1, limit=3, sort_by="due")
    # ... each range cut at the page's end in due order, not in creation order
    @example(generated=[Task("open", "p1", frozenset({"a"}), frozenset(), None, None, due)
                        for due in (timedelta(days=2), timedelta(days=3), -timedelta(days=1))]
             + [Task("open", "p1", frozenset({"b"}), frozenset(), None, None, timedelta(days=1))],
             principal=Principal("u1", frozenset({"a", "b"})), candidates=(None, ["a", "b"], None, frozenset()),
             status="open", unassigned=True, process_key=None, descending=False, offset=0, limit=1, sort_by="due")
    def run(generated: list[Task], principal: Principal, candidates: tuple[Any, ...], status: str,
            unassigned: bool, process_key: str | None, descending: bool, offset: int, limit: int,
            sort_by: str) -> None:
        rows = _rows(generated)
        _store(scope, rows)
        group, groups, user, user_groups = candidates
        filters: dict[str, Any] = dict(
            candidate_group=group, candidate_groups=groups, candidate_user=user, candidate_user_groups=user_groups,
            assignee=None, process_key=process_key, business_key=None, process_instance_id=None, status=status,
            due_before=None, overdue=None, unassigned=unassigned)
        with scope.server.ctx.read() as session:
            expected, counted = general(session, principal, filters, sort_by=sort_by, descending=descending,
                                        offset=offset, limit=limit)
            page = tasks_service.list_tasks(session, principal, **filters, now=NOW, limit=limit, cursor=None,
                                            sort_by=sort_by, descending=descending, offset=offset).items
            assert [t.id for t in page] == expected, (principal, candidates, rows)
            assert tasks_service.count_tasks(session, principal, **filters, now=NOW) == counted
            # every page by cursor, in creation order
            everything, _ = general(session, principal, filters)
            walked: list[str] = []
            cursor = None
            for _ in range(len(rows) + 2):
                paged = tasks_service.list_tasks(session, principal, **filters, now=NOW, limit=limit, cursor=cursor)
                walked += [t.id for t in paged.items]
                cursor = paged.next_cursor
                if cursor is None:
                    break
            assert walked == everything, (principal, candidates, rows)

    run()


def test_a_list_by_candidate_reads_only_the_named_candidate_rows(scope: Api) -> None:
    """The page reads task_candidate by (kind, value, status, claimed) and human_task by id only, the count the
    candidate rows alone: never every task of the status (SQLite's plan, or PostgreSQL's with scans priced out). A list of unclaimed tasks (as
    Camunda's candidate query is) reads only the unclaimed part of each range, ix_task_candidate_unclaimed, so it
    does not pass over the claimed ones. Each range is read in its order (no sort); several are merged in the
    page's statement, each cut to the page's end, and only what they give is sorted."""
    _store(scope, _rows([Task("open", "p1", frozenset({"a"}), frozenset({"u1"}), None, None, None),
                         Task("open", "p1", frozenset({"b"}), frozenset(), None, None, None),
                         Task("open", "p2", frozenset({"a", "b"}), frozenset(), None, None, None),
                         Task("open", "p2", frozenset({"a", "b"}), frozenset(), "u2", None, None), *OTHERS]))
    principal = Principal("u1", frozenset({"a", "b"}))
    by_id = {"sqlite_autoindex_human_task_1 (id=?)", "Index Scan by id"}
    sqlite = scope.server.ctx.engine.dialect.name == "sqlite"
    for label, filters, n, listed in (
            ("one group", dict(candidate_group="a"), 1, ["t00", "t02"]),
            ("two groups", dict(candidate_groups=["a", "b"]), 2, ["t00", "t01", "t02"]),
            ("a user and the user's groups", dict(candidate_user="u1", candidate_user_groups={"a", "b"}), 3,
             ["t00", "t01", "t02"])):
        common: dict[str, Any] = dict(candidate_group=None, assignee=None, process_key=None, business_key=None,
                                      process_instance_id=None, status="open", due_before=None, overdue=None,
                                      now=NOW, unassigned=True)
        common.update(filters)
        with executed(scope.server) as seen, scope.server.ctx.read() as session:
            page = tasks_service.list_tasks(session, principal, **common, limit=2, cursor=None, offset=1)
            total = tasks_service.count_tasks(session, principal, **common)
        assert ([t.id for t in page.items], total) == (listed[1:3], len(listed)), label
        statements = [s for s in seen if s.sql.lstrip().startswith("SELECT")]
        # the page with its rows; each range's count, and, when several ranges hold tasks (a task may be in two),
        # the count of their union: in the candidate rows alone, as the count asks nothing else of the tasks
        roles = ["page", "counts"] if n == 1 else ["page", "counts", "count"]
        assert len(statements) == len(roles), [s.sql for s in statements]
        for role, statement in zip(roles, statements, strict=True):
            assert plan_problems(scope, statement) == [], (label, role, statement.sql)
            reads = _human_task_reads(scope, statement)
            if role == "page":
                assert reads and set(reads) <= by_id, (label, role, reads, statement.sql)
            else:
                assert reads == [], (label, role, reads, statement.sql)
            ranges = _candidate_reads(scope, statement)
            assert len(ranges) == n, (label, role, ranges)
            # on SQLite, the unclaimed part of each range (in creation order for the page; the count may read either
            # index of the unclaimed rows); PostgreSQL may read a test's few rows through any index that begins
            # (kind, value, status)
            unclaimed = "unclaimed" if role == "page" else "(unclaimed|offered)"
            assert all(re.search(rf"^ix_task_candidate_{unclaimed} \(kind=\? AND value=\? AND status=\? AND "
                                 r"claimed=\?" if sqlite else r"ix_task_candidate_\w+\b.*kind.*value.*status", r)
                       for r in ranges), (label, role, ranges)
            assert _ranges_sorted(scope, statement) == [], (label, role, statement.sql)


def test_a_page_far_past_the_end_of_several_ranges_is_empty(scope: Api) -> None:
    """firstResult up to 2**63 - 1 (what Camunda's API and the databases take): each range is cut at the page's end,
    which is past that; the cut is held to the largest LIMIT the databases take, not refused as out of range."""
    _store(scope, _rows([Task("open", "p1", frozenset({"a", "b"}), frozenset(), None, None, None)]))
    with scope.server.ctx.read() as session:
        for descending in (False, True):
            page = tasks_service.list_tasks(
                session, Principal("u1", frozenset({"a", "b"})), candidate_group=None, candidate_groups=["a", "b"],
                assignee=None, process_key=None, business_key=None, process_instance_id=None, status="open",
                due_before=None, overdue=None, now=NOW, limit=1000, cursor=None, offset=2**63 - 1,
                descending=descending)
            assert page.items == []
    with _engine_rest(scope, "u1", "a", "b") as client:
        for params in ({"candidateGroups": "a,b"}, {"candidateUser": "u1"}):
            r = client.get("/task", params={**params, "firstResult": 2**63 - 1, "maxResults": 1000})
            assert (r.status_code, r.json()) == (200, []), r.text


def test_unclaimed_tasks_in_due_order_are_read_in_that_order(scope: Api) -> None:
    """Unclaimed tasks by due date (/engine-rest/task?candidateGroup=G&sortBy=dueDate): each range's tasks with a
    due date and those without are read in ix_task_candidate_offered in the page's order (on SQLite: its plan;
    PostgreSQL may read a test's few rows through any index that begins (kind, value, status)), no range sorted,
    only the merge of what they give."""
    _store(scope, _rows([Task("open", "p1", frozenset({"a"}), frozenset(), None, None, timedelta(days=2)),
                         Task("open", "p1", frozenset({"a"}), frozenset(), None, None, None),
                         Task("open", "p1", frozenset({"a"}), frozenset(), "u2", None, timedelta(days=1)),
                         Task("open", "p1", frozenset({"a"}), frozenset(), None, None, -timedelta(days=1)), *OTHERS]))
    sqlite = scope.server.ctx.engine.dialect.name == "sqlite"
    for descending, listed in ((False, ["t03", "t00", "t01"]), (True, ["t01", "t00", "t03"])):
        with executed(scope.server) as seen, scope.server.ctx.read() as session:
            page = tasks_service.list_tasks(
                session, Principal("u1", frozenset({"a"})), candidate_group="a", assignee=None, process_key=None,
                business_key=None, process_instance_id=None, status="open", due_before=None, overdue=None, now=NOW,
                limit=3, cursor=None, sort_by="due", descending=descending, unassigned=True)
        assert [t.id for t in page.items] == listed
        [statement] = [s for s in seen if s.sql.lstrip().startswith("SELECT")]
        assert plan_problems(scope, statement) == [], statement.sql
        ranges = _candidate_reads(scope, statement)
        assert len(ranges) == 2, ranges  # with a due date, without
        assert all(re.search(r"^ix_task_candidate_offered \(kind=\? AND value=\? AND status=\? AND claimed=\? AND "
                             r"due_at[=>]" if sqlite else r"ix_task_candidate_\w+\b.*kind.*value.*status", r)
                   for r in ranges), ranges
        assert _ranges_sorted(scope, statement) == [], statement.sql
    with _engine_rest(scope, "u1", "a") as client:
        r = client.get("/task", params={"candidateGroup": "a", "sortBy": "dueDate", "sortOrder": "asc"})
        assert r.status_code == 200, r.text
        assert [t["id"] for t in r.json()][:3] == ["t03", "t00", "t01"]


def test_ranges_are_read_only_for_the_callers_own_filter(scope: Api) -> None:
    """The ranges read are those of the first candidate filter (candidateGroup, else candidateGroups, else
    candidateUser): a group the caller is not in is not read as a range because another of its filters names the
    caller (the list is the general query, as any list a caller outside the group asks for); the caller's own
    group is."""
    _store(scope, _rows([Task("open", "p1", frozenset({"a", "e"}), frozenset({"u1"}), None, None, None), *OTHERS]))
    with _engine_rest(scope, "u1", "a") as client:
        for params, from_ranges in (({"candidateGroup": "e", "candidateUser": "u1"}, False),
                                    ({"candidateGroup": "e", "candidateGroups": "a"}, False),
                                    ({"candidateGroup": "a", "candidateGroups": "e"}, True)):
            for sort in ({}, {"sortBy": "dueDate", "sortOrder": "asc"}):
                with executed(scope.server) as seen:
                    r = client.get("/task", params={**params, **sort})
                assert (r.status_code, [t["id"] for t in r.json()]) == (200, ["t00"]), r.text
                assert any("task_candidate AS offered" in s.sql for s in seen) is from_ranges, (params, sort)
