"""Wuhan 武汉市 (武汉市政务信息化项目建设管理办法): the lifecycle driven over REST as the OA systems and reviewers would."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lxml import etree

from tests.support import REPO, Api

PROCESS_KEY = "wuhan"

DOCUMENT = {
    "document_ref": "WH-DOC-1",
    "preparer": "某工程咨询公司",
    "preparer_qualified": True,
    "has_sharing_chapter": True,
    "has_crypto_plan": True,
    "product_security_statement": True,
    "uses_city_infrastructure": True,
}
PROPOSAL = {
    "document_ref": "WH-XMJYS-1",
    "product_security_statement": True,
    "uses_city_infrastructure": True,
}
EVALUATION = {
    "evaluation_report_ref": "WH-EVAL-1",
    "sharing_evaluation": "共享分析充分",
    "crypto_evaluation": "符合要求",
}
REPORT = {
    "performance_report_ref": "WH-PR-2026",
    "progress_summary": "按计划推进",
    "investment_execution": "执行率80%",
    "user_units_consulted": True,
    "supervisor_consulted": True,
}
PRE_ACCEPTANCE = {
    "security_risk_assessment_ref": "FX-1",
    "crypto_assessment_ref": "MP-1",
    "final_accounts_audit_ref": "JS-1",
    "platform_connected": True,
}
# 第二十一条: the OA system reports the date construction was completed; it reaches the service later (T0 = 2026-03-02)
COMPLETED = {"completed_on": "2026-02-20"}
VIOLATION = {"violation": "未按规定执行采购程序", "found_on": "2026-02-27"}
ACCEPTANCE = {
    "acceptance_date": "2027-05-10",
    "product_security_checked": True,
    "crypto_security_review_checked": True,
    "utilisation_checked": True,
}


def start(api: Api, bk: str, **overrides: Any) -> str:
    variables: dict[str, Any] = {
        "project_name": "武汉市城市运行管理平台",
        "department": "市城管执法委",
        "budget_wan": "800",
    }
    variables.update(overrides)
    return str(api.start(PROCESS_KEY, variables, business_key=bk)["id"])


def through_plan(api: Api, iid: str) -> None:
    """第六、七条 and 第二十四条: the unit's plan, the data bureau's review, the city's approval, the filings."""
    api.complete(iid, "compile_unit_plan", {"plan_year": 2026})
    api.complete(iid, "review_plan", {"decision": "pass"})
    api.complete(iid, "approve_city_plan", {"decision": "pass"})
    assert api.open_elements(iid) == ["file_plan_review", "list_investment_plan"]
    api.complete(iid, "file_plan_review", {"plan_filing_opinion": "已备案"})
    api.complete(iid, "list_investment_plan", {"investment_plan_ref": "武发改投资〔2026〕1号"})


def prepare(api: Api, iid: str) -> None:
    """The 项目建议书 has its own form (第十一、十三条 do not apply to it); the other documents share one."""
    if "prepare_proposal" in api.open_elements(iid):
        api.complete(iid, "prepare_proposal", PROPOSAL)
    else:
        api.complete(iid, "prepare_document", DOCUMENT)


def through_document(api: Api, iid: str, decision: str = "pass", **approval: Any) -> None:
    prepare(api, iid)
    api.complete(iid, "evaluate_document", EVALUATION)
    api.complete(iid, "approve_document", {"decision": decision, **approval})


def to_construction(api: Api, bk: str, start_date: str = "2026-03-10", **overrides: Any) -> str:
    """A 800万元 project through the three documents and the investment to the construction stage."""
    iid = start(api, bk, **overrides)
    through_plan(api, iid)
    for _ in range(3):
        through_document(api, iid)
    api.complete(iid, "issue_investment", {"investment_issued_wan": "800"})
    api.complete(
        iid,
        "organise_implementation",
        {"implementing_body": "市大数据中心", "project_leader": "张工", "construction_start_date": start_date},
    )
    return iid


def to_acceptance(api: Api, bk: str, **overrides: Any) -> str:
    iid = to_construction(api, bk, **overrides)
    api.complete(iid, "annual_performance_report", REPORT)
    api.message("construction_completed", bk, COMPLETED)
    assert api.open_elements(iid) == ["pre_acceptance_work"]
    return iid


# ---- the diagram as a designer reads it ------------------------------------------------------------------

NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
    "dc": "http://www.omg.org/spec/DD/20100524/DC",
    "camunda": "http://camunda.org/schema/1.0/bpmn",
}
ARTICLES = 31  # the 办法 has 第一条 to 第三十一条
DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def _tree() -> Any:
    return etree.parse(str(REPO / "bpmn" / "wuhan.bpmn")).getroot()


def _number(numeral: str) -> int:
    """一 … 三十一 (the numerals the 办法 uses)."""
    if "十" not in numeral:
        return DIGITS[numeral]
    tens, _, units = numeral.partition("十")
    return (DIGITS[tens] if tens else 1) * 10 + (DIGITS[units] if units else 0)


def _bounds(root: Any) -> dict[str, tuple[float, float, float, float]]:
    out = {}
    for shape in root.iter(f"{{{NS['bpmndi']}}}BPMNShape"):
        b = shape.find("dc:Bounds", NS)
        out[shape.get("bpmnElement")] = (
            float(b.get("x")),
            float(b.get("y")),
            float(b.get("width")),
            float(b.get("height")),
        )
    return out


def test_every_user_task_sits_in_the_lane_of_its_first_group() -> None:
    root = _tree()
    process = root.find("bpmn:process[@id='wuhan']", NS)
    participant = root.find("bpmn:collaboration/bpmn:participant", NS)
    assert participant.get("processRef") == "wuhan" and re.search(r"[\u4e00-\u9fff]", participant.get("name"))
    lanes = process.findall("bpmn:laneSet/bpmn:lane", NS)
    listed = {ref.text: lane.get("id") for lane in lanes for ref in lane.findall("bpmn:flowNodeRef", NS)}
    assert len(listed) == sum(len(lane.findall("bpmn:flowNodeRef", NS)) for lane in lanes)  # in one lane each
    bounds = _bounds(root)
    top_level = {
        el.get("id")
        for el in process
        if el.get("id")
        and etree.QName(el).localname not in ("sequenceFlow", "laneSet", "documentation", "extensionElements")
    }
    # every top-level node in a lane, but the acceptance, whose tasks belong to two departments
    assert top_level - set(listed) == {"sp_acceptance"}
    for lane in lanes:
        assert re.search(r"[\u4e00-\u9fff]", lane.get("name")), lane.get("id")
        x, y, w, h = bounds[lane.get("id")]
        for ref in lane.findall("bpmn:flowNodeRef", NS):
            nx, ny, nw, nh = bounds[ref.text]
            if etree.QName(process.find(f"*[@id='{ref.text}']")).localname != "boundaryEvent":
                assert x <= nx and nx + nw <= x + w and y <= ny and ny + nh <= y + h, (ref.text, lane.get("id"))
    groups_used = set()
    for task in process.iter(f"{{{NS['bpmn']}}}userTask"):
        first = task.get(f"{{{NS['camunda']}}}candidateGroups").split(",")[0].strip()
        groups_used.add(first)
        lane_id = "lane_" + first
        if task.get("id") in top_level:
            assert listed[task.get("id")] == lane_id, task.get("id")
        x, y, w, h = bounds[lane_id]
        nx, ny, nw, nh = bounds[task.get("id")]
        assert y <= ny and ny + nh <= y + h, (task.get("id"), lane_id)
    assert {lane.get("id") for lane in lanes} == {"lane_" + g for g in groups_used}


