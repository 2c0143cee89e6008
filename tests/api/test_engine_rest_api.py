"""The /engine-rest subset over HTTP: definitions, the task query, tasks, instances, messages, history, errors
in Camunda's body, the same visibility as /api/v1, and the native comment endpoints."""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tests.support import Api

START = {"project_name": {"value": "一网通办", "type": "String"}, "budget_wan": {"value": 30, "type": "Double"}}


class Engine:
    """An httpx client of /engine-rest acting as a user (a token as the Basic password)."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def as_(self, user: str, *groups: str, admin: bool = False) -> httpx.Client:
        return httpx.Client(base_url=self.api.server.url + "/engine-rest", timeout=30,
                            auth=(user, self.api.token(user, groups, admin)))

    @property
    def admin(self) -> httpx.Client:
        return self.as_("admin", admin=True)

    def start(self, business_key: str, **variables: Any) -> dict[str, Any]:
        r = self.as_("oa", "applicant").post("/process-definition/key/review/start", json={
            "businessKey": business_key, "variables": {**START, **variables}})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def tasks(self, client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
        r = client.get("/task", params=params)
        assert r.status_code == 200, r.text
        return list(r.json())


@pytest.fixture
def engine(api: Api) -> Engine:
    return Engine(api)


def error(r: httpx.Response, status: int, type_: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == type_, body
    return str(body["message"])


def test_process_definitions_by_key_and_by_either_id(engine: Engine) -> None:
    client = engine.as_("oa", "applicant")
    review = client.get("/process-definition/key/review").json()
    assert review["key"] == "review" and review["version"] == 1 and review["resource"] == "review.bpmn"
    camunda_id = review["id"]
    assert camunda_id == f"review:1:{review['deploymentId']}"
    native = engine.api.admin.get("/process-definitions/review").json()
    for ident in (camunda_id, str(native["id"])):
        assert client.get(f"/process-definition/{ident}").json() == review
    xml = client.get(f"/process-definition/{camunda_id}/xml").json()
    assert xml["id"] == camunda_id and xml["bpmn20Xml"].startswith("<?xml")
    assert client.get("/process-definition/key/review/xml").json() == xml
    listed = client.get("/process-definition", params={"latestVersion": "true", "sortBy": "key",
                                                       "sortOrder": "desc"}).json()
    assert [d["key"] for d in listed] == sorted((d["key"] for d in listed), reverse=True) and review in listed
    assert client.get("/process-definition/count", params={"key": "review"}).json() == {"count": 1}
    assert client.get("/process-definition/review:1:").status_code == 404  # the deployment part is empty
    # a count takes the filters of its list (each was ignored: the count of every definition)
    for params in ({"processDefinitionId": camunda_id}, {"processDefinitionId": "nope:1:1"}, {"version": 99},
                   {"version": 1, "key": "review"}, {"name": review["name"]}, {"deploymentId": "0"}):
        listed = client.get("/process-definition", params=params).json()
        assert client.get("/process-definition/count", params=params).json() == {"count": len(listed)}, params
    form = client.get("/process-definition/key/review/form-variables").json()
    assert form["urgent"] == {"type": "Boolean", "value": False, "valueInfo": {}}
    assert form["budget_wan"]["type"] == "Double" and form["project_name"]["type"] == "String"
    for missing in ("/process-definition/key/nope", f"/process-definition/{camunda_id}9",
                    f"/process-definition/review:1:{review['deploymentId']}x", "/process-definition/review"):
        error(client.get(missing), 404, "InvalidRequestException")
    error(client.get("/process-definition", params={"sortBy": "key"}), 400, "InvalidRequestException")


def test_start_by_key_returns_the_instance_and_checks_the_start_form(engine: Engine) -> None:
    client = engine.as_("oa", "applicant")
    r = client.post("/process-definition/key/review/start", json={
        "businessKey": "ER-1", "variables": START, "withVariablesInReturn": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["businessKey"] == "ER-1" and body["definitionId"].startswith("review:1:")
    assert body["variables"]["budget_wan"] == {"type": "Double", "value": 30.0, "valueInfo": {}}
    assert body["variables"]["urgent"] == {"type": "Boolean", "value": False, "valueInfo": {}}
    # the same rules as /api/v1: one running instance per business key, start-form validation
    assert error(client.post("/process-definition/key/review/start", json={"businessKey": "ER-1", "variables": START}),
                 409, "ProcessEngineException")
    message = error(client.post("/process-definition/key/review/start", json={
        "businessKey": "ER-2", "variables": {**START, "extra": {"value": 1, "type": "Long"}}}),
        400, "InvalidRequestException")
    assert "extra: is not a field of this form" in message
    error(client.post("/process-definition/key/review/start", json={"variables": {"budget_wan": 5}}),
          400, "InvalidRequestException")
    error(client.post("/process-definition/key/review/start", json={"startInstructions": [{"type": "x"}]}),
          400, "InvalidRequestException")
    error(client.post("/process-definition/key/review/start", content=b"{not json",
                      headers={"content-type": "application/json"}), 400, "InvalidRequestException")


def test_errors_before_the_route_and_offsets_past_64_bits_have_camundas_body(engine: Engine) -> None:
    """A body over its limit (413), a URL with NUL and an offset no database takes were answered with govflow's
    problem documents (the last a 422 that read differently on each database); a Camunda client reads
    `type` and `message`."""
    admin = engine.admin
    message = error(admin.post("/message", content=b'{"messageName": "' + b"x" * 1_100_000 + b'"}',
                               headers={"Content-Type": "application/json"}), 413, "RestException")
    assert "at most 1048576 bytes" in message
    assert "NUL" in error(admin.get("/process-instance/a%00b"), 400, "InvalidRequestException")
    for path in ("/task", "/process-instance", "/history/process-instance"):
        error(admin.get(path, params={"firstResult": 2**63}), 400, "InvalidRequestException")
        assert admin.get(path, params={"firstResult": 2**63 - 1}).json() == []


def test_a_lost_race_is_answered_the_same_on_both_databases(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Which check stops the later of two requests depends on the database: on SQLite it waits for the writer and
    reads the winner's change, on PostgreSQL its conditional UPDATE finds the row changed. A claim lost either way
    is Camunda's TaskAlreadyClaimedException naming the holder (PostgreSQL's was a ProcessEngineException); a step
    whose instance another request changed meanwhile is an OptimisticLockingException, code 1: retry."""
    from service.services import tasks as task_service
    from service.services.context import AppContext

    api = engine.api
    iid = api.start("parallel_review", {"project_name": "城市大脑"}, business_key="RACE-1")["id"]
    technical = api.open_task(iid, "technical_review")["id"]
    funding = api.open_task(iid, "funding_review")["id"]

    # the claim read the task unclaimed; wang claimed it before its UPDATE
    load = task_service._load

    def stale(session: Any, principal: Any, task_id: str, *rest: Any) -> Any:
        columns = {**load(session, principal, task_id, *rest)._mapping, "assignee": None, "status": "open"}
        return SimpleNamespace(_mapping=columns, **columns)  # a row as it was read

    assert api.as_("wang", "data_bureau").post(f"/tasks/{technical}/claim").status_code == 200
    monkeypatch.setattr(task_service, "_load", stale)
    message = error(engine.as_("li", "data_bureau").post(f"/task/{technical}/claim", json={"userId": "li"}), 409,
                    "TaskAlreadyClaimedException")
    assert "wang" in message
    # wang's own claim got there first (a double click): his second one is no conflict, as it is when read after
    r = api.as_("wang", "data_bureau").post(f"/tasks/{technical}/claim")
    assert r.status_code == 200 and r.json()["assignee"] == "wang", r.text
    assert engine.as_("wang", "data_bureau").post(f"/task/{technical}/claim", json={"userId": "wang"}).status_code == 204
    # the same read, and the task completed meanwhile: as a claim of a completed task is answered
    monkeypatch.undo()
    assert api.as_("wang", "data_bureau").post(f"/tasks/{technical}/complete",
                                               json={"variables": {"decision": "revise"}}).status_code == 200
    monkeypatch.setattr(task_service, "_load", stale)
    message = error(engine.as_("li", "data_bureau").post(f"/task/{technical}/claim", json={"userId": "li"}), 409,
                    "ProcessEngineException")
    assert "completed" in message
    monkeypatch.undo()
    iid = api.start("parallel_review", {"project_name": "城市大脑"}, business_key="RACE-2")["id"]
    technical = api.open_task(iid, "technical_review")["id"]
    funding = api.open_task(iid, "funding_review")["id"]

    # while the engine works on one review, the other is completed and changes the instance first
    run_engine = AppContext.run_engine
    interleaved: list[int] = []

    def meanwhile(self: AppContext, op: str, *args: Any, **kwargs: Any) -> Any:
        if op == "complete" and kwargs.get("task_id") == technical and not interleaved:
            interleaved.append(api.as_("zhao", "finance_bureau").post(
                f"/tasks/{funding}/complete", json={"variables": {"decision": "pass"}}).status_code)
        return run_engine(self, op, *args, **kwargs)

    monkeypatch.setattr(AppContext, "run_engine", meanwhile)
    r = engine.as_("wang", "data_bureau").post(f"/task/{technical}/complete",
                                              json={"variables": {"decision": {"value": "pass"}}})
    assert interleaved == [200]
    assert error(r, 409, "OptimisticLockingException") and r.json()["code"] == 1
    monkeypatch.undo()
    # nothing of it was written: the same request again goes through
    assert engine.as_("wang", "data_bureau").post(f"/task/{technical}/complete",
                                                 json={"variables": {"decision": {"value": "pass"}}}).status_code == 204


