"""The console's inbox lists the most urgent tasks first, read in that order: with more open tasks than a page, the
page holds those with the nearest deadlines (not the oldest tasks, sorted afterwards), and says how many there
are in all."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import func, select

from service.auth import Principal
from service.console import routes
from service.db.models import HumanTask
from service.services import tasks as tasks_service
from tests.api.test_query_plans import _nodes
from tests.api.test_supervision import DIAGRAM, start
from tests.api.test_supervision_scope import (
    GROUPS,
    NAMESAKES,
    NOW,
    PROCESSES,
    SCOPE,
    TWICE,
    Task,
    _explain,
    _rows,
    _store,
    plan_problems,
    principals,
    tasks,
)
from tests.api.test_supervision_scope import scope as scope  # noqa: F401 - the fixture, under its own name
from tests.support import Api, Statement, executed

# the open tasks of another department, after a plan test's own: so many that reading them all is no longer the
# cheaper plan on PostgreSQL (on a test's few rows it may be, and the check would not tell the plans apart)
OTHERS = [Task("open", "p1", frozenset({"z"}), frozenset(), None, None, None)] * 400


def general(session: Any, principal: Principal, filters: dict[str, Any], *, sort_by: str = "created",
            descending: bool = False, offset: int = 0, limit: int = 10_000) -> tuple[list[str], int]:
    """The page's task ids and the count of the general query: the filters asked of every task of the status, in
    creation or due order (what list_tasks and count_tasks read before they read candidate ranges)."""
    query = tasks_service._task_query(principal, **{k: v for k, v in filters.items() if k != "now"}, now=NOW)
    order: list[Any]
    if sort_by == "due":  # list_tasks' order: no due date after the rest, first when descending
        order = [HumanTask.due_at.desc().nulls_first(), HumanTask.created_at.desc(), HumanTask.id.desc()] \
            if descending else [HumanTask.due_at.asc().nulls_last(), HumanTask.created_at, HumanTask.id]
    else:
        order = [HumanTask.created_at.desc(), HumanTask.id.desc()] if descending \
            else [HumanTask.created_at, HumanTask.id]
    page = [r.id for r in session.execute(query.order_by(*order).offset(offset).limit(limit))]
    return page, int(session.scalar(select(func.count()).select_from(query.subquery())))


def _listed(page: str, section: str) -> list[str]:
    block = page.split(f'id="{section}"', 1)[1].split("</section>", 1)[0]
    return re.findall(r'data-task-id="([^"]+)"', block)


def test_a_long_inbox_shows_its_most_urgent_tasks_and_how_many_there_are(api: Api,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    r = api.admin.post("/deployments", files=[("files", ("sup.bpmn", DIAGRAM.encode()))])
    assert r.status_code == 201, r.text
    undated = start(api, "plain", 3)  # the oldest, without a deadline
    joint = start(api, "joint", 2)  # due in five days
    monkeypatch.setattr(routes, "INBOX_PAGE", 2)
    with httpx.Client(base_url=api.server.url, timeout=30) as client:
        login = client.post("/console/login", data={"credential": api.token("li", ("data_bureau",)),
                                                    "next": "/console/inbox"})
        assert login.status_code == 303, login.text
        page = client.get("/console/inbox").text
        assert _listed(page, "offered") == [t["id"] for t in joint]
        assert "共 5 项，此处列出期限最近的 2 项" in page
        assert re.search(r'待认领（本人及所在部门） <span class="count">5</span>', page)

        monkeypatch.setattr(routes, "INBOX_PAGE", 5)  # everything fits: the deadlines first, then the oldest
        page = client.get("/console/inbox").text
        assert _listed(page, "offered") == [t["id"] for t in (*joint, *undated)]
        assert "此处列出" not in page
        assert _listed(page, "mine") == []


def test_of_tasks_equally_urgent_the_oldest_are_shown(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    r = api.admin.post("/deployments", files=[("files", ("sup.bpmn", DIAGRAM.encode()))])
    assert r.status_code == 201, r.text
    undated = start(api, "plain", 6)  # no deadline: equally urgent, ids in no order
    monkeypatch.setattr(routes, "INBOX_PAGE", 3)
    with httpx.Client(base_url=api.server.url, timeout=30) as client:
        login = client.post("/console/login", data={"credential": api.token("li", ("data_bureau",)),
                                                    "next": "/console/inbox"})
        assert login.status_code == 303, login.text
        assert _listed(client.get("/console/inbox").text, "offered") == [t["id"] for t in undated[:3]]


# ---- read where the tasks are named, ordered by the service --------------------------------------------
def test_the_inbox_lists_the_same_tasks_as_the_general_query_in_its_order(scope: Api) -> None:
    """tasks.most_urgent (the console's two lists) reads the principal's claims and its open candidate rows, and
    orders only those: for random tasks, principals, filters and page sizes it answers the page and the total that
    list_tasks(sort_by="due") and count_tasks answer for the same filters, ties included (deadlines and creation
    times repeat; a task is offered to several of the principal's groups, and to its name)."""
    @SCOPE
    @given(generated=st.lists(tasks, max_size=12), principal=principals, offered=st.booleans(),
           process_key=st.none() | st.sampled_from(PROCESSES), only_overdue=st.booleans(),
           limit=st.sampled_from((0, 1, 2, 500)))
    @example(generated=TWICE, principal=Principal("u1", frozenset({"a", "b"})), offered=True, process_key=None,
             only_overdue=False, limit=500)
    @example(generated=NAMESAKES, principal=Principal("a"), offered=True, process_key=None, only_overdue=False,
             limit=500)
    # one range holds more than the page: each range is read as far as the page reaches, and the rest counted
    @example(generated=[Task("open", "p1", frozenset({"a"}), frozenset(), None, None, timedelta(days=d))
                        for d in (3, 1, 2)], principal=Principal("u1", frozenset({"a", "b"})), offered=True,
             process_key=None, only_overdue=False, limit=2)
    def run(generated: list[Task], principal: Principal, offered: bool, process_key: str | None,
            only_overdue: bool, limit: int) -> None:
        rows = _rows(generated)
        _store(scope, rows)
        common: dict[str, Any] = dict(candidate_group=None, business_key=None, process_instance_id=None,
                                      status="open", due_before=None, overdue=True if only_overdue else None,
                                      now=NOW, process_key=process_key)
        only: dict[str, Any] = (dict(assignee=None, candidate_user=principal.user,
                                     candidate_user_groups=principal.groups, unassigned=True) if offered
                                else dict(assignee=principal.user))
        with scope.server.ctx.read() as session:
            page, total = tasks_service.most_urgent(session, principal, offered=offered, process_key=process_key,
                                                    only_overdue=only_overdue, now=NOW, limit=limit)
            expected, counted = general(session, principal, {**common, **only}, sort_by="due", limit=limit)
            summaries = tasks_service.list_tasks(session, principal, **common, **only, limit=limit, cursor=None,
                                                 sort_by="due").items
        assert ([t.id for t in page], total) == (expected, counted), (principal, offered, rows)
        assert page == summaries  # every field of each summary

    run()


def test_a_principal_in_more_groups_than_are_merged_gets_the_same_lists(scope: Api) -> None:
    """Past MAX_RANGES groups the offered tasks are read otherwise (SQLite: all the principal's candidate rows at once;
    PostgreSQL: the general query): the same page and total, for random tasks."""
    many = frozenset({*GROUPS, *(f"x{i}" for i in range(tasks_service.MAX_RANGES))})

    @SCOPE
    @given(generated=st.lists(tasks, max_size=12), user=st.sampled_from(("u1", "a", "")), only_overdue=st.booleans(),
           process_key=st.none() | st.sampled_from(PROCESSES), limit=st.sampled_from((0, 1, 2, 500)))
    def run(generated: list[Task], user: str, only_overdue: bool, process_key: str | None, limit: int) -> None:
        _store(scope, _rows(generated))
        principal = Principal(user, many)
        common: dict[str, Any] = dict(candidate_group=None, business_key=None, process_instance_id=None,
                                      status="open", due_before=None, overdue=True if only_overdue else None,
                                      process_key=process_key, assignee=None, candidate_user=user,
                                      candidate_user_groups=principal.groups, unassigned=True)
        with scope.server.ctx.read() as session:
            page, total = tasks_service.most_urgent(session, principal, offered=True, process_key=process_key,
                                                    only_overdue=only_overdue, now=NOW, limit=limit)
            # the general query ignores an empty user name: then the tasks of the groups alone
            filters = common if user else {**common, "candidate_user": None, "candidate_groups": principal.groups}
            expected, counted = general(session, principal, filters, sort_by="due", limit=limit)
        assert ([t.id for t in page], total) == (expected, counted), (user, generated)

    run()


def test_asked_for_one_process_a_principal_in_several_groups_is_read_otherwise(scope: Api) -> None:
    """With a process filter and more than the name and one group the ranges are not merged: on PostgreSQL the
    general query answers, on SQLite the principal's candidate rows read at once; neither reads the ranges."""
    _store(scope, _rows([Task("open", "p1", frozenset({"a", "b"}), frozenset(), None, None, timedelta(days=1)),
                         Task("open", "p2", frozenset({"b"}), frozenset(), None, None, None), *OTHERS]))
    for groups, from_ranges in (({"a", "b"}, False), ({"a"}, True)):
        with executed(scope.server) as seen, scope.server.ctx.read() as session:
            page, total = tasks_service.most_urgent(session, Principal("u1", frozenset(groups)), offered=True,
                                                    process_key="p1", only_overdue=False, now=NOW, limit=1)
        assert ([t.id for t in page], total) == (["t00"], 1)
        assert any("task_candidate AS offered" in s.sql for s in seen) is from_ranges, [s.sql for s in seen]


def _human_task_reads(api: Api, statement: Statement) -> list[str]:
    """How the plan reads human_task: SQLite's index and its condition, or PostgreSQL's index condition's first
    column."""
    plan = _explain(api, statement)
    if plan.tree is None:
        return [re.sub(r"^SEARCH human_task USING (COVERING )?INDEX ", "", d) for _, _, d in plan.rows
                if re.match(r"(SCAN|SEARCH) human_task\b", d)]
    found = []
    for node, _, _ in _nodes(plan.tree):
        if node.get("Relation Name") == "human_task":
            first = re.match(r"\(*(\w+)\)?(::\w+)? = ", node.get("Index Cond", ""))
            found.append(f"{node['Node Type']} by {first.group(1) if first else node.get('Index Cond')}")
    return found


def _candidate_reads(api: Api, statement: Statement) -> list[str]:
    """How the plan reads task_candidate: SQLite's index and its condition, or PostgreSQL's index and condition."""
    plan = _explain(api, statement)
    if plan.tree is None:
        return [re.sub(r"^SEARCH \w+ USING (COVERING )?INDEX ", "", d) for _, _, d in plan.rows
                if re.match(r"(SCAN|SEARCH) (task_candidate|offered)\b", d)]
    return [f"{n['Node Type']} using {n.get('Index Name')}: {n.get('Index Cond')}" for n, _, _ in _nodes(plan.tree)
            if n.get("Relation Name") == "task_candidate"]


def _ranges_sorted(api: Api, statement: Statement) -> list[str]:
    """The sorts of rows read from a candidate range below the merge of the ranges (none: each range is read in its
    index's order; the merge of the ranges may sort what they gave, or to keep a task once)."""
    plan = _explain(api, statement)
    if plan.tree is None:  # SQLite: a sort beside a range's read (in the range's co-routine), not the merge's
        ranges_in = {parent for _, parent, d in plan.rows if re.match(r"(SCAN|SEARCH) (task_candidate|offered)\b", d)}
        return [d for _, parent, d in plan.rows if "TEMP B-TREE FOR ORDER BY" in d and parent in ranges_in]
    found = []
    for node, _, path in _nodes(plan.tree):
        if node.get("Relation Name") != "task_candidate":
            continue
        below_merge = []
        for ancestor in reversed(path):
            if ancestor["Node Type"] == "Append":
                break
            below_merge.append(ancestor)
        found += [f"{a['Node Type']} by {a.get('Sort Key')}" for a in below_merge
                  if a["Node Type"] in ("Sort", "Incremental Sort")]
    return found


def test_the_inbox_reads_only_the_principals_tasks(scope: Api) -> None:
    """The statements of both lists read human_task by id or by the principal's claims and task_candidate by
    (kind, value, status, …): never every open task (SQLite's plan, or PostgreSQL's with scans priced out). The
    offered tasks are ranges of ix_task_candidate_offered, each in the page's order (on SQLite: its plan with
    claimed and due_at in each range's condition; PostgreSQL may read the few rows of a test through either
    candidate index), merged and sorted once; counted from the same ranges (each, then the union of those that
    hold tasks), without the tasks unless a process is asked for. The list of offered tasks reads human_task by id only: by (assignee, status) it would be every
    unclaimed open task."""
    _store(scope, _rows([Task("open", "p1", frozenset({"a"}), frozenset({"u1"}), None, None, timedelta(days=1)),
                         Task("open", "p1", frozenset({"b"}), frozenset(), "u1", None, timedelta(days=1)),
                         Task("open", "p1", frozenset({"a"}), frozenset(), None, None, None), *OTHERS]))
    principal = Principal("u1", frozenset({"a", "c"}))
    by_id = {"sqlite_autoindex_human_task_1 (id=?)", "Index Scan by id"}
    claims = {"ix_human_task_assignee_created (assignee=? AND status=?)", "Index Scan by assignee"}
    sqlite = scope.server.ctx.engine.dialect.name == "sqlite"
    for offered, process_key in ((True, "p1"), (True, None), (False, "p1")):
        # asked for one process, the ranges are merged for the name and one group (more: the general query)
        who = Principal("u1", frozenset({"a"})) if process_key else principal
        with executed(scope.server) as seen, scope.server.ctx.read() as session:
            page, total = tasks_service.most_urgent(session, who, offered=offered, process_key=process_key,
                                                    only_overdue=process_key is not None,
                                                    now=NOW + timedelta(days=2), limit=1)
        assert total == (2 if offered and process_key is None else 1) and len(page) == 1
        statements = [s for s in seen if s.sql.lstrip().startswith("SELECT")]
        # offered: the page's ids; as the page is full, each range's count and, as t00 is in two ranges (the user's
        # name and group a), the count of their union; the page's rows. Claims: their sort columns, their rows
        roles = ["ids", "counts", "count", "rows"] if offered else ["claims", "rows"]
        # the name and the groups, each dated (and, unless overdue, undated): t00 under the name and under a, dated;
        # t02 under a, undated
        parts, holding = (2, 2) if process_key else (6, 3)
        assert len(statements) == len(roles), [s.sql for s in seen]
        for role, statement in zip(roles, statements, strict=True):
            assert plan_problems(scope, statement) == [], (role, statement.sql)
            reads = _human_task_reads(scope, statement)
            if role == "claims":
                assert reads and set(reads) <= claims, reads
            elif role == "rows" or process_key is not None:
                assert reads and set(reads) <= by_id, (role, reads)
            else:
                assert reads == [], (role, reads)  # counted from the candidate rows alone
            ranges = _candidate_reads(scope, statement)
            if role in ("ids", "counts", "count"):
                assert len(ranges) == (holding if role == "count" else parts), (role, ranges)
                assert all(re.search(r"kind\)?(::text)? = .*value\)?(::text)? = .*status" if not sqlite else
                                     r"^ix_task_candidate_offered \(kind=\? AND value=\? AND status=\? AND "
                                     r"claimed=\? AND due_at[=>]", r) for r in ranges), (role, ranges)
            else:
                assert ranges == [], (role, ranges)
            assert _ranges_sorted(scope, statement) == [], (role, statement.sql)  # each range read in its order
