"""Yulin 玉林市 (政务信息化项目建设管理办法, 征求意见稿): the lifecycle driven over REST as the OA systems and reviewers
would."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from lxml import etree

from tests.support import REPO, Api

PROCESS_KEY = "yulin"

APPLICATION = {
    "application_date": "2027-03-01",
    "construction_summary_ref": "ZJ-1",
    "financial_report_ref": "CW-1",
    "audit_report_ref": "SJ-1",
    "security_assessment_ref": "DJCP-1",
    "crypto_assessment_ref": "MP-1",
    "archive_accepted": True,
}


def start(api: Api, bk: str, **overrides: Any) -> str:
    variables: dict[str, Any] = {
        "project_name": "玉林市一网统管平台",
        "department": "市城管局",
        "budget_wan": 300,
        "project_type": "infrastructure",
        "project_class": "professional",
        "in_plan": True,
        "target_year": 2027,
    }
    variables.update(overrides)
    return str(api.start(PROCESS_KEY, variables, business_key=bk)["id"])


def today(api: Api) -> str:
    """The date on the service's clock, China time."""
    return (api.clock.now() + timedelta(hours=8)).date().isoformat()


def end_of_day_china(day: str) -> datetime:
    """24:00 China time at the end of `day`, in UTC: when a deadline day runs out."""
    return datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(hours=16)


def timer_due(api: Api, iid: str, element_id: str) -> datetime:
    due = [w["due_at"] for w in api.waiting(iid) if w.get("element_id") == element_id]
    assert len(due) == 1, (element_id, api.waiting(iid))
    return datetime.fromisoformat(due[0].replace("Z", "+00:00"))


def through_approval(api: Api, iid: str, public: bool = False) -> None:
    """第十二条: plan, parallel technical and funding reviews, approval."""
    prepare = "prepare_public_plan" if public else "prepare_professional_plan"
    api.complete(iid, prepare, {"plan_ref": "FA-1", "plan_depth_met": True})
    assert api.open_elements(iid) == ["funding_review", "technical_review"]
    api.complete(iid, "technical_review", {"technical_opinion": "同意"})
    api.complete(iid, "funding_review", {"funding_opinion": "同意"})
    api.complete(iid, "approve_project", {"decision": "pass", "approval_ref": "玉数批〔2026〕1号"})


def through_filing(api: Api, iid: str) -> None:
    api.complete(
        iid,
        "submit_filing",
        {
            "filing_ref": "BA-1",
            "security_requirements_met": True,
            "data_sharing_requirements_met": True,
            "ip_requirements_met": True,
        },
    )
    api.complete(iid, "register_filing", {"decision": "pass"})


def to_contract(api: Api, bk: str, **overrides: Any) -> str:
    """Start and get through approval or filing (and supervision): the instance waits for the contract."""
    iid = start(api, bk, **overrides)
    if api.variables(iid)["track"] == "approval":
        through_approval(api, iid, public=overrides.get("project_class") == "public")
        api.complete(iid, "engage_supervisor", {"supervisor_name": "某监理公司"})
    else:
        through_filing(api, iid)
    assert api.open_elements(iid) == []
    assert "contract_signed" in {w.get("name") for w in api.waiting(iid)}
    return iid


def to_implementation(api: Api, bk: str, **overrides: Any) -> str:
    iid = to_contract(api, bk, **overrides)
    api.message("contract_signed", bk, {"signed_on": "2026-03-01", "contract_amount_wan": 280})
    api.complete(iid, "upload_contract", {"ip_clause_included": True})
    assert api.open_elements(iid) == []
    assert {"construction_completed", "change_requested"} <= {w.get("name") for w in api.waiting(iid)}
    return iid


# ---- the whole lifecycle ------------------------------------------------------------------------------


def to_acceptance_application(api: Api, bk: str, **overrides: Any) -> str:
    iid = to_implementation(api, bk, **overrides)
    api.message("construction_completed", bk, {"completed_on": today(api)})
    return iid


def accept_and_conclude(api: Api, iid: str) -> None:
    api.complete(iid, "upload_acceptance_materials", {"acceptance_materials_ref": "YS-1"})
    assert api.open_task(iid, "acceptance_conclusion")["candidate_groups"] == ["data_bureau"]
    api.complete(
        iid, "acceptance_conclusion", {"acceptance_conclusion_ref": "YSJL-1", "acceptance_conclusion_text": "通过"}
    )


