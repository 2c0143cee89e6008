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


# ---- lanes: every user task in its department's lane --------------------------------------------------

def _bounds(root: etree._Element) -> dict[str, tuple[float, ...]]:
    found = {}
    for shape in root.iter(f"{{{NS['bpmndi']}}}BPMNShape"):
        b = shape.find("{http://www.omg.org/spec/DD/20100524/DC}Bounds")
        found[shape.get("bpmnElement")] = tuple(float(b.get(k)) for k in ("x", "y", "width", "height"))
    return found


def _inside(outer: tuple[float, ...], inner: tuple[float, ...]) -> bool:
    return (outer[0] <= inner[0] + 0.5 and outer[1] <= inner[1] + 0.5
            and inner[0] + inner[2] <= outer[0] + outer[2] + 0.5 and inner[1] + inner[3] <= outer[1] + outer[3] + 0.5)


@pytest.mark.parametrize("key", PRESENT)
def test_every_user_task_sits_in_its_candidate_groups_lane(key: str) -> None:
    root = _tree(key)
    process = root.find(f"bpmn:process[@id='{key}']", NS)
    assert process is not None
    lanes = list(process.iter(f"{{{NS['bpmn']}}}lane"))
    assert lanes, f"{key} has no lanes"
    bounds = _bounds(root)
    member: dict[str, str] = {}
    for lane in lanes:
        assert lane.get("id", "").startswith("lane_") and CHINESE.search(lane.get("name") or ""), lane.get("id")
        for ref in lane.findall("bpmn:flowNodeRef", NS):
            assert ref.text not in member, f"{key}: {ref.text} is in two lanes"
            member[ref.text] = lane.get("id")
    for node in process:
        local = etree.QName(node).localname
        if not node.get("id") or local in ("sequenceFlow", "laneSet", "documentation", "extensionElements",
                                           "boundaryEvent", "subProcess"):
            continue
        assert node.get("id") in member, f"{key}: {node.get('id')} is in no lane"
    for task in process.iter(f"{{{NS['bpmn']}}}userTask"):
        first = (task.get(C + "candidateGroups") or "").split(",")[0].strip()
        lane_id = f"lane_{first}"
        assert lane_id in bounds, f"{key}: no lane {lane_id} for {task.get('id')}"
        assert _inside(bounds[lane_id], bounds[task.get("id")]), f"{key}: {task.get('id')} is not in {lane_id}"
        if task.get("id") in member:
            assert member[task.get("id")] == lane_id, f"{key}: {task.get('id')} is listed in {member[task.get('id')]}"


# ---- citations: every 第X条 exists in the regulation ------------------------------------------------------

REGULATIONS = REPO / "docs" / "regulations"
_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def _number(text: str) -> int:
    if "百" in text:
        hundreds, _, rest = text.partition("百")
        return _DIGITS[hundreds] * 100 + (_number(rest.lstrip("零〇")) if rest else 0)
    if "十" not in text:
        return _DIGITS[text]
    tens, _, ones = text.partition("十")
    return (_DIGITS[tens] if tens else 1) * 10 + (_DIGITS[ones] if ones else 0)


def _articles(key: str) -> int:
    """The number of articles of a regulation (the last article heading)."""
    text = (REGULATIONS / f"{key}.txt").read_text(encoding="utf-8")
    headings = re.findall(r"(?m)^[\s\u3000]*第([一二三四五六七八九十百零〇]+)条", text)
    return max(_number(n) for n in headings)


def _cited(text: str) -> list[int]:
    """Article numbers a text cites: 第十条, 第十一、十三条, 第十一至十三条; not another law's (《…》第X条)."""
    numbers: list[int] = []
    for m in re.finditer(r"(》)?第([一二三四五六七八九十百零〇、至第]+)条", text):
        if m.group(1):
            continue
        for part in m.group(2).replace("第", "").split("、"):
            ends = [_number(n) for n in part.split("至") if n]
            numbers.extend(range(ends[0], ends[-1] + 1))
    return numbers


def test_citation_parsing() -> None:
    assert _cited("第二十五条；第十一、十三条；第十一至十三条；《民法典》第二百零一条") == [25, 11, 13, 11, 12, 13]
    assert _number("三十九") == 39 and _number("十") == 10 and _number("二百零一") == 201


@pytest.mark.parametrize("key", PRESENT)
def test_every_cited_article_exists_in_the_regulation(key: str) -> None:
    last = _articles(key)
    texts = [(d.getparent().get("id"), d.text or "") for d in _tree(key).iter(f"{{{NS['bpmn']}}}documentation")]
    dmn = REPO / "bpmn" / f"{key}.dmn"
    if dmn.exists():
        root = etree.parse(str(dmn)).getroot()
        texts += [(e.getparent().get("id"), e.text or "") for e in root.iter("{*}description")]
    cited = 0
    for element, text in texts:
        for number in _cited(text):
            assert 1 <= number <= last, f"{key}: {element} cites 第{number}条; the regulation has {last} articles"
            cited += 1
        if "按惯例" in text:
            # a convention is written down as one: it says that the regulation does not state it
            assert re.search(r"办法未(规定|写明|明确|载明)", text), f"{key}: {element} calls a convention an article"
    assert cited > 20


def test_no_decision_table_has_rows_whose_order_decides(lifecycle_api: Api) -> None:
    from service.services.definitions import decision_warnings, read_directory

    files = read_directory(REPO / "bpmn")
    assert decision_warnings(lifecycle_api.server.ctx, files) == []
