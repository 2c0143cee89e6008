"""Every step keeps its own decision and data: task records with comments, parallel reviews joined by a rule
written in the diagram, message payload contracts, deadlines from the reported date."""
from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support import Api, executed

OUTCOMES = ("pass", "revise", "reject")


def _start(api: Api, key: str = "PR-1") -> dict[str, Any]:
    return api.start("parallel_review", {"project_name": "数据共享平台"}, business_key=key)


def _complete(api: Api, instance_id: str, element: str, decision: str, comment: str | None = None) -> dict[str, Any]:
    task = api.open_task(instance_id, element)
    group = task["candidate_groups"][0]
    client = api.as_(f"{group}_user", group)
    body: dict[str, Any] = {"variables": {"decision": decision}}
    if comment is not None:
        body["comment"] = comment
    r = client.post(f"/tasks/{task['id']}/complete", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _expected(first: str, second: str) -> str:
    if "reject" in (first, second):
        return "reject"
    if "revise" in (first, second):
        return "revise"
    return "pass"


@pytest.mark.parametrize("funding,technical", list(itertools.product(OUTCOMES, OUTCOMES)))
@pytest.mark.parametrize("funding_first", [True, False])
def test_parallel_reviews_decide_together_in_any_order(api: Api, funding: str, technical: str,
                                                       funding_first: bool) -> None:
    inst = _start(api)
    order = [("funding_review", funding), ("technical_review", technical)]
    if not funding_first:
        order.reverse()
    for element, decision in order:
        _complete(api, inst["id"], element, decision)
    view = api.instance(inst["id"])
    outcome = _expected(funding, technical)
    assert view["variables"]["review_decision"] == outcome
    assert view["variables"]["funding_decision"] == funding
    assert view["variables"]["technical_decision"] == technical
    # the submitted `decision` stays with each task: neither overwrote the other
    assert "decision" not in view["variables"]
    if outcome == "reject":
        assert view["status"] == "completed" and view["end_event"] == "end_rejected"
    elif outcome == "revise":
        assert [t["element_id"] for t in view["open_tasks"]] == ["revise_plan"]
    else:
        assert [w["name"] for w in view["waiting_for"]] == ["contract_signed"]


def test_each_task_keeps_its_record_and_comment(api: Api) -> None:
    inst = _start(api)
    _complete(api, inst["id"], "funding_review", "reject", comment="资金来源未落实")
    _complete(api, inst["id"], "technical_review", "pass", comment="技术方案可行")
    records = api.admin.get(f"/process-instances/{inst['id']}/tasks").json()["items"]
    by_element = {r["element_id"]: r for r in records}
    assert [r["element_id"] for r in records] == ["funding_review", "technical_review"] or \
        [r["element_id"] for r in records] == ["technical_review", "funding_review"]
    funding, technical = by_element["funding_review"], by_element["technical_review"]
    assert funding["submitted"] == {"decision": "reject"} and funding["comment"] == "资金来源未落实"
    assert funding["outputs"] == {"funding_decision": "reject", "funding_reviewed_by": "财政局"}
    assert funding["candidate_groups"] == ["finance_bureau"] and funding["completed_by"] == "finance_bureau_user"
    assert technical["submitted"] == {"decision": "pass"} and technical["comment"] == "技术方案可行"
    one = api.as_("finance_bureau_user", "finance_bureau").get(f"/tasks/{funding['id']}").json()
    assert one["status"] == "completed" and one["submitted"] == {"decision": "reject"}
    assert one["comment"] == "资金来源未落实"
    history = api.admin.get(f"/process-instances/{inst['id']}/history").json()["events"]
    completed = [e for e in history if e["action"] == "task.completed"]
    assert {e["data"].get("comment") for e in completed} == {"资金来源未落实", "技术方案可行"}


def test_the_next_task_shows_each_departments_opinion(api: Api) -> None:
    inst = _start(api)
    _complete(api, inst["id"], "funding_review", "revise", comment="补充资金测算")
    _complete(api, inst["id"], "technical_review", "pass")
    task = api.open_task(inst["id"], "revise_plan")
    detail = api.as_("applicant_user", "applicant").get(f"/tasks/{task['id']}").json()
    shown = {(t["element_id"], tuple(t["candidate_groups"]), t["submitted"]["decision"], t["comment"])
             for t in detail["completed_tasks"]}
    assert shown == {("funding_review", ("finance_bureau",), "revise", "补充资金测算"),
                     ("technical_review", ("data_bureau",), "pass", None)}


def test_a_comment_longer_than_2000_characters_is_refused(api: Api) -> None:
    inst = _start(api)
    task = api.open_task(inst["id"], "funding_review")
    client = api.as_("f", "finance_bureau")
    r = client.post(f"/tasks/{task['id']}/complete", json={"variables": {"decision": "pass"}, "comment": "意" * 2001})
    assert r.status_code == 422 and "comment" in r.json()["errors"]
    assert api.open_task(inst["id"], "funding_review")["status"] == "open"
    r = client.post(f"/tasks/{task['id']}/complete", json={"variables": {"decision": "pass"}, "comment": "意" * 2000})
    assert r.status_code == 200


def _to_contract(api: Api, key: str = "PR-1") -> dict[str, Any]:
    inst = _start(api, key)
    _complete(api, inst["id"], "funding_review", "pass")
    _complete(api, inst["id"], "technical_review", "pass")
    return inst


def test_waiting_for_lists_the_message_payload(api: Api) -> None:
    inst = _to_contract(api)
    waiting = api.waiting(inst["id"])
    assert [w["name"] for w in waiting] == ["contract_signed"]
    fields = {f["id"]: f for f in waiting[0]["payload"]}
    assert fields["signed_on"]["type"] == "date" and fields["signed_on"]["required"]
    assert fields["signed_on"]["label"] == "合同签订日期"
    assert fields["contract_no"]["type"] == "string" and fields["contract_no"]["required"]
    assert fields["amount_wan"]["type"] == "decimal" and not fields["amount_wan"]["required"]
    listed = api.admin.get("/process-instances", params={"business_key": "PR-1"}).json()["items"][0]
    assert listed["waiting_for"][0]["payload"] == waiting[0]["payload"]


@pytest.mark.parametrize("variables,field", [
    ({"contract_no": "HT-1"}, "signed_on"),
    ({"signed_on": "2026-02-30", "contract_no": "HT-1"}, "signed_on"),
    ({"signed_on": "2026-03-02"}, "contract_no"),
    ({"signed_on": "2026-03-02", "contract_no": "HT-1", "amount_wan": "many"}, "amount_wan"),
    ({"signed_on": "2026-03-02", "contract_no": "HT-1", "signed_at": "2026-03-02"}, "signed_at"),
])
def test_a_message_that_does_not_fit_its_payload_is_refused(api: Api, variables: dict[str, Any],
                                                           field: str) -> None:
    inst = _to_contract(api)
    before = api.instance(inst["id"])
    r = api.admin.post("/messages", json={"name": "contract_signed", "business_key": "PR-1",
                                          "variables": variables})
    assert r.status_code == 422, r.text
    assert field in r.json()["errors"]
    after = api.instance(inst["id"])
    assert after["waiting_for"] == before["waiting_for"] and after["updated_at"] == before["updated_at"]


def test_the_filing_deadline_runs_from_the_reported_signing_date(api: Api) -> None:
    inst = _to_contract(api)
    # the OA system reports on Tuesday 10 March a contract signed on Monday 2 March
    api.clock.set(datetime(2026, 3, 10, 2, 0, tzinfo=UTC))
    api.message("contract_signed", "PR-1", {"signed_on": "2026-03-02", "contract_no": "HT-1", "amount_wan": 12.5})
    view = api.instance(inst["id"])
    # the 10th working day after 2 March is Monday 16 March: due at its end, 24:00 China time
    timer = next(w for w in view["waiting_for"] if w["element_id"] == "filing_deadline")
    assert timer["due_at"] == "2026-03-16T16:00:00Z"
    task = api.open_task(inst["id"], "file_contract")
    assert task["due_at"] == "2026-03-16T16:00:00Z"
    assert view["variables"]["signed_on"] == "2026-03-02"
    # one second before the deadline nothing happens; after it the overdue notice opens
    api.clock.set(datetime(2026, 3, 16, 15, 59, 59, tzinfo=UTC))
    api.server.scheduler.run_until_idle()
    assert api.open_elements(inst["id"]) == ["file_contract"]
    api.clock.set(datetime(2026, 3, 16, 16, 0, 1, tzinfo=UTC))
    api.server.scheduler.run_until_idle()
    assert api.open_elements(inst["id"]) == ["file_contract", "filing_overdue"]


def test_a_side_branch_that_ended_is_not_the_instances_end(api: Api) -> None:
    inst = _to_contract(api)
    api.message("contract_signed", "PR-1", {"signed_on": "2026-03-02", "contract_no": "HT-1"})
    api.clock.set(datetime(2026, 4, 1, 0, 0, tzinfo=UTC))
    api.server.scheduler.run_until_idle()
    api.complete(inst["id"], "filing_overdue")
    view = api.instance(inst["id"])
    assert view["status"] == "running" and view["end_event"] is None
    assert api.open_elements(inst["id"]) == ["file_contract"]
    task = api.open_task(inst["id"], "file_contract")
    r = api.as_("a", "applicant").post(f"/tasks/{task['id']}/complete", json={"variables": {"contract_documents": [
        {"name": "合同.pdf", "url": "https://oa.example.gov.cn/files/1", "sha256": "ab" * 32}]}})
    assert r.status_code == 200, r.text
    view = api.instance(inst["id"])
    assert view["status"] == "completed" and view["end_event"] == "end_completed"


@pytest.mark.parametrize("documents,reason", [
    ([], "is required"),
    ([{"name": "合同.pdf", "url": "ftp://oa.example.gov.cn/1"}], "http"),
    ([{"name": "合同.pdf", "url": "javascript:alert(1)"}], "http"),
    ([{"name": "合同.pdf", "url": "https://oa.example.gov.cn/1", "sha256": "xyz"}], "sha256"),
    ([{"name": "", "url": "https://oa.example.gov.cn/1"}], "name"),
    ([{"name": "合同.pdf", "url": "https://oa.example.gov.cn/1", "size": 3}], "unknown"),
    ("https://oa.example.gov.cn/1", "list"),
])
def test_document_references_are_checked(api: Api, documents: Any, reason: str) -> None:
    inst = _to_contract(api)
    api.message("contract_signed", "PR-1", {"signed_on": "2026-03-02", "contract_no": "HT-1"})
    task = api.open_task(inst["id"], "file_contract")
    r = api.as_("a", "applicant").post(f"/tasks/{task['id']}/complete",
                                       json={"variables": {"contract_documents": documents}})
    assert r.status_code == 422, r.text
    assert reason in r.json()["errors"]["contract_documents"]


def test_the_list_shows_where_each_project_stands_in_a_constant_number_of_queries(api: Api) -> None:
    def listed() -> tuple[int, list[dict[str, Any]]]:
        with executed(api.server) as statements:
            r = api.admin.get("/process-instances", params={"process_key": "parallel_review", "limit": 50})
        assert r.status_code == 200
        return len(statements), r.json()["items"]

    _start(api, "PR-1")
    small, items = listed()
    assert sorted(t["element_id"] for t in items[0]["open_tasks"]) == ["funding_review", "technical_review"]
    for i in range(2, 9):
        _to_contract(api, f"PR-{i}")
    large, items = listed()
    assert len(items) == 8 and large == small
    waiting = [i for i in items if i["business_key"] != "PR-1"]
    assert all([w["name"] for w in i["waiting_for"]] == ["contract_signed"] and not i["open_tasks"] for i in waiting)
