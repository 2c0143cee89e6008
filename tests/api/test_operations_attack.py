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
