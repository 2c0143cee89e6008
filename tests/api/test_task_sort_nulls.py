"""Tasks sorted by a column that may be empty (due date, assignee) come out in the same order on SQLite and on
PostgreSQL: the empty ones after every value, and first when the order is reversed. SQLite puts NULL first in an
ascending order, PostgreSQL last; a client paging through "the most urgent first" got the tasks without a deadline
first on one database and last on the other."""
from __future__ import annotations

from typing import Any

import httpx

from tests.api.test_supervision import DIAGRAM, start
from tests.support import Api


def _engine_rest(api: Api) -> httpx.Client:
    return httpx.Client(base_url=api.server.url + "/engine-rest", timeout=30,
                        headers={"Authorization": f"Bearer {api.token('admin', admin=True)}"})


def _ids(client: httpx.Client, **params: Any) -> list[str]:
    r = client.get("/task", params=params)
    assert r.status_code == 200, r.text
    return [t["id"] for t in r.json()]


def test_tasks_without_a_deadline_or_an_assignee_sort_last_and_first_in_reverse(api: Api) -> None:
    r = api.admin.post("/deployments", files=[("files", ("sup.bpmn", DIAGRAM.encode()))])
    assert r.status_code == 201, r.text
    undated = start(api, "plain", 2)
    dated = start(api, "joint", 2)  # due in five days
    soonest = start(api, "named", 1)  # due in a day
    claimed = api.as_("li", "data_bureau").post(f"/tasks/{undated[1]['id']}/claim")
    assert claimed.status_code == 200, claimed.text
    # among equals (no deadline, no assignee) the oldest first
    by_due = [soonest[0]["id"], dated[0]["id"], dated[1]["id"], *(t["id"] for t in undated)]
    with _engine_rest(api) as client:
        assert _ids(client, sortBy="dueDate", sortOrder="asc") == by_due
        assert _ids(client, sortBy="dueDate", sortOrder="desc") == list(reversed(by_due))
        assert _ids(client, sortBy="dueDate", sortOrder="asc", firstResult=3, maxResults=2) == by_due[3:]
        unassigned = [t["id"] for t in (undated[0], *dated, *soonest)]
        by_assignee = [undated[1]["id"], *unassigned]
        assert _ids(client, sortBy="assignee", sortOrder="asc") == by_assignee
        assert _ids(client, sortBy="assignee", sortOrder="desc") == list(reversed(by_assignee))


NAMED = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://govflow.example/bpmn">
  <bpmn:process id="named_tasks" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f0</bpmn:outgoing></bpmn:startEvent>
    <bpmn:parallelGateway id="fork"><bpmn:incoming>f0</bpmn:incoming>
      <bpmn:outgoing>f1</bpmn:outgoing><bpmn:outgoing>f2</bpmn:outgoing><bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:outgoing>f5</bpmn:outgoing><bpmn:outgoing>f6</bpmn:outgoing>
    </bpmn:parallelGateway>
    <bpmn:userTask id="t1" name="beta" camunda:candidateGroups="data_bureau"><bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>e1</bpmn:outgoing></bpmn:userTask>
    <bpmn:userTask id="t2" name="Alpha" camunda:candidateGroups="data_bureau"><bpmn:incoming>f2</bpmn:incoming>
      <bpmn:outgoing>e2</bpmn:outgoing></bpmn:userTask>
    <bpmn:userTask id="t3" name="Gamma" camunda:candidateGroups="data_bureau"><bpmn:incoming>f3</bpmn:incoming>
      <bpmn:outgoing>e3</bpmn:outgoing></bpmn:userTask>
    <bpmn:userTask id="t4" name="Élan" camunda:candidateGroups="data_bureau"><bpmn:incoming>f5</bpmn:incoming>
      <bpmn:outgoing>e4</bpmn:outgoing></bpmn:userTask>
    <bpmn:userTask id="t5" name="éclair" camunda:candidateGroups="data_bureau"><bpmn:incoming>f6</bpmn:incoming>
      <bpmn:outgoing>e5</bpmn:outgoing></bpmn:userTask>
    <bpmn:parallelGateway id="join"><bpmn:incoming>e1</bpmn:incoming><bpmn:incoming>e2</bpmn:incoming>
      <bpmn:incoming>e3</bpmn:incoming><bpmn:incoming>e4</bpmn:incoming><bpmn:incoming>e5</bpmn:incoming>
      <bpmn:outgoing>f4</bpmn:outgoing></bpmn:parallelGateway>
    <bpmn:endEvent id="end"><bpmn:incoming>f4</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="fork" />
    <bpmn:sequenceFlow id="f1" sourceRef="fork" targetRef="t1" />
    <bpmn:sequenceFlow id="f2" sourceRef="fork" targetRef="t2" />
    <bpmn:sequenceFlow id="f3" sourceRef="fork" targetRef="t3" />
    <bpmn:sequenceFlow id="e1" sourceRef="t1" targetRef="join" />
    <bpmn:sequenceFlow id="e2" sourceRef="t2" targetRef="join" />
    <bpmn:sequenceFlow id="e3" sourceRef="t3" targetRef="join" />
    <bpmn:sequenceFlow id="f4" sourceRef="join" targetRef="end" />
    <bpmn:sequenceFlow id="f5" sourceRef="fork" targetRef="t4" />
    <bpmn:sequenceFlow id="f6" sourceRef="fork" targetRef="t5" />
    <bpmn:sequenceFlow id="e4" sourceRef="t4" targetRef="join" />
    <bpmn:sequenceFlow id="e5" sourceRef="t5" targetRef="join" />
  </bpmn:process>
</bpmn:definitions>"""


def test_name_case_insensitive_sorts_without_regard_to_case(api: Api) -> None:
    """Camunda's sortBy=nameCaseInsensitive: Alpha, beta, Gamma, then éclair, Élan (every letter lowered, on SQLite
    too, whose own lower() lowers only A-Z); sortBy=name sorts by the characters' codes."""
    r = api.admin.post("/deployments", files=[("files", ("named_tasks.bpmn", NAMED.encode()))])
    assert r.status_code == 201, r.text
    api.start("named_tasks", {})
    with _engine_rest(api) as client:
        def names(**params: Any) -> list[str]:
            found = client.get("/task", params=params)
            assert found.status_code == 200, found.text
            return [t["name"] for t in found.json()]

        assert names(sortBy="nameCaseInsensitive", sortOrder="asc") == ["Alpha", "beta", "Gamma", "éclair", "Élan"]
        assert names(sortBy="nameCaseInsensitive", sortOrder="desc") == ["Élan", "éclair", "Gamma", "beta", "Alpha"]
        assert names(sortBy="name", sortOrder="asc") == ["Alpha", "Gamma", "beta", "Élan", "éclair"]
