"""Send back (驳回/退回) to an earlier step the diagram allows, and withdraw (撤回) a completed task while the next
steps are untouched: the allowed cases, each refusal, the records, the audit trail and the webhooks."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.operations_support import actions, delivered, history, service, task, webhooks
from tests.support import Api


@pytest.fixture
def api(tmp_path: Path, database_url: str | None) -> Iterator[Api]:
    with service(tmp_path, database_url) as a:
        yield a


def start(api: Api, bk: str) -> str:
    return str(api.start("returns", {"project_name": "城市大脑"}, business_key=bk)["id"])


def declared(api: Api, bk: str) -> str:
    iid = start(api, bk)
    api.complete(iid, "declare", {"plan_ref": "A-1"}, user="li.ming", group="applicant")
    return iid


def reviewed(api: Api, bk: str) -> str:
    iid = declared(api, bk)
    api.complete(iid, "prereview", {}, user="wang.fang", group="third_party")
    assert api.open_elements(iid) == ["funding_review", "technical_review"]
    return iid


def approving(api: Api, bk: str) -> str:
    iid = reviewed(api, bk)
    api.complete(iid, "funding_review", {"funding_opinion": "同意"})
    api.complete(iid, "technical_review", {"technical_opinion": "同意"})
    assert api.open_elements(iid) == ["approve"]
    return iid


def send_back(client: Any, task_id: str, to: str, comment: str = "材料不全，请补充") -> Any:
    return client.post(f"/tasks/{task_id}/send-back", json={"to_element_id": to, "comment": comment})


# ---- send back -------------------------------------------------------------------------------------------

def test_a_reviewer_sends_a_project_back_to_the_applicants_step(api: Api) -> None:
    iid = declared(api, "SB-1")
    pre = api.open_task(iid, "prereview")
    with webhooks(api, ["task.sent_back", "task.created"]) as receiver:
        r = send_back(api.as_("wang.fang", "third_party"), pre["id"], "declare", "缺少数据资源目录")
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["status"] == "running" and out["cancelled_task_ids"] == [pre["id"]]
        returned = out["task"]
        assert returned["element_id"] == "declare" and returned["id"] != pre["id"]
        assert [t["element_id"] for t in out["open_tasks"]] == ["declare"]

        # the returned task shows who sent it back and why; the task sent back says what replaced it
        detail = task(api, returned["id"])
        assert detail["sent_back"]["by"] == "wang.fang" and detail["sent_back"]["comment"] == "缺少数据资源目录"
        assert detail["sent_back"]["from_task_id"] == pre["id"]
        assert detail["sent_back"]["from_element_id"] == "prereview" and detail["sent_back"]["from_name"] == "预审"
        assert detail["withdrawn"] is None and detail["candidate_groups"] == ["applicant"]
        old = task(api, pre["id"])
        assert old["status"] == "cancelled"
        assert old["superseded"]["kind"] == "sent_back" and old["superseded"]["task_id"] == returned["id"]
        assert old["superseded"]["by"] == "wang.fang" and old["superseded"]["comment"] == "缺少数据资源目录"
        # the instance keeps what was declared
        assert api.variables(iid)["plan_ref"] == "A-1"

        events = delivered(api, receiver)
        sent = [e for e in events if e["type"] == "task.sent_back"]
        assert len(sent) == 1
        assert sent[0]["data"] == {
            "process_instance_id": iid, "process_key": "returns", "business_key": "SB-1", "task_id": pre["id"],
            "element_id": "prereview", "name": "预审", "to_element_id": "declare", "to_name": "编制申报材料",
            "new_task_id": returned["id"], "sent_back_by": "wang.fang", "comment": "缺少数据资源目录",
            "cancelled_task_ids": [pre["id"]]}
        assert [e["data"]["task_id"] for e in events if e["type"] == "task.created"][-1] == returned["id"]

    trail = history(api, iid)
    back = [e for e in trail if e["action"] == "task.sent_back"]
    assert len(back) == 1 and back[0]["actor"] == "wang.fang" and back[0]["task_id"] == pre["id"]
    assert back[0]["data"] == {"to_element_id": "declare", "comment": "缺少数据资源目录"}
    # the applicant revises and the project goes on
    api.complete(iid, "declare", {"plan_ref": "A-2"}, user="li.ming", group="applicant")
    assert api.open_elements(iid) == ["prereview"]
    assert api.variables(iid)["plan_ref"] == "A-2"
    history(api, iid)


def test_send_back_refusals(api: Api) -> None:
    iid = declared(api, "SB-2")
    pre = api.open_task(iid, "prereview")
    reviewer = api.as_("wang.fang", "third_party")
    before = api.instance(iid)
    # 403: not a candidate of the task (names who it is offered to)
    r = send_back(api.as_("li.ming", "applicant"), pre["id"], "declare")
    assert r.status_code == 403 and r.json()["candidate_groups"] == ["third_party"]
    # 422: a step the diagram does not mark as a send-back target of this task, or no step at all
    for target in ("funding_review", "nowhere", "prereview"):
        r = send_back(reviewer, pre["id"], target)
        assert r.status_code == 422, r.text
        assert r.json()["errors"] == {"to_element_id": "not a send-back target of prereview"}
        assert "declare" in r.json()["detail"] and r.json()["allowed"] == ["declare"]
    # 422: no reason given; a misplaced field
    assert send_back(reviewer, pre["id"], "declare", "").status_code == 422
    r = reviewer.post(f"/tasks/{pre['id']}/send-back", json={"to_element_id": "declare", "comment": "x",
                                                             "variables": {}})
    assert r.status_code == 422
    # 404: no such task
    assert send_back(reviewer, "no-such-task", "declare").status_code == 404
    # 409: claimed by someone else
    assert api.as_("zhao.lei", "third_party").post(f"/tasks/{pre['id']}/claim").status_code == 200
    r = send_back(reviewer, pre["id"], "declare")
    assert r.status_code == 409 and r.json()["assignee"] == "zhao.lei"
    # nothing changed by any refusal
    after = api.instance(iid)
    assert after["updated_at"] == before["updated_at"] and api.open_elements(iid) == ["prereview"]
    assert "task.sent_back" not in actions(api, iid)
    # 409: the task is no longer open
    api.complete(iid, "prereview", {}, user="zhao.lei", group="third_party")
    r = send_back(api.as_("zhao.lei", "third_party"), pre["id"], "declare")
    assert r.status_code == 409
    # a task whose diagram marks no send-back target
    tech = api.open_task(iid, "technical_review")
    r = send_back(api.as_("chen.jing", "data_bureau"), tech["id"], "declare")
    assert r.status_code == 422 and "no step" in r.json()["detail"]


def test_send_back_from_a_parallel_branch_cancels_the_other_branch_and_the_reviews_run_again(api: Api) -> None:
    iid = reviewed(api, "SB-3")
    funding = api.open_task(iid, "funding_review")
    technical = api.open_task(iid, "technical_review")
    r = send_back(api.as_("sun.li", "finance_bureau"), funding["id"], "prereview", "预算依据不足")
    assert r.status_code == 200, r.text
    assert sorted(r.json()["cancelled_task_ids"]) == sorted([funding["id"], technical["id"]])
    assert api.open_elements(iid) == ["prereview"]
    assert task(api, technical["id"])["status"] == "cancelled"
    api.complete(iid, "prereview", {}, user="wang.fang", group="third_party")
    assert api.open_elements(iid) == ["funding_review", "technical_review"]
    # and further back, to the declaration
    funding = api.open_task(iid, "funding_review")
    assert send_back(api.as_("sun.li", "finance_bureau"), funding["id"], "declare").status_code == 200
    assert api.open_elements(iid) == ["declare"]
    api.complete(iid, "declare", {"plan_ref": "A-3"}, user="li.ming", group="applicant")
    api.complete(iid, "prereview", {}, user="wang.fang", group="third_party")
    api.complete(iid, "funding_review", {"funding_opinion": "同意"})
    api.complete(iid, "technical_review", {"technical_opinion": "同意"})
    assert api.open_elements(iid) == ["approve"]  # the join saw both branches of this round
    history(api, iid)


def test_send_back_cancels_the_deadline_of_the_task_sent_back(api: Api) -> None:
    iid = approving(api, "SB-4")
    assert [w["element_id"] for w in api.waiting(iid)] == ["approve_overdue"]
    approve = api.open_task(iid, "approve")
    assert send_back(api.as_("liu.yang", "leading_group"), approve["id"], "declare").status_code == 200
    assert api.waiting(iid) == []
    api.advance(timedelta(days=11))
    assert api.open_elements(iid) == ["declare"]  # no overdue notice for a step that was sent back


def test_send_back_inside_a_sub_process_and_out_of_it(api: Api) -> None:
    iid = approving(api, "SB-5")
    api.complete(iid, "approve", {})
    api.message("contract_signed", "SB-5")
    api.complete(iid, "build", {})
    inspect = api.open_task(iid, "inspect")
    inspector = api.as_("chen.jing", "data_bureau")
    # within the sub-process
    r = send_back(inspector, inspect["id"], "build", "整改后再检查")
    assert r.status_code == 200, r.text
    assert api.open_elements(iid) == ["build"]
    api.complete(iid, "build", {})
    # out of it: the sub-process is cancelled and the declaration opens again
    inspect = api.open_task(iid, "inspect")
    r = send_back(inspector, inspect["id"], "declare", "重新申报")
    assert r.status_code == 200, r.text
    assert api.open_elements(iid) == ["declare"]
    api.complete(iid, "declare", {"plan_ref": "A-5"}, user="li.ming", group="applicant")
    api.complete(iid, "prereview", {}, user="wang.fang", group="third_party")
    api.complete(iid, "funding_review", {})
    api.complete(iid, "technical_review", {})
    api.complete(iid, "approve", {})
    api.message("contract_signed", "SB-5")
    api.complete(iid, "build", {})
    api.complete(iid, "inspect", {})
    api.complete(iid, "accept", {})
    assert api.end_event(iid) == "end_completed"
    assert actions(api, iid).count("task.sent_back") == 2


# ---- withdraw ----------------------------------------------------------------------------------------------

def test_the_completer_withdraws_a_task_while_the_next_step_is_unclaimed(api: Api) -> None:
    iid = declared(api, "WD-1")
    done = [t for t in api.admin.get(f"/process-instances/{iid}/tasks").json()["items"]
            if t["element_id"] == "declare"][0]
    pre = api.open_task(iid, "prereview")
    with webhooks(api, ["task.withdrawn"]) as receiver:
        r = api.as_("li.ming", "applicant").post(f"/tasks/{done['id']}/withdraw", json={"comment": "填错了编号"})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["cancelled_task_ids"] == [pre["id"]]
        reopened = out["task"]
        assert reopened["element_id"] == "declare" and reopened["assignee"] == "li.ming"
        assert [t["element_id"] for t in out["open_tasks"]] == ["declare"]
        detail = task(api, reopened["id"])
        assert detail["withdrawn"]["by"] == "li.ming" and detail["withdrawn"]["from_task_id"] == done["id"]
        assert detail["withdrawn"]["comment"] == "填错了编号" and detail["sent_back"] is None
        old = task(api, done["id"])
        assert old["status"] == "completed" and old["submitted"] == {"plan_ref": "A-1"}  # the record stays
        assert old["superseded"]["kind"] == "withdrawn" and old["superseded"]["task_id"] == reopened["id"]
        assert task(api, pre["id"])["status"] == "cancelled"
        [event] = [e for e in delivered(api, receiver) if e["data"]["business_key"] == "WD-1"]
        assert event["type"] == "task.withdrawn"
        assert event["data"]["task_id"] == done["id"] and event["data"]["new_task_id"] == reopened["id"]
        assert event["data"]["withdrawn_by"] == "li.ming" and event["data"]["cancelled_task_ids"] == [pre["id"]]
    trail = history(api, iid)
    names = [e["action"] for e in trail]
    assert names[-3:] == ["task.created", "task.withdrawn", "task.claimed"]
    assert [e for e in trail if e["action"] == "task.cancelled"][-1]["task_id"] == pre["id"]
    # completed again with the right value, the project goes on
    r = api.as_("li.ming", "applicant").post(f"/tasks/{reopened['id']}/complete",
                                              json={"variables": {"plan_ref": "A-1b"}})
    assert r.status_code == 200, r.text
    assert api.open_elements(iid) == ["prereview"] and api.variables(iid)["plan_ref"] == "A-1b"


def test_withdrawing_a_review_that_opened_two_parallel_reviews(api: Api) -> None:
    iid = reviewed(api, "WD-2")
    pre = [t for t in api.admin.get(f"/process-instances/{iid}/tasks").json()["items"]
           if t["element_id"] == "prereview"][0]
    r = api.as_("wang.fang", "third_party").post(f"/tasks/{pre['id']}/withdraw")
    assert r.status_code == 200, r.text
    assert len(r.json()["cancelled_task_ids"]) == 2 and api.open_elements(iid) == ["prereview"]
    api.complete(iid, "prereview", {}, user="wang.fang", group="third_party")
    assert api.open_elements(iid) == ["funding_review", "technical_review"]
    history(api, iid)


def test_withdraw_refusals(api: Api) -> None:
    iid = declared(api, "WD-3")
    done = [t for t in api.admin.get(f"/process-instances/{iid}/tasks").json()["items"]
            if t["element_id"] == "declare"][0]
    pre = api.open_task(iid, "prereview")
    # 403: only the one who completed it (another member of the group, an administrator)
    r = api.as_("zhang.san", "applicant").post(f"/tasks/{done['id']}/withdraw")
    assert r.status_code == 403 and "li.ming" in r.json()["detail"]
    assert api.admin.post(f"/tasks/{done['id']}/withdraw").status_code == 403
    # 403: nobody completed an open task, so nobody withdraws it
    assert api.as_("wang.fang", "third_party").post(f"/tasks/{pre['id']}/withdraw").status_code == 403
    # 409: the next step has been claimed, also when the claim was released again
    assert api.as_("wang.fang", "third_party").post(f"/tasks/{pre['id']}/claim").status_code == 200
    assert api.as_("wang.fang", "third_party").post(f"/tasks/{pre['id']}/unclaim").status_code == 200
    r = api.as_("li.ming", "applicant").post(f"/tasks/{done['id']}/withdraw")
    assert r.status_code == 409 and r.json()["assignee"] == "wang.fang" and "released" in r.json()["detail"]
    assert api.open_elements(iid) == ["prereview"] and api.open_task(iid, "prereview")["assignee"] is None
    assert api.as_("wang.fang", "third_party").post(f"/tasks/{pre['id']}/claim").status_code == 200
    r = api.as_("li.ming", "applicant").post(f"/tasks/{done['id']}/withdraw")
    assert r.status_code == 409 and r.json()["assignee"] == "wang.fang"
    assert api.open_elements(iid) == ["prereview"] and api.open_task(iid, "prereview")["assignee"] == "wang.fang"
    # 409: the next step has completed
    api.complete(iid, "prereview", {}, user="wang.fang", group="third_party")
    r = api.as_("li.ming", "applicant").post(f"/tasks/{done['id']}/withdraw")
    assert r.status_code == 409 and "prereview" in r.json()["detail"]
    # 422: a misplaced field; 404: no such task
    assert api.as_("li.ming", "applicant").post(f"/tasks/{done['id']}/withdraw",
                                                json={"why": "x"}).status_code == 422
    assert api.as_("li.ming", "applicant").post("/tasks/nope/withdraw").status_code == 404
    assert "task.withdrawn" not in actions(api, iid)
    assert api.open_elements(iid) == ["funding_review", "technical_review"]


def test_a_task_is_withdrawn_once_and_an_open_one_not_at_all(api: Api) -> None:
    iid = declared(api, "WD-4")
    done = [t for t in api.admin.get(f"/process-instances/{iid}/tasks").json()["items"]
            if t["element_id"] == "declare"][0]
    applicant = api.as_("li.ming", "applicant")
    r = applicant.post(f"/tasks/{done['id']}/withdraw")
    assert r.status_code == 200
    again = applicant.post(f"/tasks/{done['id']}/withdraw")
    assert again.status_code == 409 and "withdrawn" in again.json()["detail"]
    reopened = r.json()["task"]["id"]
    r = applicant.post(f"/tasks/{reopened}/withdraw")
    assert r.status_code == 403  # nobody completed it yet
    history(api, iid)


def test_send_back_targets_are_checked_at_deployment(api: Api) -> None:
    from tests.operations_support import OPERATIONS

    original = (OPERATIONS / "returns.bpmn").read_text(encoding="utf-8")
    cases = {
        '<camunda:property name="sendBackTo" value="accept" />': "is not an earlier step",  # later, not earlier
        '<camunda:property name="sendBackTo" value="nowhere" />': "is not a user task",
        '<camunda:property name="sendBackTo" value="wait_contract" />': "is not a user task",
        '<camunda:property name="sendBackTo" value="prereview" />': "cannot be sent back to itself",
    }
    for property_xml, problem in cases.items():
        bad = original.replace('<camunda:property name="sendBackTo" value="declare" />', property_xml, 1)
        r = api.admin.post("/deployments", files=[("files", ("returns.bpmn", bad.encode()))])
        assert r.status_code == 422, r.text
        assert problem in r.json()["detail"] and r.json()["element_id"] == "prereview"
        assert r.json()["line"] is not None
    assert [v["version"] for v in api.admin.get("/process-definitions/returns/versions").json()] == [1]