def test_task_query_filters_sorting_paging_and_count(engine: Engine) -> None:
    first = engine.start("Q-1")
    engine.api.clock.advance(timedelta(minutes=5))
    second = engine.start("Q-2")
    engine.api.clock.advance(timedelta(minutes=5))
    third = engine.start("Q-3")
    li = engine.as_("li", "data_bureau")
    inbox = engine.tasks(li, candidateGroup="data_bureau")
    assert [t["processInstanceId"] for t in inbox] == [first["id"], second["id"], third["id"]]
    task = inbox[0]
    assert task["taskDefinitionKey"] == "review_task" and task["name"] == "数据局审核"
    assert task["created"] == "2026-03-02T09:00:00.000+0800" and task["due"] == "2026-03-12T09:00:00.000+0800"
    assert task["processDefinitionId"] == first["definitionId"] and task["assignee"] is None
    desc = engine.tasks(li, candidateGroup="data_bureau", sortBy="created", sortOrder="desc", firstResult=1,
                        maxResults=1)
    assert [t["processInstanceId"] for t in desc] == [second["id"]]
    assert [t["id"] for t in engine.tasks(li, processInstanceBusinessKey="Q-3")] == [
        t["id"] for t in inbox if t["processInstanceId"] == third["id"]]
    assert engine.tasks(li, taskDefinitionKey="approve_task") == []
    assert len(engine.tasks(li, dueBefore="2026-03-12T09:07:00.000+0800")) == 2
    assert len(engine.tasks(li, dueAfter="2026-03-12T01:07:00Z")) == 1
    assert li.get("/task/count", params={"candidateGroup": "data_bureau"}).json() == {"count": 3}
    # POST: the same query as a body; a claimed task leaves the candidate query unless asked for
    assert li.post(f"/task/{task['id']}/claim", json={"userId": "li"}).status_code == 204
    body = li.post("/task", json={"candidateGroups": ["data_bureau", "finance_bureau"]}).json()
    assert task["id"] not in [t["id"] for t in body] and len(body) == 2
    assert len(li.post("/task", json={"candidateGroups": ["data_bureau"], "includeAssignedTasks": True}).json()) == 3
    assert li.post("/task/count", json={"assignee": "li"}).json() == {"count": 1}
    assert [t["id"] for t in engine.tasks(li, candidateUser="li", includeAssignedTasks="true")][0] == task["id"]
    sorted_by_body = li.post("/task", params={"maxResults": 2}, json={
        "candidateGroup": "data_bureau", "includeAssignedTasks": True,
        "sorting": [{"sortBy": "created", "sortOrder": "desc"}]}).json()
    assert [t["processInstanceId"] for t in sorted_by_body] == [third["id"], second["id"]]
    # the same visibility as /api/v1: another department sees none of them
    assert engine.tasks(engine.as_("zhao", "finance_bureau")) == []
    assert engine.tasks(engine.as_("zhao", "finance_bureau"), candidateGroup="data_bureau") == []
    # unsupported or malformed filters are refused, not ignored
    assert "nameLike" in error(li.get("/task", params={"nameLike": "%审核%"}), 400, "InvalidRequestException")
    assert "dueBefore" in error(li.get("/task", params={"dueBefore": "tomorrow"}), 400, "InvalidRequestException")
    error(li.get("/task", params={"sortBy": "created", "sortOrder": "sideways"}), 400, "InvalidRequestException")
    error(li.get("/task", params={"maxResults": "-1"}), 400, "InvalidRequestException")
    # the candidate and tenant filters a client sends with a value are refused too (they were ignored), with their
    # neutral value they pass (pycamunda sends them so)
    for name, value in (("withoutCandidateGroups", "true"), ("withCandidateUsers", "true"), ("tenantIdIn", "t1")):
        assert name in error(li.get("/task", params={name: value}), 400, "InvalidRequestException")
        assert li.get("/task", params={name: "false" if value == "true" else ""}).status_code == 200
    assert "tenantIdIn" in error(li.post("/task", json={"tenantIdIn": ["t1"]}), 400, "InvalidRequestException")
    assert li.get("/task", params={"withoutTenantId": "true"}).status_code == 200  # no task has a tenant
    # candidateGroups once per group, as pycamunda sends a list, is the list; another filter twice is refused
    both = li.get("/task", params=[("candidateGroups", "data_bureau"), ("candidateGroups", "finance_bureau"),
                                   ("includeAssignedTasks", "true")]).json()
    assert len(both) == 3
    assert "taskId" in error(li.get("/task", params=[("taskId", task["id"]), ("taskId", "x")]), 400,
                             "InvalidRequestException")