def test_full_approval_lifecycle_to_completed(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "YL-FULL"
    iid = start(
        api,
        bk,
        budget_wan=800,
        project_type="software_dev",
        project_class="public",
        new_fiscal_funds=True,
        ex_ante_evaluation_required=True,
        plan_batch="2026年第二批",
    )
    assert api.variables(iid)["track"] == "approval"
    # 第十五条: finance is consulted and the ex-ante performance evaluation passes finance's review first
    assert api.open_task(iid, "consult_finance")["candidate_groups"] == ["finance_bureau"]
    api.complete(iid, "consult_finance", {"finance_opinion": "同意", "matches_annual_budget": True})
    api.complete(iid, "ex_ante_evaluation", {"ex_ante_report_ref": "SQ-1"})
    api.complete(iid, "ex_ante_review", {"decision": "pass"})
    # 第十二条(一): a public project's plan is prepared by the information centre
    assert api.open_task(iid, "prepare_public_plan")["candidate_groups"] == ["info_center"]
    through_approval(api, iid, public=True)
    # 第二十四条: software >= 500 gets the shared-components requirement; 第十七条: supervision
    assert api.variables(iid)["component_sharing_required"] is True
    assert api.open_task(iid, "engage_supervisor")["candidate_groups"] == ["applicant"]
    api.complete(iid, "engage_supervisor", {"supervisor_name": "某监理公司"})
    api.message("contract_signed", bk, {"signed_on": "2026-03-01"})
    api.complete(
        iid,
        "upload_contract",
        {
            "ip_clause_included": True,
            "service_purchase": True,
            "service_term_years": 3,
        },
    )
    api.message("construction_completed", bk, {"completed_on": today(api)})
    assert api.open_elements(iid) == ["apply_acceptance"]
    api.complete(iid, "apply_acceptance", {**APPLICATION, "third_party_test_ref": "CP-1"})
    # before acceptance: shared components registered (第二十四条), source code uploaded (第二十五条)
    assert api.open_elements(iid) == ["register_components"]
    api.complete(iid, "register_components", {"components_registered": True})
    assert api.open_elements(iid) == ["upload_source_code"]
    api.complete(iid, "upload_source_code", {"source_code_ref": "YM-1"})
    assert api.open_task(iid, "organise_acceptance")["candidate_groups"] == ["data_bureau"]
    api.complete(
        iid, "organise_acceptance", {"decision": "pass", "expert_conclusion": "pass", "acceptance_date": today(api)}
    )
    accept_and_conclude(api, iid)
    # 第二十九条: the efficiency evaluation opens 12 months after acceptance, not before
    assert api.open_elements(iid) == []
    api.advance(timedelta(days=360))
    assert api.open_elements(iid) == []
    api.advance(timedelta(days=10))
    assert api.open_task(iid, "efficiency_evaluation")["candidate_groups"] == ["data_bureau"]
    api.complete(iid, "efficiency_evaluation", {"evaluation_result": "良好", "om_funding_basis": "按标准安排"})
    assert api.end_event(iid) == "end_completed"


def test_full_filing_lifecycle_to_completed(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "YL-FILING"
    iid = start(api, bk, budget_wan=150, project_type="software_dev")
    assert api.variables(iid)["track"] == "filing"
    # 第十三条: the project unit (or the user unit) files with the data bureau
    assert api.open_task(iid, "submit_filing")["candidate_groups"] == ["applicant", "info_center"]
    through_filing(api, iid)
    # no supervision is required on the filing track (第十七条)
    assert "contract_signed" in {w.get("name") for w in api.waiting(iid)}
    api.message("contract_signed", bk, {"signed_on": "2026-03-01"})
    api.complete(iid, "upload_contract", {"ip_clause_included": True})
    api.message("construction_completed", bk, {"completed_on": today(api)})
    # 第二十五条: new software → source code before acceptance; 第二十二条: the unit accepts by itself
    assert api.open_elements(iid) == ["upload_source_code"]
    api.complete(iid, "upload_source_code", {"source_code_ref": "YM-2"})
    assert api.open_task(iid, "self_acceptance")["candidate_groups"] == ["applicant"]
    api.complete(iid, "self_acceptance", {"decision": "pass", "acceptance_date": today(api)})
    accept_and_conclude(api, iid)
    # no efficiency evaluation on the filing track (第二十九条)
    assert api.end_event(iid) == "end_completed"


# ---- start form and permissions -------------------------------------------------------------------------


def test_start_form_is_served(lifecycle_api: Api) -> None:
    r = lifecycle_api.as_("oa", "applicant").get(f"/process-definitions/{PROCESS_KEY}")
    assert r.status_code == 200, r.text
    form = {f["id"]: f for f in r.json()["start_form"]}
    assert form["budget_wan"]["type"] == "decimal" and form["budget_wan"]["required"]
    assert {v["id"] for v in form["project_type"]["options"]} == {
        "infrastructure",
        "software_dev",
        "business_operation",
        "om",
        "third_party_service",
    }
    assert {v["id"] for v in form["project_class"]["options"]} == {"public", "professional"}
    assert {v["id"] for v in form["funding_source"]["options"]} == {"fiscal", "non_fiscal"}


BASE = {
    "project_name": "x",
    "department": "d",
    "budget_wan": 300,
    "project_type": "infrastructure",
    "project_class": "public",
    "in_plan": True,
    "target_year": 2027,
}


@pytest.mark.parametrize(
    "change, field",
    [
        ({"project_name": None}, "project_name"),
        ({"department": None}, "department"),
        ({"budget_wan": None}, "budget_wan"),
        ({"budget_wan": -0.01}, "budget_wan"),
        ({"project_type": "office_equipment"}, "project_type"),
        ({"project_class": None}, "project_class"),
        ({"funding_source": "loan"}, "funding_source"),
        ({"in_plan": None}, "in_plan"),
        ({"target_year": None}, "target_year"),
    ],
)
def test_invalid_start_is_422_naming_the_field(lifecycle_api: Api, change: dict[str, Any], field: str) -> None:
    variables_ = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    r = lifecycle_api.as_("oa", "applicant").post(
        "/process-instances", json={"process_key": PROCESS_KEY, "business_key": "YL-BAD", "variables": variables_}
    )
    assert r.status_code == 422, r.text
    assert list(r.json()["errors"]) == [field]


def test_wrong_group_is_refused(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "YL-403")
    api.complete(iid, "prepare_professional_plan", {"plan_ref": "FA", "plan_depth_met": True})
    task = api.open_task(iid, "technical_review")
    assert task["candidate_groups"] == ["data_bureau"]
    r = api.as_("f", "finance_bureau").post(f"/tasks/{task['id']}/claim")
    assert r.status_code == 403
    r = api.as_("f", "finance_bureau").post(
        f"/tasks/{task['id']}/complete", json={"variables": {"technical_opinion": "同意"}}
    )
    assert r.status_code == 403
    # 第十二条: the review gives an opinion; it cannot be left out, and it is not a decision
    client = api.as_("d", "data_bureau")
    assert client.post(f"/tasks/{task['id']}/claim").status_code == 200
    r = client.post(f"/tasks/{task['id']}/complete", json={"variables": {"cost_check_wan": 300}})
    assert r.status_code == 422 and "technical_opinion" in r.json()["errors"]
    r = client.post(
        f"/tasks/{task['id']}/complete", json={"variables": {"decision": "reject", "technical_opinion": "x"}}
    )
    assert r.status_code == 422 and "decision" in r.json()["errors"]
    assert sorted(api.open_elements(iid)) == ["funding_review", "technical_review"]


# ---- tracks (第十一条) ---------------------------------------------------------------------------------------

THREE_TYPES = ("infrastructure", "software_dev", "business_operation")
FIRST_TASK = {"self_managed": None, "filing": ["submit_filing"], "approval": ["prepare_professional_plan"]}


@pytest.mark.parametrize("project_type", THREE_TYPES)
@pytest.mark.parametrize(
    "budget, track",
    [
        (0, "self_managed"),
        (9.99, "self_managed"),
        (10, "filing"),
        (10.01, "filing"),
        (199.99, "filing"),
        (200, "approval"),
        (200.01, "approval"),
    ],
)
def test_track_of_infrastructure_software_and_operations(
    lifecycle_api: Api, project_type: str, budget: float, track: str
) -> None:
    api = lifecycle_api
    iid = start(api, "YL-TRACK", budget_wan=budget, project_type=project_type)
    if track == "self_managed":
        assert api.end_event(iid) == "end_self_managed"
        assert api.instance(iid)["variables"]["track"] == "self_managed"
    else:
        assert api.variables(iid)["track"] == track
        assert api.open_elements(iid) == FIRST_TASK[track]


@pytest.mark.parametrize("project_type", ["om", "third_party_service"])
@pytest.mark.parametrize(
    "budget, track",
    [
        (9.99, "self_managed"),
        (10, "filing"),
        (10.01, "filing"),
        (199.99, "filing"),
        (200, "filing"),
        (200.01, "filing"),
        (5000, "filing"),
    ],
)
def test_track_of_om_and_third_party_services(lifecycle_api: Api, project_type: str, budget: float, track: str) -> None:
    api = lifecycle_api
    iid = start(api, "YL-OM", budget_wan=budget, project_type=project_type)
    if track == "self_managed":
        assert api.end_event(iid) == "end_self_managed"
    else:
        assert api.variables(iid)["track"] == track
        assert api.open_elements(iid) == ["submit_filing"]


@pytest.mark.parametrize("project_type", [*THREE_TYPES, "om"])
@pytest.mark.parametrize(
    "budget, track",
    [
        (9.99, "self_managed"),
        (10, "filing"),
        (10.01, "filing"),
        (199.99, "filing"),
        (200, "filing"),
        (200.01, "filing"),
        (3000, "filing"),
    ],
)
def test_track_of_non_fiscal_funds(lifecycle_api: Api, project_type: str, budget: float, track: str) -> None:
    api = lifecycle_api
    iid = start(api, "YL-NF", budget_wan=budget, project_type=project_type, funding_source="non_fiscal")
    if track == "self_managed":
        assert api.end_event(iid) == "end_self_managed"
    else:
        assert api.variables(iid)["track"] == track
        assert api.open_elements(iid) == ["submit_filing"]


# ---- plan, urgent projects, funding pre-checks (第六至八、十五、十六条) ---------------------------------------


def test_project_outside_any_plan_is_rejected(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "YL-NOPLAN", in_plan=False)
    assert api.end_event(iid) == "end_rejected"


def test_plan_is_checked_after_the_track(lifecycle_api: Api) -> None:
    # a self-managed project is out of the procedure even when it is in no plan
    iid = start(lifecycle_api, "YL-NOPLAN-SELF", in_plan=False, budget_wan=5)
    assert lifecycle_api.end_event(iid) == "end_self_managed"


def test_urgent_project_enters_after_city_government_approval(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "YL-URGENT", urgent_entry=True, in_plan=False)
    assert api.open_elements(iid) == ["special_report"]
    assert api.open_task(iid, "special_report")["candidate_groups"] == ["applicant"]
    api.complete(iid, "special_report", {"special_report_ref": "玉城管报〔2026〕3号", "urgency_reason": "防汛应急"})
    assert api.open_task(iid, "city_approval")["candidate_groups"] == ["city_government"]
    api.complete(iid, "city_approval", {"decision": "pass"})
    assert api.open_elements(iid) == ["prepare_professional_plan"]


def test_urgent_project_not_approved_by_city_government_is_rejected(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "YL-URGENT-NO", urgent_entry=True)
    api.complete(iid, "special_report", {"special_report_ref": "R", "urgency_reason": "上级临时要求"})
    api.complete(iid, "city_approval", {"decision": "reject"})
    assert api.end_event(iid) == "end_rejected"


@pytest.mark.parametrize("new_funds, consulted", [(True, True), (False, False)])
def test_finance_consulted_on_new_fiscal_funds(lifecycle_api: Api, new_funds: bool, consulted: bool) -> None:
    api = lifecycle_api
    iid = start(api, "YL-NEWFUNDS", new_fiscal_funds=new_funds, budget_wan=50)
    assert api.open_elements(iid) == (["consult_finance"] if consulted else ["submit_filing"])


def test_ex_ante_evaluation_revise_then_pass(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "YL-EXANTE", ex_ante_evaluation_required=True)
    assert api.open_elements(iid) == ["ex_ante_evaluation"]
    api.complete(iid, "ex_ante_evaluation", {"ex_ante_report_ref": "SQ-1"})
    assert api.open_task(iid, "ex_ante_review")["candidate_groups"] == ["finance_bureau"]
    api.complete(iid, "ex_ante_review", {"decision": "revise", "ex_ante_opinion": "补充绩效目标"})
    assert api.open_elements(iid) == ["ex_ante_evaluation"]
    api.complete(iid, "ex_ante_evaluation", {"ex_ante_report_ref": "SQ-2"})
    api.complete(iid, "ex_ante_review", {"decision": "pass"})
    assert api.open_elements(iid) == ["prepare_professional_plan"]


def test_ex_ante_evaluation_failed_is_rejected(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "YL-EXANTE-NO", ex_ante_evaluation_required=True)
    api.complete(iid, "ex_ante_evaluation", {"ex_ante_report_ref": "SQ-1"})
    api.complete(iid, "ex_ante_review", {"decision": "reject"})
    assert api.end_event(iid) == "end_rejected"


# ---- approval (第十二、十四条) and filing (第十三条) ---------------------------------------------------------


REVIEWS = {
    "technical_review": ("data_bureau", "technical_opinion", {"cost_check_wan": 290}),
    "funding_review": ("finance_bureau", "funding_opinion", {"approved_fiscal_wan": 280}),
}
OPINIONS = {"favourable": "同意立项", "unfavourable": "不同意：重复建设、资金来源未落实"}


@pytest.mark.parametrize("first", ["technical_review", "funding_review"])
@pytest.mark.parametrize("technical, funding", [(t, f) for t in OPINIONS for f in OPINIONS])
@pytest.mark.parametrize("approval", ["pass", "revise", "reject"])
def test_both_review_opinions_reach_the_approval_in_either_order(
    lifecycle_api: Api, first: str, technical: str, funding: str, approval: str
) -> None:
    """第十二条: the technical review and the funding review are opinions (出具评审意见 / 意见); the approval weighs
    them (综合各方意见) and decides. Neither opinion overwrites the other, whichever comes first."""
    api = lifecycle_api
    iid = start(api, "YL-PAR")
    api.complete(iid, "prepare_professional_plan", {"plan_ref": "FA", "plan_depth_met": True})
    assert api.open_elements(iid) == ["funding_review", "technical_review"]
    given = {"technical_review": OPINIONS[technical], "funding_review": OPINIONS[funding]}
    order = [first, *(r for r in REVIEWS if r != first)]
    for n, review in enumerate(order):
        group, field, extra = REVIEWS[review]
        assert api.open_task(iid, review)["candidate_groups"] == [group]
        api.complete(iid, review, {field: given[review], **extra})
        if n == 0:  # 并联: the approval waits for both opinions
            assert api.open_elements(iid) == [order[1]]
        api.advance(timedelta(minutes=1))
    task = api.open_task(iid, "approve_project")
    assert task["candidate_groups"] == ["data_bureau"]
    detail = api.as_("d", "data_bureau").get(f"/tasks/{task['id']}").json()
    shown = {t["element_id"]: t for t in detail["completed_tasks"]}
    for review, (group, field, extra) in REVIEWS.items():
        assert shown[review]["candidate_groups"] == [group]
        assert shown[review]["submitted"] == {field: given[review], **extra}
    assert {
        f["id"] for f in api.as_("d", "data_bureau").get(f"/tasks/{shown['technical_review']['id']}").json()["form"]
    } == {"technical_opinion", "cost_check_wan"}
    api.complete(iid, "approve_project", {"decision": approval, "approval_ref": "玉数批〔2026〕2号"})
    if approval == "pass":
        assert api.open_elements(iid) == ["engage_supervisor"]
    elif approval == "revise":
        assert api.open_elements(iid) == ["prepare_professional_plan"]
    else:
        assert api.end_event(iid) == "end_rejected"


def test_approval_revise_returns_to_the_plan_then_reject_ends(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "YL-APP", project_class="public")
    api.complete(iid, "prepare_public_plan", {"plan_ref": "FA", "plan_depth_met": False})
    api.complete(iid, "technical_review", {"technical_opinion": "深度不足"})
    api.complete(iid, "funding_review", {"funding_opinion": "同意"})
    api.complete(iid, "approve_project", {"decision": "revise"})
    assert api.open_elements(iid) == ["prepare_public_plan"]
    api.complete(iid, "prepare_public_plan", {"plan_ref": "FA-2", "plan_depth_met": True})
    assert api.open_elements(iid) == ["funding_review", "technical_review"]
    api.complete(iid, "technical_review", {"technical_opinion": "重复建设"})
    api.complete(iid, "funding_review", {"funding_opinion": "同意"})
    api.complete(iid, "approve_project", {"decision": "reject"})
    assert api.end_event(iid) == "end_rejected"


def test_filing_returned_for_completion(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "YL-FIL-REV", budget_wan=100, project_class="public")
    api.complete(
        iid,
        "submit_filing",
        {
            "filing_ref": "BA",
            "security_requirements_met": True,
            "data_sharing_requirements_met": False,
            "ip_requirements_met": True,
        },
        group="info_center",
    )
    assert api.open_task(iid, "register_filing")["candidate_groups"] == ["data_bureau"]
    api.complete(iid, "register_filing", {"decision": "revise", "filing_opinion": "未落实数据共享"})
    assert api.open_elements(iid) == ["submit_filing"]
    through_filing(api, iid)
    assert api.open_elements(iid) == []
    assert "contract_signed" in {w.get("name") for w in api.waiting(iid)}


# ---- the year-end deadline (第十六条) -----------------------------------------------------------------------


def test_year_end_deadline_excludes_from_next_budget(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "YL-YEAREND", target_year=2027)
    # 24:00 on 31 December 2026, China time
    assert timer_due(api, iid, "year_end_deadline") == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    api.advance(datetime(2026, 12, 31, 15, 59, tzinfo=UTC) - api.clock.now())
    assert api.open_elements(iid) == ["prepare_professional_plan"]
    api.advance(timedelta(minutes=2))
    assert api.open_elements(iid) == ["budget_exclusion_notice", "prepare_professional_plan"]
    assert api.open_task(iid, "budget_exclusion_notice")["candidate_groups"] == ["finance_bureau"]
    api.complete(iid, "budget_exclusion_notice", {"excluded_from_next_budget": True})
    # the approval itself goes on
    through_approval(api, iid)
    assert api.open_elements(iid) == ["engage_supervisor"]


def test_approval_before_year_end_cancels_the_deadline(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "YL-INTIME", target_year=2027)
    through_approval(api, iid)
    assert "year_end_deadline" not in {w.get("element_id") for w in api.waiting(iid)}
    api.advance(timedelta(days=320))
    assert api.open_elements(iid) == ["engage_supervisor"]


# ---- supervision and contract (第十七、十八、二十条) ---------------------------------------------------------


@pytest.mark.parametrize("budget, supervised", [(199.99, False), (200, True), (200.01, True)])
def test_supervision_on_the_approval_track(lifecycle_api: Api, budget: float, supervised: bool) -> None:
    api = lifecycle_api
    iid = start(api, "YL-SUP", budget_wan=budget)
    if supervised:
        through_approval(api, iid)
        assert api.open_elements(iid) == ["engage_supervisor"]
    else:
        through_filing(api, iid)
        assert api.open_elements(iid) == []


def test_service_purchase_contract_longer_than_three_years_is_refused(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "YL-TERM"
    iid = to_contract(api, bk)
    api.message("contract_signed", bk, {"signed_on": "2026-03-01"})
    task = api.open_task(iid, "upload_contract")
    client = api.as_("a", "applicant")
    assert client.post(f"/tasks/{task['id']}/claim").status_code == 200
    r = client.post(
        f"/tasks/{task['id']}/complete",
        json={
            "variables": {
                "ip_clause_included": True,
                "service_purchase": True,
                "service_term_years": 4,
            }
        },
    )
    assert r.status_code == 422 and "service_term_years" in r.json()["errors"]


# ---- changes (第二十、二十一条) ---------------------------------------------------------------------------


def request_change(
    api: Api,
    bk: str,
    iid: str,
    added: float = 0,
    removed: float = 0,
    major: bool = False,
    new_budget: float | None = None,
) -> None:
    api.message("change_requested", bk, {"change_reason": "业务调整"})
    assert api.open_elements(iid) == ["submit_change"]
    budget = api.variables(iid)["budget_wan"]
    api.complete(
        iid,
        "submit_change",
        {
            "added_content_wan": added,
            "removed_content_wan": removed,
            "major_adjustment": major,
            "new_budget_wan": new_budget if new_budget is not None else float(budget) + added - removed,
            "change_document_ref": "BG-1",
        },
    )


def implementing(api: Api, iid: str) -> bool:
    names = {w.get("name") for w in api.waiting(iid)}
    return api.open_elements(iid) == [] and {"construction_completed", "change_requested"} <= names


@pytest.mark.parametrize(
    "added, removed, major, route",
    [
        (99.9, 0, False, "record"),
        (100, 0, False, "record"),
        (100.1, 0, False, "reestablish"),
        (0, 99.9, False, "record"),
        (0, 100, False, "record"),
        (0, 100.1, False, "reestablish"),
        (0, 0, True, "reestablish"),
        (60, 60, False, "record"),
    ],
)
def test_change_above_ten_percent_or_major_needs_reapproval(
    lifecycle_api: Api, added: float, removed: float, major: bool, route: str
) -> None:
    api = lifecycle_api
    bk = "YL-CHG"
    iid = to_implementation(api, bk, budget_wan=1000)
    request_change(api, bk, iid, added, removed, major)
    assert api.variables(iid)["change_route"] == route
    if route == "record":
        assert implementing(api, iid)
        return
    # 第二十一条: approval again, by the project's track; afterwards the implementation goes on
    assert api.open_elements(iid) == ["prepare_professional_plan"]
    through_approval(api, iid)
    assert implementing(api, iid)
    assert "contract_signed" not in {w.get("name") for w in api.waiting(iid)}


def test_change_refiles_a_filing_project_and_repeats(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "YL-CHG-FIL"
    iid = to_implementation(api, bk, budget_wan=100, project_type="om")
    request_change(api, bk, iid, added=10.01)
    assert api.open_elements(iid) == ["submit_filing"]
    through_filing(api, iid)
    assert implementing(api, iid)
    request_change(api, bk, iid, added=5)
    assert api.variables(iid)["change_route"] == "record" and implementing(api, iid)


def test_change_moving_a_project_to_the_approval_track(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "YL-CHG-UP"
    iid = to_implementation(api, bk, budget_wan=150)
    request_change(api, bk, iid, added=60)
    assert api.variables(iid)["track"] == "approval"
    assert api.open_elements(iid) == ["prepare_professional_plan"]
    through_approval(api, iid)
    # 第十七条: now on the approval track, the project engages a supervisor
    assert api.open_elements(iid) == ["engage_supervisor_after_change"]
    api.complete(iid, "engage_supervisor_after_change", {"supervisor_name": "某监理公司"})
    assert implementing(api, iid)
    # a second change on the approval track: the supervisor is already engaged
    request_change(api, bk, iid, major=True)
    through_approval(api, iid)
    assert implementing(api, iid)


def test_refused_move_to_the_approval_track_keeps_the_filing(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "YL-CHG-UP-REJ"
    iid = to_implementation(api, bk, budget_wan=150)
    request_change(api, bk, iid, added=60)
    api.complete(iid, "prepare_professional_plan", {"plan_ref": "FA", "plan_depth_met": True})
    api.complete(iid, "technical_review", {"technical_opinion": "不必要"})
    api.complete(iid, "funding_review", {"funding_opinion": "无资金"})
    api.complete(iid, "approve_project", {"decision": "reject"})
    assert implementing(api, iid)
    assert api.variables(iid)["track"] == "filing" and float(api.variables(iid)["budget_wan"]) == 150
    api.message("construction_completed", bk, {"completed_on": today(api)})
    assert api.open_elements(iid) == ["self_acceptance"]


def test_refused_reapproval_keeps_the_original_project(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "YL-CHG-REJ"
    iid = to_implementation(api, bk, budget_wan=300)
    request_change(api, bk, iid, added=100)
    api.complete(iid, "prepare_professional_plan", {"plan_ref": "FA-BG", "plan_depth_met": True})
    api.complete(iid, "technical_review", {"technical_opinion": "不必要"})
    api.complete(iid, "funding_review", {"funding_opinion": "无资金"})
    api.complete(iid, "approve_project", {"decision": "reject"})
    assert api.instance(iid)["status"] == "running"
    assert implementing(api, iid)
    assert float(api.variables(iid)["budget_wan"]) == 300


@pytest.mark.parametrize(
    "first_added, first_removed, added, removed, route",
    [
        # after an approved increase to 1200: 100 is 10 % of the original 1000 (8.3 % of 1200)
        (200, 0, 100, 0, "record"),
        (200, 0, 100.01, 0, "reestablish"),
        (200, 0, 0, 100, "record"),
        (200, 0, 0, 100.01, "reestablish"),
        # after an approved reduction to 800: 90 is 9 % of the original 1000 (11.25 % of 800)
        (0, 200, 90, 0, "record"),
        (0, 200, 100, 0, "record"),
        (0, 200, 100.01, 0, "reestablish"),
    ],
)
def test_a_second_change_is_measured_against_the_original_total(
    lifecycle_api: Api, first_added: float, first_removed: float, added: float, removed: float, route: str
) -> None:
    api = lifecycle_api
    bk = "YL-CHG-2ND"
    iid = to_implementation(api, bk, budget_wan=1000)
    assert float(api.variables(iid)["original_budget_wan"]) == 1000
    request_change(api, bk, iid, added=first_added, removed=first_removed)
    assert api.variables(iid)["change_route"] == "reestablish"
    through_approval(api, iid)
    assert implementing(api, iid)
    assert float(api.variables(iid)["budget_wan"]) == 1000 + first_added - first_removed
    # 第二十一条: 占原总投资比例 — the total of the first approval, not the changed one
    request_change(api, bk, iid, added=added, removed=removed)
    assert api.variables(iid)["change_route"] == route
    assert float(api.variables(iid)["original_budget_wan"]) == 1000
    if route == "record":
        assert implementing(api, iid)
    else:
        assert api.open_elements(iid) == ["prepare_professional_plan"]


def test_change_below_ten_wan_leaves_the_procedure(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "YL-CHG-SELF"
    iid = to_implementation(api, bk, budget_wan=50, project_type="business_operation")
    request_change(api, bk, iid, removed=45)
    assert api.end_event(iid) == "end_self_managed_after_change"


def test_year_end_deadline_does_not_apply_to_reapproval(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "YL-CHG-YEAR"
    iid = to_implementation(api, bk, target_year=2027)
    api.advance(timedelta(days=400))
    request_change(api, bk, iid, major=True)
    assert api.open_elements(iid) == ["prepare_professional_plan"]


def test_key_project_inspections_do_not_stop_the_implementation(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "YL-INSPECT"
    iid = to_implementation(api, bk)
    # 第二十条: the data bureau inspects key projects, as often as it schedules an inspection
    for n in (1, 2):
        api.message("key_project_inspection", bk)
        assert api.open_elements(iid) == ["inspect_key_project"]
        assert api.open_task(iid, "inspect_key_project")["candidate_groups"] == ["data_bureau"]
        api.complete(iid, "inspect_key_project", {"inspection_date": f"2026-0{n + 6}-01", "inspection_findings": "无"})
        assert implementing(api, iid)
    api.message("construction_completed", bk, {"completed_on": today(api)})
    assert api.open_elements(iid) == ["apply_acceptance"]


# ---- acceptance application, shared components, source code (第二十二、二十四、二十五条) -------------------------


@pytest.mark.parametrize(
    "project_type, budget, funding, required",
    [
        ("software_dev", 499.99, "fiscal", False),
        ("software_dev", 500, "fiscal", True),
        ("software_dev", 500.01, "fiscal", True),
        ("infrastructure", 800, "fiscal", False),
        ("software_dev", 800, "non_fiscal", False),
    ],
)
def test_shared_components_for_software_from_500(
    lifecycle_api: Api, project_type: str, budget: float, funding: str, required: bool
) -> None:
    api = lifecycle_api
    bk = "YL-COMP"
    iid = to_acceptance_application(
        api, bk, project_type=project_type, budget_wan=budget, funding_source=funding, is_new_system=False
    )
    assert api.variables(iid)["component_sharing_required"] is required
    if funding == "fiscal":
        api.complete(iid, "apply_acceptance", APPLICATION)
    after = "organise_acceptance" if funding == "fiscal" else "self_acceptance"
    assert api.open_elements(iid) == (["register_components"] if required else [after])
    if required:
        # 第二十四条: not registered → a written reason
        api.complete(iid, "register_components", {"components_registered": False, "components_reason": "组件涉密"})
        assert api.open_elements(iid) == [after]


@pytest.mark.parametrize(
    "project_type, new, upload",
    [
        ("software_dev", True, True),
        ("software_dev", False, False),
        ("infrastructure", True, False),
    ],
)
def test_source_code_before_acceptance(lifecycle_api: Api, project_type: str, new: bool, upload: bool) -> None:
    api = lifecycle_api
    for bk, budget in (("YL-SRC-A", 300), ("YL-SRC-F", 100)):
        iid = to_acceptance_application(api, bk, project_type=project_type, budget_wan=budget, is_new_system=new)
        approval = budget >= 200
        if approval:
            api.complete(iid, "apply_acceptance", APPLICATION)
        after = "organise_acceptance" if approval else "self_acceptance"
        assert api.open_elements(iid) == (["upload_source_code"] if upload else [after])


def task_due(api: Api, iid: str, element_id: str) -> datetime:
    return datetime.fromisoformat(api.open_task(iid, element_id)["due_at"].replace("Z", "+00:00"))


def test_acceptance_application_deadline_and_three_delays(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "YL-DELAY"
    iid = to_implementation(api, bk)
    # the OA system reports on 2 March that construction was completed on 20 February
    api.message("construction_completed", bk, {"completed_on": "2026-02-20"})
    # 第二十二条: six months from the completion date, to the end of that day (not from the report)
    due = end_of_day_china("2026-08-20")
    assert timer_due(api, iid, "acceptance_deadline") == due == task_due(api, iid, "apply_acceptance")
    api.advance(due - api.clock.now() - timedelta(minutes=1))
    assert api.open_elements(iid) == ["apply_acceptance"]
    api.advance(timedelta(minutes=2))
    assert api.open_elements(iid) == ["request_acceptance_delay"]
    # 第二十六条: each granted delay moves the expired due date on, however long the request and review took
    for n, (months, new_due) in enumerate([(6, "2027-02-20"), (6, "2027-08-20"), (2, "2027-10-20")], start=1):
        api.advance(timedelta(days=20))
        api.complete(iid, "request_acceptance_delay", {"delay_months": months, "delay_reason": "设备未到货"})
        assert api.open_task(iid, "review_acceptance_delay")["candidate_groups"] == ["data_bureau"]
        api.advance(timedelta(days=30))
        api.complete(iid, "review_acceptance_delay", {"decision": "pass"})
        assert api.open_elements(iid) == ["apply_acceptance"]
        assert api.variables(iid)["delay_count"] == n
        assert timer_due(api, iid, "acceptance_deadline") == end_of_day_china(new_due)
        api.advance(end_of_day_china(new_due) - api.clock.now() + timedelta(minutes=1))
        assert api.open_elements(iid) == ["request_acceptance_delay"]
    # a fourth delay is not reviewed; the data bureau presses for the application, which has no new period
    api.complete(iid, "request_acceptance_delay", {"delay_months": 1, "delay_reason": "再次延期"})
    assert api.open_elements(iid) == ["supervise_acceptance"]
    assert api.open_task(iid, "supervise_acceptance")["candidate_groups"] == ["data_bureau"]
    api.complete(iid, "supervise_acceptance", {"reminder_note": "尽快申请"})
    assert api.open_elements(iid) == ["apply_acceptance_overdue"]
    assert api.open_task(iid, "apply_acceptance_overdue")["due_at"] is None
    assert "acceptance_deadline" not in {w.get("element_id") for w in api.waiting(iid)}
    api.advance(timedelta(days=400))
    assert api.open_elements(iid) == ["apply_acceptance_overdue"]
    assert api.variables(iid)["delay_count"] == 3
    api.complete(iid, "apply_acceptance_overdue", APPLICATION)
    assert api.open_elements(iid) == ["organise_acceptance"]


def test_delay_longer_than_six_months_is_refused(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "YL-DELAY-7"
    iid = to_acceptance_application(api, bk)
    api.fire_timer(iid, "acceptance_deadline")
    task = api.open_task(iid, "request_acceptance_delay")
    client = api.as_("a", "applicant")
    assert client.post(f"/tasks/{task['id']}/claim").status_code == 200
    r = client.post(f"/tasks/{task['id']}/complete", json={"variables": {"delay_months": 7, "delay_reason": "x"}})
    assert r.status_code == 422 and "delay_months" in r.json()["errors"]


def test_delay_not_granted_is_supervised_without_a_new_period(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "YL-DELAY-NO"
    iid = to_acceptance_application(api, bk)
    api.fire_timer(iid, "acceptance_deadline")
    api.complete(iid, "request_acceptance_delay", {"delay_months": 3, "delay_reason": "x"})
    api.complete(iid, "review_acceptance_delay", {"decision": "reject", "delay_opinion": "理由不充分"})
    assert api.open_elements(iid) == ["supervise_acceptance"]
    api.complete(iid, "supervise_acceptance", {})
    # 第二十六条 gives no fresh period after a refusal: the application is overdue, and no timer runs again
    assert api.open_elements(iid) == ["apply_acceptance_overdue"]
    assert "acceptance_deadline" not in {w.get("element_id") for w in api.waiting(iid)}
    assert api.variables(iid)["delay_count"] == 0
    api.complete(iid, "apply_acceptance_overdue", APPLICATION)
    assert api.open_elements(iid) == ["organise_acceptance"]


def test_filing_track_has_no_acceptance_deadline(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_acceptance_application(api, "YL-FIL-NODL", budget_wan=100)
    assert "acceptance_deadline" not in {w.get("element_id") for w in api.waiting(iid)}
    api.advance(timedelta(days=400))
    assert api.open_elements(iid) == ["self_acceptance"]


# ---- acceptance (第二十二、二十三、二十七条) ---------------------------------------------------------------


@pytest.mark.parametrize("decision, expert", [("revise", "pass"), ("pass", "fail")])
def test_failed_acceptance_rectify_and_reaccept(lifecycle_api: Api, decision: str, expert: str) -> None:
    api = lifecycle_api
    iid = to_acceptance_application(api, "YL-ACC-FAIL")
    api.complete(iid, "apply_acceptance", APPLICATION)
    api.complete(
        iid,
        "organise_acceptance",
        {
            "decision": decision,
            "expert_conclusion": expert,
            "acceptance_date": today(api),
            "refusal_grounds": "（六）未落实数据共享要求",
        },
    )
    assert api.open_elements(iid) == ["rectify_acceptance"]
    assert api.open_task(iid, "rectify_acceptance")["candidate_groups"] == ["applicant"]
    api.complete(iid, "rectify_acceptance", {"rectification_report": "已接入共享平台"})
    assert api.open_elements(iid) == ["organise_acceptance"]
    api.complete(
        iid, "organise_acceptance", {"decision": "pass", "expert_conclusion": "pass", "acceptance_date": today(api)}
    )
    assert api.open_elements(iid) == ["upload_acceptance_materials"]


def test_failed_self_acceptance_rectify_and_reaccept(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_acceptance_application(api, "YL-SELF-FAIL", budget_wan=100)
    api.complete(
        iid,
        "self_acceptance",
        {"decision": "revise", "acceptance_date": "2026-03-02", "refusal_grounds": "（九）档案验收不合格"},
    )
    assert api.open_elements(iid) == ["rectify_self_acceptance"]
    api.complete(iid, "rectify_self_acceptance", {"rectification_report": "档案已整理"})
    api.clock.advance(timedelta(days=3))  # a reported date cannot lie ahead: it is recorded on 2026-03-05
    api.complete(iid, "self_acceptance", {"decision": "pass", "acceptance_date": "2026-03-05"})
    assert api.open_elements(iid) == ["upload_acceptance_materials"]


def test_acceptance_materials_within_ten_working_days_of_the_acceptance_date(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_acceptance_application(api, "YL-MAT", budget_wan=100)
    # the unit accepted on Tuesday 3 March and records it a week later
    api.advance(timedelta(days=7))
    api.complete(iid, "self_acceptance", {"decision": "pass", "acceptance_date": "2026-03-03"})
    # 第二十三条: ten working days from the acceptance date — 17 March, not 23 March (from the recording)
    due = end_of_day_china("2026-03-17")
    assert timer_due(api, iid, "materials_deadline") == due == task_due(api, iid, "upload_acceptance_materials")
    assert [w for w in api.waiting(iid) if w["element_id"] == "materials_deadline"][0]["calendar"] == "cn_workdays"
    form = api.as_("a", "applicant").get(f"/tasks/{api.open_task(iid, 'upload_acceptance_materials')['id']}").json()
    assert {f["id"] for f in form["form"]} == {"acceptance_materials_ref"}  # the date is not asked again
    api.advance(due - api.clock.now() - timedelta(minutes=1))
    assert api.open_elements(iid) == ["upload_acceptance_materials"]
    api.advance(timedelta(minutes=2))
    assert api.open_elements(iid) == ["supervise_materials_upload", "upload_acceptance_materials"]
    assert api.open_task(iid, "supervise_materials_upload")["candidate_groups"] == ["data_bureau"]
    api.complete(iid, "supervise_materials_upload", {"reminder_note": "请上传"})
    accept_and_conclude(api, iid)
    assert api.end_event(iid) == "end_completed"


@pytest.mark.parametrize("approval", [True, False])
def test_materials_deadline_on_both_tracks_from_the_acceptance_form(lifecycle_api: Api, approval: bool) -> None:
    api = lifecycle_api
    iid = to_acceptance_application(api, "YL-MAT-2", budget_wan=300 if approval else 100)
    api.advance(timedelta(days=7))
    if approval:
        api.complete(iid, "apply_acceptance", APPLICATION)
        api.complete(
            iid,
            "organise_acceptance",
            {"decision": "pass", "expert_conclusion": "pass", "acceptance_date": "2026-03-04"},
        )
    else:
        api.complete(iid, "self_acceptance", {"decision": "pass", "acceptance_date": "2026-03-04"})
    assert timer_due(api, iid, "materials_deadline") == end_of_day_china("2026-03-18")


# ---- efficiency evaluation (第二十九条) -------------------------------------------------------------------


def test_efficiency_evaluation_from_12_to_24_months_after_the_acceptance_date(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_acceptance_application(api, "YL-EVAL")
    api.complete(iid, "apply_acceptance", APPLICATION)
    # accepted on 5 March; the bureau records it on 7 March, the materials and the conclusion follow later
    api.advance(timedelta(days=5))
    api.complete(
        iid, "organise_acceptance", {"decision": "pass", "expert_conclusion": "pass", "acceptance_date": "2026-03-05"}
    )
    api.advance(timedelta(days=6))
    accept_and_conclude(api, iid)
    # 第二十九条: 12–24 months after 竣工验收 — from the acceptance date, not from the conclusion
    opens = end_of_day_china("2027-03-05")
    assert timer_due(api, iid, "evaluation_window") == opens
    api.advance(opens - api.clock.now() - timedelta(minutes=1))
    assert api.open_elements(iid) == []
    api.advance(timedelta(minutes=2))
    assert api.open_elements(iid) == ["efficiency_evaluation"]
    closes = end_of_day_china("2028-03-05")
    assert timer_due(api, iid, "evaluation_deadline") == closes == task_due(api, iid, "efficiency_evaluation")
    api.advance(closes - api.clock.now() - timedelta(minutes=1))
    assert api.open_elements(iid) == ["efficiency_evaluation"]
    api.advance(timedelta(minutes=2))
    assert api.open_elements(iid) == ["efficiency_evaluation", "remind_efficiency_evaluation"]
    api.complete(iid, "remind_efficiency_evaluation", {"reminder_note": "尽快评估"})
    api.complete(iid, "efficiency_evaluation", {"evaluation_result": "一般"})
    assert api.end_event(iid) == "end_completed"


# ---- messages carry what their articles need (contracts) ---------------------------------------------------


def test_messages_declare_their_payload(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "YL-MSG"
    iid = to_contract(api, bk)
    waiting = {w["name"]: w for w in api.waiting(iid) if w["kind"] == "message"}
    fields = {f["id"]: f for f in waiting["contract_signed"]["payload"]}
    assert fields["signed_on"]["type"] == "date" and fields["signed_on"]["required"]
    for variables, field in [
        ({}, "signed_on"),
        ({"signed_on": "soon"}, "signed_on"),
        ({"signed_on": "2026-03-01", "contract_wan": 280}, "contract_wan"),
    ]:
        r = api.admin.post("/messages", json={"name": "contract_signed", "business_key": bk, "variables": variables})
        assert r.status_code == 422 and field in r.json()["errors"], (variables, r.text)
    assert "contract_signed" in {w.get("name") for w in api.waiting(iid)}
    api.message("contract_signed", bk, {"signed_on": "2026-03-01", "contract_amount_wan": 280})
    form = api.as_("a", "applicant").get(f"/tasks/{api.open_task(iid, 'upload_contract')['id']}").json()
    assert not {"contract_signed_date", "signed_on", "contract_amount_wan"} & {f["id"] for f in form["form"]}
    api.complete(iid, "upload_contract", {"ip_clause_included": True})
    r = api.admin.post("/messages", json={"name": "construction_completed", "business_key": bk, "variables": {}})
    assert r.status_code == 422 and "completed_on" in r.json()["errors"]
    names = {w["name"]: w for w in api.waiting(iid) if w["kind"] == "message"}
    assert {f["id"] for f in names["change_requested"]["payload"]} == {"change_reason"}
    assert {f["id"] for f in names["key_project_inspection"]["payload"]} == {"scheduled_on"}
    api.message("key_project_inspection", bk, {"scheduled_on": "2026-04-01"})
    assert api.open_elements(iid) == ["inspect_key_project"]


def test_application_in_time_ends_the_acceptance_deadline(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_acceptance_application(api, "YL-INTIME-ACC")
    api.advance(timedelta(days=150))
    api.complete(iid, "apply_acceptance", APPLICATION)
    assert "acceptance_deadline" not in {w.get("element_id") for w in api.waiting(iid)}
    api.advance(timedelta(days=100))
    assert api.open_elements(iid) == ["organise_acceptance"]


# ---- the diagram as a designer opens it: decision tables, lanes, citations ---------------------------------


def _decision_tables() -> dict[str, Any]:
    from service.engine.deployment import parse_files

    files = {name: (REPO / "bpmn" / name).read_bytes() for name in ("yulin.bpmn", "yulin.dmn")}
    [parsed] = parse_files(files)
    tables = {}
    for spec in [parsed.spec, *parsed.subprocess_specs.values()]:
        for task_spec in spec.task_specs.values():
            if hasattr(task_spec, "dmnEngine"):
                tables[task_spec.dmnEngine.decision_table.name] = task_spec.dmnEngine
    return tables


def _matching_rows(engine: Any, data: dict[str, Any]) -> list[str]:
    """Every row that matches (the engine's FIRST policy would use only the first)."""
    from service.engine.scripting import make_script_engine

    task = SimpleNamespace(data=data, workflow=SimpleNamespace(script_engine=make_script_engine()))
    return [rule.id for rule in engine.decide(task)]


AMOUNTS = [Decimal(v) for v in ("0", "9.99", "10", "10.01", "199.99", "200", "200.01", "499.99", "500", "5000")]
TYPES = ["infrastructure", "software_dev", "business_operation", "om", "third_party_service", "equipment"]


def test_decision_rows_do_not_overlap_and_leave_no_gap() -> None:
    tables = _decision_tables()
    assert set(tables) == {"yulin_management_track", "yulin_component_sharing", "yulin_change_route"}
    for budget in AMOUNTS:
        for project_type in TYPES:
            for funding in ("fiscal", "non_fiscal"):
                data = {"budget_wan": budget, "project_type": project_type, "funding_source": funding}
                assert len(_matching_rows(tables["yulin_management_track"], data)) == 1, data
            for track in ("approval", "filing", "self_managed"):
                data = {"budget_wan": budget, "project_type": project_type, "track": track}
                assert len(_matching_rows(tables["yulin_component_sharing"], data)) == 1, data
    for added in (Decimal(0), Decimal(100), Decimal("100.01"), Decimal(500)):
        for removed in (Decimal(0), Decimal(100), Decimal("100.01"), Decimal(500)):
            for major in (True, False):
                for original in (Decimal(1000), Decimal(0)):
                    data = {
                        "added_content_wan": added,
                        "removed_content_wan": removed,
                        "major_adjustment": major,
                        "original_budget_wan": original,
                    }
                    assert len(_matching_rows(tables["yulin_change_route"], data)) == 1, data


BPMN_NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "camunda": "http://camunda.org/schema/1.0/bpmn",
    "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
    "dc": "http://www.omg.org/spec/DD/20100524/DC",
}


def _diagram() -> Any:
    return etree.parse(str(REPO / "bpmn" / "yulin.bpmn")).getroot()


def _bounds(root: Any) -> dict[str, tuple[float, float, float, float]]:
    out = {}
    for shape in root.iter(f"{{{BPMN_NS['bpmndi']}}}BPMNShape"):
        b = shape.find("dc:Bounds", BPMN_NS)
        out[shape.get("bpmnElement")] = tuple(float(b.get(k)) for k in ("x", "y", "width", "height"))
    return out


def test_one_lane_per_department_and_every_user_task_in_the_lane_of_its_first_group() -> None:
    root = _diagram()
    participant = root.find("bpmn:collaboration/bpmn:participant", BPMN_NS)
    assert participant.get("processRef") == PROCESS_KEY and re.search(r"[\u4e00-\u9fff]", participant.get("name"))
    process = root.find(f"bpmn:process[@id='{PROCESS_KEY}']", BPMN_NS)
    lanes = process.findall("bpmn:laneSet/bpmn:lane", BPMN_NS)
    refs = {lane.get("id"): {r.text for r in lane.findall("bpmn:flowNodeRef", BPMN_NS)} for lane in lanes}
    tasks = list(process.iter(f"{{{BPMN_NS['bpmn']}}}userTask"))
    groups = {t.get("id"): t.get(f"{{{BPMN_NS['camunda']}}}candidateGroups").split(",")[0].strip() for t in tasks}
    assert set(refs) == {f"lane_{g}" for g in groups.values()}
    assert all(re.search(r"[\u4e00-\u9fff]", lane.get("name")) for lane in lanes)
    bounds = _bounds(root)

    def lane_at(element_id: str) -> str:
        x, y, w, h = bounds[element_id]
        cx, cy = x + w / 2, y + h / 2
        inside = [
            lane
            for lane in refs
            if bounds[lane][1] <= cy < bounds[lane][1] + bounds[lane][3]
            and bounds[lane][0] <= cx <= bounds[lane][0] + bounds[lane][2]
        ]
        assert len(inside) == 1, element_id
        return inside[0]

    for task, group in groups.items():
        assert lane_at(task) == f"lane_{group}", task
    top_level = [
        n.get("id")
        for n in process
        if n.get("id") and etree.QName(n).localname not in ("laneSet", "sequenceFlow", "documentation")
    ]
    listed = [i for r in refs.values() for i in r]
    assert len(listed) == len(set(listed))
    for node in top_level:
        lane = [lane for lane, members in refs.items() if node in members]
        if node == "yulin_establishment":  # the establishment spans the four departments that take part in it
            assert lane == []
            continue
        assert lane == [lane_at(node)], node
    inner = {
        n.get("id")
        for sub in process.findall("bpmn:subProcess", BPMN_NS)
        for n in sub.iter()
        if n is not sub and n.get("id")
    }
    assert not inner & set(listed)


CN_DIGITS = {"零": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def _cn_number(text: str) -> int:
    if "十" not in text:
        return CN_DIGITS[text]
    tens, _, ones = text.partition("十")
    return (CN_DIGITS[tens] if tens else 1) * 10 + (CN_DIGITS[ones] if ones else 0)


# the regulation has 第一条 … 第三十六条; the articles with numbered items, and how many items each has
ARTICLES = 36
ITEMS = {4: 8, 12: 4, 21: 2, 27: 10}


def test_every_cited_article_exists_in_the_regulation() -> None:
    texts = [d.text or "" for d in _diagram().iter(f"{{{BPMN_NS['bpmn']}}}documentation")]
    dmn = etree.parse(str(REPO / "bpmn" / "yulin.dmn")).getroot()
    texts += [d.text or "" for d in dmn.iter("{*}description")]
    texts += [(REPO / "docs" / "lifecycles" / "yulin.md").read_text(encoding="utf-8")]
    cited = 0
    for text in texts:
        for article, item in re.findall(r"第([一二三四五六七八九十]+)条(?:第（([一二三四五六七八九十]+)）项)?", text):
            number = _cn_number(article)
            assert 1 <= number <= ARTICLES, text
            if item:
                assert number in ITEMS and 1 <= _cn_number(item) <= ITEMS[number], text
            cited += 1
    assert cited > 50


def test_decisions_name_their_flows_and_scripts_say_what_they_compute() -> None:
    process = _diagram().find(f"bpmn:process[@id='{PROCESS_KEY}']", BPMN_NS)
    flows = {f.get("id"): f for f in process.iter(f"{{{BPMN_NS['bpmn']}}}sequenceFlow")}
    for gateway in process.iter(f"{{{BPMN_NS['bpmn']}}}exclusiveGateway"):
        outgoing = [o.text for o in gateway.findall("bpmn:outgoing", BPMN_NS)]
        if len(outgoing) > 1:
            assert all(flows[o].get("name") for o in outgoing), gateway.get("id")
    for script in process.iter(f"{{{BPMN_NS['bpmn']}}}scriptTask"):
        assert (script.findtext("bpmn:documentation", namespaces=BPMN_NS) or "").strip(), script.get("id")