def test_documentation_cites_only_articles_of_the_text() -> None:
    root = _tree()
    for element in root.iter():
        doc = element.find("bpmn:documentation", NS) if isinstance(element.tag, str) else None
        if doc is None or not doc.text:
            continue
        # every numeral in a citation such as 第十一、十三条 or 第十四至十六条
        for group in re.findall(r"第([一二三四五六七八九十、至]+)条", doc.text):
            for numeral in re.split(r"[、至]", group):
                assert 1 <= _number(numeral) <= ARTICLES, (element.get("id"), group)


def test_decisions_name_their_outcomes_and_scripts_say_what_they_compute() -> None:
    process = _tree().find("bpmn:process[@id='wuhan']", NS)
    flows = {f.get("id"): f for f in process.iter(f"{{{NS['bpmn']}}}sequenceFlow")}
    for gateway in process.iter(f"{{{NS['bpmn']}}}exclusiveGateway"):
        outgoing = [o.text for o in gateway.findall("bpmn:outgoing", NS)]
        if len(outgoing) > 1:
            assert gateway.get("name"), gateway.get("id")
            for flow in outgoing:
                assert flows[flow].get("name"), (gateway.get("id"), flow)
    for script in process.iter(f"{{{NS['bpmn']}}}scriptTask"):
        assert re.search(r"第[一二三四五六七八九十]+条|办法未规定", script.findtext("bpmn:documentation", "", NS)), (
            script.get("id")
        )


def test_the_lifecycle_ends_are_the_contract_ids() -> None:
    process = _tree().find("bpmn:process[@id='wuhan']", NS)
    ends = {e.get("id") for e in process.findall("bpmn:endEvent", NS)}
    assert {"end_completed", "end_rejected", "end_terminated"} <= ends
    assert not [e for e in ends if re.match(r"end_(completed|rejected|terminated)_", e)]


# ---- the whole lifecycle ------------------------------------------------------------------------------


def test_full_lifecycle_to_completed(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "WH-FULL"
    iid = to_acceptance(api, bk)
    api.complete(iid, "pre_acceptance_work", PRE_ACCEPTANCE)
    api.complete(iid, "confirm_acceptance_readiness", {"decision": "pass"})
    api.complete(iid, "organise_acceptance", {"decision": "pass", **ACCEPTANCE})
    api.complete(iid, "file_acceptance", {"acceptance_filing_ref": "BA-1"})
    api.complete(iid, "book_assets", {"asset_booking_ref": "ZC-1", "operation_start_date": "2026-03-01"})
    # 第二十二条: self-evaluation from 12 to 24 months after going live
    assert api.open_elements(iid) == []
    due = {w["element_id"]: w["due_at"] for w in api.waiting(iid)}
    # operation started on 2026-03-01 (reported on book_assets): 12 months end on 2027-03-01 at 24:00 China time
    assert due["wait_self_evaluation"] == "2027-03-01T16:00:00Z"
    api.fire_timer(iid, "wait_self_evaluation")
    assert api.open_elements(iid) == ["self_evaluation"]
    due = {w["element_id"]: w["due_at"] for w in api.waiting(iid)}
    assert due["self_evaluation_deadline"] == "2028-03-01T16:00:00Z"
    assert api.open_task(iid, "self_evaluation")["due_at"] == "2028-03-01T16:00:00Z"
    api.complete(iid, "self_evaluation", {"self_evaluation_ref": "ZP-1", "self_evaluation_filed": True})
    api.complete(
        iid, "decide_post_evaluation", {"commission_post_evaluation": True, "post_evaluation_agency": "某咨询"}
    )
    api.complete(iid, "post_evaluation", {"post_evaluation_ref": "HP-1"})
    # 第二十三条: the departments apply the evaluation results
    groups = api.open_task(iid, "apply_evaluation_results")["candidate_groups"]
    assert set(groups) == {"data_bureau", "cyberspace_office", "finance_bureau"}
    api.complete(iid, "apply_evaluation_results", {"rectification_opinions": "无"})
    assert api.end_event(iid) == "end_completed"


# ---- 第八条: self-implementation and filing below 50, approval from 50 ----------------------------------


@pytest.mark.parametrize(
    ("budget", "regime"),
    [
        ("49.99", "self_filing"),
        ("50", "approval"),
        ("50.01", "approval"),
        ("0", "self_filing"),
    ],
)
def test_approval_regime_by_investment(lifecycle_api: Api, budget: str, regime: str) -> None:
    api = lifecycle_api
    iid = start(api, f"WH-REGIME-{budget}", budget_wan=budget)
    through_plan(api, iid)
    assert api.variables(iid)["approval_regime"] == regime
    expected = ["file_self_implementation"] if regime == "self_filing" else ["prepare_proposal"]
    assert api.open_elements(iid) == expected


def test_self_filed_project_goes_on_to_construction(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "WH-SELF", budget_wan="49.99")
    through_plan(api, iid)
    task = api.open_task(iid, "file_self_implementation")
    assert task["candidate_groups"] == ["applicant"]
    api.complete(iid, "file_self_implementation", {"filing_ref": "BA-2026-1", "filing_date": "2026-03-05"})
    # no approval documents, no investment order: straight to 第十七条
    assert api.open_elements(iid) == ["organise_implementation"]


# ---- the start form, bad input, wrong group -----------------------------------------------------------


def test_start_form_is_served(lifecycle_api: Api) -> None:
    r = lifecycle_api.as_("oa", "applicant").get(f"/process-definitions/{PROCESS_KEY}")
    assert r.status_code == 200
    form = {f["id"]: f for f in r.json()["start_form"]}
    assert form["budget_wan"]["type"] == "decimal" and form["budget_wan"]["required"]
    assert form["project_name"]["required"] and form["department"]["required"]
    assert {o["id"] for o in form["entry_path"]["options"]} == {"regular", "capital_construction", "school_hospital"}
    assert {o["id"] for o in form["plan_entry"]["options"]} == {"annual", "supplementary"}
    assert form["design_depth_reached"]["type"] == "boolean"


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"department": "d", "budget_wan": "10"}, "project_name"),
        ({"project_name": "x", "budget_wan": "10"}, "department"),
        ({"project_name": "x", "department": "d"}, "budget_wan"),
        ({"project_name": "x", "department": "d", "budget_wan": "-0.01"}, "budget_wan"),
        ({"project_name": "x", "department": "d", "budget_wan": "十万"}, "budget_wan"),
        ({"project_name": "x", "department": "d", "budget_wan": "10", "plan_entry": "later"}, "plan_entry"),
        ({"project_name": "x", "department": "d", "budget_wan": "10", "entry_path": "soe"}, "entry_path"),
        (
            {"project_name": "x", "department": "d", "budget_wan": "10", "design_depth_reached": "maybe"},
            "design_depth_reached",
        ),
    ],
)
def test_invalid_start_is_422_naming_the_field(lifecycle_api: Api, variables: dict[str, Any], field: str) -> None:
    r = lifecycle_api.as_("oa", "applicant").post(
        "/process-instances", json={"process_key": PROCESS_KEY, "business_key": "WH-BAD", "variables": variables}
    )
    assert r.status_code == 422, r.text
    assert list(r.json()["errors"]) == [field]