def test_task_detail_forms_identity_links_claim_and_complete(engine: Engine) -> None:
    inst = engine.start("T-1")
    li = engine.as_("li", "data_bureau")
    [task] = engine.tasks(li, processInstanceId=inst["id"])
    detail = li.get(f"/task/{task['id']}").json()
    assert detail["description"] == "第十三条：审核申报材料。" and detail["executionId"] == inst["id"]
    form = li.get(f"/task/{task['id']}/form-variables").json()
    assert form["decision"]["type"] == "String" and form["score"]["type"] == "Long"
    assert form["review_date"] == {"type": "Date", "value": None, "valueInfo": {}}
    assert li.get(f"/task/{task['id']}/identity-links").json() == [
        {"userId": None, "groupId": "data_bureau", "type": "candidate"}]
    # claiming is for oneself; someone else's claim is a conflict answered 409
    error(li.post(f"/task/{task['id']}/claim", json={"userId": "wang"}), 400, "InvalidRequestException")
    assert li.post(f"/task/{task['id']}/claim", json={"userId": "li"}).status_code == 204
    assert li.get(f"/task/{task['id']}/identity-links", params={"type": "assignee"}).json() == [
        {"userId": "li", "groupId": None, "type": "assignee"}]
    wang = engine.as_("wang", "data_bureau")
    assert "claimed by li" in error(wang.post(f"/task/{task['id']}/claim", json={"userId": "wang"}), 409,
                                    "TaskAlreadyClaimedException")
    error(wang.post(f"/task/{task['id']}/complete", json={}), 409, "TaskAlreadyClaimedException")
    assert li.post(f"/task/{task['id']}/unclaim").status_code == 204
    # another department may not see or act on it
    zhao = engine.as_("zhao", "finance_bureau")
    error(zhao.get(f"/task/{task['id']}"), 403, "AuthorizationException")
    error(zhao.post(f"/task/{task['id']}/claim", json={"userId": "zhao"}), 403, "AuthorizationException")
    # the form decides: a missing or wrong field names itself
    message = error(wang.post(f"/task/{task['id']}/submit-form", json={"variables": {
        "score": {"value": 101, "type": "Long"}}}), 400, "InvalidRequestException")
    assert "decision: is required" in message and "score: must be at most 100" in message
    r = wang.post(f"/task/{task['id']}/complete", json={"withVariablesInReturn": True, "variables": {
        "decision": {"value": "pass", "type": "String"}, "score": {"value": "88", "type": "Integer"},
        "review_date": {"value": "2026-03-05T00:00:00.000+0800", "type": "Date"}}})
    assert r.status_code == 200, r.text
    assert r.json()["score"] == {"type": "Long", "value": 88, "valueInfo": {}}
    assert r.json()["review_date"] == {"type": "String", "value": "2026-03-05", "valueInfo": {}}
    record = engine.api.admin.get(f"/tasks/{task['id']}").json()
    assert record["completed_by"] == "wang" and record["submitted"]["review_date"] == "2026-03-05"
    error(wang.get(f"/task/{task['id']}"), 404, "InvalidRequestException")
    error(li.get("/task/00000000-0000-0000-0000-000000000000"), 404, "InvalidRequestException")


