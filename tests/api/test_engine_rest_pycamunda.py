"""A lifecycle from start to end through /engine-rest only, driven by the unmodified Camunda 7 client pycamunda
as an OA system and the reviewers would: typed variables, claim and complete, messages, comments, history."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pycamunda
import pycamunda.message
import pycamunda.processdef
import pycamunda.processinst
import pycamunda.task
import pytest
import requests
from requests.auth import HTTPBasicAuth

from tests.support import Api

PROCESS_KEY = "yulin"


class Camunda:
    """pycamunda requests sent as a user (a token as the Basic password) or as the OA system (its API key)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.url = api.server.url + "/engine-rest"
        # the OA system: its key is granted the process it integrates with (it reports the contract, the
        # completion...), as an OA system's key is
        r = api.admin.post("/api-keys", json={"name": "oa-system", "groups": ["applicant"], "processes": ["yulin"]})
        assert r.status_code == 201, r.text
        self.oa_key = r.json()["key"]

    def as_oa(self, request: Any) -> Any:
        request.auth = HTTPBasicAuth("oa-system", self.oa_key)
        return request()

    def as_user(self, request: Any, user: str, *groups: str, admin: bool = False) -> Any:
        request.auth = HTTPBasicAuth(user, self.api.token(user, groups, admin))
        return request()

    def get(self, path: str, user: str = "admin", **params: Any) -> Any:
        r = requests.get(self.url + path, params=params, timeout=30,
                         auth=HTTPBasicAuth(user, self.api.token(user, (), user == "admin")))
        assert r.status_code == 200, r.text
        return r.json()

    def task(self, instance_id: str, element_id: str) -> pycamunda.task.Task:
        found = self.as_user(pycamunda.task.GetList(self.url, process_instance_id=instance_id,
                                                    task_definition_key=element_id), "admin", admin=True)
        assert len(found) == 1, (element_id, [t.task_definition_key for t in found])
        return found[0]

    def complete(self, instance_id: str, element_id: str, variables: dict[str, tuple[Any, str]],
                 with_variables: bool = False) -> Any:
        """As a member of the task's first candidate group: find it in the group's inbox, claim, complete."""
        self.api.clock.advance(timedelta(hours=1))  # each step at its own time, as the history shows them
        task = self.task(instance_id, element_id)
        links = self.as_user(pycamunda.task.IdentityLinksGetList(self.url, task_id=task.id_), "admin", admin=True)
        group = next(link.group_id for link in links if link.group_id)
        user = f"{group}_user"
        inbox = self.as_user(pycamunda.task.GetList(self.url, candidate_group=group), user, group)
        assert task.id_ in [t.id_ for t in inbox]
        self.as_user(pycamunda.task.Claim(self.url, id_=task.id_, user_id=user), user, group)
        complete = pycamunda.task.Complete(self.url, id_=task.id_, with_variables_in_return=with_variables)
        for name, (value, type_) in variables.items():
            complete.add_variable(name, value, type_)
        return self.as_user(complete, user, group)

    def message(self, name: str, business_key: str, variables: dict[str, tuple[Any, str]] | None = None) -> Any:
        self.api.clock.advance(timedelta(hours=1))
        correlate = pycamunda.message.CorrelateSingle(self.url, message_name=name, business_key=business_key,
                                                      result_enabled=True)
        for var, (value, type_) in (variables or {}).items():
            correlate.add_process_variable(var, value, type_)
        return self.as_oa(correlate)


@pytest.fixture
def camunda(lifecycle_api: Api) -> Camunda:
    return Camunda(lifecycle_api)


DAY = "T00:00:00.000+0800"


def start(camunda: Camunda, business_key: str) -> Any:
    request = pycamunda.processdef.StartInstance(camunda.url, key=PROCESS_KEY, business_key=business_key)
    for name, value, type_ in (("project_name", "玉林市政务云平台", "String"), ("department", "市大数据发展局", "String"),
                               ("budget_wan", 150.25, "Double"), ("project_type", "software_dev", "String"),
                               ("project_class", "professional", "String"), ("in_plan", True, "Boolean"),
                               ("target_year", 2027, "Long")):
        request.add_variable(name, value, type_)
    return camunda.as_oa(request)


