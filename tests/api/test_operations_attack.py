"""Hostile and careless uses of the operations on long-lived instances (send back, withdraw, modify, variables,
migration, incidents): each must either do what it says, completely, or be refused with a problem response and
change nothing."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.operations_support import actions, history, service
from tests.support import Api


@pytest.fixture
def api(tmp_path: Path, database_url: str | None) -> Iterator[Api]:
    with service(tmp_path, database_url) as a:
        yield a


def start(api: Api, bk: str) -> str:
    return str(api.start("returns", {"project_name": "城市大脑"}, business_key=bk)["id"])


def reviewed(api: Api, bk: str) -> str:
    iid = start(api, bk)
    api.complete(iid, "declare", {"plan_ref": "A-1"}, user="li.ming", group="applicant")
    api.complete(iid, "prereview", {}, user="wang.fang", group="third_party")
    assert api.open_elements(iid) == ["funding_review", "technical_review"]
    return iid


def claim_and_complete(client: Any, task_id: str, variables: dict[str, Any] | None = None) -> None:
    r = client.post(f"/tasks/{task_id}/claim")
    assert r.status_code == 200, r.text
    r = client.post(f"/tasks/{task_id}/complete", json={"variables": variables or {}})
    assert r.status_code == 200, r.text


# ---- the parallel join and operations inside its branches ---------------------------------------------------

def test_a_withdrawn_branch_is_waited_for_again_by_the_join(api: Api) -> None:
    iid = reviewed(api, "AT-WJ")
    reviewer = api.as_("zhao.qiang", "data_bureau")
    technical = api.open_task(iid, "technical_review")
    claim_and_complete(reviewer, technical["id"], {"technical_opinion": "同意"})
    r = reviewer.post(f"/tasks/{technical['id']}/withdraw", json={"comment": "意见写错了"})
    assert r.status_code == 200, r.text
    assert api.open_elements(iid) == ["funding_review", "technical_review"]
    # the other branch arrives: the join still waits for the technical review taken back
    claim_and_complete(api.as_("sun.li", "finance_bureau"), api.open_task(iid, "funding_review")["id"])
    assert api.open_elements(iid) == ["technical_review"]
    again = api.open_task(iid, "technical_review")
    r = reviewer.post(f"/tasks/{again['id']}/complete", json={"variables": {"technical_opinion": "同意（更正）"}})
    assert r.status_code == 200, r.text
    assert api.open_elements(iid) == ["approve"]
    assert api.variables(iid)["technical_opinion"] == "同意（更正）"
    history(api, iid)


def test_sending_back_past_a_completed_branch_makes_the_join_wait_for_it_again(api: Api) -> None:
    iid = reviewed(api, "AT-SJ")
    api.complete(iid, "technical_review", {"technical_opinion": "同意"})
    funding = api.open_task(iid, "funding_review")
    r = api.as_("sun.li", "finance_bureau").post(f"/tasks/{funding['id']}/send-back",
                                                 json={"to_element_id": "prereview", "comment": "预审漏项"})
    assert r.status_code == 200, r.text
    assert api.open_elements(iid) == ["prereview"]
    api.complete(iid, "prereview", {})
    assert api.open_elements(iid) == ["funding_review", "technical_review"]
    api.complete(iid, "funding_review", {})
    # the technical review done before the send-back does not count for the new round
    assert api.open_elements(iid) == ["technical_review"]
    api.complete(iid, "technical_review", {})
    assert api.open_elements(iid) == ["approve"]
    history(api, iid)


@pytest.mark.parametrize("gateway", ["fork", "join"])
def test_starting_a_token_before_a_parallel_gateway_is_refused(api: Api, gateway: str) -> None:
    """The engine merges such a token with the ones already there: it would be reported as started and do
    nothing (or replace the open tasks of the branches)."""
    iid = reviewed(api, f"AT-G-{gateway}")
    before = api.instance(iid)
    r = api.admin.post(f"/process-instances/{iid}/modify", json={
        "instructions": [{"type": "start_before", "element_id": gateway}], "reason": "重新并行审查"})
    assert r.status_code == 422, r.text
    assert r.json()["element_id"] == gateway and "gateway" in r.json()["detail"]
    after = api.instance(iid)
    assert after["open_tasks"] == before["open_tasks"] and after["updated_at"] == before["updated_at"]
    assert "instance.modified" not in actions(api, iid)


def test_cancelling_a_waiting_join_token_takes_its_branch_back(api: Api) -> None:
    """A branch that reached the join and is cancelled no longer counts as arrived."""
    iid = reviewed(api, "AT-CJ")
    api.complete(iid, "technical_review", {})
    r = api.admin.post(f"/process-instances/{iid}/modify", json={
        "instructions": [{"type": "cancel", "element_id": "join"},
                         {"type": "start_before", "element_id": "technical_review"}],
        "reason": "技术审查需重做"})
    assert r.status_code == 200, r.text
    assert api.open_elements(iid) == ["funding_review", "technical_review"]
    api.complete(iid, "funding_review", {})
    assert api.open_elements(iid) == ["technical_review"]
    api.complete(iid, "technical_review", {})
    assert api.open_elements(iid) == ["approve"]
    history(api, iid)


# ---- variables -----------------------------------------------------------------------------------------------

def test_variables_are_set_after_one_branch_completed(api: Api) -> None:
    iid = reviewed(api, "AT-V1")
    api.complete(iid, "funding_review", {"funding_opinion": "不同意"})
    r = api.admin.post(f"/process-instances/{iid}/variables",
                       json={"variables": {"funding_opinion": "同意", "plan_ref": "A-2"}, "reason": "录入错误"})
    assert r.status_code == 200, r.text
    api.complete(iid, "technical_review", {})
    assert api.open_elements(iid) == ["approve"]
    variables = api.variables(iid)
    assert variables["funding_opinion"] == "同意" and variables["plan_ref"] == "A-2"
    history(api, iid)


# ---- multi-instance tasks ------------------------------------------------------------------------------------

EXPERT_REVIEW = '''<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="defs_experts" targetNamespace="http://govflow.example/bpmn">
  <bpmn:process id="experts" name="专家评审" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="declare" name="申报" camunda:candidateGroups="applicant">
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:userTask id="review" name="专家评审" camunda:candidateGroups="expert">
      <bpmn:extensionElements>
        <camunda:properties><camunda:property name="sendBackTo" value="declare" /></camunda:properties>
      </bpmn:extensionElements>
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:multiInstanceLoopCharacteristics camunda:collection="experts" camunda:elementVariable="expert" />
    </bpmn:userTask>
    <bpmn:userTask id="approve" name="审定" camunda:candidateGroups="leading_group">
      <bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f4</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="declare" />
    <bpmn:sequenceFlow id="f2" sourceRef="declare" targetRef="review" />
    <bpmn:sequenceFlow id="f3" sourceRef="review" targetRef="approve" />
    <bpmn:sequenceFlow id="f4" sourceRef="approve" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>'''.encode()


def test_an_expert_of_a_multi_instance_review_sends_the_project_back(api: Api) -> None:
    r = api.admin.post("/deployments", files=[("files", ("experts.bpmn", EXPERT_REVIEW))])
    assert r.status_code == 201, r.text  # sendBackTo on a multi-instance task names an earlier step
    iid = str(api.start("experts", {"experts": ["wu", "zheng", "feng"]}, business_key="AT-MI")["id"])
    api.complete(iid, "declare", {})
    reviews = api.instance(iid)["open_tasks"]
    assert [t["element_id"] for t in reviews] == ["review"] * 3
    expert = api.as_("wu", "expert")
    r = expert.post(f"/tasks/{reviews[0]['id']}/complete", json={"variables": {}})
    assert r.status_code == 200, r.text
    r = expert.post(f"/tasks/{reviews[1]['id']}/send-back", json={"to_element_id": "declare", "comment": "缺少测算"})
    assert r.status_code == 200, r.text
    assert api.open_elements(iid) == ["declare"]
    assert sorted(r.json()["cancelled_task_ids"]) == sorted([reviews[1]["id"], reviews[2]["id"]])
    # declared again: every expert reviews again, and the project goes on
    api.complete(iid, "declare", {})
    again = api.instance(iid)["open_tasks"]
    assert [t["element_id"] for t in again] == ["review"] * 3
    for t in again:
        r = expert.post(f"/tasks/{t['id']}/complete", json={"variables": {}})
        assert r.status_code == 200, r.text
    assert api.open_elements(iid) == ["approve"]
    history(api, iid)