def test_an_instance_count_takes_the_filters_of_its_list(engine: Engine) -> None:
    """The ids and the definition id were ignored by the count: every running instance was counted."""
    inst, other = engine.start("P-1"), engine.start("P-2")
    oa = engine.as_("oa", "applicant")
    for params in ({"processInstanceIds": inst["id"]}, {"processInstanceIds": f"{inst['id']},{other['id']}"},
                   {"processDefinitionId": inst["definitionId"]},
                   {"processDefinitionId": inst["definitionId"], "businessKey": "P-2"}):
        listed = oa.get("/process-instance", params=params).json()
        assert oa.get("/process-instance/count", params=params).json() == {"count": len(listed)}, params
    assert oa.get("/process-instance/count", params={"processInstanceIds": inst["id"]}).json() == {"count": 1}
    r = oa.get("/process-instance/count", params={"processDefinitionId": "nope:1:1"})
    assert r.status_code == oa.get("/process-instance", params={"processDefinitionId": "nope:1:1"}).status_code


def test_process_instances_variables_where_they_stand_and_delete(engine: Engine) -> None:
    inst = engine.start("P-1")
    admin, oa = engine.admin, engine.as_("oa", "applicant")
    assert [i["id"] for i in oa.get("/process-instance", params={"businessKey": "P-1"}).json()] == [inst["id"]]
    assert oa.get("/process-instance", params={"processDefinitionKey": "review", "active": "true"}).json()[0][
        "definitionId"] == inst["definitionId"]
    assert oa.get("/process-instance", params={"suspended": "true"}).json() == []
    assert oa.get("/process-instance/count", params={"businessKey": "P-1"}).json() == {"count": 1}
    assert engine.as_("zhao", "finance_bureau").get("/process-instance").json() == []
    one = oa.get(f"/process-instance/{inst['id']}").json()
    assert one == {**inst, "links": one["links"]} and one["ended"] is False
    variables = oa.get(f"/process-instance/{inst['id']}/variables").json()
    assert variables["project_name"] == {"type": "String", "value": "一网通办", "valueInfo": {}}
    tree = oa.get(f"/process-instance/{inst['id']}/activity-instances").json()
    assert tree["id"] == inst["id"] and tree["activityType"] == "processDefinition"
    assert [(a["activityId"], a["activityType"]) for a in tree["childActivityInstances"]] == [
        ("review_task", "userTask")]
    # cancelling is for administrators; the instance then leaves the runtime API and shows in the history
    error(oa.delete(f"/process-instance/{inst['id']}"), 403, "AuthorizationException")
    assert admin.delete(f"/process-instance/{inst['id']}").status_code == 204
    error(admin.delete(f"/process-instance/{inst['id']}"), 404, "InvalidRequestException")
    assert admin.delete(f"/process-instance/{inst['id']}", params={"failIfNotExists": "false"}).status_code == 204
    error(oa.get(f"/process-instance/{inst['id']}"), 404, "InvalidRequestException")
    [historic] = oa.get("/history/process-instance", params={"processInstanceBusinessKey": "P-1"}).json()
    assert historic["state"] == "EXTERNALLY_TERMINATED" and historic["deleteReason"].startswith("deleted through")
    tasks = oa.get("/history/task", params={"processInstanceId": inst["id"]}).json()
    assert [(t["taskDefinitionKey"], t["deleteReason"]) for t in tasks] == [("review_task", "deleted")]
    assert oa.get("/history/process-instance", params={"unfinished": "true"}).json() == []
    error(oa.get("/history/activity-instance"), 400, "InvalidRequestException")
    error(oa.get("/process-instance/not-a-uuid"), 404, "InvalidRequestException")


