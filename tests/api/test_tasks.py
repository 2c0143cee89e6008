"""User tasks over HTTP: inbox, detail, claim, complete — and who may do what."""
from __future__ import annotations

import threading

import httpx

from tests.support import Api

START = {"project_name": "一网通办", "budget_wan": 30}


def _review_task(api: Api, business_key: str | None = None) -> tuple[str, str]:
    inst = api.start("review", START, business_key=business_key)
    return inst["id"], inst["open_tasks"][0]["id"]


def test_inbox_by_candidate_group(api: Api) -> None:
    _, task_id = _review_task(api, "IN-1")
    reviewer = api.as_("li", "data_bureau")
    inbox = reviewer.get("/tasks", params={"candidate_group": "data_bureau"}).json()["items"]
    assert [t["id"] for t in inbox] == [task_id]
    assert reviewer.get("/tasks").json()["items"][0]["business_key"] == "IN-1"
    other = api.as_("zhao", "finance_bureau")
    assert other.get("/tasks").json()["items"] == []
    assert other.get("/tasks", params={"candidate_group": "data_bureau"}).json()["items"] == []
    assert len(api.admin.get("/tasks", params={"process_key": "review"}).json()["items"]) == 1


def test_task_detail_has_form_documentation_and_due(api: Api) -> None:
    _, task_id = _review_task(api)
    t = api.as_("li", "data_bureau").get(f"/tasks/{task_id}").json()
    assert t["documentation"] == "第十三条：审核申报材料。"
    assert t["candidate_groups"] == ["data_bureau"] and t["assignee"] is None
    assert t["created_at"] == "2026-03-02T01:00:00Z" and t["due_at"] == "2026-03-12T01:00:00Z"
    form = {f["id"]: f for f in t["form"]}
    assert form["decision"]["type"] == "enum" and form["decision"]["required"] is True
    assert [o["id"] for o in form["decision"]["options"]] == ["pass", "revise", "reject"]
    assert form["score"]["min"] == 0 and form["score"]["max"] == 100 and form["review_date"]["type"] == "date"
    assert t["variables"]["project_name"] == "一网通办"


def test_wrong_group_may_not_see_claim_or_complete(api: Api) -> None:
    _, task_id = _review_task(api)
    other = api.as_("zhao", "finance_bureau")
    assert other.get(f"/tasks/{task_id}").status_code == 403
    assert other.post(f"/tasks/{task_id}/claim").status_code == 403
    r = other.post(f"/tasks/{task_id}/complete", json={"variables": {"decision": "pass"}})
    assert r.status_code == 403 and r.json()["type"] == "/problems/forbidden"
    assert api.admin.get(f"/tasks/{task_id}").json()["status"] == "open"


def test_claim_unclaim_and_claimed_by_someone_else(api: Api) -> None:
    _, task_id = _review_task(api)
    li, wang = api.as_("li", "data_bureau"), api.as_("wang", "data_bureau")
    assert li.post(f"/tasks/{task_id}/claim").json()["assignee"] == "li"
    assert li.post(f"/tasks/{task_id}/claim").status_code == 200  # idempotent for the holder
    assert wang.post(f"/tasks/{task_id}/claim").status_code == 409
    r = wang.post(f"/tasks/{task_id}/complete", json={"variables": {"decision": "pass"}})
    assert r.status_code == 409 and r.json()["assignee"] == "li"
    assert wang.post(f"/tasks/{task_id}/unclaim").status_code == 409
    assert li.get("/tasks", params={"assignee": "li"}).json()["items"][0]["id"] == task_id
    assert li.post(f"/tasks/{task_id}/unclaim").json()["assignee"] is None
    assert wang.post(f"/tasks/{task_id}/complete", json={"variables": {"decision": "pass"}}).status_code == 200


