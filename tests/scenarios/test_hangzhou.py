"""Scenario tests for the Hangzhou lifecycle (杭州市政务信息化项目建设管理办法（征求意见稿））, driven over
REST as the OA system and the departments would drive it."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from tests.support import Api

PROCESS_KEY = "hangzhou"

BASE: dict[str, Any] = {
    "project_name": "城市大脑数据中台",
    "department": "市数据资源局",
    "budget_wan": 80,
    "is_build_dev": True,
}


def start(api: Api, bk: str, **overrides: Any) -> str:
    inst = api.start(PROCESS_KEY, {**BASE, **overrides}, business_key=bk)
    return str(inst["id"])


def open_ids(api: Api, iid: str) -> list[str]:
    return api.open_elements(iid)



def task_detail(api: Api, iid: str, element_id: str) -> dict[str, Any]:
    """The task with its form and the instance variables, as a reviewer's client reads it."""
    r = api.admin.get(f"/tasks/{api.open_task(iid, element_id)['id']}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def waiting(api: Api, iid: str) -> set[str]:
    return {w["element_id"] for w in api.waiting(iid)}


def to_budget(api: Api, iid: str, bk: str) -> None:
    """Planned path: pre-review, expert review, budget review, leading group, People's Congress."""
    api.complete(iid, "prereview", {"decision": "pass"})
    api.complete(iid, "expert_review", {"decision": "pass"})
    api.complete(iid, "budget_review", {"decision": "pass"})
    api.complete(iid, "lg_approval", {"decision": "pass"})
    assert "wait_npc" in waiting(api, iid)
    api.message("npc_budget_approved", bk)
    assert open_ids(api, iid) == ["arrange_funds"]


def issue_budget(api: Api, iid: str) -> None:
    api.complete(iid, "arrange_funds", {"budget_amount_wan": 80, "budget_issued_date": "2026-03-02"})


def to_approved(api: Api, iid: str, bk: str) -> None:
    """From declaration to 立项 (either track); leaves the implementation-plan filing open."""
    to_budget(api, iid, bk)
    issue_budget(api, iid)
    if open_ids(api, iid) == ["commission_fsr"]:
        api.complete(iid, "commission_fsr", {"fsr_agency": "某咨询公司", "fsr_ref": "FSR-1"})
        api.complete(iid, "ndrc_approval", {"decision": "pass", "approval_date": "2026-03-02", "approval_doc": "杭发改审批〔2026〕1号"})
    assert open_ids(api, iid) == ["file_impl_plan"]


def to_built(api: Api, iid: str, bk: str, contract_wan: Any = 80) -> None:
    """From 立项 to construction completed: plan filing, supervision if required, procurement, contract."""
    api.complete(iid, "file_impl_plan", {"impl_plan_ref": "SSFA-1"})
    if open_ids(api, iid) == ["commission_supervisor"]:
        api.complete(iid, "commission_supervisor", {"supervisor_name": "某监理公司"})
    api.complete(iid, "procurement", {"procurement_method": "open_tender"})
    api.message("contract_signed", bk, {"signed_on": "2026-03-01"})
    api.complete(iid, "file_contract", {"contract_wan": contract_wan, "warranty_years": 2})
    api.message("construction_completed", bk)


def to_acceptance_prep(api: Api, iid: str, bk: str) -> None:
    """Trial run (build/dev projects), security assessments and catalogues."""
    if "wait_trial_start" in waiting(api, iid):
        api.message("trial_run_started", bk, {"trial_started_on": "2026-03-02"})
        api.fire_timer(iid, "trial_run")
    api.complete(iid, "security_assessment", {"dengbao_report_ref": "DB-1", "crypto_report_ref": "MP-1"})
    api.complete(iid, "catalog_compilation", {"catalog_ref": "ML-1"})


# ---------------------------------------------------------------------------------------------- full run
def test_full_lifecycle_to_completion(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "HZ-2026-001"
    iid = start(api, bk, budget_wan=150, involves_public_service=True, is_key_project=True,
                build_total_wan=130, security_wan=20)
    assert open_ids(api, iid) == ["prereview"]
    assert api.variables(iid)["security_share_check"] == "ok"
    to_budget(api, iid, bk)
    issue_budget(api, iid)
    assert api.variables(iid)["track"] == "approval"
    api.complete(iid, "commission_fsr", {"fsr_agency": "某咨询公司", "fsr_ref": "FSR-1"})
    api.complete(iid, "ndrc_approval", {"decision": "pass", "approval_date": "2026-03-02"})
    api.complete(iid, "file_impl_plan", {"impl_plan_ref": "SSFA-1"})
    assert open_ids(api, iid) == ["commission_supervisor"]
    api.complete(iid, "commission_supervisor", {"supervisor_name": "某监理公司"})
    api.complete(iid, "procurement", {"procurement_method": "competitive_consultation"})
    assert "wait_contract" in waiting(api, iid)
    api.message("contract_signed", bk, {"signed_on": "2026-03-01"})
    api.complete(iid, "file_contract", {"contract_wan": 120, "warranty_years": 3, "ip_clause": True,
                                        "bond_clause": True})
    api.message("construction_completed", bk)
    api.message("trial_run_started", bk, {"trial_started_on": "2026-03-02"})
    assert open_ids(api, iid) == [] and "trial_run" in waiting(api, iid)
    api.advance(timedelta(days=32))
    assert open_ids(api, iid) == ["security_assessment"]
    api.complete(iid, "security_assessment", {"dengbao_report_ref": "DB-1", "crypto_report_ref": "MP-1"})
    api.complete(iid, "catalog_compilation", {"catalog_ref": "ML-1"})
    api.complete(iid, "acceptance_testing", {"decision": "pass", "testing_report_ref": "CP-1"})
    api.complete(iid, "invite_recipients", {"recipient_opinion": "满意"})
    api.complete(iid, "acceptance", {"decision": "pass", "acceptance_date": "2026-04-01"})  # a reported date: past
    api.complete(iid, "upload_acceptance", {"acceptance_materials_ref": "YS-1"})
    api.complete(iid, "publish_result", {"announcement_ref": "https://example.gov.cn/gg/1"})
    api.complete(iid, "conformity_check", {"decision": "pass", "conformity_mode": "commissioned"})
    api.complete(iid, "performance_evaluation", {"decision": "revise", "performance_score": 78,
                                                 "rectification_opinion": "加强数据共享"})
    api.complete(iid, "performance_rectification", {"rectification_report": "已整改"})
    inst = api.instance(iid)
    assert inst["status"] == "completed" and inst["end_event"] == "end_completed"


def test_small_project_without_optional_steps_completes(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "HZ-2026-002"
    iid = start(api, bk, budget_wan=30, is_build_dev=False)
    to_approved(api, iid, bk)
    to_built(api, iid, bk, contract_wan=30)
    # not a build/dev project: no trial run, no acceptance testing, no public-service steps
    assert open_ids(api, iid) == ["security_assessment"]
    to_acceptance_prep(api, iid, bk)
    assert open_ids(api, iid) == ["acceptance"]
    api.complete(iid, "acceptance", {"decision": "pass", "acceptance_date": "2026-03-02"})
    api.complete(iid, "upload_acceptance", {"acceptance_materials_ref": "YS-2"})
    assert open_ids(api, iid) == ["performance_evaluation"]
    api.complete(iid, "performance_evaluation", {"decision": "pass"})
    assert api.instance(iid)["end_event"] == "end_completed"


def test_key_project_conformity_check_feeds_the_evaluation(lifecycle_api: Api) -> None:
    """第二十七条: key projects get a conformity check; 第三十四条: the evaluation issues rectification opinions."""
    api = lifecycle_api
    bk = "HZ-2026-003"
    iid = start(api, bk, is_build_dev=False, is_key_project=True)
    to_approved(api, iid, bk)
    to_built(api, iid, bk, contract_wan=60)
    to_acceptance_prep(api, iid, bk)
    api.complete(iid, "acceptance", {"decision": "pass", "acceptance_date": "2026-03-02"})
    api.complete(iid, "upload_acceptance", {"acceptance_materials_ref": "YS-3"})
    task = api.open_task(iid, "conformity_check")
    assert task["candidate_groups"] == ["data_bureau"]
    api.complete(iid, "conformity_check", {"decision": "revise", "conformity_findings": "部分功能未上线"})
    assert open_ids(api, iid) == ["performance_evaluation"]
    api.complete(iid, "performance_evaluation", {"decision": "revise", "rectification_opinion": "补齐功能"})
    assert open_ids(api, iid) == ["performance_rectification"]
    assert api.open_task(iid, "performance_rectification")["candidate_groups"] == ["applicant"]
    api.complete(iid, "performance_rectification", {"rectification_report": "已上线"})
    assert api.instance(iid)["end_event"] == "end_completed"


# ---------------------------------------------------------------------------------------------- thresholds
@pytest.mark.parametrize("budget, purchase_service, track, supervised", [
    ("99.99", False, "budget", False),
    ("100", False, "approval", True),
    ("100.01", False, "approval", True),
    ("99.99", True, "budget", False),
    ("100", True, "budget", True),      # 政府购买服务: no feasibility study, but supervision still applies
    ("100.01", True, "budget", True),
])
def test_approval_track_and_supervision_at_100(lifecycle_api: Api, budget: str, purchase_service: bool, track: str,
                                               supervised: bool) -> None:
    """第十七条: 投资概算 ≥ 100 (含) needs a feasibility study approved by 市发改委, except 政府购买服务;
    第二十六条: ≥ 100 (含) needs engineering supervision."""
    api = lifecycle_api
    bk = f"HZ-T-{budget}-{purchase_service}"
    iid = start(api, bk, budget_wan=budget, is_gov_purchase_service=purchase_service)
    to_budget(api, iid, bk)
    issue_budget(api, iid)
    v = api.variables(iid)
    assert v["track"] == track and v["fsr_required"] is (track == "approval")
    if track == "approval":
        assert open_ids(api, iid) == ["commission_fsr"]
        api.complete(iid, "commission_fsr", {"fsr_agency": "某咨询公司", "fsr_ref": "FSR-1"})
        api.complete(iid, "ndrc_approval", {"decision": "pass", "approval_date": "2026-03-02"})
    assert open_ids(api, iid) == ["file_impl_plan"]
    api.complete(iid, "file_impl_plan", {"impl_plan_ref": "SSFA-1"})
    assert api.variables(iid)["supervision_required"] is supervised
    assert open_ids(api, iid) == (["commission_supervisor"] if supervised else ["procurement"])


@pytest.mark.parametrize("contract, build_dev, testing", [
    ("99.99", True, False),
    ("100", True, True),
    ("100.01", True, True),
    ("500", False, False),
])
def test_acceptance_testing_by_contract_amount(lifecycle_api: Api, contract: str, build_dev: bool,
                                               testing: bool) -> None:
    """第二十八条（三）: 合同金额 ≥ 100 (含) build/dev projects are tested by a qualified agency."""
    api = lifecycle_api
    bk = f"HZ-C-{contract}-{build_dev}"
    iid = start(api, bk, is_build_dev=build_dev)
    to_approved(api, iid, bk)
    to_built(api, iid, bk, contract_wan=contract)
    to_acceptance_prep(api, iid, bk)
    assert api.variables(iid)["acceptance_testing_required"] is testing
    assert open_ids(api, iid) == (["acceptance_testing"] if testing else ["acceptance"])
    if testing:
        task = api.open_task(iid, "acceptance_testing")
        assert task["candidate_groups"] == ["third_party"]


@pytest.mark.parametrize("security, total, new_build, check, pct, first", [
    ("14.99", "100", True, "below_15_percent", "14.99", "revise_plan"),
    ("15", "100", True, "ok", "15", "prereview"),
    ("15.01", "100", True, "ok", "15.01", "prereview"),
    ("1", "100", False, "not_applicable", "1", "prereview"),
    ("5", "0", True, "not_declared", None, "prereview"),
])
def test_security_share_at_15_percent(lifecycle_api: Api, security: str, total: str, new_build: bool,
                                      check: str, pct: str | None, first: str) -> None:
    """第二十五条: a new build declaring less than 15 % of the construction total for security does not go to
    pre-review: the department corrects the plan first. 改建/扩建 are not held to the 15 % (DMN row 1, a reading);
    without a declared construction total the pre-review agency checks it."""
    api = lifecycle_api
    iid = start(api, f"HZ-S-{security}-{total}-{new_build}", security_wan=security, build_total_wan=total,
                is_new_build=new_build)
    v = api.variables(iid)
    assert v["security_share_check"] == check
    assert (None if v["security_share_pct"] is None else Decimal(str(v["security_share_pct"]))) == (
        None if pct is None else Decimal(pct))
    assert open_ids(api, iid) == [first]


def test_security_share_below_15_percent_goes_back_until_corrected(lifecycle_api: Api) -> None:
    """第二十五条 is binding: the plan returns to the department until the share reaches 15 %; the pre-review form
    shows the computed check read-only."""
    api = lifecycle_api
    iid = start(api, "HZ-S-LOOP", security_wan=10, build_total_wan=100)
    assert open_ids(api, iid) == ["revise_plan"]
    form = {f["id"]: f for f in task_detail(api, iid, "revise_plan")["form"]}
    assert form["security_share_check"]["readonly"] and form["security_share_pct"]["readonly"]
    api.complete(iid, "revise_plan", {"plan_ref": "FA-2", "budget_wan": 80, "security_wan": "14.9",
                                      "build_total_wan": 100})
    assert open_ids(api, iid) == ["revise_plan"]
    api.complete(iid, "revise_plan", {"plan_ref": "FA-3", "budget_wan": 80, "security_wan": 15,
                                      "build_total_wan": 100})
    assert open_ids(api, iid) == ["prereview"]
    task = task_detail(api, iid, "prereview")
    form = {f["id"]: f for f in task["form"]}
    assert form["security_share_check"]["readonly"] and task["variables"]["security_share_check"] == "ok"
    client = api.as_("agency", "third_party")
    assert client.post(f"/tasks/{task['id']}/claim").status_code == 200
    r = client.post(f"/tasks/{task['id']}/complete", json={"variables": {"decision": "pass",
                                                                         "security_share_check": "ok"}})
    assert r.status_code == 422 and "security_share_check" in r.json()["errors"]


# ---------------------------------------------------------------------------------------------- paths and loops
def test_unplanned_project_goes_through_the_office(lifecycle_api: Api) -> None:
    """第十条: 计划外项目 reviewed by the leading-group office, then funds from the finance bureau."""
    api = lifecycle_api
    bk = "HZ-U-1"
    iid = start(api, bk, is_unplanned=True, unplanned_basis="emergency", budget_wan=120)
    task = api.open_task(iid, "unplanned_review")
    assert task["candidate_groups"] == ["data_bureau"]
    api.complete(iid, "unplanned_review", {"decision": "pass"})
    assert open_ids(api, iid) == ["arrange_funds"]
    issue_budget(api, iid)
    # 第十七条 still applies: 120 万 needs the feasibility study
    assert open_ids(api, iid) == ["commission_fsr"]


def test_unplanned_project_refused(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "HZ-U-2", is_unplanned=True, unplanned_basis="policy")
    api.complete(iid, "unplanned_review", {"decision": "reject"})
    inst = api.instance(iid)
    assert inst["status"] == "completed" and inst["end_event"] == "end_rejected"


@pytest.mark.parametrize("stage", ["prereview", "expert_review", "budget_review", "lg_approval", "ndrc_approval"])
def test_rejection_at_each_review_ends_rejected(lifecycle_api: Api, stage: str) -> None:
    api = lifecycle_api
    bk = f"HZ-R-{stage}"
    iid = start(api, bk, budget_wan=200)
    steps = ["prereview", "expert_review", "budget_review", "lg_approval"]
    for step in steps[: steps.index(stage) if stage in steps else len(steps)]:
        api.complete(iid, step, {"decision": "pass"})
    if stage == "ndrc_approval":
        api.message("npc_budget_approved", bk)
        issue_budget(api, iid)
        api.complete(iid, "commission_fsr", {"fsr_agency": "某咨询公司", "fsr_ref": "FSR-1"})
    api.complete(iid, stage, {"decision": "reject", **({"approval_date": "2026-03-02"} if stage == "ndrc_approval" else {})})
    inst = api.instance(iid)
    assert inst["status"] == "completed" and inst["end_event"] == "end_rejected"
    assert inst["open_tasks"] == []


@pytest.mark.parametrize("message, end, next_open", [
    ("npc_budget_approved", None, ["arrange_funds"]),
    ("npc_budget_rejected", "end_rejected", []),
])
def test_peoples_congress_approves_or_not(lifecycle_api: Api, message: str, end: str | None,
                                          next_open: list[str]) -> None:
    """第十五条: funds only after 市人代会审议通过; a budget it does not approve ends the declaration as 不予立项
    (a reading: the text names no other way on)."""
    api = lifecycle_api
    bk = f"HZ-N-{message}"
    iid = start(api, bk)
    for step in ("prereview", "expert_review", "budget_review", "lg_approval"):
        api.complete(iid, step, {"decision": "pass"})
    assert {"wait_npc", "wait_npc_rejected"} <= waiting(api, iid)
    api.message(message, bk)
    assert open_ids(api, iid) == next_open
    assert api.end_event(iid) == end
    if end is None:
        assert not {"wait_npc", "wait_npc_rejected"} & waiting(api, iid)


def test_prereview_revise_and_resubmit(lifecycle_api: Api) -> None:
    """第十三条: the plan goes back to the department, is revised and pre-reviewed again."""
    api = lifecycle_api
    iid = start(api, "HZ-L-1", security_wan=15, build_total_wan=100)
    assert api.variables(iid)["security_share_check"] == "ok"
    api.complete(iid, "prereview", {"decision": "revise", "prereview_opinion": "网络安全方案不完整"})
    assert open_ids(api, iid) == ["revise_plan"]
    assert api.open_task(iid, "revise_plan")["candidate_groups"] == ["applicant"]
    api.complete(iid, "revise_plan", {"plan_ref": "FA-2", "budget_wan": 90, "security_wan": 20,
                                      "build_total_wan": 100})
    assert open_ids(api, iid) == ["prereview"]
    v = api.variables(iid)
    assert v["security_share_check"] == "ok" and Decimal(str(v["budget_wan"])) == 90
    assert Decimal(str(v["security_share_pct"])) == 20
    api.complete(iid, "prereview", {"decision": "pass"})
    assert open_ids(api, iid) == ["expert_review"]


def test_expert_review_revise_and_resubmit(lifecycle_api: Api) -> None:
    """第十四条: the plan is revised after the expert review and reviewed again."""
    api = lifecycle_api
    iid = start(api, "HZ-L-2")
    api.complete(iid, "prereview", {"decision": "pass"})
    for _ in range(2):
        api.complete(iid, "expert_review", {"decision": "revise", "review_opinion": "技术路线不清"})
        assert open_ids(api, iid) == ["revise_after_review"]
        api.complete(iid, "revise_after_review", {"plan_ref": "FA-3", "budget_wan": 85})
        assert open_ids(api, iid) == ["expert_review"]
    api.complete(iid, "expert_review", {"decision": "pass"})
    assert open_ids(api, iid) == ["budget_review"]


def test_feasibility_study_sent_back_by_ndrc(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "HZ-L-3"
    iid = start(api, bk, budget_wan=300)
    to_budget(api, iid, bk)
    issue_budget(api, iid)
    api.complete(iid, "commission_fsr", {"fsr_agency": "某咨询公司", "fsr_ref": "FSR-1"})
    assert api.open_task(iid, "ndrc_approval")["candidate_groups"] == ["development_reform"]
    api.complete(iid, "ndrc_approval", {"decision": "revise", "approval_date": "2026-03-02"})
    assert open_ids(api, iid) == ["commission_fsr"]
    api.complete(iid, "commission_fsr", {"fsr_agency": "某咨询公司", "fsr_ref": "FSR-2"})
    api.complete(iid, "ndrc_approval", {"decision": "pass", "approval_date": "2026-03-02"})
    assert open_ids(api, iid) == ["file_impl_plan"]


def test_failed_testing_and_failed_acceptance_are_rectified(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "HZ-L-4"
    iid = start(api, bk)
    to_approved(api, iid, bk)
    to_built(api, iid, bk, contract_wan=150)
    to_acceptance_prep(api, iid, bk)
    api.complete(iid, "acceptance_testing", {"decision": "revise"})
    assert open_ids(api, iid) == ["rectify"]
    api.complete(iid, "rectify", {"rectification_report": "修复缺陷"})
    assert open_ids(api, iid) == ["acceptance_testing"]
    api.complete(iid, "acceptance_testing", {"decision": "pass"})
    api.complete(iid, "acceptance", {"decision": "revise", "acceptance_date": "2026-03-02", "acceptance_opinion": "数据归集不全"})
    assert open_ids(api, iid) == ["rectify"]
    api.complete(iid, "rectify", {"rectification_report": "补齐数据归集"})
    # re-acceptance: the testing decision is taken again and the tests are redone
    assert open_ids(api, iid) == ["acceptance_testing"]
    api.complete(iid, "acceptance_testing", {"decision": "pass"})
    api.complete(iid, "acceptance", {"decision": "pass", "acceptance_date": "2026-03-02"})
    assert open_ids(api, iid) == ["upload_acceptance"]


# ---------------------------------------------------------------------------------------------- time
def test_trial_run_lasts_at_least_a_month(lifecycle_api: Api) -> None:
    """第二十八条（一）: build/dev projects run on trial for at least one month before acceptance."""
    api = lifecycle_api
    bk = "HZ-D-1"
    iid = start(api, bk)
    to_approved(api, iid, bk)
    to_built(api, iid, bk)
    assert "wait_trial_start" in waiting(api, iid)
    api.message("trial_run_started", bk, {"trial_started_on": "2026-03-02"})
    api.advance(timedelta(days=27))
    assert open_ids(api, iid) == [] and "trial_run" in waiting(api, iid)
    api.advance(timedelta(days=5))
    assert open_ids(api, iid) == ["security_assessment"]


CHINA = timezone(timedelta(hours=8))


def end_of_day(day: str) -> datetime:
    """24:00 China time at the end of `day`."""
    return datetime.fromisoformat(day).replace(tzinfo=CHINA) + timedelta(days=1)


@pytest.mark.parametrize("task, timer, notice, budget, reported, due_day", [
    # 第十八条 budget track: 完成立项 = 预算下达日期 (第十七条), reported on arrange_funds
    ("file_impl_plan", "impl_plan_overdue", "impl_plan_overdue_notice", 80, "2026-02-20", "2026-03-07"),
    # 第十八条 approval track: 完成立项 = 市发改委审批日期
    ("file_impl_plan", "impl_plan_overdue", "impl_plan_overdue_notice", 150, "2026-02-25", "2026-03-12"),
    # 第二十二条: 合同签订之日, carried by the contract_signed message
    ("file_contract", "contract_overdue", "contract_overdue_notice", 80, "2026-02-24", "2026-03-11"),
    # 第二十九条: 验收通过之日, entered on the acceptance task
    ("upload_acceptance", "acceptance_overdue", "acceptance_overdue_notice", 80, "2026-02-26", "2026-03-13"),
])
def test_fifteen_day_filings_run_from_the_reported_date(lifecycle_api: Api, task: str, timer: str, notice: str,
                                                       budget: int, reported: str, due_day: str) -> None:
    """第十八条、第二十二条、第二十九条: 15 days from the date the article names, as reported (the start day not
    counted), not from when the task opened; overdue → the office is notified, the filing stays open."""
    api = lifecycle_api
    bk = f"HZ-D-{task}-{budget}"
    iid = start(api, bk, is_build_dev=False, budget_wan=budget)
    to_budget(api, iid, bk)
    api.complete(iid, "arrange_funds", {"budget_amount_wan": budget,
                                        "budget_issued_date": reported if budget < 100 else "2026-02-10"})
    if budget >= 100:
        api.complete(iid, "commission_fsr", {"fsr_agency": "某咨询公司", "fsr_ref": "FSR-1"})
        api.complete(iid, "ndrc_approval", {"decision": "pass", "approval_date": reported})
    if task != "file_impl_plan":
        api.complete(iid, "file_impl_plan", {"impl_plan_ref": "SSFA-1"})
        if budget >= 100:
            api.complete(iid, "commission_supervisor", {"supervisor_name": "某监理公司"})
        api.complete(iid, "procurement", {"procurement_method": "below_limit"})
        api.message("contract_signed", bk, {"signed_on": reported if task == "file_contract" else "2026-02-27"})
    if task == "upload_acceptance":
        api.complete(iid, "file_contract", {"contract_wan": 50})
        api.message("construction_completed", bk)
        to_acceptance_prep(api, iid, bk)
        api.complete(iid, "acceptance", {"decision": "pass", "acceptance_date": reported})
    assert open_ids(api, iid) == [task]
    due = end_of_day(due_day)
    filing = api.open_task(iid, task)
    assert datetime.fromisoformat(filing["due_at"]) == due
    assert datetime.fromisoformat(filing["created_at"]) + timedelta(days=15) != due   # not from the task's start
    timers = {w["element_id"]: w for w in api.waiting(iid)}
    assert datetime.fromisoformat(timers[timer]["due_at"]) == due
    api.advance(due - timedelta(minutes=1) - api.clock.now())
    assert open_ids(api, iid) == [task]
    api.advance(timedelta(minutes=2))
    assert open_ids(api, iid) == sorted([task, notice])
    assert api.open_task(iid, notice)["candidate_groups"] == ["data_bureau"]
    api.complete(iid, notice, {"notice_note": "请尽快备案"})
    inst = api.instance(iid)
    assert inst["status"] == "running" and open_ids(api, iid) == [task]


def test_contract_message_must_carry_the_signing_date(lifecycle_api: Api) -> None:
    """The contract_signed payload declares signed_on (date, required): without it, or not a date, 422."""
    api = lifecycle_api
    bk = "HZ-M-1"
    iid = start(api, bk, is_build_dev=False)
    to_approved(api, iid, bk)
    api.complete(iid, "file_impl_plan", {"impl_plan_ref": "SSFA-1"})
    api.complete(iid, "procurement", {"procurement_method": "below_limit"})
    for variables_ in ({}, {"signed_on": "not a date"}):
        r = api.admin.post("/messages", json={"name": "contract_signed", "business_key": bk, "variables": variables_})
        assert r.status_code == 422 and "signed_on" in r.json()["errors"], r.text
    assert "wait_contract" in waiting(api, iid)
    api.message("contract_signed", bk, {"signed_on": "2026-02-27"})
    form = {f["id"] for f in task_detail(api, iid, "file_contract")["form"]}
    assert "contract_signed_date" not in form and "signed_on" not in form


def test_trial_run_counts_from_the_reported_start(lifecycle_api: Api) -> None:
    """第二十八条（一）: at least a month from the reported start of the trial run, not from the report."""
    api = lifecycle_api
    bk = "HZ-D-3"
    iid = start(api, bk)
    to_approved(api, iid, bk)
    to_built(api, iid, bk)
    api.message("trial_run_started", bk, {"trial_started_on": "2026-02-20"})
    due = end_of_day("2026-03-20")
    timers = {w["element_id"]: w for w in api.waiting(iid)}
    assert datetime.fromisoformat(timers["trial_run"]["due_at"]) == due
    api.advance(due - timedelta(minutes=1) - api.clock.now())
    assert open_ids(api, iid) == []
    api.advance(timedelta(minutes=2))
    assert open_ids(api, iid) == ["security_assessment"]


def test_filing_on_time_cancels_the_deadline(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "HZ-D-2"
    iid = start(api, bk)
    to_approved(api, iid, bk)
    api.complete(iid, "file_impl_plan", {"impl_plan_ref": "SSFA-1"})
    assert "impl_plan_overdue" not in waiting(api, iid)
    api.advance(timedelta(days=20))
    assert "impl_plan_overdue_notice" not in open_ids(api, iid)


# ---------------------------------------------------------------------------------------------- input and rights
@pytest.mark.parametrize("variables_, field", [
    ({"project_name": "x", "budget_wan": 10}, "department"),
    ({"project_name": "x", "department": "y", "budget_wan": -1}, "budget_wan"),
    ({"project_name": "x", "department": "y"}, "budget_wan"),
    ({"project_name": "x", "department": "y", "budget_wan": 1, "unplanned_basis": "whim"}, "unplanned_basis"),
    ({"project_name": "x", "department": "y", "budget_wan": 1, "is_unplanned": "yes"}, "is_unplanned"),
])
def test_invalid_start_is_422_naming_the_field(lifecycle_api: Api, variables_: dict[str, Any], field: str) -> None:
    r = lifecycle_api.as_("oa", "applicant").post("/process-instances", json={
        "process_key": PROCESS_KEY, "business_key": "HZ-BAD", "variables": variables_})
    assert r.status_code == 422, r.text
    assert field in r.json()["errors"]


def test_review_decision_is_required_and_checked(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "HZ-F-1")
    task = api.open_task(iid, "prereview")
    client = api.as_("agency", "third_party")
    assert client.post(f"/tasks/{task['id']}/claim").status_code == 200
    r = client.post(f"/tasks/{task['id']}/complete", json={"variables": {"decision": "maybe"}})
    assert r.status_code == 422 and "decision" in r.json()["errors"]
    r = client.post(f"/tasks/{task['id']}/complete", json={"variables": {}})
    assert r.status_code == 422 and "decision" in r.json()["errors"]


def test_service_contract_term_is_at_most_three_years(lifecycle_api: Api) -> None:
    """第二十一条: a 政府购买服务 contract runs for at most 3 years."""
    api = lifecycle_api
    bk = "HZ-F-4"
    iid = start(api, bk, is_gov_purchase_service=True, is_build_dev=False)
    to_approved(api, iid, bk)
    api.complete(iid, "file_impl_plan", {"impl_plan_ref": "SSFA-1"})
    task = api.open_task(iid, "procurement")
    client = api.as_("dept", "applicant")
    assert client.post(f"/tasks/{task['id']}/claim").status_code == 200
    r = client.post(f"/tasks/{task['id']}/complete", json={"variables": {
        "procurement_method": "open_tender", "service_term_years": 4}})
    assert r.status_code == 422 and "service_term_years" in r.json()["errors"]
    r = client.post(f"/tasks/{task['id']}/complete", json={"variables": {
        "procurement_method": "open_tender", "service_term_years": 3}})
    assert r.status_code == 200, r.text
    assert "wait_contract" in waiting(api, iid)


def test_wrong_group_cannot_complete(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "HZ-F-2")
    task = api.open_task(iid, "prereview")
    assert task["candidate_groups"] == ["third_party"]
    r = api.as_("x", "finance_bureau").post(f"/tasks/{task['id']}/complete", json={"variables": {"decision": "pass"}})
    assert r.status_code == 403, r.text
    assert open_ids(api, iid) == ["prereview"]


def test_unexpected_message_is_refused(lifecycle_api: Api) -> None:
    api = lifecycle_api
    start(api, "HZ-F-3")
    r = api.admin.post("/messages", json={"name": "contract_signed", "business_key": "HZ-F-3", "variables": {}})
    assert r.status_code == 404


# ---------------------------------------------------------------------------------------------- the diagram itself
BPMN_NS = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
           "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI", "dc": "http://www.omg.org/spec/DD/20100524/DC"}
CAMUNDA = "{http://camunda.org/schema/1.0/bpmn}"


def _diagram() -> Any:
    from lxml import etree

    from tests.support import REPO
    return etree.parse(str(REPO / "bpmn" / "hangzhou.bpmn")).getroot()
