"""Qufu 曲阜市 (曲政字〔2024〕21号): the lifecycle driven over REST as the OA systems and reviewers would."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from tests.support import REPO, Api

PROCESS_KEY = "qufu"

BUILT = {"completed_on": "2026-03-01"}  # reported after the event: not after the day it is reported
IN_USE = {"operation_started_on": "2026-03-02"}
PLAN = {"construction_plan_ref": "QF-JS-1", "crypto_plan_ref": "QF-MM-1", "security_statement_ref": "QF-AQ-1"}
CONTRACT = {
    "contract_signed_date": "2026-03-02",
    "contract_amount_wan": 280,
    "legal_review_done": True,
    "ip_clause_included": True,
    "implementation_months": 12,
    "implementation_end_date": "2027-03-03",
    "warranty_months": 24,
}


def start(api: Api, bk: str, **overrides: Any) -> str:
    variables: dict[str, Any] = {"project_name": "曲阜市智慧文旅平台", "department": "市文旅局", "budget_wan": 300}
    variables.update(overrides)
    return str(api.start(PROCESS_KEY, variables, business_key=bk)["id"])


def declare(api: Api, iid: str, budget: Any = 300) -> None:
    api.complete(
        iid,
        "submit_requirements",
        {
            "construction_basis": "文旅融合规划",
            "construction_content": "平台建设",
            "construction_goal": "统一服务入口",
            "budget_wan": budget,
        },
    )


def to_requirements_review(api: Api, bk: str, **overrides: Any) -> str:
    iid = start(api, bk, **overrides)
    api.complete(iid, "party_committee_study", {"meeting_date": "2026-03-02", "overall_plan_ref": "QF-ZT-1"})
    declare(api, iid, overrides.get("budget_wan", 300))
    assert api.open_elements(iid) == ["requirements_review"]
    return iid


def submit_plan(api: Api, iid: str, total: Any = 300, security: Any = 30) -> None:
    api.complete(iid, "submit_technical_plan", {**PLAN, "total_budget_wan": total, "security_budget_wan": security})


def to_technical_plan(api: Api, bk: str, **overrides: Any) -> str:
    iid = to_requirements_review(api, bk, **overrides)
    api.complete(iid, "requirements_review", {"decision": "pass"})
    if "prepare_feasibility_report" in api.open_elements(iid):
        api.complete(iid, "prepare_feasibility_report", {"feasibility_report_ref": "QF-KY-1"})
    assert api.open_elements(iid) == ["submit_technical_plan"]
    return iid


def to_approval(api: Api, bk: str, **overrides: Any) -> str:
    iid = to_technical_plan(api, bk, **overrides)
    submit_plan(api, iid)
    api.complete(iid, "technical_review", {"decision": "pass"})
    assert api.open_elements(iid) == ["project_approval"]
    return iid


def through_budget(api: Api, iid: str) -> None:
    api.complete(iid, "submit_budget", {"budget_year": 2026, "requested_budget_wan": 300})
    api.complete(iid, "budget_review", {"decision": "pass", "approved_budget_wan": 290})
    api.complete(iid, "sign_responsibility_letter", {"letter_ref": "QF-ZR-1", "letter_filing_date": "2026-04-01"})


def to_procurement(api: Api, bk: str, **overrides: Any) -> str:
    iid = to_approval(api, bk, **overrides)
    api.complete(iid, "project_approval", {"decision": "pass", "approval_ref": "曲政办立〔2026〕1号"})
    through_budget(api, iid)
    assert api.open_elements(iid) == ["procure"]
    return iid


def to_contract(api: Api, bk: str, **overrides: Any) -> str:
    iid = to_procurement(api, bk, **overrides)
    api.complete(iid, "procure", {"procurement_method": "公开招标"})
    assert "award_notice_issued" in {w.get("name") for w in api.waiting(iid)}
    api.message("award_notice_issued", bk, {"award_date": "2026-03-02"})
    assert api.open_elements(iid) == ["sign_contract"]
    return iid


def to_implementation(api: Api, bk: str, **overrides: Any) -> str:
    iid = to_contract(api, bk, **overrides)
    api.complete(iid, "sign_contract", CONTRACT)
    api.complete(iid, "file_contract", {"contract_filing_date": "2026-03-10"})
    assert api.open_elements(iid) == []
    assert "construction_completed" in {w.get("name") for w in api.waiting(iid)}
    return iid


def to_final(api: Api, bk: str, **overrides: Any) -> str:
    iid = to_implementation(api, bk, **overrides)
    api.message("construction_completed", bk, BUILT)
    api.complete(iid, "preliminary_acceptance", {"decision": "pass"})
    api.complete(iid, "apply_final_acceptance", {"application_date": "2027-01-05"})
    assert api.open_elements(iid) == ["accept_final_application"]
    return iid


def to_operation(api: Api, bk: str, **overrides: Any) -> str:
    iid = to_final(api, bk, **overrides)
    api.complete(iid, "accept_final_application", {"acceptance_organizer": "data_bureau"})
    api.complete(iid, "final_acceptance", {"decision": "pass", "acceptance_opinion_ref": "YS-1"})
    assert "operation_started" in {w.get("name") for w in api.waiting(iid)}
    api.message("operation_started", bk, IN_USE)
    return iid


# ---- the whole lifecycle ------------------------------------------------------------------------------


def test_full_lifecycle_to_completed(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "QF-FULL"
    iid = start(api, bk, budget_wan=600)
    # 第八条: the unit's party committee studies the need first
    assert api.open_elements(iid) == ["party_committee_study"]
    assert api.open_task(iid, "party_committee_study")["candidate_groups"] == ["applicant"]
    api.complete(iid, "party_committee_study", {"meeting_date": "2026-03-02", "overall_plan_ref": "QF-ZT-9"})
    declare(api, iid, 600)
    assert api.open_task(iid, "requirements_review")["candidate_groups"] == ["data_bureau"]
    api.complete(iid, "requirements_review", {"decision": "pass", "review_opinion": "必要、合理"})
    # 第六条: >= 500 needs a feasibility study report for the technical review
    assert api.open_elements(iid) == ["prepare_feasibility_report"]
    api.complete(iid, "prepare_feasibility_report", {"feasibility_report_ref": "QF-KY-9"})
    submit_plan(api, iid, total=600, security=30)
    assert api.variables(iid)["security_share_check"] == "ok"
    api.complete(iid, "technical_review", {"decision": "pass"})
    api.complete(iid, "project_approval", {"decision": "pass", "approval_ref": "曲立〔2026〕9号"})
    through_budget(api, iid)
    api.complete(iid, "procure", {"procurement_method": "公开招标", "procurement_ref": "CG-9"})
    api.message("award_notice_issued", bk, {"award_date": "2026-03-02"})
    api.complete(iid, "sign_contract", CONTRACT)
    api.complete(iid, "file_contract", {"contract_filing_date": "2026-05-12"})
    api.message("construction_completed", bk, BUILT)
    api.complete(iid, "preliminary_acceptance", {"decision": "pass", "preliminary_report_ref": "CY-9"})
    api.complete(iid, "apply_final_acceptance", {"application_date": "2027-01-05"})
    api.complete(iid, "accept_final_application", {"acceptance_organizer": "data_bureau"})
    api.complete(iid, "final_acceptance", {"decision": "pass", "acceptance_opinion_ref": "YS-9"})
    api.message("operation_started", bk, IN_USE)
    # 第三十六条: a yearly self-evaluation, then a third-party post-evaluation
    assert api.open_elements(iid) == []
    api.fire_timer(iid, "yearly_evaluation_due")
    api.complete(
        iid, "self_evaluation", {"evaluation_year": 2027, "self_evaluation_report_ref": "ZP-1", "in_operation": False}
    )
    api.complete(iid, "commission_post_evaluation", {"post_evaluation_commissioned": True})
    assert api.open_task(iid, "post_evaluation")["candidate_groups"] == ["third_party"]
    api.complete(iid, "post_evaluation", {"post_evaluation_report_ref": "HP-1", "evaluation_rating": "good"})
    assert api.end_event(iid) == "end_completed"


# ---- thresholds ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("budget, required", [(499.99, False), (500, True), (500.01, True)])
def test_feasibility_report_from_500(lifecycle_api: Api, budget: float, required: bool) -> None:
    api = lifecycle_api
    iid = to_requirements_review(api, "QF-FSR", budget_wan=budget)
    api.complete(iid, "requirements_review", {"decision": "pass"})
    assert api.variables(iid)["feasibility_required"] is required
    assert api.open_elements(iid) == (["prepare_feasibility_report"] if required else ["submit_technical_plan"])


@pytest.mark.parametrize("security, check", [("14.99", "below_minimum"), ("15", "ok"), ("15.01", "ok")])
def test_security_budget_share_at_least_5_percent(lifecycle_api: Api, security: str, check: str) -> None:
    api = lifecycle_api
    iid = to_technical_plan(api, "QF-SEC")
    submit_plan(api, iid, total="300", security=security)
    assert api.variables(iid)["security_share_check"] == check
    # 第三十七条 names no consequence: the share is a finding the technical review sees, not a gate
    assert api.open_elements(iid) == ["technical_review"]


def test_security_share_not_applicable_to_rebuilds(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_technical_plan(api, "QF-SEC-OLD", is_new_build=False)
    submit_plan(api, iid, total=300, security=0)
    assert api.variables(iid)["security_share_check"] == "not_applicable"
    assert api.open_elements(iid) == ["technical_review"]


@pytest.mark.parametrize("security, check", [("49.99", "below_minimum"), ("50", "ok")])
def test_security_share_below_5_percent_is_left_to_the_technical_review(
    lifecycle_api: Api, security: str, check: str
) -> None:
    api = lifecycle_api
    iid = to_technical_plan(api, "QF-SEC-LOW", budget_wan=1000)
    submit_plan(api, iid, total="1000", security=security)
    assert api.variables(iid)["security_share_check"] == check
    assert api.open_elements(iid) == ["technical_review"]
    if check == "below_minimum":
        # the reviewer returns the plan; the corrected plan meets the share
        api.complete(iid, "technical_review", {"decision": "revise", "review_opinion": "网络安全预算不足5%"})
        submit_plan(api, iid, total="1000", security="50")
        assert api.variables(iid)["security_share_check"] == "ok"
    api.complete(iid, "technical_review", {"decision": "pass"})
    assert api.open_elements(iid) == ["project_approval"]


# ---- start form, validation and permissions -------------------------------------------------------------------


def test_start_form_is_served(lifecycle_api: Api) -> None:
    r = lifecycle_api.as_("oa", "applicant").get(f"/process-definitions/{PROCESS_KEY}")
    assert r.status_code == 200, r.text
    form = {f["id"]: f for f in r.json()["start_form"]}
    assert form["budget_wan"]["type"] == "decimal" and form["budget_wan"]["required"]
    assert form["entry_path"]["type"] == "enum"
    assert {o["id"] for o in form["entry_path"]["options"]} == {
        "regular",
        "urgent",
        "superior",
        "construction_attached",
    }
    assert form["is_new_build"]["type"] == "boolean"


@pytest.mark.parametrize(
    "values, field",
    [
        ({"department": "市文旅局", "budget_wan": 10}, "project_name"),
        ({"project_name": "x", "budget_wan": 10}, "department"),
        ({"project_name": "x", "department": "d"}, "budget_wan"),
        ({"project_name": "x", "department": "d", "budget_wan": -0.01}, "budget_wan"),
        ({"project_name": "x", "department": "d", "budget_wan": "abc"}, "budget_wan"),
        ({"project_name": "x", "department": "d", "budget_wan": 10, "entry_path": "provincial"}, "entry_path"),
    ],
)
def test_invalid_start_is_422_naming_the_field(lifecycle_api: Api, values: dict[str, Any], field: str) -> None:
    r = lifecycle_api.as_("oa", "applicant").post(
        "/process-instances", json={"process_key": PROCESS_KEY, "business_key": "QF-BAD", "variables": values}
    )
    assert r.status_code == 422, r.text
    assert list(r.json()["errors"]) == [field]


def test_wrong_group_is_refused(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_requirements_review(api, "QF-403")
    task = api.open_task(iid, "requirements_review")
    r = api.as_("x", "finance_bureau").post(f"/tasks/{task['id']}/complete", json={"variables": {"decision": "pass"}})
    assert r.status_code == 403
    r = api.as_("y", "applicant").post(f"/tasks/{task['id']}/claim")
    assert r.status_code == 403
    assert api.open_elements(iid) == ["requirements_review"]
    # a review without its decision, or with an outcome the text does not give, is refused
    client = api.as_("d", "data_bureau")
    assert client.post(f"/tasks/{task['id']}/claim").status_code == 200
    r = client.post(f"/tasks/{task['id']}/complete", json={"variables": {}})
    assert r.status_code == 422 and "decision" in r.json()["errors"]
    r = client.post(f"/tasks/{task['id']}/complete", json={"variables": {"decision": "approve"}})
    assert r.status_code == 422 and "decision" in r.json()["errors"]


# ---- entry paths (第八、十七、十九条, 第四、十六条) ------------------------------------------------------------------


def test_requirements_revise_then_resubmit(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_requirements_review(api, "QF-REQ-REV")
    api.complete(iid, "requirements_review", {"decision": "revise", "review_opinion": "预算依据不足"})
    assert api.open_elements(iid) == ["submit_requirements"]
    declare(api, iid, 520)
    assert api.open_elements(iid) == ["requirements_review"]
    api.complete(iid, "requirements_review", {"decision": "pass"})
    # the revised budget need now needs a feasibility study report
    assert api.variables(iid)["budget_wan"] == 520
    assert api.open_elements(iid) == ["prepare_feasibility_report"]


def test_requirements_reject_ends_rejected(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_requirements_review(api, "QF-REQ-REJ")
    api.complete(iid, "requirements_review", {"decision": "reject"})
    assert api.end_event(iid) == "end_rejected"


@pytest.mark.parametrize("budget, first", [(499.99, "submit_technical_plan"), (500, "prepare_feasibility_report")])
def test_urgent_project_goes_from_city_decision_to_technical_review(
    lifecycle_api: Api, budget: float, first: str
) -> None:
    api = lifecycle_api
    iid = start(api, "QF-URG", entry_path="urgent", budget_wan=budget)
    api.complete(iid, "party_committee_study", {"meeting_date": "2026-03-02", "overall_plan_ref": "QF-ZT-2"})
    assert api.open_elements(iid) == ["city_decision"]
    assert api.open_task(iid, "city_decision")["candidate_groups"] == ["city_government"]
    api.complete(iid, "city_decision", {"decision": "pass", "decision_ref": "市委常委会纪要〔2026〕3号"})
    # 第十七条: no requirements review, straight to the technical review documents
    assert api.open_elements(iid) == [first]


def test_urgent_project_refused_by_city(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "QF-URG-REJ", entry_path="urgent")
    api.complete(iid, "party_committee_study", {"meeting_date": "2026-03-02", "overall_plan_ref": "QF-ZT-3"})
    api.complete(iid, "city_decision", {"decision": "reject"})
    assert api.end_event(iid) == "end_rejected"


def test_superior_project_is_filed_into_the_library(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "QF-SUP", entry_path="superior", budget_wan=800)
    # 第十九条: filed and put in the project library; no local reviews
    assert api.open_elements(iid) == ["file_superior_project"]
    api.complete(
        iid, "file_superior_project", {"superior_document_ref": "鲁大数据发〔2026〕5号", "filing_date": "2026-03-05"}
    )
    assert api.open_elements(iid) == ["submit_budget"]


def test_construction_attached_project_waits_for_the_copied_approval(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "QF-ATT"
    iid = start(api, bk, entry_path="construction_attached")
    assert api.open_elements(iid) == []
    assert "construction_approval_copied" in {w.get("name") for w in api.waiting(iid)}
    api.message("construction_approval_copied", bk, {"approval_ref": "曲审批投〔2026〕8号"})
    assert api.open_elements(iid) == ["submit_budget"]


# ---- technical review, approval, budget (第六、十六、二十二条) -----------------------------------------------------


def test_technical_revise_then_pass(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_technical_plan(api, "QF-TECH")
    submit_plan(api, iid)
    assert api.open_task(iid, "technical_review")["candidate_groups"] == ["data_bureau"]
    api.complete(iid, "technical_review", {"decision": "revise", "review_opinion": "概算偏高"})
    assert api.open_elements(iid) == ["submit_technical_plan"]
    submit_plan(api, iid, total=280, security=14)
    api.complete(iid, "technical_review", {"decision": "pass"})
    assert api.open_elements(iid) == ["project_approval"]


@pytest.mark.parametrize("task", ["technical_review", "project_approval", "budget_review"])
def test_refusal_after_requirements_ends_rejected(lifecycle_api: Api, task: str) -> None:
    api = lifecycle_api
    iid = to_technical_plan(api, "QF-REJ")
    submit_plan(api, iid)
    if task != "technical_review":
        api.complete(iid, "technical_review", {"decision": "pass"})
    if task == "budget_review":
        api.complete(iid, "project_approval", {"decision": "pass"})
        api.complete(iid, "submit_budget", {"budget_year": 2026, "requested_budget_wan": 300})
        assert api.open_task(iid, task)["candidate_groups"] == ["finance_bureau"]
    api.complete(iid, task, {"decision": "reject"})
    assert api.end_event(iid) == "end_rejected"


def test_responsibility_letter_after_budget(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_approval(api, "QF-LETTER")
    api.complete(iid, "project_approval", {"decision": "pass"})
    api.complete(iid, "submit_budget", {"budget_year": 2026, "requested_budget_wan": 300})
    api.complete(iid, "budget_review", {"decision": "pass", "approved_budget_wan": 300})
    # 第二十四条: the letter comes after the budget is issued, before procurement
    assert api.open_elements(iid) == ["sign_responsibility_letter"]
    api.complete(iid, "sign_responsibility_letter", {"letter_ref": "ZR-1", "letter_filing_date": "2026-04-01"})
    assert api.open_elements(iid) == ["procure"]


# ---- contract (第二十八、三十条) ----------------------------------------------------------------------------------


def test_contract_signing_deadline_is_ten_working_days(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_contract(api, "QF-SIGN")
    timer = [w for w in api.waiting(iid) if w.get("element_id") == "contract_signing_deadline"]
    assert len(timer) == 1 and timer[0]["calendar"] == "cn_workdays"
    # award notice on Monday 2026-03-02: the 10th working day is Monday 2026-03-16 (weekends skipped)
    assert timer[0]["due_at"].startswith("2026-03-16T16:00")
    api.advance(timedelta(days=14))
    assert api.open_elements(iid) == ["sign_contract"]
    api.advance(timedelta(days=1))
    assert api.open_elements(iid) == ["contract_signing_overdue", "sign_contract"]
    assert api.open_task(iid, "contract_signing_overdue")["candidate_groups"] == ["finance_bureau"]
    api.complete(iid, "contract_signing_overdue", {"reminder_note": "请尽快签订合同"})
    # signed late, on Tuesday 17 March: the filing period runs from that day
    api.complete(iid, "sign_contract", {**CONTRACT, "contract_signed_date": "2026-03-17"})
    assert api.open_elements(iid) == ["file_contract"]


def test_contract_filing_deadline_notifies_the_data_bureau(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_contract(api, "QF-FILE")
    api.complete(iid, "sign_contract", CONTRACT)
    timer = [w for w in api.waiting(iid) if w.get("element_id") == "contract_filing_deadline"]
    assert len(timer) == 1 and timer[0]["calendar"] == "cn_workdays"
    assert timer[0]["due_at"].startswith("2026-03-16T16:00")
    api.fire_timer(iid, "contract_filing_deadline")
    assert api.open_elements(iid) == ["contract_filing_overdue", "file_contract"]
    assert api.open_task(iid, "contract_filing_overdue")["candidate_groups"] == ["data_bureau"]
    api.complete(iid, "file_contract", {"contract_filing_date": "2026-03-20"})
    assert api.open_elements(iid) == ["contract_filing_overdue"]
    assert "construction_completed" in {w.get("name") for w in api.waiting(iid)}


@pytest.mark.parametrize("months, status", [(36, 200), (37, 422)])
def test_implementation_period_at_most_three_years(lifecycle_api: Api, months: int, status: int) -> None:
    api = lifecycle_api
    iid = to_contract(api, "QF-PERIOD")
    task = api.open_task(iid, "sign_contract")
    client = api.as_("a", "applicant")
    assert client.post(f"/tasks/{task['id']}/claim").status_code == 200
    r = client.post(f"/tasks/{task['id']}/complete", json={"variables": {**CONTRACT, "implementation_months": months}})
    assert r.status_code == status, r.text
    if status == 422:
        assert "implementation_months" in r.json()["errors"]


# ---- change requests (第三十三条) ------------------------------------------------------------------------------------


@pytest.mark.parametrize("decision, filed", [("pass", True), ("reject", False)])
def test_major_change_needs_reapproval_before_changing(lifecycle_api: Api, decision: str, filed: bool) -> None:
    api = lifecycle_api
    bk = "QF-CHG"
    iid = to_implementation(api, bk)
    assert "change_requested" in {w.get("name") for w in api.waiting(iid)}
    api.message("change_requested", bk)
    # the implementation waits: construction cannot be reported complete while the change is pending
    assert "construction_completed" not in {w.get("name") for w in api.waiting(iid)}
    api.complete(
        iid,
        "submit_adjustment_request",
        {"change_aspect": "budget", "change_reason": "需求调整", "adjusted_budget_wan": 350},
    )
    assert api.open_task(iid, "change_reapproval")["candidate_groups"] == ["data_bureau"]
    api.complete(iid, "change_reapproval", {"decision": decision})
    if filed:
        assert api.open_elements(iid) == ["file_change"]
        api.complete(iid, "file_change", {"change_filing_date": "2026-06-01"})
    assert api.open_elements(iid) == []
    assert {"construction_completed", "change_requested"} <= {w.get("name") for w in api.waiting(iid)}


def test_two_changes_then_construction_completes(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "QF-CHG2"
    iid = to_implementation(api, bk)
    for aspect in ("schedule", "content"):
        api.message("change_requested", bk)
        api.complete(iid, "submit_adjustment_request", {"change_aspect": aspect, "change_reason": "政策调整"})
        api.complete(iid, "change_reapproval", {"decision": "pass"})
        api.complete(iid, "file_change", {"change_filing_date": "2026-06-01"})
    api.message("construction_completed", bk, BUILT)
    assert api.open_elements(iid) == ["preliminary_acceptance"]


# ---- supervision (第四十一条) -------------------------------------------------------------------------------------


def to_rectification(api: Api, bk: str) -> str:
    iid = to_implementation(api, bk)
    api.message("supervision_finding", bk, {"finding_department": "cyberspace_office"})
    task = api.open_task(iid, "order_rectification")
    assert set(task["candidate_groups"]) == {"data_bureau", "finance_bureau", "cyberspace_office", "crypto_bureau"}
    api.complete(
        iid,
        "order_rectification",
        {"finding": "未落实等级保护要求", "supervision_due_date": "2026-04-30"},
        group="cyberspace_office",
    )
    assert api.open_elements(iid) == ["rectify_supervision_finding"]
    return iid


def test_rectified_finding_resumes_construction(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "QF-SUP-OK"
    iid = to_rectification(api, bk)
    api.complete(iid, "rectify_supervision_finding", {"rectification_report": "已完成等保测评"})
    api.complete(iid, "verify_rectification", {"decision": "pass"}, group="cyberspace_office")
    assert api.open_elements(iid) == []
    api.message("construction_completed", bk, BUILT)
    assert api.open_elements(iid) == ["preliminary_acceptance"]


@pytest.mark.parametrize(
    "sanction, outcome", [("criticism", "resumed"), ("defer_investment", "resumed"), ("terminate", "end_terminated")]
)
def test_still_non_compliant_leads_to_a_sanction(lifecycle_api: Api, sanction: str, outcome: str) -> None:
    api = lifecycle_api
    bk = "QF-SUP-NO"
    iid = to_rectification(api, bk)
    api.complete(iid, "rectify_supervision_finding", {"rectification_report": "部分整改"})
    api.complete(iid, "verify_rectification", {"decision": "reject"})
    assert api.open_task(iid, "decide_sanction")["candidate_groups"] == ["data_bureau"]
    api.complete(iid, "decide_sanction", {"sanction": sanction})
    if outcome == "end_terminated":
        assert api.end_event(iid) == "end_terminated"
    else:
        assert api.open_elements(iid) == []
        assert "construction_completed" in {w.get("name") for w in api.waiting(iid)}


def test_overdue_rectification_suspends_then_terminates(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_rectification(api, "QF-SUP-LATE")
    timer = [w for w in api.waiting(iid) if w.get("element_id") == "supervision_rectify_deadline"]
    assert len(timer) == 1 and timer[0]["due_at"] == "2026-04-30T16:00:00Z"
    api.advance(timedelta(days=58))
    assert api.open_elements(iid) == ["rectify_supervision_finding"]
    api.advance(timedelta(days=2))
    # 逾期不整改: the rectification is over, the approval department decides
    assert api.open_elements(iid) == ["decide_sanction"]
    api.complete(iid, "decide_sanction", {"sanction": "suspend"})
    assert api.open_elements(iid) == ["suspension_review"]
    api.complete(iid, "suspension_review", {"decision": "reject"})
    assert api.end_event(iid) == "end_terminated"


def test_suspended_project_resumes(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "QF-SUP-RESUME"
    iid = to_rectification(api, bk)
    api.fire_timer(iid, "supervision_rectify_deadline")
    api.complete(iid, "decide_sanction", {"sanction": "suspend"})
    assert "construction_completed" not in {w.get("name") for w in api.waiting(iid)}
    api.complete(iid, "suspension_review", {"decision": "pass"})
    assert api.open_elements(iid) == []
    api.message("construction_completed", bk, BUILT)
    assert api.open_elements(iid) == ["preliminary_acceptance"]


# ---- acceptance (第三十四、三十五条) --------------------------------------------------------------------------------


def test_preliminary_acceptance_fails_rectify_and_reaccept(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "QF-PRE"
    iid = to_implementation(api, bk)
    api.message("construction_completed", bk, BUILT)
    api.complete(iid, "preliminary_acceptance", {"decision": "revise"})
    assert api.open_elements(iid) == ["rectify_preliminary"]
    api.complete(iid, "rectify_preliminary", {"rectification_report": "已整改"})
    assert api.open_elements(iid) == ["preliminary_acceptance"]
    api.complete(iid, "preliminary_acceptance", {"decision": "pass"})
    assert api.open_elements(iid) == ["apply_final_acceptance"]


def test_late_application_needs_a_delay_request(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "QF-LATE"
    iid = to_implementation(api, bk)
    api.message("construction_completed", bk, BUILT)
    timer = [w for w in api.waiting(iid) if w.get("element_id") == "acceptance_application_due"]
    # the contract's implementation period ends on 2027-03-03 (China time)
    assert len(timer) == 1 and timer[0]["due_at"] == "2027-03-03T16:00:00Z"
    api.advance(timedelta(days=365))
    assert api.open_elements(iid) == ["preliminary_acceptance"]
    api.advance(timedelta(days=2))
    assert api.open_elements(iid) == ["preliminary_acceptance", "request_acceptance_delay"]
    api.complete(
        iid, "request_acceptance_delay", {"delay_reason": "设备到货延迟", "planned_application_date": "2027-06-30"}
    )
    api.complete(iid, "preliminary_acceptance", {"decision": "pass"})
    api.complete(iid, "apply_final_acceptance", {"application_date": "2027-06-20"})
    assert api.open_elements(iid) == ["accept_final_application"]


def test_period_ending_during_construction_asks_for_a_delay_once(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "QF-LATE-BUILD"
    iid = to_implementation(api, bk)
    # the deadline is watched from the start of construction, not from its completion
    timer = [w for w in api.waiting(iid) if w.get("element_id") == "acceptance_application_due"]
    assert len(timer) == 1 and timer[0]["due_at"] == "2027-03-03T16:00:00Z"
    api.advance(timedelta(days=365))
    assert api.open_elements(iid) == []
    api.advance(timedelta(days=2))
    assert api.open_elements(iid) == ["request_acceptance_delay"]
    assert "construction_completed" in {w.get("name") for w in api.waiting(iid)}
    # a change request interrupts and re-enters the implementation: the deadline is not asked again
    api.message("change_requested", bk)
    api.complete(iid, "submit_adjustment_request", {"change_aspect": "schedule", "change_reason": "延期"})
    api.complete(iid, "change_reapproval", {"decision": "pass"})
    api.complete(iid, "file_change", {"change_filing_date": "2027-03-10"})
    assert api.open_elements(iid) == ["request_acceptance_delay"]
    api.complete(
        iid, "request_acceptance_delay", {"delay_reason": "建设内容调整", "planned_application_date": "2027-09-30"}
    )
    api.message("construction_completed", bk, BUILT)
    assert api.open_elements(iid) == ["preliminary_acceptance"]
    assert "acceptance_application_due" not in [w.get("element_id") for w in api.waiting(iid)]


def test_termination_ends_a_pending_delay_request(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "QF-LATE-END"
    iid = to_implementation(api, bk)
    api.advance(timedelta(days=400))
    assert api.open_elements(iid) == ["request_acceptance_delay"]
    api.message("supervision_finding", bk, {"finding_department": "finance_bureau"})
    api.complete(iid, "order_rectification", {"finding": "资金挪用", "supervision_due_date": "2027-05-31"})
    api.complete(iid, "rectify_supervision_finding", {"rectification_report": "未整改"})
    api.complete(iid, "verify_rectification", {"decision": "reject"})
    api.complete(iid, "decide_sanction", {"sanction": "terminate"})
    # 终止项目 ends the whole instance, the open delay request with it
    assert api.end_event(iid) == "end_terminated"
    assert api.instance(iid)["open_tasks"] == []


def test_timely_application_needs_no_delay_request(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_final(api, "QF-ONTIME")
    assert "acceptance_application_due" not in [w.get("element_id") for w in api.waiting(iid)]
    api.advance(timedelta(days=400))
    assert api.open_elements(iid) == ["accept_final_application"]


def test_final_acceptance_fails_rectify_and_reapply(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_final(api, "QF-FIN")
    api.complete(iid, "accept_final_application", {"acceptance_organizer": "data_bureau"})
    api.complete(iid, "final_acceptance", {"decision": "revise"})
    assert api.open_elements(iid) == ["plan_rectification"]
    api.complete(iid, "plan_rectification", {"rectification_plan": "补齐接口", "rectification_due_date": "2026-05-29"})
    assert api.open_elements(iid) == ["rectify_acceptance"]
    # the plan's time limit is a deadline day: due at its end, 24:00 China time
    timer = [w for w in api.waiting(iid) if w.get("element_id") == "rectification_deadline"]
    assert len(timer) == 1 and timer[0]["due_at"] == "2026-05-29T16:00:00Z"
    # the rectification time limit passes: the data bureau is told, the rectification stays open
    api.fire_timer(iid, "rectification_deadline")
    assert api.open_elements(iid) == ["rectification_overdue", "rectify_acceptance"]
    assert api.open_task(iid, "rectification_overdue")["candidate_groups"] == ["data_bureau"]
    api.complete(iid, "rectification_overdue", {})
    api.complete(iid, "rectify_acceptance", {"rectification_report": "已整改", "application_date": "2026-06-05"})
    # 第三十五条: the final-acceptance application is submitted again
    assert api.open_elements(iid) == ["accept_final_application"]
    api.complete(iid, "accept_final_application", {"acceptance_organizer": "data_bureau"})
    api.complete(iid, "final_acceptance", {"decision": "pass"})
    assert "operation_started" in {w.get("name") for w in api.waiting(iid)}


def test_final_acceptance_delegated_to_the_unit(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_final(api, "QF-DEL")
    assert api.open_task(iid, "accept_final_application")["candidate_groups"] == ["data_bureau"]
    api.complete(iid, "accept_final_application", {"acceptance_organizer": "applicant"})
    assert api.open_elements(iid) == ["final_acceptance_delegated"]
    assert api.open_task(iid, "final_acceptance_delegated")["candidate_groups"] == ["applicant"]
    api.complete(iid, "final_acceptance_delegated", {"decision": "pass", "acceptance_opinion_ref": "YS-2"})
    assert "operation_started" in {w.get("name") for w in api.waiting(iid)}


# ---- evaluation (第三十六条) ----------------------------------------------------------------------------------------


def test_yearly_self_evaluation_while_in_use(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_operation(api, "QF-EVAL")
    assert api.open_elements(iid) == []
    api.advance(timedelta(days=364))
    assert api.open_elements(iid) == []
    api.advance(timedelta(days=2))
    assert api.open_elements(iid) == ["self_evaluation"]
    api.complete(
        iid, "self_evaluation", {"evaluation_year": 2027, "self_evaluation_report_ref": "ZP-1", "in_operation": True}
    )
    # the data bureau decides on the post-evaluation from the self-evaluation
    api.complete(iid, "commission_post_evaluation", {"post_evaluation_commissioned": False})
    assert api.open_elements(iid) == []
    assert "yearly_evaluation_due" in [w.get("element_id") for w in api.waiting(iid)]
    api.advance(timedelta(days=370))
    api.complete(
        iid, "self_evaluation", {"evaluation_year": 2028, "self_evaluation_report_ref": "ZP-2", "in_operation": True}
    )
    api.complete(
        iid, "commission_post_evaluation", {"post_evaluation_commissioned": True, "evaluation_agency": "某检测评价机构"}
    )
    api.complete(
        iid,
        "post_evaluation",
        {"post_evaluation_report_ref": "HP-2", "evaluation_rating": "fair", "rectification_opinion": "加强数据共享"},
    )
    assert api.open_elements(iid) == []
    api.advance(timedelta(days=370))
    api.complete(
        iid, "self_evaluation", {"evaluation_year": 2029, "self_evaluation_report_ref": "ZP-3", "in_operation": False}
    )
    api.complete(iid, "commission_post_evaluation", {"post_evaluation_commissioned": False})
    assert api.end_event(iid) == "end_completed"


# ---- deadlines from the reported dates, message contracts (issue #10) -----------------------------------------------


def due(api: Api, iid: str, element_id: str) -> str:
    timers = [w for w in api.waiting(iid) if w.get("element_id") == element_id]
    assert len(timers) == 1, (element_id, api.waiting(iid))
    return str(timers[0]["due_at"])


def test_signing_deadline_runs_from_the_reported_award_date(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "QF-AWARD"
    iid = to_procurement(api, bk)
    api.complete(iid, "procure", {"procurement_method": "公开招标"})
    # the notice was issued on Monday 2 March; the OA system reports it on Thursday 5 March
    api.clock.set(datetime(2026, 3, 5, 2, 0, tzinfo=UTC))
    api.message("award_notice_issued", bk, {"award_date": "2026-03-02"})
    # 第二十八条: 10 working days from the notice, not from the report (that would be Thursday 19 March)
    assert due(api, iid, "contract_signing_deadline") == "2026-03-16T16:00:00Z"
    assert api.open_task(iid, "sign_contract")["due_at"] == "2026-03-16T16:00:00Z"
    api.clock.set(datetime(2026, 3, 16, 15, 59, 59, tzinfo=UTC))
    api.server.scheduler.run_until_idle()
    assert api.open_elements(iid) == ["sign_contract"]
    api.clock.set(datetime(2026, 3, 16, 16, 0, 1, tzinfo=UTC))
    api.server.scheduler.run_until_idle()
    assert api.open_elements(iid) == ["contract_signing_overdue", "sign_contract"]


def test_filing_deadline_runs_from_the_signing_date(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_contract(api, "QF-SIGNED")
    # signed on Wednesday 4 March, recorded on Monday 9 March
    api.clock.set(datetime(2026, 3, 9, 2, 0, tzinfo=UTC))
    api.complete(iid, "sign_contract", {**CONTRACT, "contract_signed_date": "2026-03-04"})
    # 第二十八条: 10 working days from the signing (Wednesday 18 March), not from the recording (Monday 23 March)
    assert due(api, iid, "contract_filing_deadline") == "2026-03-18T16:00:00Z"
    assert api.open_task(iid, "file_contract")["due_at"] == "2026-03-18T16:00:00Z"
    api.clock.set(datetime(2026, 3, 18, 15, 59, 59, tzinfo=UTC))
    api.server.scheduler.run_until_idle()
    assert api.open_elements(iid) == ["file_contract"]
    api.clock.set(datetime(2026, 3, 18, 16, 0, 1, tzinfo=UTC))
    api.server.scheduler.run_until_idle()
    assert api.open_elements(iid) == ["contract_filing_overdue", "file_contract"]


def test_acceptance_application_deadline_is_the_end_of_the_contract_period(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "QF-PERIOD-END"
    iid = to_contract(api, bk)
    api.clock.set(datetime(2026, 3, 9, 2, 0, tzinfo=UTC))
    api.complete(iid, "sign_contract", {**CONTRACT, "implementation_end_date": "2026-12-31"})
    api.complete(iid, "file_contract", {"contract_filing_date": "2026-03-10"})
    # armed when construction starts, due at the end of the recorded last day of the period
    assert due(api, iid, "acceptance_application_due") == "2026-12-31T16:00:00Z"
    api.clock.set(datetime(2026, 12, 31, 15, 59, 59, tzinfo=UTC))
    api.server.scheduler.run_until_idle()
    assert api.open_elements(iid) == []
    api.clock.set(datetime(2026, 12, 31, 16, 0, 1, tzinfo=UTC))
    api.server.scheduler.run_until_idle()
    assert api.open_elements(iid) == ["request_acceptance_delay"]


def test_yearly_self_evaluation_keeps_the_anniversary_of_the_reported_start(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "QF-YEARS"
    iid = to_final(api, bk)
    api.complete(iid, "accept_final_application", {"acceptance_organizer": "data_bureau"})
    api.complete(iid, "final_acceptance", {"decision": "pass"})
    # in use since Friday 20 February 2026, reported on 2 March
    api.message("operation_started", bk, {"operation_started_on": "2026-02-20"})
    assert due(api, iid, "yearly_evaluation_due") == "2027-02-20T16:00:00Z"
    api.clock.set(datetime(2027, 2, 20, 16, 0, 1, tzinfo=UTC))
    api.server.scheduler.run_until_idle()
    assert api.open_elements(iid) == ["self_evaluation"]
    # the first year's evaluation takes two months
    api.clock.set(datetime(2027, 4, 20, 2, 0, tzinfo=UTC))
    api.complete(
        iid, "self_evaluation", {"evaluation_year": 2027, "self_evaluation_report_ref": "ZP-1", "in_operation": True}
    )
    api.complete(iid, "commission_post_evaluation", {"post_evaluation_commissioned": False})
    # 第三十六条 每年: the second is due on the second anniversary, not a year after the first one ended
    assert due(api, iid, "yearly_evaluation_due") == "2028-02-20T16:00:00Z"
    assert api.variables(iid)["evaluation_round"] == 2
    # a year whose evaluation ends after the next anniversary opens the next one at once: no year is skipped
    api.clock.set(datetime(2028, 2, 21, 2, 0, tzinfo=UTC))
    api.server.scheduler.run_until_idle()
    api.clock.set(datetime(2029, 3, 1, 2, 0, tzinfo=UTC))
    api.complete(
        iid, "self_evaluation", {"evaluation_year": 2028, "self_evaluation_report_ref": "ZP-2", "in_operation": True}
    )
    api.complete(iid, "commission_post_evaluation", {"post_evaluation_commissioned": False})
    assert api.open_elements(iid) == ["self_evaluation"]
    assert api.variables(iid)["evaluation_round"] == 3


@pytest.mark.parametrize(
    "message, variables, field",
    [
        ("award_notice_issued", {}, "award_date"),
        ("award_notice_issued", {"award_date": "2026-02-30"}, "award_date"),
        ("award_notice_issued", {"award_date": "2026-03-02", "signed_on": "2026-03-02"}, "signed_on"),
    ],
)
def test_a_message_that_does_not_fit_its_contract_is_refused(
    lifecycle_api: Api, message: str, variables: dict[str, Any], field: str
) -> None:
    api = lifecycle_api
    bk = "QF-CONTRACT"
    iid = to_procurement(api, bk)
    api.complete(iid, "procure", {"procurement_method": "公开招标"})
    waiting = [w for w in api.waiting(iid) if w.get("name") == message]
    assert {f["id"] for f in waiting[0]["payload"]} == {"award_date"}
    r = api.admin.post("/messages", json={"name": message, "business_key": bk, "variables": variables})
    assert r.status_code == 422, r.text
    assert field in r.json()["errors"]
    assert api.open_elements(iid) == []


def test_every_message_declares_its_payload() -> None:
    root = etree.parse(str(BPMN_FILE)).getroot()
    names = {m.get("id"): m.get("name") for m in root.findall("bpmn:message", NS)}
    required = {
        "construction_approval_copied": {"approval_ref"},
        "award_notice_issued": {"award_date"},
        "construction_completed": {"completed_on"},
        "change_requested": set(),
        "supervision_finding": {"finding_department"},
        "operation_started": {"operation_started_on"},
    }
    seen = {}
    for definition in root.iter(f"{{{NS['bpmn']}}}messageEventDefinition"):
        event = definition.getparent()
        props = {
            p.get("name")[len("payload.") :]: p.get("value")
            for p in event.iterfind("bpmn:extensionElements/camunda:properties/camunda:property", NS)
            if p.get("name").startswith("payload.")
        }
        assert props, event.get("id")
        seen[names[definition.get("messageRef")]] = {k for k, v in props.items() if ",required" in v}
    assert seen == required


@pytest.mark.parametrize(
    "message, variables, field",
    [
        ("operation_started", {}, "operation_started_on"),
        ("construction_completed", {}, "completed_on"),
        ("supervision_finding", {"finding_department": "audit_bureau"}, "finding_department"),
    ],
)
def test_messages_during_construction_and_operation_check_their_payload(
    lifecycle_api: Api, message: str, variables: dict[str, Any], field: str
) -> None:
    api = lifecycle_api
    bk = "QF-PAYLOAD"
    iid = to_final(api, bk) if message == "operation_started" else to_implementation(api, bk)
    if message == "operation_started":
        api.complete(iid, "accept_final_application", {"acceptance_organizer": "data_bureau"})
        api.complete(iid, "final_acceptance", {"decision": "pass"})
    r = api.admin.post("/messages", json={"name": message, "business_key": bk, "variables": variables})
    assert r.status_code == 422, r.text
    assert field in r.json()["errors"]


# ---- the diagram as a designer reads it (issue #12) ---------------------------------------------------------------

BPMN_FILE = REPO / "bpmn" / "qufu.bpmn"
DMN_FILE = REPO / "bpmn" / "qufu.dmn"
REGULATION = Path(__file__).resolve().parents[2] / "docs" / "regulations" / "qufu.txt"
NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
    "dc": "http://www.omg.org/spec/DD/20100524/DC",
    "camunda": "http://camunda.org/schema/1.0/bpmn",
}
CN_DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
CITATION = re.compile(r"第([一二三四五六七八九十]+(?:[、至][一二三四五六七八九十]+)*)条")


def chinese_number(text: str) -> int:
    if "十" not in text:
        return CN_DIGITS[text]
    tens, _, units = text.partition("十")
    return (CN_DIGITS[tens] if tens else 1) * 10 + (CN_DIGITS[units] if units else 0)


def cited_articles(text: str) -> set[int]:
    found: set[int] = set()
    for group in CITATION.findall(text):
        for part in group.split("、"):
            ends = [chinese_number(n) for n in part.split("至")]
            found.update(range(ends[0], ends[-1] + 1))
    return found


def bounds(root: etree._Element) -> dict[str, tuple[float, float, float, float]]:
    result = {}
    for shape in root.iter(f"{{{NS['bpmndi']}}}BPMNShape"):
        b = shape.find("dc:Bounds", NS)
        result[shape.get("bpmnElement")] = tuple(float(b.get(k)) for k in ("x", "y", "width", "height"))
    return result


@pytest.mark.parametrize(
    "text, articles",
    [
        ("第六条", {6}),
        ("第四、十六条", {4, 16}),
        ("第九至十三条", {9, 10, 11, 12, 13}),
        ("第三十一至三十四条", {31, 32, 33, 34}),
        ("第四十七条", {47}),
    ],
)
def test_citations_are_read_as_written(text: str, articles: set[int]) -> None:
    assert cited_articles(text) == articles


def test_every_cited_article_exists_in_the_regulation() -> None:
    regulation = REGULATION.read_text(encoding="utf-8")
    present = {chinese_number(n) for n in re.findall(r"^第([一二三四五六七八九十]+)条", regulation, re.M)}
    assert present == set(range(1, 48))
    texts = [d.text or "" for d in etree.parse(str(BPMN_FILE)).getroot().iter(f"{{{NS['bpmn']}}}documentation")]
    texts += [d.text or "" for d in etree.parse(str(DMN_FILE)).getroot().iter("{*}description")]
    texts += [d.get("name") or "" for d in etree.parse(str(DMN_FILE)).getroot().iter("{*}decision")]
    cited = set().union(*(cited_articles(t) for t in texts))
    assert cited and cited <= present, sorted(cited - present)


def test_every_user_task_sits_in_the_lane_of_its_first_group() -> None:
    root = etree.parse(str(BPMN_FILE)).getroot()
    process = root.find("bpmn:process", NS)
    participant = root.find("bpmn:collaboration/bpmn:participant", NS)
    assert participant is not None and participant.get("processRef") == "qufu" and participant.get("name")
    shapes = bounds(root)
    lanes = {lane.get("id"): lane for lane in process.iter(f"{{{NS['bpmn']}}}lane")}
    top_level = {
        e.get("id")
        for e in process
        if isinstance(e.tag, str)
        and e.get("id")
        and etree.QName(e).localname not in ("sequenceFlow", "laneSet", "subProcess", "documentation")
    }
    listed = [ref.text for lane in lanes.values() for ref in lane.findall("bpmn:flowNodeRef", NS)]
    assert sorted(listed) == sorted(top_level)  # every top-level node in exactly one lane, nothing nested
    groups = set()
    for task in process.iter(f"{{{NS['bpmn']}}}userTask"):
        group = task.get(f"{{{NS['camunda']}}}candidateGroups").split(",")[0].strip()
        groups.add(group)
        lane = f"lane_{group}"
        assert lane in lanes and re.search(r"[\u4e00-\u9fff]", lanes[lane].get("name") or ""), lane
        x, y, w, h = shapes[task.get("id")]
        lx, ly, lw, lh = shapes[lane]
        assert lx <= x and x + w <= lx + lw and ly <= y and y + h <= ly + lh, (task.get("id"), lane)
        if task.get("id") in top_level:
            assert task.get("id") in [r.text for r in lanes[lane].findall("bpmn:flowNodeRef", NS)]
    assert set(lanes) == {f"lane_{g}" for g in groups}


def test_decision_gateways_name_every_outgoing_flow() -> None:
    process = etree.parse(str(BPMN_FILE)).getroot().find("bpmn:process", NS)
    flows = {f.get("id"): f for f in process.iter(f"{{{NS['bpmn']}}}sequenceFlow")}
    for gateway in process.iter(f"{{{NS['bpmn']}}}exclusiveGateway"):
        outgoing = [o.text for o in gateway.findall("bpmn:outgoing", NS)]
        if len(outgoing) > 1:
            assert gateway.get("name"), gateway.get("id")
            assert all(flows[o].get("name") for o in outgoing), (gateway.get("id"), outgoing)
    for script in process.iter(f"{{{NS['bpmn']}}}scriptTask"):
        assert cited_articles(script.findtext("bpmn:documentation", "", NS)) or "惯例" in script.findtext(
            "bpmn:documentation", "", NS
        ), script.get("id")


def cell_matches(entry: str, value: Any) -> bool:
    """A decision-table input cell as the service reads it: '-' any, '?' the value, a leading operator, or equality."""
    entry = entry.strip()
    if entry in ("-", ""):
        return True
    scope = {"value": value, "Decimal": Decimal}
    if "?" in entry:
        return bool(eval(entry.replace("?", "value"), scope))  # noqa: S307 - the test's own table cells
    if entry[0] in "<>=!":
        return bool(eval("value " + entry, scope))  # noqa: S307
    return bool(eval(f"value == ({entry})", scope))  # noqa: S307


@pytest.mark.parametrize(
    "decision, inputs",
    [
        ("qufu_feasibility_report", [(Decimal(v),) for v in ("0", "499.99", "500", "500.01", "100000")]),
        (
            "qufu_security_share",
            [(new, Decimal(share)) for new in (True, False) for share in ("0", "4.99", "5", "5.01", "100")],
        ),
    ],
)
def test_decision_rows_do_not_overlap_and_leave_no_gap(decision: str, inputs: list[tuple[Any, ...]]) -> None:
    table = etree.parse(str(DMN_FILE)).getroot().find(f"{{*}}decision[@id='{decision}']/{{*}}decisionTable")
    rules = [[e.findtext("{*}text") or "" for e in rule.findall("{*}inputEntry")] for rule in table.findall("{*}rule")]
    for values in inputs:
        hits = [
            i for i, cells in enumerate(rules) if all(cell_matches(c, v) for c, v in zip(cells, values, strict=True))
        ]
        assert len(hits) == 1, (decision, values, hits)
