"""What a process asks of the world: GET /process-definitions/{key} lists the candidate groups of its tasks (with
their lanes and tasks) and the messages it waits for; GET /groups lists every group the deployed processes use."""
from __future__ import annotations

import weakref
from typing import Any

import pytest

from service.engine import catalog
from tests.support import FIXTURES, Api

PROCESS_KEY = "hangzhou"  # for lifecycle_api: deploy only bpmn/hangzhou.*
REVIEW = (FIXTURES / "review.bpmn").read_bytes()
REVIEW_DMN = (FIXTURES / "review.dmn").read_bytes()

LANES = """
    <bpmn:laneSet id="lanes">
      <bpmn:lane id="lane_data_bureau" name="数据局"><bpmn:flowNodeRef>review_task</bpmn:flowNodeRef><bpmn:flowNodeRef>overdue_notice</bpmn:flowNodeRef></bpmn:lane>
      <bpmn:lane id="lane_applicant" name="申报单位"><bpmn:flowNodeRef>revise_task</bpmn:flowNodeRef><bpmn:flowNodeRef>file_contract</bpmn:flowNodeRef></bpmn:lane>
      <bpmn:lane id="lane_development_reform" name="发改委"><bpmn:flowNodeRef>approve_task</bpmn:flowNodeRef></bpmn:lane>
    </bpmn:laneSet>"""


def _groups(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["name"]: g for g in definition["candidate_groups"]}


def test_a_definition_lists_its_candidate_groups_with_their_tasks_and_its_messages(api: Api) -> None:
    d = api.as_("oa", "applicant").get("/process-definitions/review").json()
    groups = _groups(d)
    assert sorted(groups) == ["applicant", "data_bureau", "development_reform"]
    assert [t["element_id"] for t in groups["data_bureau"]["tasks"]] == ["overdue_notice", "review_task"]
    assert {t["name"] for t in groups["data_bureau"]["tasks"]} == {"数据局审核", "逾期督办"}
    assert groups["data_bureau"]["lanes"] == [] and groups["data_bureau"]["computed"] is False
    assert d["messages"] == [{"name": "contract_signed", "element_ids": ["wait_contract"], "payload": None}]
    # the list of definitions stays light
    listed = api.as_("oa", "applicant").get("/process-definitions").json()
    assert all(x["candidate_groups"] is None and x["messages"] is None for x in listed)


def test_lanes_are_listed_with_the_groups_whose_tasks_they_hold(api: Api) -> None:
    laned = REVIEW.replace(b"</bpmn:documentation>", b"</bpmn:documentation>" + LANES.encode(), 1)
    r = api.admin.post("/deployments", files=[("files", ("review.bpmn", laned)), ("files", ("review.dmn", REVIEW_DMN))])
    assert r.status_code == 201, r.text
    d = api.admin.get("/process-definitions/review").json()
    assert d["version"] == 2
    groups = _groups(d)
    assert groups["data_bureau"]["lanes"] == ["数据局"]
    assert groups["development_reform"]["lanes"] == ["发改委"]
    assert {t["lane"] for t in groups["applicant"]["tasks"]} == {"申报单位"}


def test_groups_lists_every_group_of_the_deployed_processes(api: Api) -> None:
    r = api.as_("someone", "finance_bureau").get("/groups")
    assert r.status_code == 200
    groups = {g["name"]: g for g in r.json()}
    assert sorted(groups) == ["applicant", "data_bureau", "development_reform", "finance_bureau"]
    applicant = {p["key"]: p for p in groups["applicant"]["processes"]}
    assert sorted(applicant) == ["deadlines", "parallel_review", "review", "wait_a_day"]
    assert [t["element_id"] for t in applicant["review"]["tasks"]] == ["file_contract", "revise_task"]
    assert applicant["review"]["version"] == 1 and applicant["review"]["starts"] is False
    assert api.anonymous().get("/groups").status_code == 401


def test_starter_groups_are_listed_as_groups_that_start_a_process(api: Api) -> None:
    restricted = REVIEW.replace(b'id="review" name=', b'id="review" camunda:candidateStarterGroups="oa_clerks" name=')
    r = api.admin.post("/deployments", files=[("files", ("review.bpmn", restricted)),
                                              ("files", ("review.dmn", REVIEW_DMN))])
    assert r.status_code == 201, r.text
    groups = {g["name"]: g for g in api.admin.get("/groups").json()}
    assert groups["oa_clerks"]["processes"] == [
        {"key": "review", "version": 2, "name": "测试评审", "starts": True, "lanes": [], "tasks": []}]


def test_the_catalog_is_read_once_per_definition_version(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    original = catalog._read

    def counting(model: Any) -> catalog.Catalog:
        reads.append(model.key)
        return original(model)

    monkeypatch.setattr(catalog, "_read", counting)
    monkeypatch.setattr(catalog, "_cache", weakref.WeakKeyDictionary())  # forget what earlier tests read
    for _ in range(3):
        assert api.admin.get("/process-definitions/review").status_code == 200
        assert api.admin.get("/groups").status_code == 200
    assert sorted(reads) == ["deadlines", "parallel_review", "review", "wait_a_day"]


def test_hangzhou_lists_its_reviewers_and_the_four_messages_of_the_oa_system(lifecycle_api: Api) -> None:
    d = lifecycle_api.as_("oa", "applicant").get("/process-definitions/hangzhou").json()
    groups = _groups(d)
    for group in ("applicant", "third_party", "expert_panel", "data_bureau", "leading_group", "finance_bureau",
                  "development_reform"):
        assert groups[group]["tasks"], group
    assert "prereview" in {t["element_id"] for t in groups["third_party"]["tasks"]}
    assert {m["name"] for m in d["messages"]} == {"npc_budget_approved", "npc_budget_rejected", "contract_signed",
                                                  "construction_completed", "trial_run_started"}
    contract = next(m for m in d["messages"] if m["name"] == "contract_signed")
    assert {f["id"]: f["required"] for f in contract["payload"]}["signed_on"] is True
