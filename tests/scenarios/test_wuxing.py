"""Wuxing 吴兴区 (吴政办发〔2023〕43号): the lifecycle driven over REST as the OA systems and reviewers would."""
from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from lxml import etree

from tests.support import REPO, Api

PROCESS_KEY = "wuxing"

OPINIONS = ("opinion_reform", "opinion_finance", "opinion_cyber", "opinion_crypto", "opinion_police")
# 第九条: each agency's opinion is its own field, an input to the data bureau's 初审意见 (no decision of its own)
CONCLUSION = {"opinion_reform": "reform_conclusion", "opinion_finance": "finance_conclusion",
              "opinion_cyber": "cyber_conclusion", "opinion_crypto": "crypto_conclusion",
              "opinion_police": "police_conclusion"}
JOINT_BODY = ["data_bureau", "development_reform", "finance_bureau", "cyberspace_office", "audit_bureau"]


def start(api: Api, bk: str, **overrides: Any) -> str:
    variables: dict[str, Any] = {
        "project_name": "吴兴区城市治理平台", "department": "区城管局",
        "budget_wan": 300, "total_investment_wan": 300, "project_type": "construction",
    }
    variables.update(overrides)
    return str(api.start(PROCESS_KEY, variables, business_key=bk)["id"])



def give_opinions(api: Api, iid: str, conclusion: str = "agree") -> list[str]:
    given = [e for e in api.open_elements(iid) if e in OPINIONS]
    for element in given:
        api.complete(iid, element, {CONCLUSION[element]: conclusion})
    return sorted(given)


def to_expert_review(api: Api, iid: str) -> None:
    give_opinions(api, iid)
    api.complete(iid, "prereview", {"decision": "pass"})


def through_reviews(api: Api, iid: str) -> None:
    """Preliminary review, expert review and the filed revision: stops before the budget review."""
    to_expert_review(api, iid)
    api.complete(iid, "expert_review", {"decision": "pass"})
    api.complete(iid, "file_revised_plan", {"revised_plan_ref": "WX-PLAN-1"})


def through_plan(api: Api, iid: str, key_project: bool = False) -> None:
    api.complete(iid, "budget_review", {"decision": "pass", "approved_budget_wan": 280})
    api.complete(iid, "draft_annual_plan", {"plan_year": 2026, "is_key_project": key_project})
    api.complete(iid, "government_plan_approval", {"decision": "pass"})
    api.complete(iid, "adjust_budget", {})
    api.complete(iid, "list_investment_plan", {"investment_plan_ref": "吴发改投〔2026〕1号"})


def through_approval(api: Api, iid: str) -> list[str]:
    done = []
    for element in ("issue_contact_form", "approve_feasibility", "approve_design"):
        if element in api.open_elements(iid):
            api.complete(iid, element, {"decision": "pass"})
            done.append(element)
    return done


def to_procurement(api: Api, bk: str, **overrides: Any) -> str:
    iid = start(api, bk, **overrides)
    through_reviews(api, iid)
    through_plan(api, iid)
    through_approval(api, iid)
    if "engage_supervisor" in api.open_elements(iid):
        api.complete(iid, "engage_supervisor", {"supervisor_name": "某监理公司", "supervisor_independent": True})
    assert api.open_elements(iid) == ["procure"]
    return iid


def to_implementation(api: Api, bk: str, **overrides: Any) -> str:
    iid = to_procurement(api, bk, **overrides)
    api.complete(iid, "procure", {})
    api.message("contract_signed", bk, {"signed_on": "2026-03-02"})
    api.complete(iid, "upload_contract", {"ip_clause_included": True,
                                          "warranty_years": 3})
    # implementation: waiting for the OA system to report completion or a change request
    assert api.open_elements(iid) == []
    assert {"construction_completed", "change_requested"} <= {w.get("name") for w in api.waiting(iid)}
    return iid


def to_preliminary(api: Api, bk: str, **overrides: Any) -> str:
    iid = to_implementation(api, bk, **overrides)
    api.message("construction_completed", bk, {"completed_on": "2026-03-02"})
    api.complete(iid, "register_irs", {"irs_catalog_ref": "IRS-001"})
    assert api.open_elements(iid) == ["preliminary_acceptance"]
    return iid


def through_trial_run(api: Api, iid: str) -> None:
    api.complete(iid, "security_assessment", {"security_assessment_ref": "DJCP-2026-01"})
    assert "trial_run" in [w.get("element_id") for w in api.waiting(iid)]
    api.fire_timer(iid, "trial_run")
    api.complete(iid, "confirm_trial_run", {"decision": "pass"})


def to_final(api: Api, bk: str, **overrides: Any) -> str:
    iid = to_preliminary(api, bk, **overrides)
    api.complete(iid, "preliminary_acceptance", {"decision": "pass", "preliminary_acceptance_date": "2026-03-02"})
    through_trial_run(api, iid)
    assert api.open_elements(iid) == ["apply_final_acceptance"]
    return iid



# ---- the whole lifecycle ------------------------------------------------------------------------------