def test_filing_lifecycle_from_start_to_end_with_pycamunda(camunda: Camunda) -> None:
    instance = start(camunda, "YL-PC-1")
    assert instance.business_key == "YL-PC-1" and instance.definition_id.startswith("yulin:1:")
    iid = instance.id_
    assert [link.rel for link in instance.links] == ["self"]
    # what the OA system reads back: the process with its typed variables
    assert camunda.as_oa(pycamunda.processinst.Get(camunda.url, id_=iid)).suspended is False
    variables = camunda.as_oa(pycamunda.processinst.VariablesGetList(camunda.url, process_instance_id=iid))
    assert (variables["budget_wan"].type_, variables["budget_wan"].value) == ("Double", 150.25)
    assert (variables["target_year"].type_, variables["target_year"].value) == ("Long", 2027)
    assert (variables["in_plan"].type_, variables["in_plan"].value) == ("Boolean", True)
    assert (variables["track"].type_, variables["track"].value) == ("String", "filing")
    tree = camunda.as_oa(pycamunda.processinst.GetActivityInstance(camunda.url, id_=iid))
    user_tasks = [a.activity_id for a in tree.child_activity_instances if a.activity_type == "userTask"]
    assert user_tasks == ["submit_filing"] and tree.activity_type == "processDefinition"

    camunda.complete(iid, "submit_filing", {"filing_ref": ("BA-1", "String"),
                                            "security_requirements_met": (True, "Boolean"),
                                            "data_sharing_requirements_met": (True, "Boolean"),
                                            "ip_requirements_met": ("true", "Boolean")})
    camunda.complete(iid, "register_filing", {"decision": ("pass", "String")})

    # the contract is signed: the OA system reports it as a message with typed variables
    camunda.api.clock.set(datetime(2026, 6, 2, 2, 0, tzinfo=UTC))  # the OA system reports the day after signing
    [result] = camunda.message("contract_signed", "YL-PC-1", {"signed_on": ("2026-06-01" + DAY, "Date"),
                                                              "contract_amount_wan": (149.8, "Double")})
    assert result.result_type is pycamunda.message.ResultType.execution
    assert result.execution.process_instance_id == iid and result.execution.ended is False
    # a Date the Camunda way: midnight of the day, China time
    task = camunda.task(iid, "upload_contract")
    form = camunda.get(f"/task/{task.id_}/form-variables")
    assert form["ip_clause_included"] == {"type": "Boolean", "value": None, "valueInfo": {}}
    camunda.complete(iid, "upload_contract", {"ip_clause_included": (True, "Boolean")})
    camunda.api.clock.set(datetime(2027, 1, 16, 2, 0, tzinfo=UTC))
    camunda.message("construction_completed", "YL-PC-1", {"completed_on": ("2027-01-15" + DAY, "Date")})
    camunda.complete(iid, "upload_source_code", {"source_code_ref": ("YM-2", "String")})
    camunda.api.clock.set(datetime(2027, 2, 1, 2, 0, tzinfo=UTC))  # the acceptance is recorded on its day
    camunda.complete(iid, "self_acceptance", {"decision": ("pass", "String"),
                                              "acceptance_date": ("2027-02-01" + DAY, "Date")})
    camunda.complete(iid, "upload_acceptance_materials", {"acceptance_materials_ref": ("YS-1", "String")})
    returned = camunda.complete(iid, "acceptance_conclusion", {
        "acceptance_conclusion_ref": ("YSJL-1", "String"), "acceptance_conclusion_text": ("通过", "String")},
        with_variables=True)
    assert returned["acceptance_conclusion_text"].value == "通过"
    assert returned["contract_amount_wan"].type_ == "Double" and returned["contract_amount_wan"].value == 149.8

    # ended: gone from the runtime API, in the history as completed with every task
    with pytest.raises(pycamunda.NotFound):
        camunda.as_oa(pycamunda.processinst.Get(camunda.url, id_=iid))
    assert camunda.api.end_event(iid) == "end_completed"
    [historic] = camunda.get("/history/process-instance", processInstanceId=iid)
    assert historic["state"] == "COMPLETED" and historic["endTime"] and historic["businessKey"] == "YL-PC-1"
    tasks = camunda.get("/history/task", processInstanceId=iid)
    assert [t["taskDefinitionKey"] for t in tasks] == [
        "submit_filing", "register_filing", "upload_contract", "upload_source_code", "self_acceptance",
        "upload_acceptance_materials", "acceptance_conclusion"]
    assert all(t["deleteReason"] == "completed" and t["endTime"] for t in tasks)
    assert all(t["assignee"].endswith("_user") and t["processDefinitionId"] == instance.definition_id for t in tasks)
    activities = camunda.get("/history/activity-instance", processInstanceId=iid)
    assert [a["activityName"] for a in activities if a["activityType"] == "intermediateMessageCatch"] == [
        "contract_signed", "construction_completed"]
    assert [a["activityId"] for a in activities if a["activityType"] == "userTask"] == [t["taskDefinitionKey"]
                                                                                        for t in tasks]
    assert (activities[-1]["activityType"], activities[-1]["activityId"]) == ("noneEndEvent", "end_completed")