def test_messages_the_camunda_way(engine: Engine) -> None:
    inst = engine.start("M-1", budget_wan={"value": 100, "type": "Double"})
    api = engine.api
    api.complete(inst["id"], "review_task", {"decision": "pass"})
    api.complete(inst["id"], "approve_task", {"approval": "pass"})
    key = api.admin.post("/api-keys", json={"name": "oa-review", "groups": ["applicant"], "processes": ["review"]})
    oa = httpx.Client(base_url=api.server.url + "/engine-rest", headers={"X-API-Key": key.json()["key"]},
                      timeout=30)
    assert engine.as_("oa", "applicant").post("/message", json={  # a department does not report facts itself
        "messageName": "contract_signed", "businessKey": "M-1"}).status_code == 400
    tree = oa.get(f"/process-instance/{inst['id']}/activity-instances").json()
    assert ("intermediateMessageCatch", "contract_signed") in [
        (a["activityType"], a["name"]) for a in tree["childActivityInstances"]]
    for unsupported in ({"all": True}, {"tenantId": "t"}, {"correlationKeys": {"a": {"value": 1}}},
                        {"processVariablesLocal": {"a": {"value": 1}}}):
        error(oa.post("/message", json={"messageName": "contract_signed", "businessKey": "M-1", **unsupported}),
              400, "InvalidRequestException")
    error(oa.post("/message", json={"messageName": "contract_signed"}), 400, "InvalidRequestException")
    error(oa.post("/message", json={"messageName": "contract_signed", "businessKey": "M-1",
                                    "processVariables": {"signed_on": {"value": "someday", "type": "Date"}}}),
          400, "InvalidRequestException")
    assert "Cannot correlate message 'nobody_waits'" in error(
        oa.post("/message", json={"messageName": "nobody_waits", "businessKey": "M-1"}), 400, "RestException")
    r = oa.post("/message", json={"messageName": "contract_signed", "processInstanceId": inst["id"],
                                  "processVariables": {"signed_on": {"value": "2026-03-20", "type": "Date"}}})
    assert r.status_code == 204 and r.content == b""
    assert api.open_elements(inst["id"]) == ["file_contract"]
    assert api.variables(inst["id"])["signed_on"] == "2026-03-20"


