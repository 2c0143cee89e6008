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


@pytest.mark.parametrize("user,groups", [(LONG, []), ("li", [LONG]), ("li\x00", []), ("li", ["g\x00"]),
                                         ("li\ud800", []), ("li", ["\udfff"])])
def test_a_token_naming_a_user_or_group_the_database_cannot_keep_is_refused(api: Api, user: str,
                                                                            groups: list[str]) -> None:
    with httpx.Client(base_url=api.server.url + "/api/v1", timeout=30,
                      headers={"Authorization": f"Bearer {_token(user, groups)}"}) as client:
        for r in (client.get("/tasks"), client.post("/process-instances", json={"process_key": "review"})):
            assert r.status_code == 401 and "not storable" in r.json()["detail"], r.text
    # the longest that fits is a principal like any other
    with httpx.Client(base_url=api.server.url + "/api/v1", timeout=30,
                      headers={"Authorization": f"Bearer {_token('y' * 200, ['g' * 200])}"}) as client:
        assert client.get("/tasks").status_code == 200


@pytest.mark.parametrize("field,value", [("name", LONG), ("groups", [LONG]), ("groups", ["g\x00"]),
                                         ("processes", ["review\x00"])])
def test_an_api_key_with_names_the_database_cannot_keep_is_refused(api: Api, field: str, value: Any) -> None:
    r = api.admin.post("/api-keys", json={"name": "oa", field: value})
    assert r.status_code == 422, r.text
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
    assert camunda.status_code in (400, 422), camunda.text
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
                                  {"name": "contract\x00signed", "business_key": "BK"},
                                  {"name": "contract_signed", "business_key": "B" * 201}])
def test_a_message_naming_what_the_database_cannot_keep_is_refused(api: Api, body: dict[str, Any]) -> None:
    """Nothing checks these before they are looked up: the column type refuses them, on both databases alike
    (SQLite answered 404, PostgreSQL 422)."""
    r = api.admin.post("/messages", json=body)
    assert r.status_code == 422 and "a text" in r.json()["detail"], r.text


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