def test_claim_conflicts_comments_and_typed_errors_with_pycamunda(camunda: Camunda) -> None:
    iid = start(camunda, "YL-PC-2").id_
    task = camunda.task(iid, "submit_filing")
    url = camunda.url
    camunda.as_user(pycamunda.task.Claim(url, id_=task.id_, user_id="zhang"), "zhang", "applicant")
    # claimed by another: 409 with Camunda's body (Camunda itself answers 500 TaskAlreadyClaimedException)
    with pytest.raises(pycamunda.NoSuccess) as claimed:
        camunda.as_user(pycamunda.task.Claim(url, id_=task.id_, user_id="li"), "li", "applicant")
    assert '"TaskAlreadyClaimedException"' in str(claimed.value) and "zhang" in str(claimed.value)
    # the inbox of the group leaves claimed tasks out unless asked to include them
    assert camunda.as_user(pycamunda.task.GetList(url, candidate_group="applicant"), "li", "applicant") == ()
    both = camunda.as_user(pycamunda.task.GetList(url, candidate_group="applicant", include_assigned_tasks=True),
                           "li", "applicant")
    assert [t.assignee for t in both] == ["zhang"]
    # review opinions (审批意见) at any time, listed oldest first, also through /api/v1
    created = camunda.as_user(pycamunda.task.CommentCreate(url, task_id=task.id_, message="材料基本齐全"),
                              "zhang", "applicant")
    assert created.user_id == "zhang" and created.task_id == task.id_ and created.time is not None
    camunda.as_user(pycamunda.task.CommentCreate(url, task_id=task.id_, message="请补充等保测评报告"), "li", "applicant")
    listed = camunda.as_user(pycamunda.task.CommentGetList(url, task_id=task.id_), "zhang", "applicant")
    assert [(c.user_id, c.message) for c in listed] == [("zhang", "材料基本齐全"), ("li", "请补充等保测评报告")]
    native = camunda.api.as_("zhang", "applicant").get(f"/tasks/{task.id_}/comments").json()
    assert [c["message"] for c in native] == ["材料基本齐全", "请补充等保测评报告"]
    events = camunda.api.admin.get(f"/process-instances/{iid}/history").json()["events"]
    assert [e["data"] for e in events if e["action"] == "task.commented"] == [
        {"message": "材料基本齐全"}, {"message": "请补充等保测评报告"}]
    # a value that does not fit its type: 400 InvalidRequestException, nothing changed
    complete = pycamunda.task.Complete(url, id_=task.id_)
    complete.add_variable("security_requirements_met", "maybe", "Boolean")
    with pytest.raises(pycamunda.BadRequest) as bad:
        camunda.as_user(complete, "zhang", "applicant")
    assert "security_requirements_met" in str(bad.value)
    # completed: a second completion is a conflict, and the task is gone from the runtime API
    complete = pycamunda.task.Complete(url, id_=task.id_)
    for name, value in (("filing_ref", "BA-2"), ("security_requirements_met", True),
                        ("data_sharing_requirements_met", True), ("ip_requirements_met", True)):
        complete.add_variable(name, value, "String" if isinstance(value, str) else "Boolean")
    camunda.as_user(complete, "zhang", "applicant")
    with pytest.raises(pycamunda.NoSuccess) as again:
        camunda.as_user(complete, "zhang", "applicant")
    assert '"ProcessEngineException"' in str(again.value) and "already completed" in str(again.value)
    with pytest.raises(pycamunda.NotFound):
        camunda.as_user(pycamunda.task.Get(url, id_=task.id_), "zhang", "applicant")
    # a message nobody waits for: 400, as Camunda answers a correlation that matches nothing
    with pytest.raises(pycamunda.BadRequest) as unmatched:
        camunda.message("construction_completed", "YL-PC-2")
    assert "Cannot correlate message 'construction_completed'" in str(unmatched.value)
