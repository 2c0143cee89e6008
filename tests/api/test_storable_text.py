"""Texts the database cannot keep answer the same on SQLite and PostgreSQL. PostgreSQL refuses a text longer than its
column, or holding a NUL character or a lone surrogate; SQLite stored them. So a request, a diagram or a timer
went on with SQLite and stopped with PostgreSQL. Now each is refused on both: where the text enters when it can
be (a token, an API key, a form, a diagram at deploy time), otherwise when it is bound to its column
(service/text.py)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from service.auth import mint_token
from tests.support import SECRET, Api

LONG = "x" * 201

ASSIGNED = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://govflow.example/bpmn">
  <bpmn:process id="assigned" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="first" name="经办" camunda:candidateGroups="applicant">
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>
    <bpmn:intermediateCatchEvent id="wait"><bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:timerEventDefinition><bpmn:timeDuration>"PT1H"</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:userTask id="second" name="指定办理" camunda:assignee="${who}">
      <bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f4</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="first" />
    <bpmn:sequenceFlow id="f2" sourceRef="first" targetRef="wait" />
    <bpmn:sequenceFlow id="f3" sourceRef="wait" targetRef="second" />
    <bpmn:sequenceFlow id="f4" sourceRef="second" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>"""


def _token(user: str, groups: list[str]) -> str:
    return mint_token(SECRET, user, groups, False, datetime.now(UTC), timedelta(hours=1))


@pytest.mark.parametrize("user,groups", [(LONG, []), ("li\x00", []), ("li", ["g\x00"]), ("li\ud800", []),
                                         ("li", ["\udfff"])])
def test_a_token_naming_a_user_or_group_the_database_cannot_keep_is_refused(api: Api, user: str,
                                                                            groups: list[str]) -> None:
    with httpx.Client(base_url=api.server.url + "/api/v1", timeout=30,
                      headers={"Authorization": f"Bearer {_token(user, groups)}"}) as client:
        for r in (client.get("/tasks"), client.post("/process-instances", json={"process_key": "review"})):
            assert r.status_code == 401 and "not storable" in r.json()["detail"], r.text
    # the longest name that fits is a principal like any other; a group is only looked up, never stored, so a
    # longer one (a directory's distinguished name) is let through and matches no task
    with httpx.Client(base_url=api.server.url + "/api/v1", timeout=30,
                      headers={"Authorization": f"Bearer {_token('y' * 200, ['g' * 200, 'CN=' + LONG])}"}) as client:
        assert client.get("/tasks").status_code == 200
        assert client.get("/tasks", params={"candidate_group": "CN=" + LONG}).json()["items"] == []


@pytest.mark.parametrize("field,value", [("name", LONG), ("groups", [LONG]), ("groups", ["g\x00"]),
                                         ("processes", ["review\x00"])])
def test_an_api_key_with_names_the_database_cannot_keep_is_refused(api: Api, field: str, value: Any) -> None:
    r = api.admin.post("/api-keys", json={"name": "oa", field: value})
    assert r.status_code == 422, r.text
    assert api.admin.get("/api-keys").json() == []


def test_the_command_lines_api_keys_are_checked_the_same_way(api: Api) -> None:
    """`govflow apikey create` goes through the same use case as the API."""
    from service.auth import Principal
    from service.errors import InvalidInput
    from service.services import apikeys

    ctx = api.server.ctx
    with pytest.raises(InvalidInput, match="groups"), ctx.write() as session:
        apikeys.create(session, Principal("cli", is_admin=True), ctx.clock.now(), "oa", ["g" * 201], False)
    assert api.admin.get("/api-keys").json() == []


@pytest.mark.parametrize("business_key", ["BK\x00", LONG])
def test_a_business_key_the_database_cannot_keep_is_refused_and_nothing_starts(api: Api, business_key: str) -> None:
    applicant = api.as_("oa", "applicant")
    r = applicant.post("/process-instances", json={"process_key": "review", "business_key": business_key,
                                                   "variables": {"project_name": "x", "budget_wan": 1}})
    assert r.status_code == 422, r.text
    headers = {"Authorization": f"Bearer {api.token('oa', ('applicant',))}"}
    camunda = httpx.post(f"{api.server.url}/engine-rest/process-definition/key/review/start", headers=headers,
                         json={"businessKey": business_key, "variables": {
                             "project_name": {"value": "x"}, "budget_wan": {"value": 1}}}, timeout=30)
    assert camunda.status_code == 400 and camunda.json()["type"] == "InvalidRequestException", camunda.text
    assert api.admin.get("/process-instances").json()["items"] == []


