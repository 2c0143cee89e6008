"""The supervision report (督办): per department, how many open tasks, how many overdue or due within three days;
then the overdue and the soon-due tasks themselves. The counts are of every open task the principal sees, however
many; the lists hold the most urgent `limit` tasks, and say when there are more."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pytest

from service.auth import Principal
from service.services import supervision as report
from service.services.supervision import NO_GROUP, Supervision
from tests.support import Api

# kind "plain": data_bureau, no deadline; "joint": data_bureau and finance_bureau, due in five days; "named":
# offered to zhao.lei by name only, due in a day; "fixed": data_bureau, due at the start's `deadline`
DIAGRAM = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://govflow.example/bpmn">
  <bpmn:process id="sup" name="督办测试" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:extensionElements><camunda:formData>
      <camunda:formField id="kind" label="类别" type="string" />
      <camunda:formField id="deadline" label="期限" type="string" /></camunda:formData></bpmn:extensionElements>
      <bpmn:outgoing>f0</bpmn:outgoing></bpmn:startEvent>
    <bpmn:exclusiveGateway id="which" default="f_plain"><bpmn:incoming>f0</bpmn:incoming>
      <bpmn:outgoing>f_plain</bpmn:outgoing><bpmn:outgoing>f_joint</bpmn:outgoing><bpmn:outgoing>f_named</bpmn:outgoing>
      <bpmn:outgoing>f_fixed</bpmn:outgoing>
    </bpmn:exclusiveGateway>
    <bpmn:userTask id="fixed" name="限期办理" camunda:candidateGroups="data_bureau" camunda:dueDate="${deadline}">
      <bpmn:incoming>f_fixed</bpmn:incoming><bpmn:outgoing>e4</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end4"><bpmn:incoming>e4</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f_fixed" sourceRef="which" targetRef="fixed">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">kind == "fixed"</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="e4" sourceRef="fixed" targetRef="end4" />
    <bpmn:userTask id="plain" name="审核" camunda:candidateGroups="data_bureau">
      <bpmn:incoming>f_plain</bpmn:incoming><bpmn:outgoing>e1</bpmn:outgoing></bpmn:userTask>
    <bpmn:userTask id="joint" name="联合审查" camunda:candidateGroups="data_bureau,finance_bureau" camunda:dueDate="P5D">
      <bpmn:incoming>f_joint</bpmn:incoming><bpmn:outgoing>e2</bpmn:outgoing></bpmn:userTask>
    <bpmn:userTask id="named" name="专人办理" camunda:candidateUsers="zhao.lei" camunda:dueDate="P1D">
      <bpmn:incoming>f_named</bpmn:incoming><bpmn:outgoing>e3</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end1"><bpmn:incoming>e1</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="end2"><bpmn:incoming>e2</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="end3"><bpmn:incoming>e3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="which" />
    <bpmn:sequenceFlow id="f_plain" sourceRef="which" targetRef="plain" />
    <bpmn:sequenceFlow id="f_joint" sourceRef="which" targetRef="joint">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">kind == "joint"</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f_named" sourceRef="which" targetRef="named">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">kind == "named"</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="e1" sourceRef="plain" targetRef="end1" />
    <bpmn:sequenceFlow id="e2" sourceRef="joint" targetRef="end2" />
    <bpmn:sequenceFlow id="e3" sourceRef="named" targetRef="end3" />
  </bpmn:process>
</bpmn:definitions>"""

ADMIN = Principal("admin", is_admin=True)


@pytest.fixture
def sup(api: Api) -> Iterator[Api]:
    r = api.admin.post("/deployments", files=[("files", ("sup.bpmn", DIAGRAM.encode()))])
    assert r.status_code == 201, r.text
    yield api


def start(api: Api, kind: str, n: int = 1, **variables: Any) -> list[dict[str, Any]]:
    """n instances of the kind, a second apart; each one's open task."""
    tasks = []
    for _ in range(n):
        [task] = api.start("sup", {"kind": kind, **variables})["open_tasks"]
        tasks.append(task)
        api.clock.advance(timedelta(seconds=1))
    return tasks


