"""The contract every lifecycle in bpmn/ keeps for OA systems, reviewers and designers: checked on
the diagrams as deployed together by the service."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree

from tests.support import REPO, Api

KEYS = ("hangzhou", "qufu", "wuxing", "wuhan", "yulin")
PRESENT = [k for k in KEYS if (REPO / "bpmn" / f"{k}.bpmn").exists()]
NS = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL", "camunda": "http://camunda.org/schema/1.0/bpmn",
      "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI"}
C = "{http://camunda.org/schema/1.0/bpmn}"
GROUPS = {"applicant", "data_bureau", "finance_bureau", "development_reform", "expert_panel", "cyberspace_office",
          "crypto_bureau", "public_security", "reform_office", "audit_bureau", "leading_group", "city_government",
          "info_center", "third_party"}
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
ARTICLE = re.compile(r"第[一二三四五六七八九十百零〇]+条")
CHINESE = re.compile(r"[\u4e00-\u9fff]")


def _tree(key: str) -> etree._Element:
    return etree.parse(str(REPO / "bpmn" / f"{key}.bpmn")).getroot()


def test_the_repository_diagrams_deploy_together(lifecycle_api: Api) -> None:
    listed = {d["key"] for d in lifecycle_api.admin.get("/process-definitions").json()}
    assert set(PRESENT) <= listed


@pytest.mark.parametrize("key", PRESENT)
def test_start_form_contract(lifecycle_api: Api, key: str) -> None:
    form = {f["id"]: f for f in lifecycle_api.admin.get(f"/process-definitions/{key}").json()["start_form"]}
    assert form["project_name"]["type"] == "string" and form["project_name"]["required"]
    assert form["department"]["type"] == "string" and form["department"]["required"]
    assert form["budget_wan"]["type"] == "decimal" and form["budget_wan"]["required"] and form["budget_wan"]["min"] == 0


@pytest.mark.parametrize("key", PRESENT)
def test_elements_follow_the_contract(key: str) -> None:
    root = _tree(key)
    process = root.find(f"bpmn:process[@id='{key}']", NS)
    assert process is not None
    ends = {e.get("id") for e in process.iter(f"{{{NS['bpmn']}}}endEvent")}
    assert "end_completed" in ends and "end_rejected" in ends
    for element in process.iter():
        if not isinstance(element.tag, str) or element.get("id") is None:
            continue
        local = etree.QName(element).localname
        if local in ("userTask", "businessRuleTask", "exclusiveGateway", "startEvent", "endEvent",
                     "intermediateCatchEvent", "boundaryEvent", "scriptTask", "parallelGateway", "subProcess"):
            assert SNAKE.match(element.get("id")), element.get("id")
        if local in ("userTask", "businessRuleTask"):
            assert CHINESE.search(element.get("name") or ""), element.get("id")
            doc = element.findtext("bpmn:documentation", namespaces=NS) or ""
            assert ARTICLE.search(doc), f"{key}: {element.get('id')} cites no article"
        if local == "userTask":
            groups = {g.strip() for g in (element.get(C + "candidateGroups") or "").split(",") if g.strip()}
            assert groups and groups <= GROUPS, (element.get("id"), groups)
            decision = element.find(".//camunda:formField[@id='decision']", NS)
            if decision is not None:
                options = {v.get("id") for v in decision.findall("camunda:value", NS)}
                assert decision.get("type") == "enum" and options <= {"pass", "revise", "reject"}, element.get("id")
        if local == "timerEventDefinition":
            event = element.getparent()
            doc = event.findtext("bpmn:documentation", namespaces=NS) or ""
            assert ARTICLE.search(doc), f"{key}: timer {event.get('id')} cites no article"
    for message in root.findall("bpmn:message", NS):
        assert SNAKE.match(message.get("name") or ""), message.get("name")


@pytest.mark.parametrize("key", PRESENT)
def test_every_element_has_a_shape(key: str) -> None:
    root = _tree(key)
    shown = {s.get("bpmnElement") for s in root.iter(f"{{{NS['bpmndi']}}}BPMNShape")}
    shown |= {e.get("bpmnElement") for e in root.iter(f"{{{NS['bpmndi']}}}BPMNEdge")}
    process = root.find(f"bpmn:process[@id='{key}']", NS)
    assert process is not None
    missing = [e.get("id") for e in process.iter() if isinstance(e.tag, str) and etree.QName(e).localname in (
        "userTask", "businessRuleTask", "exclusiveGateway", "parallelGateway", "startEvent", "endEvent",
        "intermediateCatchEvent", "boundaryEvent", "scriptTask", "sequenceFlow", "subProcess")
        and e.get("id") not in shown]
    assert missing == []


def test_decision_ids_do_not_collide() -> None:
    seen: dict[str, str] = {}
    for path in sorted(Path(REPO / "bpmn").glob("*.dmn")):
        for decision in etree.parse(str(path)).getroot().iter("{*}decision"):
            assert decision.get("id") not in seen, (decision.get("id"), path.name, seen.get(decision.get("id")))
            seen[decision.get("id")] = path.name