def test_invalid_form_data_is_422_naming_fields_and_changes_nothing(api: Api) -> None:
    instance_id, task_id = _review_task(api)
    before = api.admin.get(f"/process-instances/{instance_id}/history").json()["events"]
    li = api.as_("li", "data_bureau")
    r = li.post(f"/tasks/{task_id}/complete", json={"variables": {
        "decision": "maybe", "score": 101, "review_date": "03/05/2026", "extra": 1}})
    assert r.status_code == 422
    assert r.json()["errors"] == {"decision": "must be one of: pass, revise, reject", "score": "must be at most 100",
                                  "review_date": "must be a date (YYYY-MM-DD)", "extra": "is not a field of this form"}
    r = li.post(f"/tasks/{task_id}/complete", json={"variables": {"score": 50.5}})
    assert r.json()["errors"] == {"decision": "is required", "score": "must be an integer"}
    assert api.admin.get(f"/tasks/{task_id}").json()["status"] == "open"
    assert api.admin.get(f"/process-instances/{instance_id}/history").json()["events"] == before
    assert li.post(f"/tasks/{task_id}/complete", json={"variables": "x"}).status_code == 422


def test_complete_returns_next_tasks_and_twice_is_409(api: Api) -> None:
    instance_id, task_id = _review_task(api)
    li = api.as_("li", "data_bureau")
    r = li.post(f"/tasks/{task_id}/complete", json={"variables": {"decision": "revise"}})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "running" and [t["element_id"] for t in body["next_tasks"]] == ["revise_task"]
    assert li.post(f"/tasks/{task_id}/complete", json={"variables": {"decision": "pass"}}).status_code == 409
    done = li.get("/tasks", params={"status": "completed"}).json()["items"]
    assert [(t["id"], t["completed_by"]) for t in done] == [(task_id, "li")]
    # the loop: resubmission opens a new review task
    out = api.complete(instance_id, "revise_task", {"budget_wan": 25})
    assert [t["element_id"] for t in out["next_tasks"]] == ["review_task"]
    assert out["next_tasks"][0]["id"] != task_id
    assert api.instance(instance_id)["variables"]["budget_wan"] == 25


def test_run_to_the_end(api: Api) -> None:
    inst = api.start("review", {"project_name": "x", "budget_wan": 100}, business_key="E-1")
    api.complete(inst["id"], "review_task", {"decision": "pass"})
    api.complete(inst["id"], "approve_task", {"approval": "pass"})
    api.message("contract_signed", "E-1")
    out = api.complete(inst["id"], "file_contract")
    assert out["status"] == "completed" and out["end_event"] == "end_completed" and out["next_tasks"] == []
    view = api.instance(inst["id"])
    assert view["status"] == "completed" and view["ended_at"] and view["waiting_for"] == []


def test_unknown_task_is_404(api: Api) -> None:
    r = api.admin.get("/tasks/00000000-0000-0000-0000-000000000000")
    assert r.status_code == 404 and r.json()["detail"]
    assert api.admin.post("/tasks/nope/complete", json={"variables": {}}).status_code == 404
    assert api.admin.get("/tasks", params={"status": "weird"}).status_code == 422


def test_concurrent_completions_exactly_one_wins(api: Api) -> None:
    for round_ in range(3):
        instance_id, task_id = _review_task(api, f"RACE-{round_}")
        decisions = ["pass", "revise", "reject", "pass", "revise", "reject"]
        results: list[tuple[str, int]] = []
        barrier = threading.Barrier(len(decisions))

        def complete(i: int, decision: str, task_id: str = task_id, barrier: threading.Barrier = barrier,
                     results: list[tuple[str, int]] = results) -> None:
            with httpx.Client(base_url=api.server.url + "/api/v1", timeout=60, headers={
                    "Authorization": f"Bearer {api.token(f'r{i}', ('data_bureau',))}"}) as c:
                barrier.wait()
                r = c.post(f"/tasks/{task_id}/complete", json={"variables": {"decision": decision}})
                results.append((decision, r.status_code))

        threads = [threading.Thread(target=complete, args=(i, d)) for i, d in enumerate(decisions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(code for _, code in results)
        assert codes == [200] + [409] * (len(decisions) - 1), results
        winner = next(d for d, code in results if code == 200)
        view = api.instance(instance_id)
        assert view["variables"].get("decision") == winner or view["end_event"] == "end_rejected"
        expected = {"pass": ["gw_merge"], "revise": ["revise_task"], "reject": []}[winner]
        if winner == "revise":
            assert api.open_elements(instance_id) == expected
        elif winner == "reject":
            assert view["end_event"] == "end_rejected"
        else:
            assert [w["name"] for w in view["waiting_for"]] == ["contract_signed"]
        events = api.admin.get(f"/process-instances/{instance_id}/history").json()["events"]
        assert [e["data"]["variables"]["decision"] for e in events if e["action"] == "task.completed"] == [winner]