def test_comments_native_and_camunda(engine: Engine) -> None:
    api = engine.api
    inst = engine.start("C-1")
    li = api.as_("li", "data_bureau")
    task_id = api.open_task(inst["id"], "review_task")["id"]
    r = li.post(f"/tasks/{task_id}/comments", json={"message": "  请补充可研报告  "})
    assert r.status_code == 201 and r.json()["message"] == "请补充可研报告" and r.json()["kind"] == "comment"
    assert li.post(f"/tasks/{task_id}/comments", json={"message": ""}).status_code == 422
    assert li.post(f"/tasks/{task_id}/comments", json={"message": "   "}).status_code == 422
    assert api.as_("zhao", "finance_bureau").post(f"/tasks/{task_id}/comments", json={"message": "x"}).status_code == 403
    api.clock.advance(timedelta(minutes=1))
    assert li.post(f"/tasks/{task_id}/complete", json={"variables": {"decision": "pass"},
                                                       "comment": "同意"}).status_code == 200
    api.clock.advance(timedelta(minutes=1))
    # a comment after completion is still the task's
    engine_li = engine.as_("li", "data_bureau")
    created = engine_li.post(f"/task/{task_id}/comment/create", json={"message": "已电话告知申报单位"})
    assert created.status_code == 200 and created.json()["taskId"] == task_id
    assert created.json()["processInstanceId"] == inst["id"] and created.json()["time"] == "2026-03-02T09:02:00.000+0800"
    native = li.get(f"/tasks/{task_id}/comments").json()
    assert [(c["kind"], c["message"], c["user_id"]) for c in native] == [
        ("comment", "请补充可研报告", "li"), ("completion", "同意", "li"), ("comment", "已电话告知申报单位", "li")]
    listed = engine_li.get(f"/task/{task_id}/comment").json()
    assert [c["message"] for c in listed] == ["请补充可研报告", "同意", "已电话告知申报单位"]
    assert engine_li.get(f"/task/{task_id}/comment/{listed[1]['id']}").json() == listed[1]
    error(engine_li.get(f"/task/{task_id}/comment/999999"), 404, "InvalidRequestException")
    error(engine_li.post(f"/task/{task_id}/comment/create", json={"message": "x" * 2001}), 400,
          "InvalidRequestException")
    # a message the audit trail cannot keep as text is refused, here and in /api/v1
    error(engine_li.post(f"/task/{task_id}/comment/create", json={"message": "a\u0000"}), 400,
          "InvalidRequestException")
    assert li.post(f"/tasks/{task_id}/comments", json={"message": "a\u0000b"}).status_code == 422
    # a comment named with another instance is refused, and not kept
    other = engine.start("C-2")
    error(engine_li.post(f"/task/{task_id}/comment/create", json={"message": "WRONG", "processInstanceId": other["id"]}),
          400, "InvalidRequestException")
    assert "WRONG" not in [c["message"] for c in engine_li.get(f"/task/{task_id}/comment").json()]
    events = api.admin.get(f"/process-instances/{inst['id']}/history", params={"verify": "true"}).json()
    assert events["verified"] is True
    assert [e["actor"] for e in events["events"] if e["action"] == "task.commented"] == ["li", "li"]