def test_an_assignee_computed_too_long_stops_the_step_on_both_databases(api: Api) -> None:
    """The diagram names the assignee from a variable: 201 characters cannot be kept. Completing the task before
    it is refused (the instance stays where it was); a timer in front of it fails and says why, without the SQL
    and the values that SQLAlchemy's message carries."""
    r = api.admin.post("/deployments", files=[("files", ("assigned.bpmn", ASSIGNED.encode()))])
    assert r.status_code == 201, r.text
    instance = api.start("assigned", {"who": "zhang"})
    api.complete(instance["id"], "first")
    assert api.advance(timedelta(hours=2)) == 1
    assert api.open_elements(instance["id"]) == ["second"]

    instance = api.start("assigned", {"who": LONG})
    api.complete(instance["id"], "first")  # on to the timer: nothing is written with the name yet
    api.advance(timedelta(hours=2))
    [timer] = api.waiting(instance["id"])
    assert timer["failed_attempts"] == 1, timer
    error = timer["last_error"]
    assert "longer than the 200 characters" in error and "SQL" not in error and LONG not in error, error
    assert api.open_elements(instance["id"]) == []


def test_layout_entries_and_flow_names_are_not_held_to_what_the_tables_keep(api: Api) -> None:
    """bpmndi ids (an element's id with "_di") and sequence-flow names reach no table: a diagram with them deploys."""
    long_id = "t" * 198
    xml = ASSIGNED.replace('id="first"', f'id="{long_id}"').replace('targetRef="first"', f'targetRef="{long_id}"')
    xml = xml.replace('sourceRef="first"', f'sourceRef="{long_id}"')
    xml = xml.replace('<bpmn:sequenceFlow id="f4"', f'<bpmn:sequenceFlow name="{"流" * 600}" id="f4"')
    xml = xml.replace("</bpmn:process>", f"""</bpmn:process>
  <bpmndi:BPMNDiagram id="diagram"><bpmndi:BPMNPlane id="plane" bpmnElement="assigned">
    <bpmndi:BPMNShape id="{long_id}_di" bpmnElement="{long_id}"><dc:Bounds x="0" y="0" width="100" height="80" />
    </bpmndi:BPMNShape></bpmndi:BPMNPlane></bpmndi:BPMNDiagram>""")
    xml = xml.replace('xmlns:camunda=', 'xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" '
                      'xmlns:dc="http://www.omg.org/spec/DD/20100524/DC" xmlns:camunda=')
    r = api.admin.post("/deployments", files=[("files", ("assigned.bpmn", xml.encode()))])
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("attributes,what", [
    ('id="assigned"', None),
    (f'id="{"p" * 201}"', "the id"),
    (f'id="assigned" name="{"名" * 501}"', "the name"),
])
def test_a_process_whose_id_or_name_the_database_cannot_keep_is_refused_at_deploy(api: Api, attributes: str,
                                                                                  what: str | None) -> None:
    xml = ASSIGNED.replace('<bpmn:process id="assigned"', f"<bpmn:process {attributes}")
    r = api.admin.post("/deployments", files=[("files", ("assigned.bpmn", xml.encode()))])
    if what is None:
        assert r.status_code == 201, r.text
        return
    assert r.status_code == 422 and what in r.json()["detail"] and "longer than" in r.json()["detail"], r.text


@pytest.mark.parametrize("old,new,what", [
    ('camunda:candidateGroups="applicant"', f'camunda:candidateGroups="applicant,{"g" * 201}"',
     "camunda:candidateGroups"),
    ('camunda:assignee="${who}"', f'camunda:assignee="{"u" * 201}"', "camunda:assignee"),
    ('<bpmn:userTask id="first"', f'<bpmn:userTask camunda:formKey="{"f" * 501}" id="first"', "camunda:formKey"),
    ('<bpmn:userTask id="first" name="经办"', f'<bpmn:userTask id="first" name="{"经" * 501}"', "the name"),
    ('<bpmn:userTask id="first"', f'<bpmn:userTask id="{"t" * 201}"', "the id"),
])
def test_an_element_naming_what_the_database_cannot_keep_is_refused_at_deploy(api: Api, old: str, new: str,
                                                                              what: str) -> None:
    assert old in ASSIGNED
    xml = ASSIGNED.replace(old, new)
    if what == "the id":
        xml = xml.replace('targetRef="first"', f'targetRef="{"t" * 201}"').replace('sourceRef="first"',
                                                                                  f'sourceRef="{"t" * 201}"')
    r = api.admin.post("/deployments", files=[("files", ("assigned.bpmn", xml.encode()))])
    assert r.status_code == 422, r.text
    body = r.json()
    assert what in body["detail"] and "longer than" in body["detail"], body
    # the same text at its limit deploys
    fitting = ASSIGNED.replace(old, new).replace("g" * 201, "g" * 200)
    fitting = fitting.replace("u" * 201, "u" * 200).replace("f" * 501, "f" * 500).replace("经" * 501, "经" * 500)
    if what != "the id":
        r = api.admin.post("/deployments", files=[("files", ("assigned.bpmn", fitting.encode()))])
        assert r.status_code == 201, r.text