def test_full_lifecycle_to_completed(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "WX-FULL"
    iid = start(api, bk, budget_wan=2500, total_investment_wan=2500, construction_category="multi_agency")
    # 第九条: five agencies give opinions in parallel, the reform office because it is a 多跨协同 project
    assert api.open_elements(iid) == sorted(OPINIONS)
    task = api.open_task(iid, "opinion_crypto")
    assert task["candidate_groups"] == ["crypto_bureau"]
    give_opinions(api, iid)
    assert api.open_elements(iid) == ["prereview"]
    api.complete(iid, "prereview", {"decision": "pass", "prereview_opinion": "符合要求"})
    api.complete(iid, "expert_review", {"decision": "pass", "expert_opinion": "同意"})
    api.complete(iid, "file_revised_plan", {"revised_plan_ref": "WX-PLAN-9"})
    # 第十条: 多跨协同 with total investment >= 500 goes to the city first
    assert api.open_elements(iid) == ["declare_to_city"]
    api.complete(iid, "declare_to_city", {"city_declaration_date": "2026-04-01"})
    api.complete(iid, "city_joint_review", {"decision": "pass"})
    through_plan(api, iid, key_project=True)
    # 第十三条: >= 2000 → feasibility study and preliminary design
    assert through_approval(api, iid) == ["approve_feasibility", "approve_design"]
    # 第十七条: supervision for >= 100
    api.complete(iid, "engage_supervisor", {"supervisor_name": "某监理公司", "supervisor_independent": True})
    api.complete(iid, "procure", {"procurement_ref": "CG-1"})
    assert "contract_signed" in [w.get("name") for w in api.waiting(iid)]
    api.message("contract_signed", bk, {"signed_on": "2026-03-02"})
    api.complete(iid, "upload_contract", {"ip_clause_included": True,
                                          "warranty_years": 3, "contract_amount_wan": 2400})
    api.message("construction_completed", bk, {"completed_on": "2026-03-02"})
    api.complete(iid, "register_irs", {"irs_catalog_ref": "IRS-9"})
    api.complete(iid, "preliminary_acceptance", {"decision": "pass", "preliminary_acceptance_date": "2026-03-02"})
    through_trial_run(api, iid)
    api.complete(iid, "apply_final_acceptance", {"application_date": "2026-10-15"})
    assert api.instance(iid)["variables"]["acceptance_organizer"] == "data_bureau"
    api.complete(iid, "confirm_acceptance_ready", {"decision": "pass"})
    api.complete(iid, "final_acceptance", {"decision": "pass", "acceptance_report_ref": "YS-1"})
    api.complete(iid, "upload_acceptance_report", {"acceptance_report_ref": "YS-1", "accepted_date": "2026-11-01"})
    # 第二十八条: key projects are evaluated
    assert api.open_elements(iid) == ["performance_evaluation"]
    api.complete(iid, "performance_evaluation", {"evaluation_year": 2027, "evaluation_result": "良好"})
    view = api.instance(iid)
    assert view["status"] == "completed" and view["end_event"] == "end_completed"


def test_om_project_skips_approval_documents_and_supervision(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "WX-OM", project_type="om", budget_wan=800, total_investment_wan=800,
                construction_category="multi_agency")
    # an O&M project is not a 多跨协同 construction project: no reform-office opinion, no city review
    assert "opinion_reform" not in api.open_elements(iid)
    through_reviews(api, iid)
    assert api.open_elements(iid) == ["budget_review"]
    through_plan(api, iid)
    variables = api.instance(iid)["variables"]
    assert variables["approval_track"] == "none" and variables["supervision_required"] is False
    assert api.open_elements(iid) == ["procure"]


# ---- start form and permissions -------------------------------------------------------------------------

@pytest.mark.parametrize("variables, field", [
    ({"department": "区城管局", "budget_wan": 10, "total_investment_wan": 10, "project_type": "om"}, "project_name"),
    ({"project_name": "x", "budget_wan": 10, "total_investment_wan": 10, "project_type": "om"}, "department"),
    ({"project_name": "x", "department": "d", "budget_wan": -0.01, "total_investment_wan": 10,
      "project_type": "om"}, "budget_wan"),
    ({"project_name": "x", "department": "d", "budget_wan": 10, "total_investment_wan": 10,
      "project_type": "software"}, "project_type"),
    ({"project_name": "x", "department": "d", "budget_wan": 10, "project_type": "om"}, "total_investment_wan"),
    ({"project_name": "x", "department": "d", "budget_wan": 10, "total_investment_wan": 10,
      "project_type": "construction", "construction_category": "cloud"}, "construction_category"),
])
def test_invalid_start_is_422_naming_the_field(lifecycle_api: Api, variables: dict[str, Any], field: str) -> None:
    r = lifecycle_api.as_("oa", "applicant").post("/process-instances", json={
        "process_key": PROCESS_KEY, "business_key": "WX-BAD", "variables": variables})
    assert r.status_code == 422, r.text
    assert list(r.json()["errors"]) == [field]


def test_wrong_group_is_refused(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "WX-403")
    give_opinions(api, iid)
    task = api.open_task(iid, "prereview")
    assert task["candidate_groups"] == ["data_bureau"]
    r = api.as_("x", "finance_bureau").post(f"/tasks/{task['id']}/complete", json={"variables": {"decision": "pass"}})
    assert r.status_code == 403
    assert api.open_elements(iid) == ["prereview"]
    # a review without its decision is refused
    r = api.as_("d", "data_bureau").post(f"/tasks/{task['id']}/complete", json={"variables": {}})
    assert r.status_code == 422 and "decision" in r.json()["errors"]


# ---- declaration window and preliminary review (第七、九条) ---------------------------------------------

def test_late_declaration_enters_through_supplement(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "WX-LATE", declared_in_window=False)
    assert api.open_elements(iid) == ["supplement_review"]
    api.complete(iid, "supplement_review", {"decision": "pass", "funds_secured": True})
    assert "opinion_finance" in api.open_elements(iid)


@pytest.mark.parametrize("decision, funds", [("pass", False), ("reject", True)])
def test_late_declaration_without_secured_funds_is_rejected(lifecycle_api: Api, decision: str, funds: bool) -> None:
    api = lifecycle_api
    iid = start(api, "WX-LATE-NO", declared_in_window=False)
    api.complete(iid, "supplement_review", {"decision": decision, "funds_secured": funds})
    assert api.end_event(iid) == "end_rejected"


@pytest.mark.parametrize("category, reform", [("multi_agency", True), ("general_application", False),
                                              ("infrastructure", False)])
def test_reform_office_consulted_only_for_multi_agency(lifecycle_api: Api, category: str, reform: bool) -> None:
    api = lifecycle_api
    iid = start(api, "WX-REF", construction_category=category)
    expected = set(OPINIONS) if reform else set(OPINIONS) - {"opinion_reform"}
    assert set(api.open_elements(iid)) == expected
    # the preliminary review waits for every opinion
    api.complete(iid, "opinion_finance", {"finance_conclusion": "agree_with_changes", "finance_opinion": "资金来源待明确"})
    assert "prereview" not in api.open_elements(iid)
    give_opinions(api, iid)
    assert api.open_elements(iid) == ["prereview"]


@pytest.mark.parametrize("project_type, category", [("construction", "multi_agency"),
                                                    ("construction", "general_application"), ("om", None)])
def test_opinions_are_inputs_to_the_prereview_not_decisions(lifecycle_api: Api, project_type: str,
                                                            category: str | None) -> None:
    """第九条: five agencies are consulted (the reform office on 多跨协同 projects); each answers its own question in
    its own field, the police may answer 不涉及, and only the data bureau's 初审意见 decides."""
    api = lifecycle_api
    extra = {"construction_category": category} if category else {}
    iid = start(api, "WX-OPN", project_type=project_type, **extra)
    consulted = set(OPINIONS) if category == "multi_agency" else set(OPINIONS) - {"opinion_reform"}
    assert set(api.open_elements(iid)) == consulted
    police = api.open_task(iid, "opinion_police")
    client = api.as_("p", "public_security")
    detail = client.get(f"/tasks/{police['id']}").json()
    fields = {f["id"]: f for f in detail["form"]}
    assert "decision" not in fields
    assert {o["id"] for o in fields["police_conclusion"]["options"]} == {
        "agree", "agree_with_changes", "disagree", "not_applicable"}
    # an opinion is not a pass/reject decision: the form refuses one
    assert client.post(f"/tasks/{police['id']}/claim").status_code == 200
    r = client.post(f"/tasks/{police['id']}/complete", json={"variables": {"decision": "reject"}})
    assert r.status_code == 422 and "decision" in r.json()["errors"]
    answers = {"opinion_reform": "agree", "opinion_finance": "disagree", "opinion_cyber": "agree_with_changes",
               "opinion_crypto": "agree", "opinion_police": "not_applicable"}
    for element in sorted(consulted):
        api.complete(iid, element, {CONCLUSION[element]: answers[element]},
                     user="p" if element == "opinion_police" else None)  # the police task is claimed by p
    variables = api.variables(iid)
    for element in consulted:  # every answer is kept beside the others
        assert variables[CONCLUSION[element]] == answers[element]
    assert "decision" not in variables
    # a disagreeing opinion does not decide: the data bureau's 初审 passes the project on
    api.complete(iid, "prereview", {"decision": "pass"})
    assert api.open_elements(iid) == ["expert_review"]


def test_prereview_revise_resubmit_consults_again(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "WX-REV")
    give_opinions(api, iid)
    api.complete(iid, "prereview", {"decision": "revise", "prereview_opinion": "材料不完整"})
    assert api.open_elements(iid) == ["revise_declaration"]
    api.complete(iid, "revise_declaration", {"budget_wan": 320, "total_investment_wan": 320,
                                             "revision_note": "补充材料"})
    assert set(api.open_elements(iid)) == set(OPINIONS) - {"opinion_reform"}
    give_opinions(api, iid)
    api.complete(iid, "prereview", {"decision": "pass"})
    assert api.open_elements(iid) == ["expert_review"]
    assert api.instance(iid)["variables"]["budget_wan"] == 320


def test_prereview_reject_ends_rejected(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "WX-REJ")
    give_opinions(api, iid, "disagree")
    api.complete(iid, "prereview", {"decision": "reject"})
    assert api.end_event(iid) == "end_rejected"


# ---- expert review and the city review (第十条) -----------------------------------------------------------

def test_expert_revise_then_pass_then_revision_filed(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "WX-EXP")
    to_expert_review(api, iid)
    api.complete(iid, "expert_review", {"decision": "revise"})
    api.complete(iid, "revise_for_expert", {"revision_note": "按专家意见修改"})
    api.complete(iid, "expert_review", {"decision": "pass"})
    assert api.open_elements(iid) == ["file_revised_plan"]
    api.complete(iid, "file_revised_plan", {"revised_plan_ref": "R-2"})
    assert api.open_elements(iid) == ["budget_review"]


def test_expert_reject_ends_rejected(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "WX-EXP-REJ")
    to_expert_review(api, iid)
    api.complete(iid, "expert_review", {"decision": "reject"})
    assert api.end_event(iid) == "end_rejected"


@pytest.mark.parametrize("total, category, city", [
    (499.99, "multi_agency", False), (500, "multi_agency", True), (500.01, "multi_agency", True),
    (800, "general_application", False),
])
def test_city_review_for_multi_agency_from_500(lifecycle_api: Api, total: float, category: str, city: bool) -> None:
    api = lifecycle_api
    iid = start(api, "WX-CITY", total_investment_wan=total, construction_category=category)
    through_reviews(api, iid)
    assert api.open_elements(iid) == (["declare_to_city"] if city else ["budget_review"])
    assert api.instance(iid)["variables"]["city_review_required"] is city


def test_joint_body_tasks_go_to_its_member_departments_led_by_the_data_bureau(lifecycle_api: Api) -> None:
    """第六条: the 联审机构 is made of the departments for 立项, 预算资金, 网络安全 and 审计绩效, the data bureau leading
    联合审批; any member department may record its conclusion."""
    api = lifecycle_api
    iid = start(api, "WX-JOINT", total_investment_wan=600, construction_category="multi_agency")
    through_reviews(api, iid)
    api.complete(iid, "declare_to_city", {"city_declaration_date": "2026-04-01"})
    task = api.open_task(iid, "city_joint_review")
    assert task["candidate_groups"] == JOINT_BODY
    api.complete(iid, "city_joint_review", {"decision": "pass"}, group="development_reform")
    assert api.open_elements(iid) == ["budget_review"]


def test_city_review_reject_ends_rejected(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "WX-CITY-REJ", total_investment_wan=600, construction_category="multi_agency")
    through_reviews(api, iid)
    api.complete(iid, "declare_to_city", {"city_declaration_date": "2026-04-01"})
    api.complete(iid, "city_joint_review", {"decision": "reject"})
    assert api.end_event(iid) == "end_rejected"


# ---- budget, annual plan, approval documents (第十一、十三条) -----------------------------------------------

@pytest.mark.parametrize("task", ["budget_review", "government_plan_approval"])
def test_budget_or_plan_refusal_ends_rejected(lifecycle_api: Api, task: str) -> None:
    api = lifecycle_api
    iid = start(api, "WX-PLAN-REJ")
    through_reviews(api, iid)
    if task == "government_plan_approval":
        api.complete(iid, "budget_review", {"decision": "pass"})
        api.complete(iid, "draft_annual_plan", {"plan_year": 2026})
        assert api.open_task(iid, task)["candidate_groups"] == ["city_government"]
    api.complete(iid, task, {"decision": "reject"})
    assert api.end_event(iid) == "end_rejected"


@pytest.mark.parametrize("total, track, tasks", [
    (0, "contact_form", ["issue_contact_form"]),
    (499.99, "contact_form", ["issue_contact_form"]),
    (500, "feasibility", ["approve_feasibility"]),
    (500.01, "feasibility", ["approve_feasibility"]),
    (1999.99, "feasibility", ["approve_feasibility"]),
    (2000, "feasibility_and_design", ["approve_feasibility", "approve_design"]),
    (2000.01, "feasibility_and_design", ["approve_feasibility", "approve_design"]),
])
def test_approval_track_by_total_investment(lifecycle_api: Api, total: float, track: str, tasks: list[str]) -> None:
    api = lifecycle_api
    iid = start(api, "WX-TRACK", total_investment_wan=total, budget_wan=50)
    through_reviews(api, iid)
    through_plan(api, iid)
    assert api.instance(iid)["variables"]["approval_track"] == track
    assert api.open_task(iid, tasks[0])["candidate_groups"] == ["development_reform"]
    assert through_approval(api, iid) == tasks
    assert api.open_elements(iid) == ["procure"]


@pytest.mark.parametrize("task", ["issue_contact_form", "approve_feasibility", "approve_design"])
def test_approval_refused_ends_rejected(lifecycle_api: Api, task: str) -> None:
    api = lifecycle_api
    total = {"issue_contact_form": 100, "approve_feasibility": 600, "approve_design": 3000}[task]
    iid = start(api, "WX-APP-REJ", total_investment_wan=total)
    through_reviews(api, iid)
    through_plan(api, iid)
    if task == "approve_design":
        api.complete(iid, "approve_feasibility", {"decision": "pass"})
    api.complete(iid, task, {"decision": "reject"})
    assert api.end_event(iid) == "end_rejected"


def test_feasibility_refused_skips_design(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "WX-FSR-REJ", total_investment_wan=2500)
    through_reviews(api, iid)
    through_plan(api, iid)
    api.complete(iid, "approve_feasibility", {"decision": "reject"})
    assert "approve_design" not in api.open_elements(iid)
    assert api.end_event(iid) == "end_rejected"


# ---- supervision, contract upload (第十五、十七条) ----------------------------------------------------------

@pytest.mark.parametrize("budget, supervised", [(99.99, False), (100, True), (100.01, True)])
def test_supervision_from_100(lifecycle_api: Api, budget: float, supervised: bool) -> None:
    api = lifecycle_api
    iid = start(api, "WX-SUP", budget_wan=budget, total_investment_wan=budget)
    through_reviews(api, iid)
    through_plan(api, iid)
    through_approval(api, iid)
    assert api.open_elements(iid) == (["engage_supervisor"] if supervised else ["procure"])
    assert api.instance(iid)["variables"]["supervision_required"] is supervised


def due(api: Api, iid: str, element: str) -> datetime:
    timers = [w for w in api.waiting(iid) if w.get("element_id") == element]
    assert len(timers) == 1, (element, api.waiting(iid))
    return datetime.fromisoformat(timers[0]["due_at"])


def china_midnight(day: str) -> datetime:
    """24:00 China time at the end of the day: the moment a deadline day is over."""
    return datetime.fromisoformat(day + "T16:00:00+00:00")


def test_contract_message_must_carry_the_signing_date(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "WX-CONTRACT-PAYLOAD"
    iid = to_procurement(api, bk)
    api.complete(iid, "procure", {})
    waiting = [w for w in api.waiting(iid) if w.get("name") == "contract_signed"]
    assert [f["id"] for f in waiting[0]["payload"]] == ["signed_on"]
    for variables, field in (({}, "signed_on"), ({"signed_on": "2026-02-30"}, "signed_on"),
                             ({"signed_on": "2026-03-02", "contract_wan": 280}, "contract_wan")):
        r = api.admin.post("/messages", json={"name": "contract_signed", "business_key": bk, "variables": variables})
        assert r.status_code == 422 and field in r.json()["errors"], r.text
    assert api.open_elements(iid) == []
    api.message("contract_signed", bk, {"signed_on": "2026-03-02"})
    # the upload form does not ask again for the signing date the message brought
    task = api.open_task(iid, "upload_contract")
    form = api.as_("a", "applicant").get(f"/tasks/{task['id']}").json()["form"]
    assert "contract_signed_date" not in {f["id"] for f in form} and "signed_on" not in {f["id"] for f in form}


def test_contract_upload_deadline_runs_from_the_reported_signing_date(lifecycle_api: Api) -> None:
    """第十五条: 5 working days from the signing, not from when the OA system reported it."""
    api = lifecycle_api
    bk = "WX-CONTRACT-LATE"
    iid = to_procurement(api, bk)
    api.complete(iid, "procure", {})
    api.advance(timedelta(days=14))  # Monday 2026-03-16, 09:00
    api.message("contract_signed", bk, {"signed_on": "2026-03-09"})
    # 5 working days after Monday 03-09: 03-10 … 03-13 and Monday 03-16, so due at its end, not a week later
    assert due(api, iid, "contract_upload_deadline") == china_midnight("2026-03-16")
    assert datetime.fromisoformat(api.open_task(iid, "upload_contract")["due_at"]) == china_midnight("2026-03-16")
    api.advance(timedelta(hours=14, minutes=59))  # 23:59 China time on the last day
    assert api.open_elements(iid) == ["upload_contract"]
    api.advance(timedelta(minutes=2))
    assert api.open_elements(iid) == ["contract_upload_overdue", "upload_contract"]


def test_contract_upload_deadline_is_five_working_days(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "WX-CONTRACT"
    iid = to_procurement(api, bk)
    api.complete(iid, "procure", {})
    api.message("contract_signed", bk, {"signed_on": "2026-03-02"})
    assert due(api, iid, "contract_upload_deadline") == china_midnight("2026-03-09")
    # signed on Monday 2026-03-02: four days later nothing is due yet, after the weekend it is
    api.advance(timedelta(days=4))
    assert api.open_elements(iid) == ["upload_contract"]
    api.advance(timedelta(days=4))
    assert api.open_elements(iid) == ["contract_upload_overdue", "upload_contract"]
    assert api.open_task(iid, "contract_upload_overdue")["candidate_groups"] == ["data_bureau"]
    api.complete(iid, "contract_upload_overdue", {"reminder_note": "请尽快上传"})
    # the upload itself is still the applicant's to do
    api.complete(iid, "upload_contract", {"ip_clause_included": True})
    assert api.open_elements(iid) == []
    assert "construction_completed" in {w.get("name") for w in api.waiting(iid)}


def test_warranty_below_three_years_is_refused(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "WX-WARRANTY"
    iid = to_procurement(api, bk)
    api.complete(iid, "procure", {})
    api.message("contract_signed", bk, {"signed_on": "2026-03-02"})
    task = api.open_task(iid, "upload_contract")
    client = api.as_("a", "applicant")
    client.post(f"/tasks/{task['id']}/claim")
    r = client.post(f"/tasks/{task['id']}/complete", json={"variables": {
        "ip_clause_included": True, "warranty_years": 2}})
    assert r.status_code == 422 and "warranty_years" in r.json()["errors"]


# ---- changes and 关停并转 during implementation (第十九、二十九条) -------------------------------------------

@pytest.mark.parametrize("exceeds, amount, actual, route, task", [
    (True, 10, 1000, "estimate_adjustment", "change_estimate_approval"),
    (False, 99.99, 2000, "none", None),
    (False, 100, 2000, "joint_review", "change_joint_review"),
    (False, 100.01, 2000, "joint_review", "change_joint_review"),
    (False, 50, 500, "none", None),
    (False, 50.01, 500, "joint_review", "change_joint_review"),
    (False, 5, 0, "joint_review", "change_joint_review"),  # any amount exceeds 10 % of nothing
    (False, 0, 0, "none", None),
])
def test_change_request_route(lifecycle_api: Api, exceeds: bool, amount: float, actual: float,
                              route: str, task: str | None) -> None:
    api = lifecycle_api
    bk = "WX-CHG"
    iid = to_implementation(api, bk)
    api.message("change_requested", bk)
    assert api.open_elements(iid) == ["submit_change"]
    api.complete(iid, "submit_change", {"change_reason": "国家政策调整", "change_amount_wan": amount,
                                        "actual_investment_wan": actual, "exceeds_estimate": exceeds,
                                        "funding_source": "区财政"})
    assert api.instance(iid)["variables"]["change_route"] == route
    if task:
        assert api.open_elements(iid) == [task]
        api.complete(iid, task, {"decision": "pass"})
    # the change has been dealt with and the implementation goes on, ready for another change
    assert api.open_elements(iid) == []
    assert {"construction_completed", "change_requested"} <= {w.get("name") for w in api.waiting(iid)}


def test_two_changes_and_a_refused_one(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "WX-CHG2"
    iid = to_implementation(api, bk)
    for decision in ("reject", "pass"):
        api.message("change_requested", bk)
        api.complete(iid, "submit_change", {"change_reason": "建设依据变化", "change_amount_wan": 150,
                                            "actual_investment_wan": 300, "exceeds_estimate": False})
        assert api.open_task(iid, "change_joint_review")["candidate_groups"] == JOINT_BODY
        api.complete(iid, "change_joint_review", {"decision": decision})
        assert api.open_elements(iid) == []
    api.message("construction_completed", bk, {"completed_on": "2026-03-02"})
    api.complete(iid, "register_irs", {"irs_catalog_ref": "IRS-2"})
    assert api.open_elements(iid) == ["preliminary_acceptance"]


def test_changes_run_beside_the_implementation(lifecycle_api: Api) -> None:
    """A change request does not interrupt the implementation: two may be open at once, and the OA system's
    report that construction is finished is accepted while a change is still being decided."""
    api = lifecycle_api
    bk = "WX-CHG3"
    iid = to_implementation(api, bk)
    api.message("change_requested", bk)
    api.message("change_requested", bk)
    assert api.open_elements(iid) == ["submit_change", "submit_change"]
    tasks = [t for t in api.instance(iid)["open_tasks"] if t["element_id"] == "submit_change"]
    client = api.as_("a", "applicant")
    for task, amount in zip(tasks, (150, 20), strict=True):
        assert client.post(f"/tasks/{task['id']}/claim").status_code == 200
        r = client.post(f"/tasks/{task['id']}/complete", json={"variables": {
            "change_reason": "建设依据变化", "change_amount_wan": amount, "actual_investment_wan": 300,
            "exceeds_estimate": False}})
        assert r.status_code == 200, r.text
    # the 150万 change (over 10 % and over 100万) waits for the joint review; the 20万 one is settled
    assert api.open_elements(iid) == ["change_joint_review"]
    r = api.message("construction_completed", bk, {"completed_on": "2026-03-02"})
    assert r["process_instance_id"] == iid
    assert api.open_elements(iid) == ["change_joint_review", "register_irs"]
    assert "change_requested" not in {w.get("name") for w in api.waiting(iid)}  # implementation is over
    api.complete(iid, "change_joint_review", {"decision": "pass"})
    api.complete(iid, "register_irs", {"irs_catalog_ref": "IRS-3"})
    assert api.open_elements(iid) == ["preliminary_acceptance"]


def test_shutdown_request_terminates(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "WX-SHUT"
    iid = to_implementation(api, bk)
    api.message("shutdown_requested", bk)
    assert api.end_event(iid) == "end_terminated"


# ---- preliminary acceptance and trial run (第二十条) -------------------------------------------------------

def test_preliminary_acceptance_fails_rectify_and_reaccept(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_preliminary(api, "WX-PRE")
    api.complete(iid, "preliminary_acceptance", {"decision": "revise", "preliminary_acceptance_date": "2026-03-02"})
    assert api.open_elements(iid) == ["rectify_preliminary"]
    # the 3-month rectification deadline notifies the data bureau and leaves the rectification open
    api.fire_timer(iid, "rectify_preliminary_deadline")
    assert api.open_elements(iid) == ["rectify_preliminary", "rectify_preliminary_overdue"]
    assert api.open_task(iid, "rectify_preliminary_overdue")["candidate_groups"] == ["data_bureau"]
    api.complete(iid, "rectify_preliminary_overdue", {})
    api.complete(iid, "rectify_preliminary", {"rectification_report": "已整改"})
    assert api.open_elements(iid) == ["preliminary_acceptance"]
    api.clock.advance(timedelta(days=30))  # a reported date cannot lie ahead: it is recorded on 2026-04-01
    api.complete(iid, "preliminary_acceptance", {"decision": "pass", "preliminary_acceptance_date": "2026-04-01"})
    assert api.open_elements(iid) == ["security_assessment"]


def test_trial_run_lasts_at_least_a_month(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_preliminary(api, "WX-TRIAL")
    api.complete(iid, "preliminary_acceptance", {"decision": "pass", "preliminary_acceptance_date": "2026-03-02"})
    api.complete(iid, "security_assessment", {"security_assessment_ref": "A-1"})
    assert api.open_elements(iid) == []
    api.advance(timedelta(days=27))
    assert api.open_elements(iid) == []
    api.advance(timedelta(days=5))
    assert api.open_elements(iid) == ["confirm_trial_run"]
    # not normal: another month of trial run
    api.complete(iid, "confirm_trial_run", {"decision": "revise"})
    assert api.open_elements(iid) == []
    api.advance(timedelta(days=32))
    api.complete(iid, "confirm_trial_run", {"decision": "pass"})
    assert api.open_elements(iid) == ["apply_final_acceptance"]


def test_preliminary_three_month_deadline_notifies(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_preliminary(api, "WX-PRE-LATE")
    assert due(api, iid, "preliminary_deadline") == china_midnight("2026-06-02")
    api.advance(timedelta(days=93))
    assert api.open_elements(iid) == ["preliminary_acceptance", "preliminary_overdue"]
    api.complete(iid, "preliminary_overdue", {"reminder_note": "督办"})
    assert api.open_elements(iid) == ["preliminary_acceptance"]


# ---- final acceptance (第二十、二十一、二十二条) ------------------------------------------------------------

@pytest.mark.parametrize("budget, organizer", [(49.99, "self"), (50, "self"), (50.01, "data_bureau")])
def test_final_acceptance_organizer_by_budget(lifecycle_api: Api, budget: float, organizer: str) -> None:
    api = lifecycle_api
    iid = to_final(api, "WX-ORG", budget_wan=budget, total_investment_wan=budget)
    api.complete(iid, "apply_final_acceptance", {"application_date": "2026-10-01"})
    assert api.instance(iid)["variables"]["acceptance_organizer"] == organizer
    if organizer == "self":
        assert api.open_elements(iid) == ["self_acceptance"]
        assert api.open_task(iid, "self_acceptance")["candidate_groups"] == ["applicant"]
        api.complete(iid, "self_acceptance", {"decision": "pass"})
        # 第二十条: the result is filed with the data bureau
        api.complete(iid, "file_self_acceptance", {"filing_date": "2026-10-20"})
    else:
        assert api.open_elements(iid) == ["confirm_acceptance_ready"]
        api.complete(iid, "confirm_acceptance_ready", {"decision": "pass"})
        assert api.open_task(iid, "final_acceptance")["candidate_groups"] == ["data_bureau"]
        api.complete(iid, "final_acceptance", {"decision": "pass"})
    assert api.open_elements(iid) == ["upload_acceptance_report"]
    api.complete(iid, "upload_acceptance_report", {"acceptance_report_ref": "YS", "accepted_date": "2026-11-01"})
    assert api.end_event(iid) == "end_completed"


def test_final_acceptance_fails_rectify_and_reaccept(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_final(api, "WX-FIN")
    api.complete(iid, "apply_final_acceptance", {"application_date": "2026-10-01"})
    api.complete(iid, "confirm_acceptance_ready", {"decision": "revise"})
    assert api.open_elements(iid) == ["apply_final_acceptance"]
    api.complete(iid, "apply_final_acceptance", {"application_date": "2026-10-08"})
    api.complete(iid, "confirm_acceptance_ready", {"decision": "pass"})
    api.complete(iid, "final_acceptance", {"decision": "revise"})
    assert api.open_elements(iid) == ["rectify_final"]
    api.advance(timedelta(days=93))
    assert api.open_elements(iid) == ["rectify_final", "rectify_final_overdue"]
    api.complete(iid, "rectify_final", {"rectification_report": "已整改"})
    assert "apply_final_acceptance" in api.open_elements(iid)
    api.complete(iid, "rectify_final_overdue", {})
    api.complete(iid, "apply_final_acceptance", {"application_date": "2027-01-10"})
    api.complete(iid, "confirm_acceptance_ready", {"decision": "pass"})
    api.complete(iid, "final_acceptance", {"decision": "pass"})
    api.complete(iid, "upload_acceptance_report", {"acceptance_report_ref": "YS", "accepted_date": "2027-01-20"})
    assert api.end_event(iid) == "end_completed"


def test_acceptance_delay_needs_explanation(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "WX-DELAY"
    iid = to_final(api, bk)
    api.message("acceptance_delayed", bk)
    assert api.open_elements(iid) == ["apply_final_acceptance", "submit_delay_explanation"]
    api.complete(iid, "submit_delay_explanation", {"delay_explanation": "设备到货延迟"})
    assert api.open_elements(iid) == ["apply_final_acceptance"]
    assert api.instance(iid)["status"] != "completed"


# ---- the diagram as a designer reads it: lanes, named branches, decision tables, citations ---------------------

NS = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL", "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
      "dc": "http://www.omg.org/spec/DD/20100524/DC", "dmn": "https://www.omg.org/spec/DMN/20191111/MODEL/"}
CAMUNDA = "{http://camunda.org/schema/1.0/bpmn}"
BPMN_FILE = REPO / "bpmn" / "wuxing.bpmn"
DMN_FILE = REPO / "bpmn" / "wuxing.dmn"


def _bounds(root: Any) -> dict[str, tuple[float, float, float, float]]:
    out = {}
    for shape in root.iter(f"{{{NS['bpmndi']}}}BPMNShape"):
        b = shape.find("dc:Bounds", NS)
        out[shape.get("bpmnElement")] = tuple(float(b.get(k)) for k in ("x", "y", "width", "height"))
    return out


def _inside(outer: tuple[float, ...], inner: tuple[float, ...]) -> bool:
    return (outer[0] <= inner[0] and outer[1] <= inner[1] and inner[0] + inner[2] <= outer[0] + outer[2]
            and inner[1] + inner[3] <= outer[1] + outer[3])


def test_one_lane_per_candidate_group_and_every_user_task_in_its_lane() -> None:
    root = etree.parse(str(BPMN_FILE)).getroot()
    process = root.find("bpmn:process", NS)
    participant = root.find("bpmn:collaboration/bpmn:participant", NS)
    assert participant.get("processRef") == "wuxing" and re.search(r"[\u4e00-\u9fff]", participant.get("name"))
    lanes = {lane.get("id"): lane for lane in process.iter(f"{{{NS['bpmn']}}}lane")}
    bounds = _bounds(root)
    tasks = list(process.iter(f"{{{NS['bpmn']}}}userTask"))
    groups = {g for t in tasks for g in [t.get(CAMUNDA + "candidateGroups").split(",")[0]]}
    assert set(lanes) == {f"lane_{g}" for g in groups}
    for lane in lanes.values():
        assert re.search(r"[\u4e00-\u9fff]", lane.get("name") or ""), lane.get("id")
    for task in tasks:
        lane = "lane_" + task.get(CAMUNDA + "candidateGroups").split(",")[0]
        assert _inside(bounds[lane], bounds[task.get("id")]), (task.get("id"), lane)
        others = [k for k in lanes if k != lane and _inside(bounds[k], bounds[task.get("id")])]
        assert others == [], task.get("id")
    # every top-level flow node is listed in exactly one lane, and lies in it; sub-processes spanning lanes in none
    listed = [(ref.text, lane_id) for lane_id, lane in lanes.items() for ref in lane.findall("bpmn:flowNodeRef", NS)]
    names = [n for n, _ in listed]
    assert len(names) == len(set(names))
    top = [e.get("id") for e in process if etree.QName(e).localname not in (
        "sequenceFlow", "laneSet", "documentation", "extensionElements")]
    spanning = {i for i in top if i not in names}
    assert spanning <= {"sp_preliminary", "sp_final"}
    for sp in spanning:
        assert not any(_inside(b, bounds[sp]) for k, b in bounds.items() if k in lanes), sp
    for node, lane in listed:
        b = bounds[node]
        centre = (b[0] + b[2] / 2, b[1] + b[3] / 2, 0, 0)
        assert _inside(bounds[lane], centre), (node, lane)


def test_every_branch_of_a_decision_gateway_is_named() -> None:
    root = etree.parse(str(BPMN_FILE)).getroot()
    flows = list(root.iter(f"{{{NS['bpmn']}}}sequenceFlow"))
    for gateway in root.iter(f"{{{NS['bpmn']}}}exclusiveGateway"):
        out = [f for f in flows if f.get("sourceRef") == gateway.get("id")]
        if len(out) > 1:
            assert all((f.get("name") or "").strip() for f in out), gateway.get("id")


CN = {"零": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def _cn(number: str) -> int:
    if "十" not in number:
        return CN[number]
    tens, _, ones = number.partition("十")
    return (CN[tens] if tens else 1) * 10 + (CN[ones] if ones else 0)


def _regulation_articles() -> set[int]:
    text = (REPO / "docs" / "regulations" / "wuxing.txt").read_text(encoding="utf-8")
    return {_cn(n) for n in re.findall(r"第([一二三四五六七八九十]+)条 ", text)}


def test_documentation_cites_only_articles_of_the_regulation() -> None:
    articles = _regulation_articles()
    assert max(articles) == 33
    root = etree.parse(str(BPMN_FILE)).getroot()
    texts = [(d.getparent().get("id"), d.text or "") for d in root.iter(f"{{{NS['bpmn']}}}documentation")]
    texts += [(r.get("id"), r.findtext("dmn:description", namespaces=NS) or "")
              for r in etree.parse(str(DMN_FILE)).getroot().iter(f"{{{NS['dmn']}}}rule")]
    cited = 0
    for element, text in texts:
        for group in re.findall(r"第([一二三四五六七八九十、至第]+)条", text):
            for part in group.replace("第", "").split("、"):
                ends = [_cn(n) for n in part.split("至")]
                for number in range(ends[0], ends[-1] + 1):
                    assert number in articles, (element, number)
                    cited += 1
        # an outcome the text does not state is called a convention, not given an article
        if "按惯例" in text:
            assert "办法未规定" in text or "办法未写明" in text, element
    assert cited > 100


def _cell_matches(entry: str, value: Any) -> bool:
    entry = entry.strip()
    if entry in ("", "-"):
        return True
    scope = {"Decimal": Decimal}
    if "?" in entry:
        return bool(eval(entry.replace("?", "value"), scope, {"value": value}))  # noqa: S307 - test data
    try:
        return bool(value == eval(entry, scope))  # noqa: S307
    except SyntaxError:
        return bool(eval("value " + entry, scope, {"value": value}))  # noqa: S307


GRID = {
    "project_type": ["construction", "om", "other"],
    "construction_category": ["infrastructure", "multi_agency", "general_application", "other"],
    "exceeds_estimate": [True, False],
}
AMOUNTS = [Decimal(v) for v in ("0", "5", "49.99", "50", "50.01", "99.99", "100", "100.01", "499.99", "500",
                                "500.01", "1999.99", "2000", "2000.01", "99999")]


@pytest.mark.parametrize("decision", ["wuxing_city_review", "wuxing_approval_track", "wuxing_supervision",
                                      "wuxing_acceptance_organizer", "wuxing_change_route"])
def test_decision_table_rows_do_not_overlap_and_cover_every_input(decision: str) -> None:
    """Exactly one row matches any input, so the order of the rows (hit policy FIRST) does not matter."""
    table = etree.parse(str(DMN_FILE)).getroot().find(f"dmn:decision[@id='{decision}']/dmn:decisionTable", NS)
    expressions = [i.findtext("dmn:inputExpression/dmn:text", namespaces=NS) for i in table.findall("dmn:input", NS)]
    variables = sorted({v for e in expressions for v in re.findall(r"[a-z_]+", e)
                        if v not in ("if", "else", "and", "or", "not")})
    rows = [[e.findtext("dmn:text", namespaces=NS) for e in rule.findall("dmn:inputEntry", NS)]
            for rule in table.findall("dmn:rule", NS)]
    for combination in itertools.product(*(GRID.get(v, AMOUNTS) for v in variables)):
        scope = dict(zip(variables, combination, strict=True))
        values = [eval(e, {}, dict(scope)) for e in expressions]  # noqa: S307 - the table's own expressions
        matching = [n for n, row in enumerate(rows)
                    if all(_cell_matches(cell, v) for cell, v in zip(row, values, strict=True))]
        assert len(matching) == 1, (decision, scope, matching)


# ---- deadlines from reported dates (第十五、二十条) ---------------------------------------------------------

def test_preliminary_deadline_runs_from_the_reported_completion_date_while_the_catalogue_is_open(
        lifecycle_api: Api) -> None:
    """第二十条: 3 months from 基本完成建设 as reported, armed at once: the IRS catalogue is the stage's first step,
    so a long catalogue no longer delays the reminder."""
    api = lifecycle_api
    bk = "WX-PRE-DATE"
    iid = to_implementation(api, bk)
    api.advance(timedelta(days=20))  # Sunday 2026-03-22: the report arrives three weeks after completion
    api.message("construction_completed", bk, {"completed_on": "2026-03-02"})
    assert api.open_elements(iid) == ["register_irs"]
    assert due(api, iid, "preliminary_deadline") == china_midnight("2026-06-02")
    api.advance(datetime(2026, 6, 2, 15, 59, tzinfo=UTC) - api.clock.now())
    assert api.open_elements(iid) == ["register_irs"]
    api.advance(timedelta(minutes=2))
    assert api.open_elements(iid) == ["preliminary_overdue", "register_irs"]


def test_construction_completed_must_carry_its_date(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "WX-PRE-PAYLOAD"
    iid = to_implementation(api, bk)
    r = api.admin.post("/messages", json={"name": "construction_completed", "business_key": bk, "variables": {}})
    assert r.status_code == 422 and "completed_on" in r.json()["errors"]
    assert {"construction_completed", "change_requested"} <= {w.get("name") for w in api.waiting(iid)}


@pytest.mark.parametrize("failed_on, due_day", [("2026-03-02", "2026-06-02"), ("2026-03-03", "2026-06-03")])
def test_rectification_deadline_runs_from_the_date_of_the_failed_preliminary_acceptance(
        lifecycle_api: Api, failed_on: str, due_day: str) -> None:
    """第二十条: 3 months of rectification from the failed 初验, on the date entered, not when it was recorded."""
    api = lifecycle_api
    iid = to_preliminary(api, "WX-RECT")
    api.advance(timedelta(days=3))
    api.complete(iid, "preliminary_acceptance", {"decision": "revise", "preliminary_acceptance_date": failed_on})
    assert due(api, iid, "rectify_preliminary_deadline") == china_midnight(due_day)


ORDERS = [OPINIONS, tuple(reversed(OPINIONS)),
          ("opinion_police", "opinion_reform", "opinion_crypto", "opinion_finance", "opinion_cyber"),
          ("opinion_cyber", "opinion_police", "opinion_finance", "opinion_reform", "opinion_crypto")]
ANSWERS = [dict.fromkeys(OPINIONS, "agree"),
           {"opinion_reform": "disagree", "opinion_finance": "agree_with_changes", "opinion_cyber": "agree",
            "opinion_crypto": "disagree", "opinion_police": "not_applicable"}]


@pytest.mark.parametrize("answers", ANSWERS, ids=["all_agree", "mixed"])
@pytest.mark.parametrize("order", ORDERS, ids=["forward", "reversed", "police_first", "cyber_first"])
def test_no_opinion_is_lost_whatever_the_order(lifecycle_api: Api, order: tuple[str, ...],
                                                answers: dict[str, str]) -> None:
    """The five parallel opinions write five fields: none overwrites another, in any completion order, and the
    data bureau's 初审 task shows each department's answer with its comment."""
    api = lifecycle_api
    iid = start(api, "WX-ORDER", construction_category="multi_agency")
    for element in order:
        task = api.open_task(iid, element)
        group = task["candidate_groups"][0]
        client = api.as_(f"{group}_user", group)
        assert client.post(f"/tasks/{task['id']}/claim").status_code == 200
        r = client.post(f"/tasks/{task['id']}/complete", json={
            "variables": {CONCLUSION[element]: answers[element]}, "comment": f"{group} 意见"})
        assert r.status_code == 200, r.text
    variables = api.variables(iid)
    assert {CONCLUSION[e]: variables[CONCLUSION[e]] for e in OPINIONS} == {CONCLUSION[e]: answers[e] for e in OPINIONS}
    prereview = api.open_task(iid, "prereview")
    detail = api.as_("d", "data_bureau").get(f"/tasks/{prereview['id']}").json()
    seen = {t["element_id"]: t for t in detail["completed_tasks"] if t["element_id"] in OPINIONS}
    assert set(seen) == set(OPINIONS)
    for element, record in seen.items():
        assert record["submitted"] == {CONCLUSION[element]: answers[element]}
        assert record["comment"] == f"{record['candidate_groups'][0]} 意见"