def test_every_endpoint_requires_authentication_and_is_documented(engine: Engine) -> None:
    anonymous = httpx.Client(base_url=engine.api.server.url + "/engine-rest", timeout=30)
    for path in ("/version", "/deployment", "/process-definition", "/task", "/process-instance",
                 "/history/process-instance"):
        error(anonymous.get(path), 401, "AuthenticationException")
    error(anonymous.post("/message", json={"messageName": "x", "businessKey": "y"}), 401, "AuthenticationException")
    assert "not part of govflow's Camunda 7 REST subset" in error(engine.admin.get("/job"), 404, "RestException")
    error(engine.admin.put("/task/x/localVariables/y", json={}), 404, "RestException")
    error(anonymous.get("/job"), 401, "AuthenticationException")
    spec = httpx.get(engine.api.server.url + "/openapi.json").json()
    engine_paths = {p: ops for p, ops in spec["paths"].items() if p.startswith("/engine-rest/")}
    assert {"/engine-rest/deployment/create", "/engine-rest/task/{task_id}/complete", "/engine-rest/message",
            "/engine-rest/process-definition/{definition_id}/start"} <= set(engine_paths)
    tags = {t for ops in engine_paths.values() for op in ops.values() for t in op["tags"]}
    assert tags == {"engine-rest (Camunda 7 REST subset)"}
    assert "/api/v1/tasks/{task_id}/comments" in spec["paths"]


