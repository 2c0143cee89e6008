"""Repairs by an administrator, each with a reason kept in the audit trail: moving tokens (instance
modification), setting variables, and listing and retrying incidents (timers whose firing failed)."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.operations_support import actions, delivered, history, service, webhooks
from tests.support import Api


@pytest.fixture
def api(tmp_path: Path, database_url: str | None) -> Iterator[Api]:
    with service(tmp_path, database_url) as a:
        yield a


def reviewed(api: Api, bk: str) -> str:
    iid = str(api.start("returns", {"project_name": "城市大脑"}, business_key=bk)["id"])
    api.complete(iid, "declare", {"plan_ref": "A-1"})
    api.complete(iid, "prereview", {})
    return iid


def modify(api: Api, iid: str, instructions: list[dict[str, str]], reason: str = "数据迁移纠错") -> object:
    return api.admin.post(f"/process-instances/{iid}/modify", json={"instructions": instructions, "reason": reason})


# ---- modify ----------------------------------------------------------------------------------------------

def test_an_administrator_moves_a_token_from_one_step_to_another(api: Api) -> None:
    iid = reviewed(api, "MO-1")
    technical = api.open_task(iid, "technical_review")
    with webhooks(api, ["instance.modified"]) as receiver:
        r = api.admin.post(f"/process-instances/{iid}/modify", json={
            "instructions": [{"type": "cancel", "task_id": technical["id"]},
                             {"type": "start_before", "element_id": "technical_review"}],
            "reason": "技术审查人员变更，重新派发"})
        assert r.status_code == 200, r.text
        view = r.json()
        reissued = [t for t in view["open_tasks"] if t["element_id"] == "technical_review"]
        assert len(reissued) == 1 and reissued[0]["id"] != technical["id"]
        assert sorted(t["element_id"] for t in view["open_tasks"]) == ["funding_review", "technical_review"]
        [event] = delivered(api, receiver)
        assert event["type"] == "instance.modified" and event["data"]["modified_by"] == "admin"
        assert event["data"]["reason"] == "技术审查人员变更，重新派发"
        assert event["data"]["instructions"] == [{"type": "cancel", "task_id": technical["id"]},
                                                 {"type": "start_before", "element_id": "technical_review"}]
    trail = history(api, iid)
    modified = [e for e in trail if e["action"] == "instance.modified"]
    assert len(modified) == 1 and modified[0]["actor"] == "admin"
    assert modified[0]["data"]["reason"] == "技术审查人员变更，重新派发"
    assert modified[0]["data"]["started"] == ["technical_review"]
    # the parallel join still counts both branches
    api.complete(iid, "funding_review", {})
    api.complete(iid, "technical_review", {})
    assert api.open_elements(iid) == ["approve"]

    # skip ahead: from the approval straight to the contract filing's wait, then on to the end
    r = modify(api, iid, [{"type": "cancel", "element_id": "approve"},
                          {"type": "start_before", "element_id": "wait_contract"}])
    assert r.status_code == 200, r.text
    assert api.open_elements(iid) == [] and [w["element_id"] for w in api.waiting(iid)] == ["wait_contract"]
    api.message("contract_signed", "MO-1")
    # into a sub-process that is active: a second token on its first step
    r = modify(api, iid, [{"type": "cancel", "element_id": "build"}, {"type": "start_before", "element_id": "inspect"}])
    assert r.status_code == 200, r.text
    api.complete(iid, "inspect", {})
    api.complete(iid, "accept", {})
    assert api.end_event(iid) == "end_completed"
    assert actions(api, iid).count("instance.modified") == 3


def test_modify_refusals(api: Api) -> None:
    iid = reviewed(api, "MO-2")
    before = api.instance(iid)
    cases = [
        # 422: no such element, nothing active there, starting inside a sub-process that is not active,
        # entering a boundary event, cancelling everything
        ([{"type": "start_before", "element_id": "nowhere"}], 422),
        ([{"type": "cancel", "element_id": "approve"}], 422),
        ([{"type": "start_before", "element_id": "build"}], 422),
        ([{"type": "start_before", "element_id": "approve_overdue"}], 422),
        ([{"type": "cancel", "element_id": "funding_review"}, {"type": "cancel", "element_id": "technical_review"}],
         422),
        ([{"type": "cancel", "task_id": "00000000-0000-0000-0000-000000000000"}], 422),
        # 422: malformed instructions
        ([{"type": "jump", "element_id": "approve"}], 422),
        ([{"type": "cancel"}], 422),
        ([{"type": "start_before", "task_id": "x"}], 422),
        ([], 422),
    ]
    for instructions, status in cases:
        r = modify(api, iid, instructions)
        assert r.status_code == status, (instructions, r.text)
    assert modify(api, iid, [{"type": "cancel", "element_id": "funding_review"}], reason="").status_code == 422
    # 403: not an administrator, even one the task is offered to
    r = api.as_("sun.li", "finance_bureau").post(f"/process-instances/{iid}/modify", json={
        "instructions": [{"type": "cancel", "element_id": "funding_review"}], "reason": "x"})
    assert r.status_code == 403
    # 404: no such instance
    assert modify(api, "00000000-0000-0000-0000-000000000000",
                  [{"type": "cancel", "element_id": "funding_review"}]).status_code == 404
    after = api.instance(iid)
    assert after["updated_at"] == before["updated_at"] and "instance.modified" not in actions(api, iid)
    # 409: an instance that has ended
    assert api.admin.post(f"/process-instances/{iid}/cancel", json={"reason": "撤销"}).status_code == 200
    assert modify(api, iid, [{"type": "cancel", "element_id": "funding_review"}]).status_code == 409


# ---- variables ------------------------------------------------------------------------------------------

def test_an_administrator_sets_variables_with_a_reason(api: Api) -> None:
    iid = reviewed(api, "VA-1")
    with webhooks(api, ["instance.modified"]) as receiver:
        r = api.admin.post(f"/process-instances/{iid}/variables",
                           json={"variables": {"plan_ref": "A-1-更正", "budget_wan": 12.5}, "reason": "申报编号录错"})
        assert r.status_code == 200, r.text
        assert r.json()["variables"]["plan_ref"] == "A-1-更正" and r.json()["variables"]["budget_wan"] == 12.5
        [event] = delivered(api, receiver)
        assert event["data"]["variables"] == {"plan_ref": "A-1-更正", "budget_wan": 12.5}
        assert event["data"]["reason"] == "申报编号录错"
    [set_event] = [e for e in history(api, iid) if e["action"] == "instance.variables_set"]
    assert set_event["data"]["previous"] == {"plan_ref": "A-1"} and set_event["actor"] == "admin"
    # the next steps see them
    api.complete(iid, "funding_review", {})
    api.complete(iid, "technical_review", {})
    assert api.variables(iid)["plan_ref"] == "A-1-更正"

    assert api.as_("x", "applicant").post(f"/process-instances/{iid}/variables", json={
        "variables": {"plan_ref": "y"}, "reason": "x"}).status_code == 403
    for body in ({"variables": {"1bad": 1}, "reason": "x"}, {"variables": {}, "reason": "x"},
                 {"variables": {"a": 1}}, {"variables": {"a": {"typename": "datetime"}}, "reason": "x"}):
        assert api.admin.post(f"/process-instances/{iid}/variables", json=body).status_code == 422, body
    assert api.variables(iid)["plan_ref"] == "A-1-更正"


# ---- incidents --------------------------------------------------------------------------------------------

def test_a_failed_timer_is_an_incident_with_its_error_and_is_retried_after_the_repair(api: Api) -> None:
    iid = str(api.start("incident", {}, business_key="IN-1")["id"])
    assert api.admin.get("/incidents").json() == []
    api.advance(timedelta(days=1, minutes=1))  # the timer falls due; the script after it fails
    [incident] = api.admin.get("/incidents").json()
    assert incident["process_instance_id"] == iid and incident["element_id"] == "wait_a_day"
    assert incident["kind"] == "timer" and incident["attempts"] == 1 and incident["business_key"] == "IN-1"
    assert "base_amount" in incident["last_error"]
    assert api.admin.get("/incidents", params={"process_key": "returns"}).json() == []
    assert api.as_("x", "data_bureau").get("/incidents").status_code == 403

    # retried before the repair: fails again, with the error, and counts
    r = api.admin.post(f"/incidents/{incident['id']}/retry")
    assert r.status_code == 422 and "base_amount" in r.json()["detail"]
    [incident] = api.admin.get("/incidents").json()
    assert incident["attempts"] == 2
    assert api.open_elements(iid) == []

    # the repair, then the retry fires it
    assert api.admin.post(f"/process-instances/{iid}/variables",
                          json={"variables": {"base_amount": 41}, "reason": "补录基数"}).status_code == 200
    assert api.as_("x", "data_bureau").post(f"/incidents/{incident['id']}/retry").status_code == 403
    r = api.admin.post(f"/incidents/{incident['id']}/retry")
    assert r.status_code == 200, r.text
    assert [t["element_id"] for t in r.json()["open_tasks"]] == ["check"] and r.json()["variables"]["total"] == 42
    assert api.admin.get("/incidents").json() == []
    assert api.admin.post(f"/incidents/{incident['id']}/retry").status_code == 404
    assert api.admin.post("/incidents/0/retry").status_code == 422
    fired = [e for e in history(api, iid) if e["action"] == "timer.fired"]
    assert len(fired) == 1 and fired[0]["data"]["forced"] is True and fired[0]["actor"] == "admin"


def test_extra_tokens_on_a_review_branch_reach_the_join_one_after_another(api: Api) -> None:
    """Two tokens more on the funding review (start_before twice): each that completes reaches the parallel join
    again, which drops the approval it opened before — and that approval's waiting deadline timer with it — and
    opens it anew. Every request succeeds and the instance goes on to the end, its stored state verified."""
    iid = reviewed(api, "MO-TOKENS")
    api.complete(iid, "technical_review", {})
    for _ in range(2):
        r = modify(api, iid, [{"type": "start_before", "element_id": "funding_review"}])
        assert r.status_code == 200, r.text
    assert api.open_elements(iid) == ["funding_review"] * 3
    reviewer = api.as_("qian", "finance_bureau")
    for remaining in (2, 1, 0):
        task = next(t for t in api.instance(iid)["open_tasks"] if t["element_id"] == "funding_review")
        r = reviewer.post(f"/tasks/{task['id']}/complete", json={"variables": {}})
        assert r.status_code == 200, r.text
        assert api.open_elements(iid) == sorted(["approve"] + ["funding_review"] * remaining)
        assert [w["element_id"] for w in api.waiting(iid)] == ["approve_overdue"]
    api.complete(iid, "approve", {})
    assert "approve" not in api.open_elements(iid)


def test_a_late_token_on_a_review_branch_takes_back_what_the_join_had_opened(api: Api) -> None:
    """A token more on the funding review, completed after the instance moved on past the join into the
    implementation sub-process: the join fires again and drops that branch — the sub-process with it — and the
    approval opens anew. No request fails, the stored state restores (the suite verifies it after each change)."""
    iid = reviewed(api, "MO-LATE")
    api.complete(iid, "technical_review", {})
    r = modify(api, iid, [{"type": "start_before", "element_id": "funding_review"}])
    assert r.status_code == 200, r.text
    reviewer = api.as_("qian", "finance_bureau")

    def complete_a_funding_review() -> None:
        task = next(t for t in api.instance(iid)["open_tasks"] if t["element_id"] == "funding_review")
        r = reviewer.post(f"/tasks/{task['id']}/complete", json={"variables": {}})
        assert r.status_code == 200, r.text

    complete_a_funding_review()
    api.complete(iid, "approve", {})
    api.message("contract_signed", "MO-LATE", {"contract_no": "HT-1"})
    assert api.open_elements(iid) == ["build", "funding_review"]
    complete_a_funding_review()
    assert api.open_elements(iid) == ["approve"]
    assert [w["element_id"] for w in api.waiting(iid)] == ["approve_overdue"]
    api.complete(iid, "approve", {})
    api.message("contract_signed", "MO-LATE", {"contract_no": "HT-2"})
    assert api.open_elements(iid) == ["build"]