def due(task: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(task["due_at"])


def run(api: Api, principal: Principal, now: datetime, limit: int = 500, process_key: str | None = None
        ) -> Supervision:
    ctx = api.server.ctx
    with ctx.read() as db:
        return report.supervision(db, principal, now, process_key, limit=limit)


def loads(result: Supervision) -> dict[str, tuple[int, int, int]]:
    return {d.group: (d.open, d.overdue, d.due_soon) for d in result.departments}


def listed(pairs: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    return [(group, t.element_id) for group, t in pairs]


def test_the_counts_are_of_every_open_task_and_the_lists_only_of_tasks_with_deadlines(sup: Api) -> None:
    api = sup
    plain = start(api, "plain", 4)  # no deadline: in the counts, in neither list
    joint = start(api, "joint", 2)
    [named] = start(api, "named")
    now = due(joint[0]) - timedelta(days=1)  # the joint tasks due within three days, the named one overdue
    assert due(named) < now and due(joint[1]) - now < timedelta(days=3) and all(t["due_at"] is None for t in plain)

    # a limit smaller than the undated tasks: neither the counts nor the lists stop at it, and no undated task
    # takes an overdue one's place (SQLite puts NULL first in an ascending order)
    result = run(api, ADMIN, now, limit=1)
    assert loads(result) == {NO_GROUP: (1, 1, 0), "data_bureau": (6, 0, 2), "finance_bureau": (2, 0, 2)}
    assert [d.group for d in result.departments] == [NO_GROUP, "data_bureau", "finance_bureau"]  # overdue first
    assert listed(result.overdue) == [(NO_GROUP, "named")] and not result.overdue_more
    # one soon-due task listed (under both its groups), and word that there are more
    assert listed(result.due_soon) == [("data_bureau", "joint"), ("finance_bureau", "joint")]
    assert result.due_soon[0][1].id == joint[0]["id"] and result.due_soon_more
    assert (result.overdue_tasks, result.due_soon_tasks) == (1, 2)  # tasks, each counted once
    by_group = {d.group: d for d in result.departments}
    assert by_group[NO_GROUP].oldest_overdue == by_group[NO_GROUP].earliest_due == due(named)
    assert by_group["data_bureau"].earliest_due == due(joint[0]) and by_group["data_bureau"].oldest_overdue is None

    whole = run(api, ADMIN, now)
    assert loads(whole) == loads(result) and not whole.due_soon_more
    assert (whole.overdue_tasks, whole.due_soon_tasks) == (1, 2)
    assert [t.id for _, t in whole.due_soon] == [joint[0]["id"]] * 2 + [joint[1]["id"]] * 2


def test_of_tasks_due_at_the_same_moment_the_oldest_are_listed_on_both_databases(sup: Api) -> None:
    api = sup
    fixed = start(api, "fixed", 6, deadline="2026-03-10T09:00:00+08:00")
    assert len({t["due_at"] for t in fixed}) == 1
    li = api.as_("li", "data_bureau")
    for task in reversed(fixed[:3]):  # claimed, newest first: the rows change, the order must not
        assert li.post(f"/tasks/{task['id']}/claim").status_code == 200
    for now, attribute in ((due(fixed[0]) + timedelta(hours=1), "overdue"), (due(fixed[0]) - timedelta(days=1),
                                                                              "due_soon")):
        result = run(api, ADMIN, now, limit=3)
        assert [t.id for _, t in getattr(result, attribute)] == [t["id"] for t in fixed[:3]], attribute
        assert getattr(result, f"{attribute}_more") and getattr(result, f"{attribute}_tasks") == 6


def test_overdue_and_due_soon_on_both_sides_of_their_boundaries(sup: Api) -> None:
    api = sup
    [named] = start(api, "named")
    deadline = due(named)
    tick = timedelta(seconds=1)
    cases = [
        (deadline - timedelta(days=3), (1, 0, 0)),  # due in exactly three days: not yet "within three days"
        (deadline - timedelta(days=3) + tick, (1, 0, 1)),
        (deadline, (1, 0, 1)),  # due now: not overdue yet
        (deadline + tick, (1, 1, 0)),
    ]
    for now, expected in cases:
        result = run(api, ADMIN, now)
        assert loads(result) == {NO_GROUP: expected}, now
        assert len(result.overdue) == expected[1] and len(result.due_soon) == expected[2], now


def test_a_department_counts_the_tasks_its_members_see_with_every_group_they_are_offered_to(sup: Api) -> None:
    api = sup
    start(api, "plain", 2)  # offered to data_bureau only: finance_bureau does not see them
    start(api, "joint", 3)
    now = api.clock.now()
    finance = Principal("qian", frozenset({"finance_bureau"}))
    assert loads(run(api, finance, now)) == {"data_bureau": (3, 0, 0), "finance_bureau": (3, 0, 0)}
    data = Principal("li", frozenset({"data_bureau"}))
    assert loads(run(api, data, now)) == {"data_bureau": (5, 0, 0), "finance_bureau": (3, 0, 0)}
    zhao = Principal("zhao.lei")
    assert loads(run(api, zhao, now)) == {}
    start(api, "named")  # due in a day
    assert loads(run(api, zhao, now)) == {NO_GROUP: (1, 0, 1)}
    assert loads(run(api, ADMIN, now, process_key="review")) == {}
    assert loads(run(api, ADMIN, now, process_key="sup")) == {"data_bureau": (5, 0, 0), "finance_bureau": (3, 0, 0),
                                                              NO_GROUP: (1, 0, 1)}


def test_the_console_says_when_a_list_is_cut(sup: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    api = sup
    start(api, "named", 2)
    start(api, "joint", 3)  # each listed under two departments, counted once
    api.clock.advance(timedelta(days=2))
    monkeypatch.setattr(report, "supervision", partial(report.supervision, limit=1))
    import httpx

    with httpx.Client(base_url=api.server.url, timeout=30) as client:
        r = client.post("/console/login", data={"credential": api.token("admin", admin=True),
                                                "next": "/console/supervision"})
        assert r.status_code == 303, r.text
        page = client.get("/console/supervision").text
    assert 'id="overdue-more"' in page and "逾期任务共 2 项，此处仅列出逾期最久的 1 项" in page
    assert '逾期任务 <span class="count">2</span>' in page  # tasks, as the note says
    assert page.count('class="is-overdue" data-task-id=') == 1
    assert "3 日内到期的任务共 3 项，此处仅列出期限最近的 1 项" in page
    assert '3 日内到期 <span class="count">3</span>' in page


def test_the_lists_are_read_by_due_date_through_its_index(sup: Api) -> None:
    """Each list is one range of human_task (status, due_at, created_at, id), read in its order with no sort: tasks
    without a deadline, or with one outside the list's, are not read, and a cut list reads only the rows it
    shows."""
    from tests.api.test_query_plans import explain, problems
    from tests.api.test_supervision_scope import plan_problems
    from tests.support import executed

    api = sup
    start(api, "plain", 3)
    start(api, "joint", 2)
    start(api, "named", 2)
    now = api.clock.now() + timedelta(days=2)
    for principal in (ADMIN, Principal("li", frozenset({"data_bureau"}))):
        with executed(api.server) as seen:
            run(api, principal, now)
        lists = [s for s in seen if "ORDER BY human_task.due_at, human_task.created_at, human_task.id" in s.sql]
        assert len(lists) == 2, [s.sql for s in seen]
        for statement in lists:
            plan = explain(api, statement)
            wrong = problems(plan, "human_task", indexes=("ix_human_task_due_created",))
            assert not wrong, f"{wrong}\n\nplan:\n{plan}\n\nstatement:\n{statement.sql}"
        # a member's counts read the tasks offered to its groups or name and its claims, each by its id, not every
        # open task (tests/api/test_supervision_scope.py); an administrator's read every open task, as they should,
        # and the check says so
        counts = [s for s in seen if "count(" in s.sql]
        assert len(counts) == 1, [s.sql for s in seen]
        wrong = plan_problems(api, counts[0])
        assert bool(wrong) == principal.is_admin, f"{wrong}\n\nstatement:\n{counts[0].sql}"