def test_start_by_id_starts_that_version_even_when_a_newer_one_exists(engine: Engine) -> None:
    from tests.support import FIXTURES

    v1 = engine.admin.get("/process-definition/key/review").json()
    changed = (FIXTURES / "review.bpmn").read_text().replace("数据局审核", "数据局初审", 1).encode()
    r = engine.admin.post("/deployment/create", data={"deployment-name": "review"}, files=[
        ("review.bpmn", ("review.bpmn", changed, "text/xml")),
        ("review.dmn", ("review.dmn", (FIXTURES / "review.dmn").read_bytes(), "application/octet-stream"))])
    assert r.status_code == 200, r.text
    v2 = next(iter(r.json()["deployedProcessDefinitions"].values()))
    assert v2["version"] == 2 and v2["id"] != v1["id"]
    oa = engine.as_("oa", "applicant")
    assert [d["version"] for d in oa.get("/process-definition", params={"key": "review"}).json()] == [1, 2]
    old = oa.post(f"/process-definition/{v1['id']}/start", json={"businessKey": "OLD", "variables": START}).json()
    new = oa.post("/process-definition/key/review/start", json={"businessKey": "NEW", "variables": START}).json()
    assert (old["definitionId"], new["definitionId"]) == (v1["id"], v2["id"])
    assert engine.api.instance(old["id"])["definition_version"] == 1
    names = {t["processInstanceId"]: t["name"] for t in engine.tasks(engine.admin)}
    assert (names[old["id"]], names[new["id"]]) == ("数据局审核", "数据局初审")


def test_instance_and_history_paging(engine: Engine) -> None:
    started = []
    for n in range(3):
        started.append(engine.start(f"PG-{n}")["id"])
        engine.api.clock.advance(timedelta(minutes=1))
    admin = engine.admin
    newest_first = list(reversed(started))
    page = admin.get("/process-instance", params={"firstResult": 1, "maxResults": 1}).json()
    assert [i["id"] for i in page] == newest_first[1:2]
    assert admin.get("/process-instance/count").json() == {"count": 3}
    assert admin.delete(f"/process-instance/{started[0]}").status_code == 204
    assert admin.get("/process-instance/count").json() == {"count": 2}
    history = admin.get("/history/process-instance", params={"firstResult": 1, "maxResults": 2}).json()
    assert [h["id"] for h in history] == newest_first[1:]
    oldest_first = admin.get("/history/process-instance", params={"sortBy": "startTime", "sortOrder": "asc"}).json()
    assert [h["id"] for h in oldest_first] == started
    assert [h["id"] for h in admin.get("/history/process-instance", params={"finished": "true"}).json()] == started[:1]
    unfinished = admin.get("/history/process-instance", params={"unfinished": "true"}).json()
    assert [h["id"] for h in unfinished] == newest_first[:2] and {h["state"] for h in unfinished} == {"ACTIVE"}
    assert admin.get("/history/process-instance", params={"completed": "true"}).json() == []


def test_the_task_id_filter_is_part_of_the_query_not_of_its_page(engine: Engine) -> None:
    """taskId narrows the query before paging: the third task, asked for with maxResults=1, is found, and a page
    after it is empty (it was filtered out of the first page of every task, and counted among the first 1000)."""
    for i in range(3):
        engine.start(f"T-{i}")
        engine.api.clock.advance(timedelta(minutes=1))
    li = engine.as_("li", "data_bureau")
    third = engine.tasks(li, candidateGroup="data_bureau")[2]["id"]
    assert [t["id"] for t in engine.tasks(li, taskId=third, maxResults=1)] == [third]
    assert engine.tasks(li, taskId=third, firstResult=1) == []
    assert [t["id"] for t in li.post("/task", params={"maxResults": 1}, json={"taskId": third}).json()] == [third]
    assert li.get("/task/count", params={"taskId": third}).json() == {"count": 1}
    assert li.post("/task/count", json={"taskId": third}).json() == {"count": 1}
    # another department does not see it by its id either
    assert engine.tasks(engine.as_("zhao", "finance_bureau"), taskId=third) == []
    assert engine.as_("zhao", "finance_bureau").get("/task/count", params={"taskId": third}).json() == {"count": 0}