@pytest.mark.parametrize("body", [{"name": "contract_signed", "business_key": "BK\x00"},
                                  {"name": "contract\x00signed", "business_key": "BK"}])
def test_a_message_naming_what_no_database_can_look_up_is_refused(api: Api, body: dict[str, Any]) -> None:
    """Nothing checks these before they are looked up: a NUL is refused when the value is bound, on both databases
    alike (SQLite answered 404, PostgreSQL 422)."""
    r = api.admin.post("/messages", json=body)
    assert r.status_code == 422 and "a text" in r.json()["detail"], r.text


def test_a_lookup_longer_than_its_column_finds_nothing_on_both_databases(api: Api) -> None:
    """A value longer than any stored one is no error in a filter: it matches nothing (it is refused only where
    it would be written)."""
    api.start("review", {"project_name": "x", "budget_wan": 1}, business_key="BK-1")
    long_key = "B" * 201
    assert api.admin.get("/process-instances", params={"business_key": long_key}).json()["items"] == []
    assert api.admin.get("/tasks", params={"business_key": long_key}).json()["items"] == []
    assert api.admin.get("/tasks", params={"candidate_group": long_key}).json()["items"] == []
    r = api.admin.post("/messages", json={"name": "contract_signed", "business_key": long_key})
    assert r.status_code == 404, r.text
    task_id = "t" * 37  # longer than a task id
    assert api.admin.get(f"/tasks/{task_id}").status_code == 404
    assert api.admin.post(f"/tasks/{task_id}/claim").status_code == 404
    assert api.admin.post(f"/tasks/{task_id}/complete", json={"variables": {}}).status_code == 404
    # ids in the path of every other resource too: no such API key or webhook subscription (it was a 422)
    for path in (f"/api-keys/{'k' * 300}", f"/webhooks/{'w' * 300}", f"/process-instances/{'i' * 300}/cancel"):
        method = "POST" if path.endswith("/cancel") else "DELETE"
        r = api.admin.request(method, path, json={"reason": "x"} if method == "POST" else None)
        assert r.status_code == 404, (path, r.text)


def test_the_console_refuses_an_opinion_or_business_key_it_cannot_keep_on_its_own_page(api: Api) -> None:
    instance = api.start("review", {"project_name": "x", "budget_wan": 1})
    task = instance["open_tasks"][0]
    with httpx.Client(base_url=api.server.url, timeout=30) as console:
        r = console.post("/console/login", data={"credential": api.token("li", ("data_bureau",)),
                                                 "next": "/console/inbox"})
        assert r.status_code == 303, r.text
        page = console.get(f"/console/tasks/{task['id']}").text
        csrf = page.split('name="_csrf" value="', 1)[1].split('"', 1)[0]
        r = console.post(f"/console/tasks/{task['id']}/complete",
                         data={"_csrf": csrf, "decision": "pass", "_comment": "同意\x00"})
        assert r.status_code == 422 and "text/html" in r.headers["content-type"] and "无法保存" in r.text
    assert api.open_elements(instance["id"]) == ["review_task"]


def test_engine_rest_answers_what_it_cannot_take_the_camunda_way(api: Api) -> None:
    """A date-time off the calendar in a filter, or a variable whose name is not UTF-8: Camunda's 400, not a
    govflow problem document, and never a 500 (the message quoting the name could not be encoded)."""
    headers = {"Authorization": f"Bearer {api.token('oa', ('applicant',))}"}
    with httpx.Client(base_url=api.server.url + "/engine-rest", headers=headers, timeout=30) as client:
        r = client.get("/task", params={"dueAfter": "0001-01-01T00:00:00.000+0100"})
        assert r.status_code == 400 and r.json()["type"] == "InvalidRequestException", r.text
        body = '{"variables": {"\\ud800": {"value": 1}}}'
        r = client.post("/process-definition/key/review/start", content=body,
                        headers={"Content-Type": "application/json"})
        assert 400 <= r.status_code < 500 and "type" in r.json(), r.text


def test_only_comparisons_skip_the_length_check() -> None:
    """A value compared with a text column is looked up, not stored; one concatenated to it may be written."""
    from service.db.models import HumanTask, Str

    assert not isinstance((HumanTask.id == "x").right.type, Str)
    assert not isinstance(HumanTask.business_key.in_(["x"]).right.type, Str)
    assert isinstance((HumanTask.name + "x").right.type, Str)