def test_wrong_group_is_refused(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "WH-403")
    api.complete(iid, "compile_unit_plan", {"plan_year": 2026})
    task = api.open_task(iid, "review_plan")
    # 第七、二十四条: the data bureau leads the joint review, the joint mechanism's departments take part
    assert task["candidate_groups"] == [
        "data_bureau",
        "cyberspace_office",
        "development_reform",
        "finance_bureau",
        "audit_bureau",
        "crypto_bureau",
    ]
    r = api.as_("x", "applicant").post(f"/tasks/{task['id']}/complete", json={"variables": {"decision": "pass"}})
    assert r.status_code == 403
    assert api.open_elements(iid) == ["review_plan"]
    # a review without its decision is refused
    r = api.as_("d", "data_bureau").post(f"/tasks/{task['id']}/complete", json={"variables": {}})
    assert r.status_code == 422 and "decision" in r.json()["errors"]
    # an outcome the article does not allow is refused: the city government approves or not
    api.complete(iid, "review_plan", {"decision": "pass"}, group="development_reform")
    task = api.open_task(iid, "approve_city_plan")
    assert task["candidate_groups"] == ["city_government"]
    r = api.as_("c", "city_government").post(
        f"/tasks/{task['id']}/complete", json={"variables": {"decision": "revise"}}
    )
    assert r.status_code == 422


# ---- 第九条: projects managed elsewhere ---------------------------------------------------------------


def test_capital_construction_gets_a_technical_opinion_and_leaves(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "WH-JJ", entry_path="capital_construction")
    assert api.open_elements(iid) == ["technical_review_opinion"]
    assert api.open_task(iid, "technical_review_opinion")["candidate_groups"] == ["data_bureau"]
    api.complete(iid, "technical_review_opinion", {"technical_opinion": "同意"})
    assert api.end_event(iid) == "end_out_of_scope"


def test_school_or_hospital_files_the_industry_approval_and_leaves(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "WH-XX", entry_path="school_hospital")
    assert api.open_elements(iid) == ["file_industry_approval"]
    api.complete(
        iid, "file_industry_approval", {"industry_approval_ref": "武教〔2026〕3号", "filing_date": "2026-03-03"}
    )
    assert api.end_event(iid) == "end_out_of_scope"


# ---- 第六、七条: annual implementation plan -----------------------------------------------------------


def test_plan_review_revise_then_pass(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "WH-PLAN-REV")
    api.complete(iid, "compile_unit_plan", {"plan_year": 2026})
    api.complete(iid, "review_plan", {"decision": "revise", "plan_opinion": "调整实施路径"})
    assert api.open_elements(iid) == ["revise_plan"]
    api.complete(iid, "revise_plan", {"budget_wan": "45", "revision_note": "压减建设内容"})
    assert api.open_elements(iid) == ["review_plan"]
    api.complete(iid, "review_plan", {"decision": "pass"})
    api.complete(iid, "approve_city_plan", {"decision": "pass"})
    api.complete(iid, "file_plan_review", {})
    api.complete(iid, "list_investment_plan", {})
    # the reduced investment decides the track
    assert api.open_elements(iid) == ["file_self_implementation"]


@pytest.mark.parametrize("first", ["file_plan_review", "list_investment_plan"])
def test_plan_filing_and_investment_listing_in_either_order(lifecycle_api: Api, first: str) -> None:
    """第二十四条: the cyberspace office's filing review and the listing in the investment plan run side by side and
    record opinions only; both are kept whichever finishes first."""
    api = lifecycle_api
    iid = start(api, f"WH-FORK-{first}")
    api.complete(iid, "compile_unit_plan", {"plan_year": 2026})
    api.complete(iid, "review_plan", {"decision": "pass"})
    api.complete(iid, "approve_city_plan", {"decision": "pass"})
    steps = {
        "file_plan_review": {"plan_filing_opinion": "已备案"},
        "list_investment_plan": {"investment_plan_ref": "X-1"},
    }
    for element in sorted(steps, key=lambda e: e != first):
        api.complete(iid, element, steps[element])
    view = api.variables(iid)
    assert (view["plan_filing_opinion"], view["investment_plan_ref"]) == ("已备案", "X-1")
    assert api.open_elements(iid) == ["prepare_proposal"]


@pytest.mark.parametrize("step", ["review_plan", "approve_city_plan"])
def test_not_in_the_plan_may_not_apply(lifecycle_api: Api, step: str) -> None:
    api = lifecycle_api
    iid = start(api, f"WH-PLAN-NO-{step}")
    api.complete(iid, "compile_unit_plan", {"plan_year": 2026})
    if step == "approve_city_plan":
        api.complete(iid, "review_plan", {"decision": "pass"})
    api.complete(iid, step, {"decision": "reject"})
    assert api.end_event(iid) == "end_rejected"


@pytest.mark.parametrize("reason", ["city_required", "urgent"])
def test_supplementary_inclusion_in_the_plan(lifecycle_api: Api, reason: str) -> None:
    api = lifecycle_api
    iid = start(api, f"WH-SUPP-{reason}", plan_entry="supplementary")
    assert api.open_elements(iid) == ["request_supplement"]
    # the reason is one of the two the article allows
    task = api.open_task(iid, "request_supplement")
    r = api.as_("a", "applicant").post(
        f"/tasks/{task['id']}/complete", json={"variables": {"plan_year": 2026, "supplement_reason": "wanted"}}
    )
    assert r.status_code == 422
    api.complete(iid, "request_supplement", {"plan_year": 2026, "supplement_reason": reason})
    assert api.open_elements(iid) == ["review_plan"]
    api.complete(iid, "review_plan", {"decision": "pass"})
    assert api.open_elements(iid) == ["approve_city_plan"]


# ---- 第十、十六条: documents, third-party evaluation, approval ------------------------------------------


def test_documents_in_sequence_with_third_party_evaluation(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "WH-DOCS")
    through_plan(api, iid)
    seen = []
    for _ in range(3):
        seen.append(api.variables(iid)["current_document"])
        prepare(api, iid)
        assert api.open_task(iid, "evaluate_document")["candidate_groups"] == ["third_party"]
        api.complete(iid, "evaluate_document", EVALUATION)
        assert api.open_task(iid, "approve_document")["candidate_groups"] == ["data_bureau"]
        api.complete(iid, "approve_document", {"decision": "pass"})
    assert seen == ["proposal", "feasibility_study", "preliminary_design"]
    assert api.open_elements(iid) == ["issue_investment"]


@pytest.mark.parametrize(
    ("depth", "plan_entry", "documents"),
    [
        (True, "annual", ["implementation_plan"]),
        (True, "supplementary", ["implementation_plan"]),
        (False, "annual", ["proposal", "feasibility_study", "preliminary_design"]),
    ],
)
def test_implementation_plan_for_planned_projects_at_design_depth(
    lifecycle_api: Api, depth: bool, plan_entry: str, documents: list[str]
) -> None:
    api = lifecycle_api
    iid = start(api, f"WH-DEPTH-{depth}-{plan_entry}", design_depth_reached=depth, plan_entry=plan_entry)
    if plan_entry == "supplementary":
        api.complete(iid, "request_supplement", {"plan_year": 2026, "supplement_reason": "urgent"})
        api.complete(iid, "review_plan", {"decision": "pass"})
        api.complete(iid, "approve_city_plan", {"decision": "pass"})
        api.complete(iid, "file_plan_review", {})
        api.complete(iid, "list_investment_plan", {})
    else:
        through_plan(api, iid)
    seen = []
    while {"prepare_document", "prepare_proposal"} & set(api.open_elements(iid)):
        seen.append(api.variables(iid)["current_document"])
        through_document(api, iid)
    assert seen == documents
    assert api.open_elements(iid) == ["issue_investment"]


def test_document_revise_then_resubmit_the_same_document(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "WH-DOC-REV")
    through_plan(api, iid)
    through_document(api, iid)
    assert api.variables(iid)["current_document"] == "feasibility_study"
    through_document(api, iid, decision="revise")
    assert api.open_elements(iid) == ["prepare_document"]
    assert api.variables(iid)["current_document"] == "feasibility_study"
    through_document(api, iid)
    assert api.variables(iid)["current_document"] == "preliminary_design"


@pytest.mark.parametrize("stage", [0, 2])
def test_document_rejected_ends_rejected(lifecycle_api: Api, stage: int) -> None:
    api = lifecycle_api
    iid = start(api, f"WH-DOC-REJ-{stage}")
    through_plan(api, iid)
    for _ in range(stage):
        through_document(api, iid)
    through_document(api, iid, decision="reject")
    assert api.end_event(iid) == "end_rejected"


@pytest.mark.parametrize(
    ("document", "missing"),
    [
        # 第十一、十三条 apply to 项目实施方案、可行性研究报告及初步设计
        ("feasibility_study", "preparer_qualified"),
        ("feasibility_study", "has_sharing_chapter"),
        ("feasibility_study", "has_crypto_plan"),
        ("implementation_plan", "has_sharing_chapter"),
        # 第十二、二十七条 apply at every stage, the 项目建议书 too
        ("feasibility_study", "product_security_statement"),
        ("feasibility_study", "uses_city_infrastructure"),
        ("proposal", "product_security_statement"),
        ("proposal", "uses_city_infrastructure"),
    ],
)
def test_incomplete_documents_go_back_before_evaluation(lifecycle_api: Api, document: str, missing: str) -> None:
    api = lifecycle_api
    iid = start(api, f"WH-DOC-INC-{document}-{missing}", design_depth_reached=document == "implementation_plan")
    through_plan(api, iid)
    if document == "feasibility_study":
        through_document(api, iid)
    assert api.variables(iid)["current_document"] == document
    task, form = ("prepare_proposal", PROPOSAL) if document == "proposal" else ("prepare_document", DOCUMENT)
    api.complete(iid, task, {**form, missing: False})
    assert api.open_elements(iid) == [task]
    assert api.variables(iid)["current_document"] == document
    api.complete(iid, task, form)
    assert api.open_elements(iid) == ["evaluate_document"]


def test_proposal_is_not_asked_for_the_chapters_of_articles_11_and_13(lifecycle_api: Api) -> None:
    """第十一、十三条: qualified preparer, sharing chapter and crypto plan are required of the 项目实施方案、可行性研究报告
    及初步设计; a 项目建议书 without them goes on to the third-party evaluation."""
    api = lifecycle_api
    iid = start(api, "WH-DOC-PROPOSAL")
    through_plan(api, iid)
    assert api.open_elements(iid) == ["prepare_proposal"]
    task = api.open_task(iid, "prepare_proposal")
    form = {f["id"] for f in api.as_("a", "applicant").get(f"/tasks/{task['id']}").json()["form"]}
    assert not {"preparer_qualified", "has_sharing_chapter", "has_crypto_plan"} & form
    assert {"product_security_statement", "uses_city_infrastructure"} <= form
    # the form refuses them; without them the proposal is complete
    r = api.as_("a", "applicant").post(
        f"/tasks/{task['id']}/complete", json={"variables": {**PROPOSAL, "has_sharing_chapter": False}}
    )
    assert r.status_code == 422 and "has_sharing_chapter" in r.json()["errors"]
    api.complete(iid, "prepare_proposal", PROPOSAL)
    assert api.open_elements(iid) == ["evaluate_document"]
    # its evaluation report need not give the 第十三条 opinions
    api.complete(iid, "evaluate_document", {"evaluation_report_ref": "WH-EVAL-P"})
    api.complete(iid, "approve_document", {"decision": "pass"})
    # the feasibility study is asked for them, and goes back without them
    assert api.open_elements(iid) == ["prepare_document"]
    api.complete(iid, "prepare_document", {**DOCUMENT, "has_sharing_chapter": False, "has_crypto_plan": False})
    assert api.open_elements(iid) == ["prepare_document"]
    assert api.variables(iid)["current_document"] == "feasibility_study"


def test_documents_refused_without_the_required_statements(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "WH-DOC-BAD")
    through_plan(api, iid)
    task = api.open_task(iid, "prepare_proposal")
    r = api.as_("a", "applicant").post(
        f"/tasks/{task['id']}/complete", json={"variables": {"document_ref": "X", "uses_city_infrastructure": True}}
    )
    assert r.status_code == 422 and "product_security_statement" in r.json()["errors"]
    through_document(api, iid)
    task = api.open_task(iid, "prepare_document")
    incomplete = {k: v for k, v in DOCUMENT.items() if k != "has_crypto_plan"}
    r = api.as_("a", "applicant").post(f"/tasks/{task['id']}/complete", json={"variables": incomplete})
    assert r.status_code == 422 and "has_crypto_plan" in r.json()["errors"]


# ---- 第十五条: 核定投资 3000 and above goes to the city government -------------------------------------


@pytest.mark.parametrize(
    ("approved", "city"),
    [
        ("2999.99", False),
        ("3000", True),
        ("3000.01", True),
    ],
)
def test_city_government_approval_from_3000(lifecycle_api: Api, approved: str, city: bool) -> None:
    api = lifecycle_api
    iid = start(api, f"WH-CITY-{approved}", budget_wan="3100", design_depth_reached=True)
    through_plan(api, iid)
    through_document(api, iid, approved_investment_wan=approved)
    assert api.variables(iid)["city_approval_required"] is city
    if city:
        assert api.open_elements(iid) == ["approve_by_city"]
        assert api.open_task(iid, "approve_by_city")["candidate_groups"] == ["city_government"]
        api.complete(iid, "approve_by_city", {"decision": "pass", "city_approval_ref": "武政〔2026〕9号"})
    assert api.open_elements(iid) == ["issue_investment"]


def test_declared_amount_counts_when_no_approved_amount_is_recorded(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "WH-CITY-DECL", budget_wan="3000", design_depth_reached=True)
    through_plan(api, iid)
    through_document(api, iid)
    assert api.open_elements(iid) == ["approve_by_city"]


def test_city_government_refusal_ends_rejected(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = start(api, "WH-CITY-REJ", budget_wan="5000", design_depth_reached=True)
    through_plan(api, iid)
    through_document(api, iid, approved_investment_wan="4800")
    api.complete(iid, "approve_by_city", {"decision": "reject"})
    assert api.end_event(iid) == "end_rejected"


# ---- 第二十条: yearly performance report during construction --------------------------------------------


def test_yearly_performance_report_until_construction_is_completed(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "WH-YEARLY"
    iid = to_construction(api, bk)
    # the start year's report is due before its year end
    assert api.open_elements(iid) == ["annual_performance_report"]
    due = {w["element_id"]: w["due_at"] for w in api.waiting(iid)}
    assert due["report_deadline"] == "2026-12-31T16:00:00Z"
    api.complete(iid, "annual_performance_report", REPORT)
    # next report with the next year; meanwhile the OA system may report completion
    assert api.open_elements(iid) == []
    due = {w["element_id"]: w["due_at"] for w in api.waiting(iid)}
    assert due["wait_report_year"] == "2026-12-31T16:00:00Z"
    assert "construction_completed" in {w["name"] for w in api.waiting(iid)}
    api.advance(timedelta(days=305))  # 2027-01-01
    assert api.open_elements(iid) == ["annual_performance_report"]
    assert api.variables(iid)["report_year"] == 2027
    # completion while a report is open ends the construction stage
    api.message("construction_completed", bk, {"completed_on": "2026-12-28"})
    assert api.open_elements(iid) == ["pre_acceptance_work"]


def test_yearly_report_years_follow_the_reported_construction_start(lifecycle_api: Api) -> None:
    """第二十条: the construction period starts with the reported start date (here in 2027, reported in 2026)."""
    api = lifecycle_api
    iid = to_construction(api, "WH-YEARLY-2027", start_date="2027-01-15")
    assert api.variables(iid)["report_year"] == 2027
    assert api.open_elements(iid) == []
    due = {w["element_id"]: w["due_at"] for w in api.waiting(iid)}
    assert due["wait_report_year"] == "2026-12-31T16:00:00Z"  # 2027-01-01 00:00 China time
    assert due["report_deadline"] == "2027-12-31T16:00:00Z"  # 2027-12-31 24:00 China time
    api.advance(timedelta(days=305))  # 2027-01-01
    assert api.open_elements(iid) == ["annual_performance_report"]
    assert api.open_task(iid, "annual_performance_report")["due_at"] == "2027-12-31T16:00:00Z"


def test_yearly_report_overdue_notifies_the_data_bureau(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_construction(api, "WH-YEARLY-LATE")
    api.advance(timedelta(days=304))  # 2026-12-31, still in time
    assert api.open_elements(iid) == ["annual_performance_report"]
    api.advance(timedelta(days=1))
    assert api.open_elements(iid) == ["annual_performance_report", "report_overdue"]
    assert api.open_task(iid, "report_overdue")["candidate_groups"] == ["data_bureau"]
    api.complete(iid, "report_overdue", {"report_reminder_note": "请于本月报送"})
    api.complete(iid, "annual_performance_report", REPORT)
    assert api.variables(iid)["report_year"] == 2027
    # 2027 has started already: its report is open at once
    assert api.open_elements(iid) == ["annual_performance_report"]


# ---- 第十九条: adjustment of the construction content ------------------------------------------------

REQUEST = {"adjustment_content": "优化数据中台技术方案"}
ADJUSTMENT = {
    "within_estimate": True,
    "goal_unchanged": True,
    "adjustment_wan": "150",
    "estimate_total_wan": "1000",
    "adjustment_reason": "technical_optimisation",
}


def adjustment_tasks(api: Api, iid: str, element_id: str) -> list[dict[str, Any]]:
    return [t for t in api.instance(iid)["open_tasks"] if t["element_id"] == element_id]


def complete_task(api: Api, task: dict[str, Any], variables: dict[str, Any]) -> None:
    """Complete one task by its id (when the same step is open more than once)."""
    client = api.as_(f"{task['candidate_groups'][0]}_user", task["candidate_groups"][0])
    assert client.post(f"/tasks/{task['id']}/claim").status_code == 200
    r = client.post(f"/tasks/{task['id']}/complete", json={"variables": variables})
    assert r.status_code == 200, r.text


def waiting_names(api: Api, iid: str) -> set[str]:
    return {w["name"] for w in api.waiting(iid)}


@pytest.mark.parametrize(
    ("change", "route"),
    [
        ({"adjustment_wan": "149.9"}, "self_adjust"),  # 14.99 %
        ({"adjustment_wan": "150"}, "self_adjust"),  # 15 %
        ({"adjustment_wan": "150.1"}, "formal_procedure"),  # 15.01 %
        ({"adjustment_wan": "0", "adjustment_reason": "superior_or_city_directive"}, "self_adjust"),
        ({"adjustment_reason": "business_development"}, "self_adjust"),
        ({"adjustment_reason": "other"}, "formal_procedure"),
        ({"within_estimate": False}, "formal_procedure"),
        ({"goal_unchanged": False}, "formal_procedure"),
    ],
)
def test_adjustment_route(lifecycle_api: Api, change: dict[str, Any], route: str) -> None:
    api = lifecycle_api
    bk = f"WH-ADJ-{sorted(change.items())}"
    iid = to_construction(api, bk)
    api.message("adjustment_requested", bk, REQUEST)
    # the adjustment runs beside the construction: the yearly report stays open
    assert api.open_elements(iid) == ["annual_performance_report", "submit_adjustment"]
    assert {"construction_completed", "adjustment_requested"} <= waiting_names(api, iid)
    api.complete(iid, "submit_adjustment", {**ADJUSTMENT, **change})
    assert api.variables(iid)["adjustment_route"] == route
    if route == "self_adjust":
        assert api.open_elements(iid) == ["annual_performance_report", "file_adjustment"]
        api.complete(iid, "file_adjustment", {"adjustment_filing_ref": "TZ-1"})
    else:
        assert api.open_elements(iid) == ["annual_performance_report", "approve_adjustment"]
        assert api.open_task(iid, "approve_adjustment")["candidate_groups"] == ["data_bureau"]
        api.complete(iid, "approve_adjustment", {"decision": "pass"})
    # the adjustment is settled on its own branch; construction was never left
    assert api.open_elements(iid) == ["annual_performance_report"]
    assert {"construction_completed", "adjustment_requested"} <= waiting_names(api, iid)
    assert api.instance(iid)["status"] == "running"


def test_repeated_adjustments_and_a_refused_one(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "WH-ADJ-TWICE"
    iid = to_construction(api, bk)
    api.complete(iid, "annual_performance_report", REPORT)
    api.message("adjustment_requested", bk, REQUEST)
    api.complete(iid, "submit_adjustment", ADJUSTMENT)
    api.complete(iid, "file_adjustment", {"adjustment_filing_ref": "TZ-1"})
    # the 2026 report was filed: nothing to report until 2027
    assert api.open_elements(iid) == []
    api.message("adjustment_requested", bk, REQUEST)
    api.complete(iid, "submit_adjustment", {**ADJUSTMENT, "goal_unchanged": False})
    api.complete(iid, "approve_adjustment", {"decision": "reject"})
    assert api.open_elements(iid) == []
    # the next evaluation year comes while adjustments are possible; a third one in 2027
    api.advance(timedelta(days=305))  # 2027-01-01
    assert api.open_elements(iid) == ["annual_performance_report"]
    api.message("adjustment_requested", bk, REQUEST)
    assert api.open_elements(iid) == ["annual_performance_report", "submit_adjustment"]
    api.complete(iid, "submit_adjustment", {**ADJUSTMENT, "adjustment_wan": "10"})
    api.complete(iid, "file_adjustment", {"adjustment_filing_ref": "TZ-3"})
    assert api.variables(iid)["report_year"] == 2027
    api.message("construction_completed", bk, {"completed_on": "2027-01-01"})
    assert api.open_elements(iid) == ["pre_acceptance_work"]


def test_two_adjustments_open_at_once_each_decided_on_its_own(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "WH-ADJ-PAIR"
    iid = to_construction(api, bk)
    api.message("adjustment_requested", bk, REQUEST)
    api.message("adjustment_requested", bk, REQUEST)
    assert api.open_elements(iid) == ["annual_performance_report", "submit_adjustment", "submit_adjustment"]
    # a third request may still come in
    assert "adjustment_requested" in waiting_names(api, iid)
    first, second = adjustment_tasks(api, iid, "submit_adjustment")
    # 14.99 % within the estimate → the unit adjusts and files; the other changes the goal → formal procedure
    complete_task(api, first, {**ADJUSTMENT, "adjustment_wan": "149.9"})
    assert api.open_elements(iid) == ["annual_performance_report", "file_adjustment", "submit_adjustment"]
    complete_task(api, second, {**ADJUSTMENT, "goal_unchanged": False})
    assert api.open_elements(iid) == ["annual_performance_report", "approve_adjustment", "file_adjustment"]
    # each branch kept its own facts
    filing = api.open_task(iid, "file_adjustment")
    approval = api.open_task(iid, "approve_adjustment")
    assert filing["candidate_groups"] == ["applicant"]
    assert approval["candidate_groups"] == ["data_bureau"]
    # decided in the other order, each on its own
    api.complete(iid, "approve_adjustment", {"decision": "reject", "adjustment_approval_ref": "武数〔2026〕5号"})
    assert api.open_elements(iid) == ["annual_performance_report", "file_adjustment"]
    api.complete(iid, "file_adjustment", {"adjustment_filing_ref": "TZ-PAIR"})
    assert api.open_elements(iid) == ["annual_performance_report"]
    # construction went on throughout
    api.complete(iid, "annual_performance_report", REPORT)
    assert api.variables(iid)["report_year"] == 2027
    api.message("construction_completed", bk, COMPLETED)
    assert api.open_elements(iid) == ["pre_acceptance_work"]


@pytest.mark.parametrize("stage", ["submit_adjustment", "approve_adjustment"])
def test_construction_completed_accepted_while_an_adjustment_is_decided(lifecycle_api: Api, stage: str) -> None:
    api = lifecycle_api
    bk = f"WH-ADJ-DONE-{stage}"
    iid = to_construction(api, bk)
    api.complete(iid, "annual_performance_report", REPORT)
    api.message("adjustment_requested", bk, REQUEST)
    if stage == "approve_adjustment":
        api.complete(iid, "submit_adjustment", {**ADJUSTMENT, "adjustment_reason": "other"})
    assert api.open_elements(iid) == [stage]
    # the OA system's report is accepted at once, not refused
    r = api.admin.post("/messages", json={"name": "construction_completed", "business_key": bk, "variables": COMPLETED})
    assert r.status_code == 200, r.text
    assert r.json()["process_instance_id"] == iid
    # acceptance starts, the adjustment stays open; construction is over, so no further adjustment is caught
    assert api.open_elements(iid) == sorted(["pre_acceptance_work", stage])
    assert "adjustment_requested" not in waiting_names(api, iid)
    r = api.admin.post("/messages", json={"name": "adjustment_requested", "business_key": bk, "variables": REQUEST})
    assert r.status_code == 404, r.text
    assert "acceptance_deadline" in {w["element_id"] for w in api.waiting(iid)}
    api.complete(iid, "pre_acceptance_work", PRE_ACCEPTANCE)
    assert api.open_elements(iid) == sorted(["confirm_acceptance_readiness", stage])
    # the adjustment is still completed and settled
    if stage == "submit_adjustment":
        api.complete(iid, "submit_adjustment", ADJUSTMENT)
        assert api.variables(iid)["adjustment_route"] == "self_adjust"
        api.complete(iid, "file_adjustment", {"adjustment_filing_ref": "TZ-LATE"})
    else:
        api.complete(iid, "approve_adjustment", {"decision": "pass", "adjustment_approval_ref": "武数〔2026〕8号"})
    assert api.open_elements(iid) == ["confirm_acceptance_readiness"]
    api.complete(iid, "confirm_acceptance_readiness", {"decision": "pass"})
    assert api.open_elements(iid) == ["organise_acceptance"]


@pytest.mark.parametrize(
    ("change", "task", "decision", "recorded"),
    [
        ({}, "file_adjustment", {"adjustment_filing_ref": "TZ-KEEP"}, {"adjustment_filing_ref": "TZ-KEEP"}),
        (
            {"adjustment_reason": "other"},
            "approve_adjustment",
            {"decision": "pass", "adjustment_approval_ref": "武数〔2026〕9号"},
            {"adjustment_decision": "pass"},
        ),
    ],
)
def test_adjustment_data_kept_after_its_branch_ended(
    lifecycle_api: Api, change: dict[str, Any], task: str, decision: dict[str, Any], recorded: dict[str, Any]
) -> None:
    api = lifecycle_api
    bk = f"WH-ADJ-KEEP-{task}"
    iid = to_construction(api, bk)
    api.message("adjustment_requested", bk, {"adjustment_content": "调整建设进度"})
    api.complete(iid, "submit_adjustment", {**ADJUSTMENT, **change})
    api.complete(iid, task, decision)
    assert api.open_elements(iid) == ["annual_performance_report"]
    expected = {
        "adjustment_content": "调整建设进度",
        "adjustment_route": "formal_procedure" if change else "self_adjust",
        **recorded,
    }
    view = api.variables(iid)
    assert {k: view.get(k) for k in expected} == expected
    # still there once construction has moved on to the next evaluation year
    api.complete(iid, "annual_performance_report", REPORT)
    view = api.variables(iid)
    assert view["report_year"] == 2027
    assert {k: view.get(k) for k in expected} == expected
    # what was submitted on the task stays in its record
    records = api.admin.get(f"/process-instances/{iid}/tasks").json()["items"]
    record = next(r for r in records if r["element_id"] == task)
    assert record["submitted"] == decision


@pytest.mark.parametrize("adjustment_first", [True, False])
@pytest.mark.parametrize("adjustment", ["pass", "reject"])
@pytest.mark.parametrize("check", ["pass", "reject"])
def test_an_adjustment_decided_beside_a_supervision_loses_no_decision(
    lifecycle_api: Api, adjustment_first: bool, adjustment: str, check: str
) -> None:
    """第十九、二十五条 run side by side: the approval department's decision on an adjustment and the supervisors'
    check of a rectification are open at the same time; each is decided on its own, in either order."""
    api = lifecycle_api
    bk = f"WH-PAR-{adjustment_first}-{adjustment}-{check}"
    iid = to_construction(api, bk)
    api.message("adjustment_requested", bk, REQUEST)
    api.complete(iid, "submit_adjustment", {**ADJUSTMENT, "adjustment_reason": "other"})
    api.message("violation_found", bk, VIOLATION)
    api.complete(iid, "order_rectification", {"rectification_days": 30})
    api.complete(iid, "rectify_violation", {"rectification_report": "已整改"})
    assert api.open_elements(iid) == ["approve_adjustment", "check_rectification"]
    steps = [("approve_adjustment", adjustment), ("check_rectification", check)]
    for element, decision in steps if adjustment_first else reversed(steps):
        api.complete(iid, element, {"decision": decision})
    view = api.variables(iid)
    assert view["adjustment_decision"] == adjustment
    assert view["decision"] == check
    # the supervision went the way of its own check
    assert api.open_elements(iid) == (["annual_performance_report"] if check == "pass" else ["impose_sanction"])


def test_supervision_during_an_adjustment_leaves_the_adjustment_open(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "WH-ADJ-SUP"
    iid = to_construction(api, bk)
    api.message("adjustment_requested", bk, REQUEST)
    api.message("violation_found", bk, VIOLATION)
    # 第二十五条 still interrupts construction (the yearly report); the adjustment goes on
    assert api.open_elements(iid) == ["order_rectification", "submit_adjustment"]
    api.complete(iid, "submit_adjustment", ADJUSTMENT)
    api.complete(iid, "file_adjustment", {"adjustment_filing_ref": "TZ-SUP"})
    assert api.open_elements(iid) == ["order_rectification"]
    api.complete(
        iid, "order_rectification", {"rectification_requirement": "重新履行采购程序", "rectification_days": 30}
    )
    api.complete(iid, "rectify_violation", {"rectification_report": "已重新采购"})
    api.complete(iid, "check_rectification", {"decision": "pass"})
    assert api.open_elements(iid) == ["annual_performance_report"]


# ---- 第二十五条: supervision -------------------------------------------------------------------------


# 第二十四、二十五条: the joint mechanism (led by the data bureau) with the network-security supervisors
JOINT_SUPERVISION = [
    "data_bureau",
    "cyberspace_office",
    "development_reform",
    "finance_bureau",
    "audit_bureau",
    "crypto_bureau",
    "public_security",
]


def to_rectification(api: Api, bk: str, days: int = 30) -> str:
    iid = to_construction(api, bk)
    api.message("violation_found", bk, VIOLATION)
    assert api.open_elements(iid) == ["order_rectification"]
    assert api.open_task(iid, "order_rectification")["candidate_groups"] == JOINT_SUPERVISION
    api.complete(
        iid, "order_rectification", {"rectification_requirement": "重新履行采购程序", "rectification_days": days}
    )
    assert api.open_elements(iid) == ["rectify_violation"]
    return iid


def test_rectified_in_time_resumes_construction(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_rectification(api, "WH-SUP-OK")
    due = {w["element_id"]: w["due_at"] for w in api.waiting(iid)}
    # 30 days from the order (2026-03-02), to the end of the last day, 24:00 China time
    assert due["rectification_deadline"] == "2026-04-01T16:00:00Z"
    api.complete(iid, "rectify_violation", {"rectification_report": "已重新采购"})
    # the supervising departments check the rectification; here the finance bureau, which found the breach
    assert api.open_task(iid, "check_rectification")["candidate_groups"] == JOINT_SUPERVISION
    api.complete(iid, "check_rectification", {"decision": "pass"}, group="finance_bureau")
    assert api.open_elements(iid) == ["annual_performance_report"]


def test_overdue_rectification_goes_to_the_approval_department(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_rectification(api, "WH-SUP-LATE", days=15)
    api.advance(timedelta(days=14))
    assert api.open_elements(iid) == ["rectify_violation"]
    api.advance(timedelta(days=2))
    assert api.open_elements(iid) == ["impose_sanction"]
    # 通报批评: the unit must still rectify
    api.complete(iid, "impose_sanction", {"sanction": "criticism"})
    assert api.open_elements(iid) == ["rectify_violation"]
    api.complete(iid, "rectify_violation", {"rectification_report": "已整改"})
    api.complete(iid, "check_rectification", {"decision": "pass"})
    assert api.open_elements(iid) == ["annual_performance_report"]


def test_still_non_compliant_suspend_then_resume(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_rectification(api, "WH-SUP-SUSPEND")
    api.complete(iid, "rectify_violation", {"rectification_report": "部分整改"})
    api.complete(iid, "check_rectification", {"decision": "reject"})
    assert api.open_task(iid, "impose_sanction")["candidate_groups"] == ["data_bureau"]
    api.complete(iid, "impose_sanction", {"sanction": "suspend"})
    assert api.open_elements(iid) == ["suspend_construction"]
    api.complete(iid, "suspend_construction", {"suspension_rectification": "全部整改"})
    api.complete(iid, "review_suspension", {"decision": "pass"})
    assert api.open_elements(iid) == ["annual_performance_report"]


def test_suspended_project_terminated(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_rectification(api, "WH-SUP-SUSP-END")
    api.fire_timer(iid, "rectification_deadline")
    api.complete(iid, "impose_sanction", {"sanction": "suspend"})
    api.complete(iid, "suspend_construction", {"suspension_rectification": "未整改"})
    api.complete(iid, "review_suspension", {"decision": "reject"})
    assert api.end_event(iid) == "end_terminated"


def test_project_terminated_by_the_approval_department(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_rectification(api, "WH-SUP-END")
    api.fire_timer(iid, "rectification_deadline")
    api.complete(iid, "impose_sanction", {"sanction": "terminate"})
    assert api.end_event(iid) == "end_terminated"


# ---- 第二十一条: acceptance --------------------------------------------------------------------------


def test_acceptance_needs_the_data_bureau_confirmation(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_acceptance(api, "WH-ACC-CONF")
    api.complete(iid, "pre_acceptance_work", {**PRE_ACCEPTANCE, "platform_connected": False})
    assert api.open_task(iid, "confirm_acceptance_readiness")["candidate_groups"] == ["data_bureau"]
    api.complete(iid, "confirm_acceptance_readiness", {"decision": "revise", "confirmation_note": "未完成平台对接"})
    assert api.open_elements(iid) == ["pre_acceptance_work"]
    api.complete(iid, "pre_acceptance_work", PRE_ACCEPTANCE)
    api.complete(iid, "confirm_acceptance_readiness", {"decision": "pass"})
    assert api.open_elements(iid) == ["organise_acceptance"]


def test_failed_acceptance_rectify_and_reaccept(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_acceptance(api, "WH-ACC-FAIL")
    api.complete(iid, "pre_acceptance_work", PRE_ACCEPTANCE)
    api.complete(iid, "confirm_acceptance_readiness", {"decision": "pass"})
    api.complete(iid, "organise_acceptance", {"decision": "revise", **ACCEPTANCE})
    assert api.open_elements(iid) == ["rectify_acceptance"]
    api.complete(iid, "rectify_acceptance", {"rectification_note": "补充密码应用整改"})
    assert api.open_elements(iid) == ["organise_acceptance"]
    api.complete(iid, "organise_acceptance", {"decision": "pass", **ACCEPTANCE})
    assert api.open_elements(iid) == ["file_acceptance"]


def test_acceptance_within_six_months_of_the_reported_completion(lifecycle_api: Api) -> None:
    """第二十一条 建成后半年内: from the completion date the OA system reports (2026-02-20), not from when the report
    arrived (2026-03-02): due at the end of 2026-08-20, China time."""
    api = lifecycle_api
    iid = to_acceptance(api, "WH-ACC-6M")
    due = {w["element_id"]: w["due_at"] for w in api.waiting(iid)}
    assert due["acceptance_deadline"] == "2026-08-20T16:00:00Z"
    api.advance(timedelta(days=171, hours=15))  # 2026-08-20T16:00Z, the due instant itself
    assert api.open_elements(iid) == ["pre_acceptance_work"]
    api.advance(timedelta(minutes=1))
    assert api.open_elements(iid) == ["acceptance_overdue", "pre_acceptance_work"]
    assert api.open_task(iid, "acceptance_overdue")["candidate_groups"] == ["data_bureau"]
    # the acceptance task shows the same deadline
    api.complete(iid, "pre_acceptance_work", PRE_ACCEPTANCE)
    api.complete(iid, "confirm_acceptance_readiness", {"decision": "pass"})
    assert api.open_task(iid, "organise_acceptance")["due_at"] == "2026-08-20T16:00:00Z"


@pytest.mark.parametrize(
    ("completed_on", "due"),
    [
        ("2026-03-02", "2026-09-02T16:00:00Z"),  # reported on the day it was completed
        ("2025-12-31", "2026-06-30T16:00:00Z"),  # 31 December + 6 months: the last day of June
        ("2025-09-30", "2026-03-30T16:00:00Z"),  # reported five months late
    ],
)
def test_acceptance_deadline_counts_calendar_months_from_the_completion_date(
    lifecycle_api: Api, completed_on: str, due: str
) -> None:
    api = lifecycle_api
    bk = f"WH-ACC-{completed_on}"
    iid = to_construction(api, bk)
    api.message("construction_completed", bk, {"completed_on": completed_on})
    assert {w["element_id"]: w["due_at"] for w in api.waiting(iid)}["acceptance_deadline"] == due


def test_completion_reported_after_the_six_months_reminds_at_once(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "WH-ACC-LATE"
    iid = to_construction(api, bk)
    # 31 August 2025 + 6 months = 28 February 2026, already past when the report arrives on 2 March 2026
    api.message("construction_completed", bk, {"completed_on": "2025-08-31"})
    assert api.open_elements(iid) == ["acceptance_overdue", "pre_acceptance_work"]


def test_construction_completed_must_carry_its_date(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "WH-MSG-CC"
    iid = to_construction(api, bk)
    waiting = {w["name"]: w for w in api.waiting(iid) if w["kind"] == "message"}
    assert [f["id"] for f in waiting["construction_completed"]["payload"]] == ["completed_on"]
    for variables, field in (
        ({}, "completed_on"),
        ({"completed_on": "二〇二六年"}, "completed_on"),
        ({**COMPLETED, "completed_date": "2026-02-20"}, "completed_date"),
    ):
        r = api.admin.post(
            "/messages", json={"name": "construction_completed", "business_key": bk, "variables": variables}
        )
        assert r.status_code == 422, r.text
        assert field in r.json()["errors"]
    # nothing changed
    assert api.open_elements(iid) == ["annual_performance_report"]
    # also while the yearly report is open (the boundary event declares the same payload)
    api.message("construction_completed", bk, COMPLETED)
    assert api.open_elements(iid) == ["pre_acceptance_work"]
    assert api.variables(iid)["completed_on"] == "2026-02-20"


@pytest.mark.parametrize(
    ("message", "variables", "field"),
    [
        ("violation_found", {"found_on": "2026-02-27"}, "violation"),
        ("violation_found", {"violation": "未按规定执行采购程序"}, "found_on"),
        ("adjustment_requested", {}, "adjustment_content"),
    ],
)
def test_supervision_and_adjustment_messages_carry_what_the_forms_no_longer_ask(
    lifecycle_api: Api, message: str, variables: dict[str, Any], field: str
) -> None:
    api = lifecycle_api
    bk = f"WH-MSG-{message}-{field}"
    iid = to_construction(api, bk)
    r = api.admin.post("/messages", json={"name": message, "business_key": bk, "variables": variables})
    assert r.status_code == 422 and field in r.json()["errors"], r.text
    assert api.open_elements(iid) == ["annual_performance_report"]
    # the task after the message does not ask again for what the message brings
    api.message(message, bk, VIOLATION if message == "violation_found" else REQUEST)
    element = "order_rectification" if message == "violation_found" else "submit_adjustment"
    task = api.open_task(iid, element)
    form = {f["id"] for f in api.admin.get(f"/tasks/{task['id']}").json()["form"]}
    assert not {"violation", "found_on", "adjustment_content"} & form


# ---- 第二十二条: self-evaluation and post-evaluation ------------------------------------------------


def to_operation(api: Api, bk: str, operation_start: str, reported_at: datetime | None = None) -> str:
    """To the operation started on `operation_start`, reported on book_assets (at `reported_at`, when given: a
    reported date cannot lie ahead of the day it is reported)."""
    iid = to_acceptance(api, bk)
    api.complete(iid, "pre_acceptance_work", PRE_ACCEPTANCE)
    api.complete(iid, "confirm_acceptance_readiness", {"decision": "pass"})
    api.complete(iid, "organise_acceptance", {"decision": "pass", **ACCEPTANCE})
    api.complete(iid, "file_acceptance", {"acceptance_filing_ref": "BA-9"})
    if reported_at is not None:
        api.clock.set(reported_at)
    api.complete(iid, "book_assets", {"asset_booking_ref": "ZC-9", "operation_start_date": operation_start})
    return iid


def test_self_evaluation_not_before_twelve_months(lifecycle_api: Api) -> None:
    """第二十二条 投入运行后12至24个月内: from the operation start date reported on book_assets, to 24:00 of the day
    12 months later (the day itself counts, as the period starts on the next day)."""
    api = lifecycle_api
    iid = to_operation(api, "WH-SELF-EVAL", "2026-03-02")
    assert api.open_elements(iid) == []
    api.advance(timedelta(days=365, hours=15))  # 2027-03-02T16:00Z = 2027-03-03 00:00 China time, the due instant
    assert api.open_elements(iid) == []
    api.advance(timedelta(minutes=1))
    assert api.open_elements(iid) == ["self_evaluation"]
    api.complete(iid, "self_evaluation", {"self_evaluation_ref": "ZP-1", "self_evaluation_filed": True})
    api.complete(iid, "decide_post_evaluation", {"commission_post_evaluation": False})
    assert api.open_elements(iid) == ["apply_evaluation_results"]
    api.complete(iid, "apply_evaluation_results", {})
    assert api.end_event(iid) == "end_completed"


def test_self_evaluation_window_from_a_leap_day(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_operation(api, "WH-LEAP", "2028-02-29", reported_at=datetime(2028, 2, 29, 2, tzinfo=UTC))
    due = {w["element_id"]: w["due_at"] for w in api.waiting(iid)}
    # 29 February + 12 months is the last day of February
    assert due["wait_self_evaluation"] == "2029-02-28T16:00:00Z"
    api.fire_timer(iid, "wait_self_evaluation")
    due = {w["element_id"]: w["due_at"] for w in api.waiting(iid)}
    assert due["self_evaluation_deadline"] == "2030-02-28T16:00:00Z"


def test_self_evaluation_overdue_after_twenty_four_months(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = to_operation(api, "WH-SELF-LATE", "2026-03-02")
    api.advance(timedelta(days=366))  # 2027-03-03T01:00Z
    assert api.open_elements(iid) == ["self_evaluation"]
    api.advance(timedelta(days=365, hours=15))  # 2028-03-02T16:00Z, the end of the 24th month (2028 is a leap year)
    assert api.open_elements(iid) == ["self_evaluation"]
    api.advance(timedelta(minutes=1))
    assert api.open_elements(iid) == ["self_evaluation", "self_evaluation_overdue"]
    assert api.open_task(iid, "self_evaluation_overdue")["candidate_groups"] == ["data_bureau"]
